// @brief Mean squared error for regression heads (scores, counts, similarity targets):
// the plain average of (prediction - target)^2, as PyTorch's F.mse_loss.
//
// Contract: forward(predictions (C x N), targets (C x N)[, mask (C x N)]) returns the reduced
// loss and caches the unreduced gradient; it keeps no view of its arguments. Entries where the
// mask is 0 (padding, missing labels) add nothing, whatever they hold, and get a zero gradient;
// mean divides by the number of entries that count. backward(scale) returns
// scale * dL/dpredictions.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/core/matrix.hpp"
#include "mtlm/losses/reduction.hpp"

namespace mtlm {

// CPU kernels --------------------------------------------------------------------------------
namespace backend {

/// The summed squared error and, into `gradient`, the unreduced gradient 2 (p - t); `mask` may
/// be empty.
template <class S>
LossTotals squared_error_forward(Cpu, In<S> predictions, In<S> targets, In<S> mask,
                                 MatrixView<S> gradient) {
  LossTotals totals;
  const auto P = Cpu::eigen(predictions);
  const auto T = Cpu::eigen(targets);
  const auto M = Cpu::eigen(mask);
  auto G = Cpu::eigen(gradient);
  for (Index j = 0; j < predictions.cols; ++j) {
    auto g = G.col(j).array();
    if (mask.rows > 0) {
      const auto valid = M.col(j).array() != S(0);
      g = valid.select(P.col(j).array() - T.col(j).array(), S(0));
      totals.counted += valid.count();
    } else {
      g = P.col(j).array() - T.col(j).array();
      totals.counted += predictions.rows;
    }
    totals.loss += static_cast<double>(g.square().sum());
    g *= S(2);
  }
  return totals;
}

}  // namespace backend

template <class S = float, class B = Cpu>
  requires Backend<B>
class MeanSquaredError {
 public:
  using Scalar = S;
  using BackendType = B;

  explicit MeanSquaredError(Reduction reduction = Reduction::mean) : reduction_(reduction) {}

  /// Every entry counts.
  S forward(ConstView<S> predictions, ConstView<S> targets) {
    return run(predictions, targets, {});
  }

  /// Only entries where `mask` is non-zero count.
  S forward(ConstView<S> predictions, ConstView<S> targets, ConstView<S> mask) {
    detail::check_same_shape(predictions.rows, predictions.cols, mask.rows, mask.cols,
                             "MeanSquaredError mask");
    return run(predictions, targets, mask);
  }

  /// scale * dL/dpredictions for the last forward (C x N).
  const Matrix<S, B>& backward(S scale = S(1)) {
    dpredictions_.resize(gradient_.rows(), gradient_.cols());
    backend::copy_scaled(B{}, static_cast<S>(factor_ * static_cast<double>(scale)), gradient_.view(), dpredictions_.view());
    return dpredictions_;
  }

  /// Entries that counted in the last forward.
  Index counted() const { return counted_; }

 private:
  S run(ConstView<S> predictions, ConstView<S> targets, ConstView<S> mask) {
    detail::check_same_shape(predictions.rows, predictions.cols, targets.rows, targets.cols,
                             "MeanSquaredError targets");
    gradient_.resize(predictions.rows, predictions.cols);
    const auto totals = squared_error_forward(B{}, predictions, targets, mask, gradient_.view());
    counted_ = totals.counted;
    factor_ = detail::reduction_factor(reduction_, static_cast<double>(totals.counted));
    return static_cast<S>(totals.loss * factor_);
  }

  Reduction reduction_;
  Matrix<S, B> gradient_;  ///< unreduced gradient of the last forward
  Matrix<S, B> dpredictions_;
  double factor_ = 0.0;
  Index counted_ = 0;
};

}  // namespace mtlm
