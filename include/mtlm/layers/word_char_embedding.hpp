// @brief WordCharEmbedding: a trunk's first layer that gives every token [word vector; spelling
// vector], an Embedding of the word id next to a CharCnn over its characters. The word table
// knows frequent words well; the character features still describe rare and unseen words (CoNLL
// names, ATIS cities), which otherwise all share the <unk> vector.
//
// Contract: forward(batch, mode) reads batch.tokens and batch.chars and returns y
// ((WordDim + Filters) x B*T): rows [0, WordDim) are the Embedding's output, rows
// [WordDim, WordDim + Filters) the CharCnn's; padded positions are zero in both. backward(dy)
// hands the two row blocks of dy to the two layers (their parameter gradients accumulate) and
// returns nothing. Parameters: "word.weight" (WordDim x Vocab), "char.embedding.weight",
// "char.conv.weight", "char.conv.bias" (see char_cnn.hpp). weight() is the word table, so a tied
// LanguageModelHead of width WordDim can share it.
//
// Word dropout ("unknown-word dropout"): in Mode::train with probability p > 0, each real token
// is replaced by unk_id before the word lookup; its characters are kept. The model thus sees
// <unk> next to informative character features during training, as it will for unseen words at
// test time (the largest single gain for unknown words on ATIS). One draw per real token, in
// column order, from an Rng the layer owns, so a seed replays the same substitutions; tokens equal
// to the Embedding's padding index are left alone. Mode::eval never substitutes. The substituted
// ids live in a member Batch (reused, no allocation in steady state) that backward's gradient
// follows.
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/core/param.hpp"
#include "mtlm/core/random.hpp"
#include "mtlm/layers/char_cnn.hpp"
#include "mtlm/layers/embedding.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace mtlm {

/// Unknown-word dropout of a WordCharEmbedding: with probability p (in [0, 1]) a real token is
/// looked up as unk_id during training. A seed pins the stream; without one, initialize(rng)
/// derives it from the model's rng.
struct WordDropout {
  double p = 0.0;
  TokenId unk_id = 1;  ///< Vocabulary::unk_id
  std::optional<std::uint64_t> seed = std::nullopt;
};

template <Index Vocab, Index WordDim, Index CharVocab, Index CharDim, Index Filters, Index Width,
          class S = float, class B = Cpu>
  requires Dimension<Vocab> && Dimension<WordDim> && Dimension<CharVocab> &&
           Dimension<CharDim> && Dimension<Filters> && Dimension<Width> && Backend<B>
class WordCharEmbedding {
 public:
  using Scalar = S;
  using BackendType = B;
  using WordEmbedding = Embedding<Vocab, WordDim, S, B>;
  using CharEncoder = CharCnn<CharVocab, CharDim, Filters, Width, S, B>;
  /// The layer reads ids: input_dim is the word vocabulary, as for Embedding.
  static constexpr Index input_dim = Vocab;
  static constexpr Index output_dim =
      WordDim == Dynamic || Filters == Dynamic ? Dynamic : WordDim + Filters;

  static constexpr std::uint64_t default_seed = 0x776f7264ULL;

  /// Vocabulary sizes are usually Dynamic (known from the data); the other sizes come from the
  /// template arguments. `padding_index` is the word Embedding's (none by default).
  explicit WordCharEmbedding(Index vocab = Vocab, Index char_vocab = CharVocab,
                             WordDropout word_dropout = {},
                             std::optional<Index> padding_index = std::nullopt)
      : WordCharEmbedding(WordEmbedding(vocab, WordDim, padding_index),
                          CharEncoder(char_vocab), word_dropout) {}

  /// From the two parts, e.g. to give Dynamic sizes to both.
  WordCharEmbedding(WordEmbedding word, CharEncoder chars, WordDropout word_dropout = {})
      : word_(std::move(word)),
        char_(std::move(chars)),
        dropout_(word_dropout),
        rng_(word_dropout.seed.value_or(default_seed)),
        pinned_(word_dropout.seed.has_value()) {
    if (!(dropout_.p >= 0.0 && dropout_.p <= 1.0))
      throw Error("mtlm: WordCharEmbedding word dropout probability must be in [0, 1], got " +
                  std::to_string(dropout_.p));
    if (dropout_.unk_id < 0 || dropout_.unk_id >= word_.vocab_size())
      throw ShapeError("mtlm: WordCharEmbedding unknown-word id " +
                       std::to_string(dropout_.unk_id) + " is outside the vocabulary of size " +
                       std::to_string(word_.vocab_size()));
  }

  /// Initialises both tables and the filters; derives the word-dropout stream from `rng` unless a
  /// seed was pinned.
  void initialize(Rng& rng) {
    word_.initialize(rng);
    char_.initialize(rng);
    if (!pinned_) rng_.reseed(rng.next());
  }

  /// Restarts the word-dropout stream from `seed` (and pins it against initialize()).
  void reseed(std::uint64_t seed) {
    rng_.reseed(seed);
    pinned_ = true;
  }

  const Matrix<S, B>& forward(const Batch& batch, Mode mode = Mode::train) {
    const Matrix<S, B>& words = word_.forward(word_batch(batch, mode), mode);
    const Matrix<S, B>& chars = char_.forward(batch, mode);
    const Index word_rows = word_.dim();
    y_.resize(word_rows + char_.filters(), batch.columns());
    B::copy(words.view(), y_.view().middle_rows(0, word_rows));
    B::copy(chars.view(), y_.view().middle_rows(word_rows, char_.filters()));
    return y_;
  }

  /// Adds the gradients of both parts; dy is ((WordDim + Filters) x B*T).
  void backward(ConstView<S> dy, const Batch& batch = {}) {
    if (dy.rows != y_.rows() || dy.cols != y_.cols())
      throw ShapeError("mtlm: WordCharEmbedding output gradient is " + std::to_string(dy.rows) +
                       " x " + std::to_string(dy.cols) + ", expected " +
                       std::to_string(y_.rows()) + " x " + std::to_string(y_.cols()) +
                       " (the shape of the last forward)");
    const Index word_rows = word_.dim();
    word_.backward(dy.middle_rows(0, word_rows), batch);
    char_.backward(dy.middle_rows(word_rows, char_.filters()), batch);
  }

  /// The layer's generator, for checkpoints that must resume the same random stream.
  template <class F>
  void for_each_rng(F&& f) {
    f("rng", rng_);
  }

  template <class F>
  void for_each_param(F&& f) {
    word_.for_each_param(prefixed("word", f));
    char_.for_each_param(prefixed("char", f));
  }

  /// The word table (WordDim x Vocab), for a tied language-model head.
  Param<S, B>& weight() { return word_.weight(); }
  const Param<S, B>& weight() const { return word_.weight(); }
  WordEmbedding& word_embedding() { return word_; }
  const WordEmbedding& word_embedding() const { return word_; }
  CharEncoder& char_cnn() { return char_; }
  const CharEncoder& char_cnn() const { return char_; }
  const WordDropout& word_dropout() const { return dropout_; }
  Index output_size() const { return word_.dim() + char_.filters(); }

 private:
  /// The batch the word lookup reads: `batch` itself, or in training with p > 0 a copy of its
  /// tokens and lengths (not its characters) with some tokens replaced by unk_id.
  const Batch& word_batch(const Batch& batch, Mode mode) {
    if (mode != Mode::train || dropout_.p <= 0.0) return batch;
    batch.validate();
    if (static_cast<Index>(batch.tokens.size()) != batch.columns())
      throw ShapeError("mtlm: WordCharEmbedding needs token ids: the batch has " +
                       std::to_string(batch.tokens.size()) + " ids for " +
                       std::to_string(batch.columns()) + " positions");
    dropped_.batch_size = batch.batch_size;
    dropped_.max_length = batch.max_length;
    dropped_.pad_id = batch.pad_id;
    dropped_.tokens.assign(batch.tokens.begin(), batch.tokens.end());
    dropped_.lengths.assign(batch.lengths.begin(), batch.lengths.end());
    dropped_.char_width = 0;
    dropped_.chars.clear();
    const Index padding = word_.padding_index().value_or(-1);
    for (Index b = 0; b < batch.batch_size; ++b)
      for (Index t = 0; t < batch.lengths[static_cast<std::size_t>(b)]; ++t) {
        TokenId& id = dropped_.tokens[static_cast<std::size_t>(batch.column(b, t))];
        if (rng_.uniform() < dropout_.p && id != padding) id = dropout_.unk_id;
      }
    return dropped_;
  }

  WordEmbedding word_;
  CharEncoder char_;
  WordDropout dropout_;
  Rng rng_;
  bool pinned_;
  Batch dropped_;
  Matrix<S, B> y_;
};

}  // namespace mtlm
