// @brief Linear (fully connected) layer, y = W x + b applied to every token column at once.
//
// Contract: forward takes x (In x N) and returns y (Out x N); it keeps a view of x, which must
// stay alive and unchanged until backward. backward takes dy (Out x N), adds dW = dy x^T and
// db = sum_cols(dy) to the gradients and returns dx = W^T dy (In x N). Columns are independent,
// so padding columns never influence real ones.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/param.hpp"

#include <variant>

namespace mtlm {

template <Index In, Index Out, bool HasBias, class S = float, class B = Cpu>
  requires Dimension<In> && Dimension<Out> && Backend<B>
class BasicLinear {
 public:
  using Scalar = S;
  using BackendType = B;
  static constexpr Index input_dim = In;
  static constexpr Index output_dim = Out;
  static constexpr bool has_bias = HasBias;

  explicit BasicLinear(Index in = In, Index out = Out)
      : in_(resolve_dim(In, in, "Linear input dimension")),
        out_(resolve_dim(Out, out, "Linear output dimension")),
        weight_(out_, in_) {
    if constexpr (HasBias) bias_.resize(out_, 1);
  }

  /// Xavier-uniform weights, zero bias.
  void initialize(Rng& rng) {
    weight_.initialize(init::XavierUniform{}, in_, out_, rng);
    if constexpr (HasBias) bias_.initialize(init::Constant{0.0}, in_, out_, rng);
  }

  const Matrix<S, B>& forward(ConstView<S> x, const Batch& = {}, Mode = Mode::train) {
    check_rows(x.rows, in_, "input");
    input_ = x;
    y_.resize(out_, x.cols);
    if constexpr (HasBias)
      affine(B{}, Transpose::no, weight_.value.view(), x, bias_.value.view(), y_.view());
    else
      B::gemm(Transpose::no, Transpose::no, S(1), weight_.value.view(), x, S(0), y_.view());
    return y_;
  }

  const Matrix<S, B>& backward(ConstView<S> dy, const Batch& = {}) {
    check_rows(dy.rows, out_, "output gradient");
    B::gemm(Transpose::no, Transpose::yes, S(1), dy, input_, S(1), weight_.grad.view());
    if constexpr (HasBias) B::sum_columns(dy, S(1), bias_.grad.view());
    dx_.resize(in_, dy.cols);
    B::gemm(Transpose::yes, Transpose::no, S(1), weight_.value.view(), dy, S(0), dx_.view());
    return dx_;
  }

  template <class F>
  void for_each_param(F&& f) {
    f("weight", weight_);
    if constexpr (HasBias) f("bias", bias_);
  }

  Index in_features() const { return in_; }
  Index out_features() const { return out_; }
  Param<S, B>& weight() { return weight_; }
  Param<S, B>& bias()
    requires HasBias
  {
    return bias_;
  }

 private:
  static void check_rows(Index got, Index expected, const char* what) {
    if (got != expected)
      throw ShapeError("mtlm: Linear " + std::string(what) + " has " + std::to_string(got) +
                       " rows, expected " + std::to_string(expected));
  }

  Index in_, out_;
  Param<S, B> weight_;
  [[no_unique_address]] std::conditional_t<HasBias, Param<S, B>, std::monostate> bias_;
  ConstView<S> input_;
  Matrix<S, B> y_, dx_;
};

/// y = W x + b.
template <Index In, Index Out, class S = float, class B = Cpu>
using Linear = BasicLinear<In, Out, true, S, B>;

/// y = W x (no bias), e.g. for projections followed by layer norm.
template <Index In, Index Out, class S = float, class B = Cpu>
using LinearNoBias = BasicLinear<In, Out, false, S, B>;

}  // namespace mtlm
