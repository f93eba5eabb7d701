// @brief SequenceRegressor: Outputs real values per sequence (a score, a rating) from the
// pooled features, trained with mean squared error.
//
// Target: for each sequence, its Outputs values, or nullopt when it has none for this task.
#pragma once

#include "mtlm/heads/pooled_projection.hpp"
#include "mtlm/losses/mse.hpp"

#include <optional>
#include <vector>

namespace mtlm {

template <Index In, Index Outputs = 1, PoolingKind Pool = PoolingKind::mean, Index Hidden = 0,
          class S = float, class B = Cpu>
class SequenceRegressor {
 public:
  using Scalar = S;
  using BackendType = B;
  using Target = std::vector<std::optional<std::vector<S>>>;
  static constexpr Index input_dim = In;
  static constexpr Index output_dim = Outputs;

  explicit SequenceRegressor(Index outputs = Outputs, Index in = In, Index hidden = Hidden)
      : outputs_(resolve_dim(Outputs, outputs, "SequenceRegressor output count")),
        body_(resolve_dim(In, in, "SequenceRegressor input dimension"), outputs_, hidden) {}

  void initialize(Rng& rng) { body_.initialize(rng); }

  /// Predictions (outputs x B).
  const Matrix<S, B>& forward(ConstView<S> features, const Batch& batch, Mode mode = Mode::eval) {
    predictions_ = &body_.forward(features, batch, mode);
    return *predictions_;
  }

  double loss(const Target& target, const Batch& batch) {
    if (static_cast<Index>(target.size()) != batch.batch_size)
      throw ShapeError("mtlm: SequenceRegressor: values for " + std::to_string(target.size()) +
                       " sequences, the batch has " + std::to_string(batch.batch_size));
    std::vector<S> y(static_cast<std::size_t>(outputs_ * batch.batch_size), S(0));
    std::vector<S> mask(y.size(), S(0));
    for (Index b = 0; b < batch.batch_size; ++b) {
      const auto& values = target[static_cast<std::size_t>(b)];
      if (!values) continue;
      if (static_cast<Index>(values->size()) != outputs_)
        throw ShapeError("mtlm: SequenceRegressor: " + std::to_string(values->size()) +
                         " values for sequence " + std::to_string(b) + ", expected " +
                         std::to_string(outputs_));
      std::copy(values->begin(), values->end(), y.begin() + b * outputs_);
      std::fill_n(mask.begin() + b * outputs_, outputs_, S(1));
    }
    targets_.resize(outputs_, batch.batch_size);
    mask_.resize(outputs_, batch.batch_size);
    B::upload(y.data(), targets_.view());
    B::upload(mask.data(), mask_.view());
    return loss_.forward(predictions_->view(), targets_.view(), mask_.view());
  }

  const Matrix<S, B>& backward(S scale, const Batch& batch) {
    return body_.backward(loss_.backward(scale).view(), batch);
  }

  const Matrix<S, B>& predictions() const { return *predictions_; }

  template <class F>
  void for_each_param(F&& f) {
    body_.for_each_param(f);
  }

 private:
  Index outputs_;
  PooledProjection<In, Outputs, Pool, Hidden, S, B> body_;
  MeanSquaredError<S, B> loss_;
  Matrix<S, B> targets_, mask_;
  const Matrix<S, B>* predictions_ = nullptr;
};

}  // namespace mtlm
