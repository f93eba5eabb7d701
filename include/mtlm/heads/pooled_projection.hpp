// @brief The shared body of every sequence-level head: pool the trunk's token features over
// time (respecting padding), optionally through one hidden ReLU layer, then project to the
// head's outputs. Classification, multi-label and regression heads differ only in their loss.
//
// Contract: forward(features (In x B*T), batch) -> outputs (Out x B); backward(d outputs
// (Out x B), batch) -> d features (In x B*T), zero at padding. Hidden == 0 means no hidden layer.
#pragma once

#include "mtlm/layers/activation.hpp"
#include "mtlm/layers/linear.hpp"
#include "mtlm/layers/pooling.hpp"

#include <variant>

namespace mtlm {

template <Index In, Index Out, PoolingKind Pool, Index Hidden, class S, class B>
  requires Dimension<In> && Dimension<Out> && (Hidden >= 0 || Hidden == Dynamic)
class PooledProjection {
  static constexpr bool has_hidden = Hidden != 0;
  static constexpr Index projection_input = has_hidden ? Hidden : In;

 public:
  PooledProjection(Index in, Index out, Index hidden = Hidden)
      : hidden_(make_hidden(in, hidden)), output_(has_hidden ? hidden : in, out) {}

  void initialize(Rng& rng) {
    if constexpr (has_hidden) hidden_.initialize(rng);
    output_.initialize(rng);
  }

  const Matrix<S, B>& forward(ConstView<S> features, const Batch& batch, Mode mode) {
    const auto& pooled = pool_.forward(features, batch, mode);
    if constexpr (has_hidden) {
      const auto& h = activation_.forward(hidden_.forward(pooled.view(), batch, mode).view(), batch, mode);
      return output_.forward(h.view(), batch, mode);
    } else {
      return output_.forward(pooled.view(), batch, mode);
    }
  }

  const Matrix<S, B>& backward(ConstView<S> doutputs, const Batch& batch) {
    const auto& dpooled = output_.backward(doutputs, batch);
    if constexpr (has_hidden) {
      const auto& dh = activation_.backward(dpooled.view(), batch);
      return pool_.backward(hidden_.backward(dh.view(), batch).view(), batch);
    } else {
      return pool_.backward(dpooled.view(), batch);
    }
  }

  template <class F>
  void for_each_param(F&& f) {
    if constexpr (has_hidden) hidden_.for_each_param(prefixed("hidden", f));
    output_.for_each_param(prefixed("output", f));
  }

 private:
  using HiddenLayer = std::conditional_t<has_hidden, Linear<In, Hidden == 0 ? 1 : Hidden, S, B>, std::monostate>;

  static HiddenLayer make_hidden(Index in, Index hidden) {
    if constexpr (has_hidden) return HiddenLayer(in, hidden);
    else return {};
  }

  Pooling<Pool, In, S, B> pool_;
  [[no_unique_address]] HiddenLayer hidden_;
  [[no_unique_address]] std::conditional_t<has_hidden, Relu<Dynamic, S, B>, std::monostate> activation_;
  Linear<projection_input, Out, S, B> output_;
};

}  // namespace mtlm
