// @brief Layer normalisation (Ba et al. 2016) over the features of every token column:
// y = gain .* (x - mean(x)) / sqrt(var(x) + eps) + bias, as PyTorch's nn.LayerNorm(D). It keeps
// activations at a fixed scale whatever the depth, which Transformer blocks rely on.
//
// Contract: forward takes x (D x N) and returns y (D x N); it caches the normalised input
// x_hat (D x N) and 1 / sqrt(var + eps) per column, not x. The variance is the biased one (divided
// by D), eps = 1e-5 by default. Padding columns of a per-token batch are not normalised: their
// outputs are 0, their output gradient is ignored (it neither reaches gain and bias nor the
// input) and their input gradient is 0. backward adds d gain = sum dy .* x_hat and
// d bias = sum dy over real columns and returns dx.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/layers/detail/padding.hpp"

#include <cmath>
#include <string>

namespace mtlm {

// CPU kernels
namespace backend {

/// For every column j: x_hat = (x - mean) * r with r = 1 / sqrt(var + eps), y = gain .* x_hat +
/// bias; stores x_hat and r(0, j). Two passes per column (mean, then centred variance) keep the
/// variance accurate when the mean is large.
template <class S>
void layer_norm_forward(Cpu, In<S> x, In<S> gain, In<S> bias, S eps, MatrixView<S> x_hat,
                        MatrixView<S> inv_std, MatrixView<S> y) {
  // Named maps: Eigen blocks of a temporary Map would dangle.
  const auto X = Cpu::eigen(x);
  const auto Gm = Cpu::eigen(gain);
  const auto Bm = Cpu::eigen(bias);
  const auto G = Gm.col(0).array();
  const auto Bias = Bm.col(0).array();
  auto XH = Cpu::eigen(x_hat);
  auto R = Cpu::eigen(inv_std);
  auto Y = Cpu::eigen(y);
  Cpu::in_column_bands(y, [&](Index first, Index count) {
    for (Index j = first; j < first + count; ++j) {
      const S mean = X.col(j).mean();
      const S var = (X.col(j).array() - mean).square().mean();
      const S r = S(1) / std::sqrt(var + eps);
      XH.col(j).array() = (X.col(j).array() - mean) * r;
      Y.col(j).array() = XH.col(j).array() * G + Bias;
      R(0, j) = r;
    }
  });
}

/// With g = dy .* gain: dx = r * (g - mean(g) - x_hat * mean(g .* x_hat)) per column;
/// gain_grad += sum_j dy .* x_hat, bias_grad += sum_j dy.
template <class S>
void layer_norm_backward(Cpu, In<S> dy, In<S> x_hat, In<S> inv_std, In<S> gain, MatrixView<S> dx,
                         MatrixView<S> gain_grad, MatrixView<S> bias_grad) {
  const auto DY = Cpu::eigen(dy);
  const auto XH = Cpu::eigen(x_hat);
  const auto R = Cpu::eigen(inv_std);
  const auto Gm = Cpu::eigen(gain);
  const auto G = Gm.col(0).array();
  auto DX = Cpu::eigen(dx);
  auto DG = Cpu::eigen(gain_grad);
  auto DB = Cpu::eigen(bias_grad);
  auto dgain = DG.col(0).array();
  auto dbias = DB.col(0).array();
  // dx column by column, split over the threads for a large batch; the parameter gradients
  // sum over the columns in order on the calling thread: in the same pass when it took every
  // column, in a second one after a split.
  bool whole = false;
  Cpu::in_column_bands(dx, [&](Index first, Index count) {
    const bool all_columns = count == dy.cols;  // never the case for a band of a split
    if (all_columns) whole = true;
    for (Index j = first; j < first + count; ++j) {
      const auto g = DY.col(j).array() * G;
      const auto xh = XH.col(j).array();
      const S mean_g = g.mean();
      const S mean_gx = (g * xh).mean();
      DX.col(j).array() = R(0, j) * (g - mean_g - xh * mean_gx);
      if (all_columns) {
        dgain += DY.col(j).array() * xh;
        dbias += DY.col(j).array();
      }
    }
  });
  if (!whole)
    for (Index j = 0; j < dy.cols; ++j) {
      dgain += DY.col(j).array() * XH.col(j).array();
      dbias += DY.col(j).array();
    }
}

}  // namespace backend

template <Index D = Dynamic, class S = float, class B = Cpu>
  requires Dimension<D> && Backend<B>
class LayerNorm {
 public:
  using Scalar = S;
  using BackendType = B;
  static constexpr Index input_dim = D;
  static constexpr Index output_dim = D;
  static constexpr bool preserves_features = true;

  /// PyTorch's default eps; gain 1 and bias 0 from construction on (initialize keeps them).
  explicit LayerNorm(Index dim = D, double eps = 1e-5)
      : dim_(resolve_dim(D, dim, "LayerNorm dimension")),
        eps_(static_cast<S>(eps)),
        weight_(dim_, 1),
        bias_(dim_, 1) {
    B::fill(weight_.value.view(), S(1));
  }

  void initialize(Rng&) {
    B::fill(weight_.value.view(), S(1));
    B::fill(bias_.value.view(), S(0));
  }

  const Matrix<S, B>& forward(ConstView<S> x, const Batch& batch = {}, Mode = Mode::train) {
    check_rows(x.rows, "input");
    const Index n = x.cols;
    x_hat_.resize(dim_, n);
    inv_std_.resize(1, n);
    y_.resize(dim_, n);
    detail::for_each_real_run(batch, n, [&](Index first, Index count) {
      backend::layer_norm_forward(B{}, x.middle_cols(first, count), weight_.value.view(),
                                  bias_.value.view(), eps_, x_hat_.view().middle_cols(first, count),
                                  inv_std_.view().middle_cols(first, count),
                                  y_.view().middle_cols(first, count));
    });
    detail::zero_padding<B>(y_.view(), batch);
    return y_;
  }

  const Matrix<S, B>& backward(ConstView<S> dy, const Batch& batch = {}) {
    check_rows(dy.rows, "output gradient");
    if (dy.cols != x_hat_.cols())
      throw ShapeError("mtlm: LayerNorm output gradient has " + std::to_string(dy.cols) +
                       " columns, forward saw " + std::to_string(x_hat_.cols()));
    dx_.resize(dim_, dy.cols);
    detail::for_each_real_run(batch, dy.cols, [&](Index first, Index count) {
      backend::layer_norm_backward(B{}, dy.middle_cols(first, count),
                                   ConstView<S>(x_hat_.view().middle_cols(first, count)),
                                   ConstView<S>(inv_std_.view().middle_cols(first, count)),
                                   weight_.value.view(), dx_.view().middle_cols(first, count),
                                   weight_.grad.view(), bias_.grad.view());
    });
    detail::zero_padding<B>(dx_.view(), batch);
    return dx_;
  }

  template <class F>
  void for_each_param(F&& f) {
    f("weight", weight_);
    f("bias", bias_);
  }

  Index dim() const { return dim_; }
  double eps() const { return static_cast<double>(eps_); }
  Param<S, B>& weight() { return weight_; }
  Param<S, B>& bias() { return bias_; }

 private:
  void check_rows(Index got, const char* what) const {
    if (got != dim_)
      throw ShapeError("mtlm: LayerNorm " + std::string(what) + " has " + std::to_string(got) +
                       " rows, expected " + std::to_string(dim_));
  }

  Index dim_;
  S eps_;
  Param<S, B> weight_, bias_;
  Matrix<S, B> x_hat_, inv_std_, y_, dx_;
};

}  // namespace mtlm
