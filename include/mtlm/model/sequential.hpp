// @brief Sequential<L...>: a trunk built from a flat list of layers, applied in order.
// The list is flat on purpose (compile errors stay short, compile time stays linear in depth),
// and neighbouring dimensions are checked at compile time: a mismatch names both numbers.
//
// Contract: forward returns the last layer's output; every layer keeps what it needs for
// backward, and the intermediate outputs stay alive inside the layers until the next forward.
// If the first layer reads token ids (an Embedding), forward takes only the Batch and backward
// returns nothing; otherwise forward takes a matrix and backward returns its gradient.
#pragma once

#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/matrix.hpp"
#include "mtlm/core/param.hpp"

#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace mtlm {

/// A layer whose forward reads token ids from the batch rather than a matrix.
template <class L>
concept TokenInputLayer = requires(L& l, const Batch& b, Mode m) { l.forward(b, m); };

/// A layer whose output width equals its input width, whatever it is (activations, dropout).
template <class L>
constexpr bool preserves_features_v = requires { requires L::preserves_features; };

/// Output dimension of L when its input has dimension `in` (Dynamic if unknown).
template <class L>
constexpr Index output_dim_after(Index in) {
  if constexpr (preserves_features_v<L>)
    return L::output_dim == Dynamic ? in : L::output_dim;
  else
    return L::output_dim;
}

namespace detail {

template <Index Current, class... Ls>
struct ChainDims {
  static constexpr Index output = Current;
};

template <Index Current, class L, class... Rest>
struct ChainDims<Current, L, Rest...> {
  static_assert(DimensionsAgree<Current, L::input_dim>::value);
  static constexpr Index output = ChainDims<output_dim_after<L>(Current), Rest...>::output;
};

}  // namespace detail

template <class First, class... Rest>
class Sequential {
 public:
  using Scalar = typename First::Scalar;
  using BackendType = typename First::BackendType;
  static_assert((std::is_same_v<typename Rest::Scalar, Scalar> && ...),
                "mtlm: every layer of a Sequential must use the same scalar type");
  static_assert((std::is_same_v<typename Rest::BackendType, BackendType> && ...),
                "mtlm: every layer of a Sequential must use the same backend");
  static_assert(!(TokenInputLayer<Rest> || ...),
                "mtlm: only the first layer of a Sequential may read token ids");

  static constexpr bool reads_tokens = TokenInputLayer<First>;
  static constexpr Index input_dim = reads_tokens ? Dynamic : First::input_dim;
  static constexpr Index output_dim =
      detail::ChainDims<output_dim_after<First>(First::input_dim), Rest...>::output;
  static constexpr std::size_t size = 1 + sizeof...(Rest);
  // Reading output_dim here makes every declaration of a Sequential check its chain.
  static_assert(output_dim == Dynamic || output_dim > 0);

  using Output = Matrix<Scalar, BackendType>;

  Sequential() = default;
  explicit Sequential(First first, Rest... rest)
      : layers_(std::move(first), std::move(rest)...) {}
  /// Only the first layer needs arguments (a Dynamic vocabulary); the rest are defaulted.
  explicit Sequential(First first)
    requires(sizeof...(Rest) > 0 && (std::is_default_constructible_v<Rest> && ...))
      : layers_(std::move(first), Rest()...) {}

  void initialize(Rng& rng) {
    std::apply([&](auto&... layer) { (layer.initialize(rng), ...); }, layers_);
  }

  const Output& forward(const Batch& batch, Mode mode = Mode::train)
    requires reads_tokens
  {
    const Output& first = std::get<0>(layers_).forward(batch, mode);
    return forward_from<1>(first.view(), batch, mode);
  }

  const Output& forward(ConstView<Scalar> x, const Batch& batch, Mode mode = Mode::train)
    requires(!reads_tokens)
  {
    return forward_from<0>(x, batch, mode);
  }

  /// Propagates dy back through every layer; returns the input gradient when the input is a
  /// matrix.
  decltype(auto) backward(ConstView<Scalar> dy, const Batch& batch) {
    if constexpr (reads_tokens) {
      ConstView<Scalar> g = backward_from<size - 1>(dy, batch);
      std::get<0>(layers_).backward(g, batch);
    } else {
      return backward_to_input(dy, batch);
    }
  }

  template <class F>
  void for_each_param(F&& f) {
    visit_params(f, std::make_index_sequence<size>{});
  }

  template <class F>
  void for_each_rng(F&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      auto visit_one = [&](auto& layer, std::size_t index) {
        const std::string prefix = std::to_string(index);
        visit_rngs(layer, prefixed(prefix, f));
      };
      (visit_one(std::get<I>(layers_), I), ...);
    }(std::make_index_sequence<size>{});
  }

  template <std::size_t I>
  auto& layer() {
    return std::get<I>(layers_);
  }
  template <std::size_t I>
  const auto& layer() const {
    return std::get<I>(layers_);
  }

 private:
  template <std::size_t I>
  const Output& forward_from(ConstView<Scalar> x, const Batch& batch, Mode mode) {
    const Output& y = std::get<I>(layers_).forward(x, batch, mode);
    if constexpr (I + 1 < size)
      return forward_from<I + 1>(y.view(), batch, mode);
    else
      return y;
  }

  /// Runs backward through layers I, I-1, ..., 1 and returns the gradient entering layer 0.
  template <std::size_t I>
  ConstView<Scalar> backward_from(ConstView<Scalar> dy, const Batch& batch) {
    if constexpr (I == 0) {
      return dy;
    } else {
      const Output& dx = std::get<I>(layers_).backward(dy, batch);
      return backward_from<I - 1>(dx.view(), batch);
    }
  }

  const Output& backward_to_input(ConstView<Scalar> dy, const Batch& batch) {
    return std::get<0>(layers_).backward(backward_from<size - 1>(dy, batch), batch);
  }

  template <class F, std::size_t... I>
  void visit_params(F& f, std::index_sequence<I...>) {
    auto visit_one = [&](auto& layer, std::size_t index) {
      const std::string prefix = std::to_string(index);
      layer.for_each_param(prefixed(prefix, f));
    };
    (visit_one(std::get<I>(layers_), I), ...);
  }

  std::tuple<First, Rest...> layers_;
};

}  // namespace mtlm
