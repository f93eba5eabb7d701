// @brief Binary cross-entropy on logits for multi-label tasks: every class of every column is
// an independent yes/no decision (intent sets, topic tags). Working on logits rather than
// probabilities keeps it finite for any logit (log-sigmoid via softplus).
//
// Contract: forward(logits (C x N), targets (C x N) in [0, 1][, mask (C x N)]) returns the
// reduced loss and caches the unreduced gradient; it keeps no view of its arguments. Entries
// where the mask is 0 (padding, columns without this task's labels) add nothing, whatever their
// logits hold, and get a zero gradient; mean divides by the number of entries that count (all
// C x N without a mask, as PyTorch's F.binary_cross_entropy_with_logits). pos_weight (C
// entries) weighs the positive term of class c, as PyTorch's pos_weight:
//   l = -[p_c y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))].
// backward(scale) returns scale * dL/dlogits (C x N).
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/core/matrix.hpp"
#include "mtlm/losses/reduction.hpp"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

namespace mtlm {

struct BceOptions {
  /// Weight of the positive term per class (empty: all 1), PyTorch's pos_weight.
  std::vector<double> pos_weight{};
  Reduction reduction = Reduction::mean;
};

// CPU kernels --------------------------------------------------------------------------------
namespace backend {

/// Per column: l = (1 - y) x + (1 + (p - 1) y) softplus(-x) with
/// softplus(-x) = log1p(exp(-|x|)) + max(-x, 0), and the unreduced gradient
/// (1 + (p - 1) y) sigmoid(x) - p y (no cancellation when y = 0). `mask` and `pos_weight`
/// (C x 1) may be empty.
template <class S>
LossTotals binary_cross_entropy_forward(Cpu, In<S> logits, In<S> targets, In<S> mask,
                                        In<S> pos_weight, MatrixView<S> gradient) {
  LossTotals totals;
  const auto X = Cpu::eigen(logits);
  const auto Y = Cpu::eigen(targets);
  const auto M = Cpu::eigen(mask);
  const auto P = Cpu::eigen(pos_weight);
  auto G = Cpu::eigen(gradient);
  const bool masked = mask.rows > 0;
  const bool weighted = pos_weight.rows > 0;
  for (Index j = 0; j < logits.cols; ++j) {
    const auto x = X.col(j).array();
    const auto y = Y.col(j).array();
    auto g = G.col(j).array();
    // exp(-|x|) lives in the gradient column until the gradient replaces it.
    g = (-x.abs()).exp();
    // Scalar log1p: GCC 12 misreports Eigen's AVX-512 packet log1p as reading uninitialized
    // registers (-Wuninitialized) in some inlining contexts, and this kernel is not hot.
    const auto softplus_neg = g.unaryExpr([](S v) { return std::log1p(v); }) + (-x).max(S(0));
    const auto sigmoid = (x >= S(0)).select(S(1) / (S(1) + g), g / (S(1) + g));
    S column_loss;
    if (weighted) {
      const auto p = P.col(0).array();
      const auto log_weight = S(1) + (p - S(1)) * y;
      if (masked) {
        const auto valid = M.col(j).array() != S(0);
        column_loss = valid.select((S(1) - y) * x + log_weight * softplus_neg, S(0)).sum();
        g = valid.select(log_weight * sigmoid - p * y, S(0));
        totals.counted += valid.count();
      } else {
        column_loss = ((S(1) - y) * x + log_weight * softplus_neg).sum();
        g = log_weight * sigmoid - p * y;
        totals.counted += logits.rows;
      }
    } else {
      if (masked) {
        const auto valid = M.col(j).array() != S(0);
        column_loss = valid.select((S(1) - y) * x + softplus_neg, S(0)).sum();
        g = valid.select(sigmoid - y, S(0));
        totals.counted += valid.count();
      } else {
        column_loss = ((S(1) - y) * x + softplus_neg).sum();
        g = sigmoid - y;
        totals.counted += logits.rows;
      }
    }
    totals.loss += static_cast<double>(column_loss);
  }
  return totals;
}

}  // namespace backend

template <class S = float, class B = Cpu>
  requires Backend<B>
class BinaryCrossEntropyWithLogits {
 public:
  using Scalar = S;
  using BackendType = B;

  explicit BinaryCrossEntropyWithLogits(BceOptions options = {}) : options_(std::move(options)) {
    detail::check_non_negative(options_.pos_weight, "BinaryCrossEntropyWithLogits pos_weight");
    if (!options_.pos_weight.empty()) {
      const std::vector<S> host(options_.pos_weight.begin(), options_.pos_weight.end());
      pos_weight_.resize(static_cast<Index>(host.size()), 1);
      B::upload(host.data(), pos_weight_.view());
    }
  }

  /// Every entry counts.
  S forward(ConstView<S> logits, ConstView<S> targets) { return run(logits, targets, {}); }

  /// Only entries where `mask` is non-zero count.
  S forward(ConstView<S> logits, ConstView<S> targets, ConstView<S> mask) {
    detail::check_same_shape(logits.rows, logits.cols, mask.rows, mask.cols,
                             "BinaryCrossEntropyWithLogits mask");
    return run(logits, targets, mask);
  }

  /// scale * dL/dlogits for the last forward (C x N); zero where the mask was 0.
  const Matrix<S, B>& backward(S scale = S(1)) {
    dlogits_.resize(gradient_.rows(), gradient_.cols());
    backend::copy_scaled(B{}, static_cast<S>(factor_ * static_cast<double>(scale)), gradient_.view(), dlogits_.view());
    return dlogits_;
  }

  /// Entries that counted in the last forward.
  Index counted() const { return counted_; }
  const BceOptions& options() const { return options_; }

 private:
  S run(ConstView<S> logits, ConstView<S> targets, ConstView<S> mask) {
    detail::check_same_shape(logits.rows, logits.cols, targets.rows, targets.cols,
                             "BinaryCrossEntropyWithLogits targets");
    if (pos_weight_.rows() > 0 && pos_weight_.rows() != logits.rows)
      throw ShapeError("mtlm: BinaryCrossEntropyWithLogits: " +
                       std::to_string(pos_weight_.rows()) + " pos_weight entries for " +
                       std::to_string(logits.rows) + " classes");
    gradient_.resize(logits.rows, logits.cols);
    const auto totals = binary_cross_entropy_forward(B{}, logits, targets, mask,
                                                     pos_weight_.view(), gradient_.view());
    counted_ = totals.counted;
    factor_ = detail::reduction_factor(options_.reduction, static_cast<double>(totals.counted));
    return static_cast<S>(totals.loss * factor_);
  }

  BceOptions options_;
  Matrix<S, B> pos_weight_;  ///< C x 1, empty when every class weighs 1
  Matrix<S, B> gradient_;    ///< unreduced gradient of the last forward
  Matrix<S, B> dlogits_;
  double factor_ = 0.0;
  Index counted_ = 0;
};

}  // namespace mtlm
