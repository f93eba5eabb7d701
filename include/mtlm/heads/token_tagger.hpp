// @brief TokenTagger: one tag per token (slots, NER, POS) by a per-token softmax over a linear
// projection of the trunk's features.
//
// Target: for each sequence of the batch, one tag id per real token (its length must equal the
// sequence's); ignore_index marks tokens without a tag. Padding is never scored.
#pragma once

#include "mtlm/layers/linear.hpp"
#include "mtlm/losses/cross_entropy.hpp"

#include <cstdint>
#include <vector>

namespace mtlm {

template <Index In, Index Tags, class S = float, class B = Cpu>
class TokenTagger {
 public:
  using Scalar = S;
  using BackendType = B;
  using Target = std::vector<std::vector<std::int32_t>>;
  static constexpr Index input_dim = In;
  static constexpr Index output_dim = Tags;

  explicit TokenTagger(Index tags = Tags, CrossEntropyOptions options = {}, Index in = In)
      : projection_(resolve_dim(In, in, "TokenTagger input dimension"),
                    resolve_dim(Tags, tags, "TokenTagger tag count")),
        loss_(std::move(options)) {}

  void initialize(Rng& rng) { projection_.initialize(rng); }

  /// Logits (tags x B*T).
  const Matrix<S, B>& forward(ConstView<S> features, const Batch& batch, Mode mode = Mode::eval) {
    logits_ = &projection_.forward(features, batch, mode);
    return *logits_;
  }

  double loss(const Target& target, const Batch& batch) {
    if (static_cast<Index>(target.size()) != batch.batch_size)
      throw ShapeError("mtlm: TokenTagger: tags for " + std::to_string(target.size()) +
                       " sequences, the batch has " + std::to_string(batch.batch_size));
    flat_targets_.assign(static_cast<std::size_t>(batch.columns()), loss_.options().ignore_index);
    for (Index b = 0; b < batch.batch_size; ++b) {
      const auto& tags = target[static_cast<std::size_t>(b)];
      if (static_cast<Index>(tags.size()) != batch.lengths[static_cast<std::size_t>(b)])
        throw ShapeError("mtlm: TokenTagger: sequence " + std::to_string(b) + " has " +
                         std::to_string(batch.lengths[static_cast<std::size_t>(b)]) +
                         " tokens but " + std::to_string(tags.size()) + " tags");
      std::copy(tags.begin(), tags.end(), flat_targets_.begin() + batch.column(b, 0));
    }
    return loss_.forward(logits_->view(), flat_targets_);
  }

  const Matrix<S, B>& backward(S scale, const Batch& batch) {
    return projection_.backward(loss_.backward(scale).view(), batch);
  }

  /// The most likely tag of every real token of the last forward, per sequence.
  Target predict(const Batch& batch) const {
    std::vector<std::int32_t> flat(static_cast<std::size_t>(logits_->cols()));
    SoftmaxCrossEntropy<S, B>::argmax(logits_->view(), flat);
    Target out(static_cast<std::size_t>(batch.batch_size));
    for (Index b = 0; b < batch.batch_size; ++b) {
      const auto first = flat.begin() + batch.column(b, 0);
      out[static_cast<std::size_t>(b)].assign(first, first + batch.lengths[static_cast<std::size_t>(b)]);
    }
    return out;
  }
  const Matrix<S, B>& logits() const { return *logits_; }
  Index tags() const { return projection_.out_features(); }

  template <class F>
  void for_each_param(F&& f) {
    projection_.for_each_param(prefixed("output", f));
  }

 private:
  Linear<In, Tags, S, B> projection_;
  SoftmaxCrossEntropy<S, B> loss_;
  std::vector<std::int32_t> flat_targets_;
  const Matrix<S, B>* logits_ = nullptr;
};

}  // namespace mtlm
