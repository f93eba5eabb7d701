// @brief SequenceClassifier: one class per sequence (intent, sentiment) from the trunk's
// features pooled over time, trained with softmax cross-entropy.
//
// Target: one class id per sequence of the batch; ignore_index (-100 by default) marks a
// sequence without a label for this task, which then adds no loss.
#pragma once

#include "mtlm/heads/pooled_projection.hpp"
#include "mtlm/losses/cross_entropy.hpp"

#include <cstdint>
#include <vector>

namespace mtlm {

template <Index In, Index Classes, PoolingKind Pool = PoolingKind::max, Index Hidden = 0,
          class S = float, class B = Cpu>
class SequenceClassifier {
 public:
  using Scalar = S;
  using BackendType = B;
  using Target = std::vector<std::int32_t>;
  static constexpr Index input_dim = In;
  static constexpr Index output_dim = Classes;

  explicit SequenceClassifier(Index classes = Classes, CrossEntropyOptions options = {},
                              Index in = In, Index hidden = Hidden)
      : classes_(resolve_dim(Classes, classes, "SequenceClassifier class count")),
        body_(resolve_dim(In, in, "SequenceClassifier input dimension"), classes_, hidden),
        loss_(std::move(options)) {}

  void initialize(Rng& rng) { body_.initialize(rng); }

  /// Logits (classes x B).
  const Matrix<S, B>& forward(ConstView<S> features, const Batch& batch, Mode mode = Mode::eval) {
    logits_ = &body_.forward(features, batch, mode);
    return *logits_;
  }

  double loss(const Target& target, const Batch& batch) {
    if (static_cast<Index>(target.size()) != batch.batch_size)
      throw ShapeError("mtlm: SequenceClassifier: " + std::to_string(target.size()) +
                       " labels for " + std::to_string(batch.batch_size) + " sequences");
    return loss_.forward(logits_->view(), target);
  }

  const Matrix<S, B>& backward(S scale, const Batch& batch) {
    return body_.backward(loss_.backward(scale).view(), batch);
  }

  /// The most likely class of each sequence of the last forward.
  std::vector<std::int32_t> predict() const {
    std::vector<std::int32_t> out(static_cast<std::size_t>(logits_->cols()));
    SoftmaxCrossEntropy<S, B>::argmax(logits_->view(), out);
    return out;
  }
  const Matrix<S, B>& logits() const { return *logits_; }
  Index classes() const { return classes_; }

  template <class F>
  void for_each_param(F&& f) {
    body_.for_each_param(f);
  }

 private:
  Index classes_;
  PooledProjection<In, Classes, Pool, Hidden, S, B> body_;
  SoftmaxCrossEntropy<S, B> loss_;
  const Matrix<S, B>* logits_ = nullptr;
};

}  // namespace mtlm
