// @brief Point-wise activation layers (ReLU, GELU, tanh, sigmoid). They keep the feature count,
// so they fit between any two layers; D may pin the width for compile-time checks.
//
// Contract: forward y = f(x) (D x N), keeping a view of x; backward dx = dy .* f'(x).
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/param.hpp"

namespace mtlm {

template <Activation A, Index D = Dynamic, class S = float, class B = Cpu>
  requires Dimension<D> && Backend<B>
class ActivationLayer {
 public:
  using Scalar = S;
  using BackendType = B;
  static constexpr Index input_dim = D;
  static constexpr Index output_dim = D;
  /// Output width equals input width, whatever it is.
  static constexpr bool preserves_features = true;

  void initialize(Rng&) {}

  const Matrix<S, B>& forward(ConstView<S> x, const Batch& = {}, Mode = Mode::train) {
    if (D != Dynamic && x.rows != D)
      throw ShapeError("mtlm: activation input has " + std::to_string(x.rows) +
                       " rows, expected " + std::to_string(D));
    input_ = x;
    y_.resize(x.rows, x.cols);
    B::template activate<A>(x, y_.view());
    return y_;
  }

  const Matrix<S, B>& backward(ConstView<S> dy, const Batch& = {}) {
    dx_.resize(dy.rows, dy.cols);
    B::template activate_backward<A>(input_, y_.view(), dy, dx_.view());
    return dx_;
  }

  template <class F>
  void for_each_param(F&&) {}

 private:
  ConstView<S> input_;
  Matrix<S, B> y_, dx_;
};

template <Index D = Dynamic, class S = float, class B = Cpu>
using Relu = ActivationLayer<Activation::relu, D, S, B>;
template <Index D = Dynamic, class S = float, class B = Cpu>
using Gelu = ActivationLayer<Activation::gelu, D, S, B>;
template <Index D = Dynamic, class S = float, class B = Cpu>
using Tanh = ActivationLayer<Activation::tanh, D, S, B>;
template <Index D = Dynamic, class S = float, class B = Cpu>
using Sigmoid = ActivationLayer<Activation::sigmoid, D, S, B>;

}  // namespace mtlm
