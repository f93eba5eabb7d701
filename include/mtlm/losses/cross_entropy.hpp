// @brief Softmax cross-entropy over the classes of each column: the loss of sequence
// classification (a column per example), token tagging and language modelling (a column per
// token). Targets equal to ignore_index count for nothing, so padding and examples that lack
// this task's label share a batch with labelled ones.
//
// Contract: forward(logits (C x N), N targets in [0, C) or ignore_index) returns the reduced
// loss and caches the unreduced gradient (C x N, zero at ignored columns, whose logits are never
// read); it keeps no view of its arguments. backward(scale) returns scale * dL/dlogits (C x N)
// and may be called again with another scale. Semantics are PyTorch's F.cross_entropy: with
// class weights w (all 1 without) and smoothing e, a column with target y costs
// -sum_c a_c log softmax(z)_c where a = (1 - e) w_y onehot(y) + (e / C) w; mean divides the sum
// by sum_n w_{y_n} over counted columns. Unlike PyTorch, nothing counted gives 0, not NaN.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/backend/thread_buffer.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/core/matrix.hpp"
#include "mtlm/losses/reduction.hpp"

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace mtlm {

struct CrossEntropyOptions {
  /// Columns whose target equals this value add no loss and get a zero gradient.
  std::int32_t ignore_index = -100;
  /// e in [0, 1]: the target distribution is (1 - e) onehot(y) + e / C (PyTorch semantics).
  double label_smoothing = 0.0;
  /// One weight per class (empty: all 1); the mean becomes a weighted mean, as in PyTorch.
  std::vector<double> class_weights{};
  Reduction reduction = Reduction::mean;
};

// CPU kernels --------------------------------------------------------------------------------
namespace backend {

struct CrossEntropyTotals {
  double loss = 0;    ///< summed loss of the counted columns
  double weight = 0;  ///< summed class weight of their targets (their number without weights)
  Index counted = 0;  ///< columns whose target is not ignore_index
};

/// One pass per column: max subtraction, log-sum-exp, loss added to `totals`, and `multiplier`
/// times the unreduced gradient sum(a) softmax(z) - a into `gradient` (zero at ignored columns).
/// `gradient` may be `logits` itself: a blocked training step turns each block of logits into
/// its gradient where it lies. `class_weights` is C x 1, or empty for uniform weights. Targets
/// are assumed valid (the loss checks them). The columns are shared among the product threads;
/// each column's loss is kept and added to the totals in column order afterwards, so the totals
/// are one thread's bit for bit.
template <class S>
void softmax_cross_entropy_columns(Cpu, In<S> logits, std::span<const std::int32_t> targets,
                                   std::int32_t ignore_index, S smoothing, In<S> class_weights,
                                   S multiplier, MatrixView<S> gradient, CrossEntropyTotals& totals) {
  using Column = Eigen::Matrix<S, Eigen::Dynamic, 1>;
  const Index classes = logits.rows;
  const auto Z = Cpu::eigen(logits);
  auto G = Cpu::eigen(gradient);
  const bool weighted = class_weights.rows > 0;
  const auto W = Cpu::eigen(class_weights);
  const S uniform_share = smoothing / static_cast<S>(classes);
  const S weight_sum = weighted ? W.sum() : static_cast<S>(classes);
  // Smoothing reads every logit after the gradient is written: in place, from a copy.
  const bool keep_copy = smoothing > S(0) && gradient.data == logits.data;
  // Each counted column's loss and its target's weight, in the calling thread's buffers (named
  // on another thread, a thread_local is that thread's: the threads get them by pointer).
  thread_local std::vector<double> loss_buffer, weight_buffer;
  loss_buffer.resize(static_cast<std::size_t>(logits.cols));
  weight_buffer.resize(static_cast<std::size_t>(logits.cols));
  double* const column_loss = loss_buffer.data();
  double* const column_weight = weight_buffer.data();
  auto one_column = [&](Index j) {
    const auto at = static_cast<std::size_t>(j);
    auto g = G.col(j);
    const std::int32_t y = targets[at];
    if (y == ignore_index) {
      g.setZero();
      return;
    }
    S* const copy = keep_copy ? thread_buffer<S, Scratch::logits>(classes) : nullptr;  // the running thread's
    if (keep_copy) Eigen::Map<Column>(copy, classes) = Z.col(j);
    const auto z = Eigen::Map<const Column>(keep_copy ? copy : Z.col(j).data(), classes);
    const S z_y = z(y);
    const S max = z.maxCoeff();
    g = (z.array() - max).exp().matrix();
    const S sum = g.sum();
    const S log_sum_exp = max + std::log(sum);
    g /= sum;
    const S target_weight = weighted ? W(y, 0) : S(1);
    const S target_share = (S(1) - smoothing) * target_weight;
    double loss = static_cast<double>(target_share) * static_cast<double>(log_sum_exp - z_y);
    if (smoothing > S(0)) {
      if (weighted) {
        loss += static_cast<double>(uniform_share) *
                static_cast<double>((W.col(0).array() * (log_sum_exp - z.array())).sum());
        g *= target_share + uniform_share * weight_sum;
        g -= uniform_share * W.col(0);
      } else {
        loss += static_cast<double>(uniform_share) *
                static_cast<double>((log_sum_exp - z.array()).sum());
        g *= target_share + uniform_share * weight_sum;
        g.array() -= uniform_share;
      }
    } else {
      g *= target_share;
    }
    g(y) -= target_share;
    if (multiplier != S(1)) g *= multiplier;
    column_loss[at] = loss;
    column_weight[at] = static_cast<double>(target_weight);
  };
  // An exponential and a few passes per logit: about as much work as a few multiply-adds.
  constexpr Index columns_per_part = 16;
  const Index parts = (logits.cols + columns_per_part - 1) / columns_per_part;
  parallel_for(Cpu{}, parts, 4.0 * static_cast<double>(classes) * static_cast<double>(logits.cols),
               [&](Index part) {
                 const Index last = std::min(logits.cols, (part + 1) * columns_per_part);
                 for (Index j = part * columns_per_part; j < last; ++j) one_column(j);
               });
  for (std::size_t j = 0; j < loss_buffer.size(); ++j) {
    if (targets[j] == ignore_index) continue;
    totals.loss += column_loss[j];
    totals.weight += column_weight[j];
    ++totals.counted;
  }
}

/// The unreduced gradient of every column into `gradient`, and the totals.
template <class S>
CrossEntropyTotals softmax_cross_entropy_forward(Cpu, In<S> logits,
                                                 std::span<const std::int32_t> targets,
                                                 std::int32_t ignore_index, S smoothing,
                                                 In<S> class_weights, MatrixView<S> gradient) {
  CrossEntropyTotals totals;
  softmax_cross_entropy_columns(Cpu{}, logits, targets, ignore_index, smoothing, class_weights, S(1),
                                gradient, totals);
  return totals;
}

/// Index of the largest entry of every column (the first one on ties).
template <class S>
void argmax_columns(Cpu, ConstView<S> x, std::span<std::int32_t> out) {
  const auto X = Cpu::eigen(x);
  for (Index j = 0; j < x.cols; ++j) {
    Index best = 0;
    X.col(j).maxCoeff(&best);
    out[static_cast<std::size_t>(j)] = static_cast<std::int32_t>(best);
  }
}

}  // namespace backend

template <class S = float, class B = Cpu>
  requires Backend<B>
class SoftmaxCrossEntropy {
 public:
  using Scalar = S;
  using BackendType = B;

  explicit SoftmaxCrossEntropy(CrossEntropyOptions options = {}) : options_(std::move(options)) {
    if (!(options_.label_smoothing >= 0.0 && options_.label_smoothing <= 1.0))
      throw Error("mtlm: SoftmaxCrossEntropy: label_smoothing must lie in [0, 1], got " +
                  std::to_string(options_.label_smoothing));
    detail::check_non_negative(options_.class_weights, "SoftmaxCrossEntropy class weight");
    if (!options_.class_weights.empty()) {
      const std::vector<S> host(options_.class_weights.begin(), options_.class_weights.end());
      class_weights_.resize(static_cast<Index>(host.size()), 1);
      B::upload(host.data(), class_weights_.view());
    }
  }

  /// Returns the reduced loss of `logits` (C x N) against `targets` (N entries).
  S forward(ConstView<S> logits, std::span<const std::int32_t> targets) {
    check(logits.rows, logits.cols, targets);
    gradient_.resize(logits.rows, logits.cols);
    totals_ = softmax_cross_entropy_forward(
        B{}, logits, targets, options_.ignore_index, static_cast<S>(options_.label_smoothing),
        class_weights_.view(), gradient_.view());
    factor_ = detail::reduction_factor(options_.reduction, totals_.weight);
    return reduced_loss();
  }

  /// The loss of a batch whose logits are never held all at once (LanguageModelHead's training
  /// step, CPU): begin_blocks(targets, classes) checks every target and fixes the reduction, which
  /// needs all of them; gradient_in_place(block, first) adds the block's columns, which start at
  /// column `first`, to the loss and overwrites them with scale * dL/dlogits, bit for bit what
  /// forward and backward(scale) give; end_blocks() returns the reduced loss. backward() has
  /// nothing to return after it.
  void begin_blocks(std::span<const std::int32_t> targets, Index classes, S scale)
    requires std::same_as<B, Cpu>
  {
    check(classes, static_cast<Index>(targets.size()), targets);
    gradient_.resize(0, 0);
    targets_ = targets;
    totals_ = {};
    // The same sum in the same order as the kernel's, so the factor is forward's.
    double weight = 0;
    for (const std::int32_t y : targets)
      if (y != options_.ignore_index)
        weight += static_cast<double>(class_weights_.rows() > 0 ? class_weights_(y, 0) : S(1));
    factor_ = detail::reduction_factor(options_.reduction, weight);
    multiplier_ = static_cast<S>(factor_ * static_cast<double>(scale));
  }
  void gradient_in_place(MatrixView<S> logits, Index first)
    requires std::same_as<B, Cpu>
  {
    const auto block_targets =
        targets_.subspan(static_cast<std::size_t>(first), static_cast<std::size_t>(logits.cols));
    softmax_cross_entropy_columns(Cpu{}, ConstView<S>(logits), block_targets, options_.ignore_index,
                                  static_cast<S>(options_.label_smoothing), class_weights_.view(),
                                  multiplier_, logits, totals_);
  }
  S end_blocks() { return reduced_loss(); }

  /// scale * dL/dlogits for the last forward (C x N); zero columns where the target was ignored.
  const Matrix<S, B>& backward(S scale = S(1)) {
    dlogits_.resize(gradient_.rows(), gradient_.cols());
    backend::copy_scaled(B{}, static_cast<S>(factor_ * static_cast<double>(scale)), gradient_.view(), dlogits_.view());
    return dlogits_;
  }

  /// Number of columns of the last forward whose target was not ignore_index.
  Index counted() const { return counted_; }
  /// What the mean divided by: counted() without class weights, their sum over targets with.
  double weight_total() const { return weight_total_; }
  const CrossEntropyOptions& options() const { return options_; }

  /// The predicted class of every column of `logits` (C x N) into `out` (N entries).
  static void argmax(ConstView<S> logits, std::span<std::int32_t> out) {
    if (static_cast<Index>(out.size()) != logits.cols)
      throw ShapeError("mtlm: SoftmaxCrossEntropy::argmax: " + std::to_string(out.size()) +
                       " outputs for " + std::to_string(logits.cols) + " columns");
    if (logits.rows < 1 && logits.cols > 0)
      throw ShapeError("mtlm: SoftmaxCrossEntropy::argmax: logits have no rows");
    argmax_columns(B{}, logits, out);
  }

 private:
  /// The totals of the last pass, reduced; counted() and weight_total() come from them.
  S reduced_loss() {
    counted_ = totals_.counted;
    weight_total_ = totals_.weight;
    return static_cast<S>(totals_.loss * factor_);
  }

  void check(Index classes, Index columns, std::span<const std::int32_t> targets) const {
    if (static_cast<Index>(targets.size()) != columns)
      throw ShapeError("mtlm: SoftmaxCrossEntropy: " + std::to_string(targets.size()) +
                       " targets for " + std::to_string(columns) + " logit columns");
    if (class_weights_.rows() > 0 && class_weights_.rows() != classes)
      throw ShapeError("mtlm: SoftmaxCrossEntropy: " + std::to_string(class_weights_.rows()) +
                       " class weights for " + std::to_string(classes) + " classes");
    for (std::size_t j = 0; j < targets.size(); ++j) {
      const std::int32_t y = targets[j];
      if (y != options_.ignore_index && (y < 0 || y >= classes))
        throw ShapeError("mtlm: SoftmaxCrossEntropy: target " + std::to_string(y) +
                         " at column " + std::to_string(j) + " is outside [0, " +
                         std::to_string(classes) + ") and is not ignore_index " +
                         std::to_string(options_.ignore_index));
    }
  }

  CrossEntropyOptions options_;
  Matrix<S, B> class_weights_;  ///< C x 1, empty for uniform weights
  Matrix<S, B> gradient_;       ///< unreduced gradient of the last forward
  Matrix<S, B> dlogits_;
  std::span<const std::int32_t> targets_;  ///< of the blocked pass under way
  backend::CrossEntropyTotals totals_;     ///< of the last forward or blocked pass
  S multiplier_ = S(0);
  double factor_ = 0.0;
  double weight_total_ = 0.0;
  Index counted_ = 0;
};

}  // namespace mtlm
