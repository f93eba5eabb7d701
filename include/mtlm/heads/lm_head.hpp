// @brief LanguageModelHead: predicts neighbouring tokens from the trunk's features, an
// auxiliary task that teaches the shared trunk about its input without any labels.
//
// Two directions of use:
// - next_token: the features at t predict token t+1. Only meaningful when the trunk cannot see
//   the future (a causal Transformer or a unidirectional RNN).
// - both_directions: for a bidirectional trunk whose features are [forward; backward] halves,
//   the forward half at t predicts token t+1 and the backward half predicts token t-1 (Rei 2017,
//   "Semi-supervised multitask learning for sequence labeling"); neither half has seen the token
//   it predicts. The loss is the mean of the two cross-entropies.
// With Tied = true the output projection is the trunk's embedding table (Dim x Vocab, Press &
// Wolf 2017): the trunk's first layer must be an Embedding of the matching width, and tie(trunk)
// (called by MultiTask) connects them. Each direction keeps its own output bias.
//
// Target: empty; targets are the batch's own token ids. Positions whose neighbour lies outside
// the sequence are not scored.
#pragma once

#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/layers/detail/token_blocks.hpp"
#include "mtlm/losses/cross_entropy.hpp"

#include <array>
#include <concepts>
#include <cstdint>
#include <vector>

namespace mtlm {

enum class LmDirection { next_token, both_directions };

template <Index In, Index Vocab, LmDirection Direction = LmDirection::next_token, bool Tied = false,
          class S = float, class B = Cpu>
  requires Dimension<In> && Dimension<Vocab>
class LanguageModelHead {
  static constexpr int directions = Direction == LmDirection::both_directions ? 2 : 1;
  static_assert(Direction == LmDirection::next_token || In == Dynamic || In % 2 == 0,
                "mtlm: a both_directions language-model head needs an even input width "
                "([forward; backward] halves)");

 public:
  using Scalar = S;
  using BackendType = B;
  struct Target {};
  static constexpr Index input_dim = In;

  explicit LanguageModelHead(Index vocab = Vocab, Index in = In)
      : in_(resolve_dim(In, in, "LanguageModelHead input dimension")),
        vocab_(resolve_dim(Vocab, vocab, "LanguageModelHead vocabulary size")) {
    for (int d = 0; d < directions; ++d) {
      if constexpr (!Tied) own_weight_[d].resize(part_width(), vocab_);
      bias_[d].resize(vocab_, 1);
    }
  }
  LanguageModelHead(const LanguageModelHead& other) { *this = other; }
  LanguageModelHead& operator=(const LanguageModelHead& other) {
    in_ = other.in_;
    vocab_ = other.vocab_;
    own_weight_ = other.own_weight_;
    bias_ = other.bias_;
    tied_ = nullptr;  // a copy must be tied to its own trunk
    return *this;
  }

  void initialize(Rng& rng) {
    for (int d = 0; d < directions; ++d) {
      if constexpr (!Tied) own_weight_[d].initialize(init::XavierUniform{}, part_width(), vocab_, rng);
      bias_[d].initialize(init::Constant{0.0}, part_width(), vocab_, rng);
    }
  }

  /// Connects a tied head to the embedding table of the trunk's first layer.
  template <class Trunk>
  void tie(Trunk& trunk) {
    if constexpr (Tied) {
      auto& embedding = trunk.template layer<0>();
      static_assert(requires { embedding.weight(); },
                    "mtlm: a tied language-model head needs an Embedding as the trunk's first layer");
      Param<S, B>& table = embedding.weight();
      if (table.rows() != part_width() || table.cols() != vocab_)
        throw ShapeError("mtlm: LanguageModelHead: cannot tie a head of width " +
                         std::to_string(part_width()) + " and vocabulary " + std::to_string(vocab_) +
                         " to an embedding table of " + std::to_string(table.rows()) + " x " +
                         std::to_string(table.cols()));
      tied_ = &table;
    }
  }

  /// Logits of direction d (vocab x B*T) after forward: d = 0 next token, d = 1 previous token.
  const Matrix<S, B>& forward(ConstView<S> features, const Batch&, Mode = Mode::eval) {
    check_features(features);
    features_ = features;
    for (int d = 0; d < directions; ++d) {
      logits_[d].resize(vocab_, features.cols);
      affine(B{}, Transpose::yes, weight(d).value.view(), part(features, d), bias_[d].value.view(),
             logits_[d].view());
    }
    return logits_[0];
  }

  double loss(const Target&, const Batch& batch) {
    double total = 0;
    token_count_ = 0;
    for (int d = 0; d < directions; ++d) {
      neighbour_targets(batch, d == 0 ? 1 : -1, targets_[d]);
      total += loss_[d].forward(logits_[d].view(), targets_[d]);
      token_count_ += loss_[d].counted();
    }
    return total / directions;
  }

  const Matrix<S, B>& backward(S scale, const Batch&) {
    dfeatures_.resize(in_, features_.cols);
    for (int d = 0; d < directions; ++d) {
      const auto& dlogits = loss_[d].backward(scale / S(directions));
      detail::for_each_token_block(features_.cols, [&](Index first, Index count) {
        backward_block(d, first, dlogits.view().middle_cols(first, count));
      });
    }
    return dfeatures_;
  }

  /// forward(features, batch, Mode::train), loss and backward(scale) in one pass over blocks of
  /// tokens (CPU). Each block's logits become their gradient in place and feed both backward
  /// products while they are still in the second-level cache: the vocab x tokens matrix (4 MiB
  /// for 1000 words and 1024 tokens) is never written whole, nor read five times from memory.
  /// Every result is the three calls' bit for bit; logits() is left empty. Returns the loss;
  /// the features' gradient is feature_gradient().
  double forward_backward(ConstView<S> features, const Target&, const Batch& batch, S scale)
    requires std::same_as<B, Cpu>
  {
    check_features(features);
    features_ = features;
    dfeatures_.resize(in_, features.cols);
    double total = 0;
    token_count_ = 0;
    for (int d = 0; d < directions; ++d) {
      logits_[d].resize(0, 0);
      neighbour_targets(batch, d == 0 ? 1 : -1, targets_[d]);
      loss_[d].begin_blocks(targets_[d], vocab_, scale / S(directions));
      detail::for_each_token_block(features.cols, [&](Index first, Index count) {
        block_.resize(vocab_, count);
        affine(B{}, Transpose::yes, weight(d).value.view(),
               part(features, d).middle_cols(first, count), bias_[d].value.view(), block_.view());
        loss_[d].gradient_in_place(block_.view(), first);
        backward_block(d, first, block_.view());
      });
      total += loss_[d].end_blocks();
      token_count_ += loss_[d].counted();
    }
    return total / directions;
  }

  /// d loss * scale / d features of the last backward or forward_backward.
  const Matrix<S, B>& feature_gradient() const { return dfeatures_; }

  /// Scored positions of the last loss (both directions together), for perplexity.
  Index token_count() const { return token_count_; }
  const Matrix<S, B>& logits(int direction = 0) const { return logits_[direction]; }
  Index vocab_size() const { return vocab_; }

  template <class F>
  void for_each_param(F&& f) {
    static constexpr const char* weight_names[2] = {"weight", "weight_backward"};
    static constexpr const char* bias_names[2] = {"bias", "bias_backward"};
    for (int d = 0; d < directions; ++d) {
      if constexpr (!Tied) f(weight_names[d], own_weight_[d]);
      f(bias_names[d], bias_[d]);
    }
  }

 private:
  Index part_width() const { return in_ / directions; }

  void check_features(ConstView<S> features) const {
    if (features.rows != in_)
      throw ShapeError("mtlm: LanguageModelHead: features have " + std::to_string(features.rows) +
                       " rows, expected " + std::to_string(in_));
  }

  /// The parameter gradients and the features' gradient of tokens [first, first + cols) of
  /// direction d, from their dlogits (vocab x cols).
  void backward_block(int d, Index first, ConstView<S> dlogits) {
    const auto features = part(features_, d).middle_cols(first, dlogits.cols);
    B::gemm(Transpose::no, Transpose::yes, S(1), features, dlogits, S(1), weight(d).grad.view());
    weight(d).grad_columns.mark_all();  // a tied table's gradient is now dense
    B::sum_columns(dlogits, S(1), bias_[d].grad.view());
    B::gemm(Transpose::no, Transpose::no, S(1), weight(d).value.view(), dlogits, S(0),
            part(dfeatures_.view(), d).middle_cols(first, dlogits.cols));
  }

  template <class T>
  MatrixView<T> part(MatrixView<T> m, int d) const {
    return directions == 1 ? m : m.middle_rows(d * part_width(), part_width());
  }

  Param<S, B>& weight(int d) {
    if constexpr (Tied) {
      if (!tied_) throw Error("mtlm: LanguageModelHead: tied head used before tie(trunk)");
      return *tied_;
    } else {
      return own_weight_[d];
    }
  }

  /// Target of column (b, t) = token (b, t + offset) when inside the sequence, else ignored.
  void neighbour_targets(const Batch& batch, int offset, std::vector<std::int32_t>& out) const {
    const std::int32_t ignore = loss_[0].options().ignore_index;
    out.assign(static_cast<std::size_t>(batch.columns()), ignore);
    for (Index b = 0; b < batch.batch_size; ++b) {
      const Index len = batch.lengths[static_cast<std::size_t>(b)];
      for (Index t = 0; t < len; ++t) {
        const Index n = t + offset;
        if (n >= 0 && n < len) out[static_cast<std::size_t>(batch.column(b, t))] = batch.token(b, n);
      }
    }
  }

  Index in_ = 0, vocab_ = 0;
  std::array<Param<S, B>, 2> own_weight_;  ///< part_width x vocab, as the embedding table
  std::array<Param<S, B>, 2> bias_;
  Param<S, B>* tied_ = nullptr;
  std::array<SoftmaxCrossEntropy<S, B>, 2> loss_;
  std::array<std::vector<std::int32_t>, 2> targets_;
  std::array<Matrix<S, B>, 2> logits_;
  Matrix<S, B> block_;  ///< forward_backward's logits, then gradient, of one block
  Matrix<S, B> dfeatures_;
  ConstView<S> features_;
  Index token_count_ = 0;
};

}  // namespace mtlm
