// @brief MultiLabelClassifier: any number of labels per sequence (topics, multi-intent), each
// an independent sigmoid decision on the pooled features, trained with binary cross-entropy.
//
// Target: for each sequence, the ids of its active labels; a sequence given as nullopt has no
// labels for this task and adds no loss.
#pragma once

#include "mtlm/heads/pooled_projection.hpp"
#include "mtlm/losses/bce.hpp"

#include <cstdint>
#include <optional>
#include <vector>

namespace mtlm {

template <Index In, Index Labels, PoolingKind Pool = PoolingKind::max, Index Hidden = 0,
          class S = float, class B = Cpu>
class MultiLabelClassifier {
 public:
  using Scalar = S;
  using BackendType = B;
  using Target = std::vector<std::optional<std::vector<std::int32_t>>>;
  static constexpr Index input_dim = In;
  static constexpr Index output_dim = Labels;

  explicit MultiLabelClassifier(Index labels = Labels, BceOptions options = {}, Index in = In,
                                Index hidden = Hidden)
      : labels_(resolve_dim(Labels, labels, "MultiLabelClassifier label count")),
        body_(resolve_dim(In, in, "MultiLabelClassifier input dimension"), labels_, hidden),
        loss_(std::move(options)) {}

  void initialize(Rng& rng) { body_.initialize(rng); }

  /// Logits (labels x B); label l is predicted when its logit is positive.
  const Matrix<S, B>& forward(ConstView<S> features, const Batch& batch, Mode mode = Mode::eval) {
    logits_ = &body_.forward(features, batch, mode);
    return *logits_;
  }

  double loss(const Target& target, const Batch& batch) {
    if (static_cast<Index>(target.size()) != batch.batch_size)
      throw ShapeError("mtlm: MultiLabelClassifier: labels for " + std::to_string(target.size()) +
                       " sequences, the batch has " + std::to_string(batch.batch_size));
    std::vector<S> y(static_cast<std::size_t>(labels_ * batch.batch_size), S(0));
    std::vector<S> mask(y.size(), S(0));
    for (Index b = 0; b < batch.batch_size; ++b) {
      const auto& active = target[static_cast<std::size_t>(b)];
      if (!active) continue;
      std::fill_n(mask.begin() + b * labels_, labels_, S(1));
      for (std::int32_t l : *active) {
        if (l < 0 || l >= labels_)
          throw ShapeError("mtlm: MultiLabelClassifier: label " + std::to_string(l) +
                           " outside [0, " + std::to_string(labels_) + ")");
        y[static_cast<std::size_t>(b * labels_ + l)] = S(1);
      }
    }
    targets_.resize(labels_, batch.batch_size);
    mask_.resize(labels_, batch.batch_size);
    B::upload(y.data(), targets_.view());
    B::upload(mask.data(), mask_.view());
    return loss_.forward(logits_->view(), targets_.view(), mask_.view());
  }

  const Matrix<S, B>& backward(S scale, const Batch& batch) {
    return body_.backward(loss_.backward(scale).view(), batch);
  }

  /// Active labels (positive logits) of each sequence of the last forward.
  std::vector<std::vector<std::int32_t>> predict() const {
    std::vector<S> host(static_cast<std::size_t>(logits_->size()));
    B::download(logits_->view(), host.data());
    std::vector<std::vector<std::int32_t>> out(static_cast<std::size_t>(logits_->cols()));
    for (Index b = 0; b < logits_->cols(); ++b)
      for (Index l = 0; l < labels_; ++l)
        if (host[static_cast<std::size_t>(b * labels_ + l)] > S(0))
          out[static_cast<std::size_t>(b)].push_back(static_cast<std::int32_t>(l));
    return out;
  }
  const Matrix<S, B>& logits() const { return *logits_; }

  template <class F>
  void for_each_param(F&& f) {
    body_.for_each_param(f);
  }

 private:
  Index labels_;
  PooledProjection<In, Labels, Pool, Hidden, S, B> body_;
  BinaryCrossEntropyWithLogits<S, B> loss_;
  Matrix<S, B> targets_, mask_;
  const Matrix<S, B>* logits_ = nullptr;
};

}  // namespace mtlm
