// @brief StackedHead<Layers, Head>: layers of one task's own between the shared trunk and its
// head. The tasks share the trunk; only this task trains the stacked layers (MT-DNN's
// task-specific layers, or a second recurrent layer that one task keeps to itself so that the
// other tasks' gradients reach only the layer below).
//
// Layers is a Sequential of layers that read a matrix (not token ids); Head is any task head
// whose input dimension is the layers' output dimension. A StackedHead is a head itself: it
// takes the trunk's features, its loss and target are the head's, and its backward returns
// d features through the stacked layers. Parameters are named "layers.*" and "head.*".
#pragma once

#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/matrix.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/core/random.hpp"
#include "mtlm/model/sequential.hpp"

#include <type_traits>
#include <utility>

namespace mtlm {

template <class Layers, class Head>
class StackedHead {
  static_assert(!Layers::reads_tokens,
                "mtlm: a StackedHead's layers read the trunk's features: their first layer must "
                "take a matrix, not token ids");
  static_assert(std::is_same_v<typename Layers::Scalar, typename Head::Scalar>,
                "mtlm: a StackedHead's layers and head must use the same scalar type");
  static_assert(std::is_same_v<typename Layers::BackendType, typename Head::BackendType>,
                "mtlm: a StackedHead's layers and head must use the same backend");
  static_assert(dims_agree(Layers::output_dim, Head::input_dim),
                "mtlm: a StackedHead's head must take its layers' output dimension");

 public:
  using Scalar = typename Head::Scalar;
  using BackendType = typename Head::BackendType;
  using Target = typename Head::Target;
  static constexpr Index input_dim = Layers::input_dim;

  StackedHead() = default;
  StackedHead(Layers layers, Head head) : layers_(std::move(layers)), head_(std::move(head)) {}

  void initialize(Rng& rng) {
    layers_.initialize(rng);
    head_.initialize(rng);
  }

  /// The head's outputs for the trunk's features, after the stacked layers.
  decltype(auto) forward(ConstView<Scalar> features, const Batch& batch, Mode mode = Mode::eval) {
    return head_.forward(ConstView<Scalar>(layers_.forward(features, batch, mode).view()), batch,
                         mode);
  }

  double loss(const Target& target, const Batch& batch) { return head_.loss(target, batch); }

  /// d (scale * loss) / d features: the head's input gradient, back through the layers (which
  /// add their parameter gradients on the way).
  const Matrix<Scalar, BackendType>& backward(Scalar scale, const Batch& batch) {
    return layers_.backward(ConstView<Scalar>(head_.backward(scale, batch).view()), batch);
  }

  /// The head's decoding of the last forward (argmax, Viterbi, ...), where the head has one.
  template <class... Args>
    requires requires(Head& h, Args&&... args) { h.predict(std::forward<Args>(args)...); }
  decltype(auto) predict(Args&&... args) {
    return head_.predict(std::forward<Args>(args)...);
  }

  template <class F>
  void for_each_param(F&& f) {
    layers_.for_each_param(prefixed("layers", f));
    head_.for_each_param(prefixed("head", f));
  }

  template <class F>
  void for_each_rng(F&& f) {
    visit_rngs(layers_, prefixed("layers", f));
    visit_rngs(head_, prefixed("head", f));
  }

  Layers& layers() { return layers_; }
  const Layers& layers() const { return layers_; }
  Head& head() { return head_; }
  const Head& head() const { return head_; }

 private:
  Layers layers_;
  Head head_;
};

}  // namespace mtlm
