// @brief Embedding: the first layer of a trunk, turning the token ids of a Batch into vectors by
// looking up one column of a (Dim x Vocab) table per token. It is the only kind of layer that
// reads ids instead of a matrix, so Sequential feeds it the Batch itself.
//
// Contract: forward(batch) returns y (Dim x B*T) with y(:, b*T + t) = W(:, id) for every real
// position (t < lengths[b]) whose id is not the padding index, and zeros elsewhere; it caches the
// looked-up ids (one per column, -1 for "zero") for backward. backward(dy) scatter-adds the
// columns of dy (Dim x B*T) into the gradient of the table and returns nothing (ids have no
// gradient). Ids at padded positions are ignored, not even range-checked; an id outside
// [0, Vocab) at a real position is a ShapeError.
//
// Table layout: the parameter "weight" is Dim x Vocab, column-major, so column v is the vector of
// token v and each vector is contiguous. PyTorch's nn.Embedding stores (Vocab, Dim) in C order,
// which is the same memory: weights are exchanged without transposing. The LM head ties to this
// table through weight().
//
// Padding index: none by default, as in PyTorch. Padded positions (t >= length) are already zero
// whatever id they hold, so a padding row is only needed when the pad token may occur inside a
// sequence, or to match a PyTorch model built with padding_idx. When given, that row is zero after
// initialize() and load_pretrained(), its positions output zeros and it never receives gradient
// (so no optimizer moves it).
#pragma once

#include "mtlm/backend/cpu.hpp"
#include "mtlm/core/batch.hpp"
#include "mtlm/core/dims.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/core/param.hpp"

#include <charconv>
#include <concepts>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace mtlm {
namespace backend {

// CPU kernels

/// out(:, j) = table(:, rows[j]), or zeros where rows[j] < 0.
template <class S>
void embedding_gather(Cpu, In<S> table, std::span<const Index> rows, MatrixView<S> out) {
  const auto T = Cpu::eigen(table);
  auto Y = Cpu::eigen(out);
  for (Index j = 0; j < out.cols; ++j) {
    const Index row = rows[static_cast<std::size_t>(j)];
    if (row >= 0)
      Y.col(j) = T.col(row);
    else
      Y.col(j).setZero();
  }
}

/// table_grad(:, rows[j]) += dy(:, j) for every rows[j] >= 0. Sequential on purpose: a token
/// repeated in the batch adds into the same column, so the order of additions stays fixed and
/// results are bitwise reproducible.
template <class S>
void embedding_scatter_add(Cpu, In<S> dy, std::span<const Index> rows, MatrixView<S> table_grad) {
  const auto DY = Cpu::eigen(dy);
  auto G = Cpu::eigen(table_grad);
  for (Index j = 0; j < dy.cols; ++j) {
    const Index row = rows[static_cast<std::size_t>(j)];
    if (row >= 0) G.col(row) += DY.col(j);
  }
}

}  // namespace backend

template <Index Vocab, Index Dim, class S = float, class B = Cpu>
  requires Dimension<Vocab> && Dimension<Dim> && Backend<B>
class Embedding {
 public:
  using Scalar = S;
  using BackendType = B;
  /// The layer reads ids, not a matrix: input_dim is the width of the one-hot input it stands for.
  static constexpr Index input_dim = Vocab;
  static constexpr Index output_dim = Dim;

  /// Maps a word of a vectors file to its index in the model's vocabulary (nullopt: not in it).
  using Lookup = std::function<std::optional<Index>(std::string_view)>;

  explicit Embedding(Index vocab = Vocab, Index dim = Dim,
                     std::optional<Index> padding_index = std::nullopt)
      : vocab_(resolve_dim(Vocab, vocab, "Embedding vocabulary size")),
        dim_(resolve_dim(Dim, dim, "Embedding dimension")),
        padding_index_(padding_index),
        weight_(dim_, vocab_) {
    if (padding_index_ && (*padding_index_ < 0 || *padding_index_ >= vocab_))
      throw ShapeError("mtlm: Embedding padding index " + std::to_string(*padding_index_) +
                       " is outside the vocabulary of size " + std::to_string(vocab_));
  }

  /// N(0, 1) entries, as PyTorch's nn.Embedding; the padding row is zero.
  void initialize(Rng& rng) {
    weight_.initialize(init::Normal{0.0, 1.0}, dim_, vocab_, rng);
    zero_padding_row();
  }

  const Matrix<S, B>& forward(const Batch& batch, Mode = Mode::train) {
    batch.validate();
    if (static_cast<Index>(batch.tokens.size()) != batch.columns())
      throw ShapeError("mtlm: Embedding needs token ids: the batch has " +
                       std::to_string(batch.tokens.size()) + " ids for " +
                       std::to_string(batch.columns()) + " positions");
    rows_.resize(static_cast<std::size_t>(batch.columns()));
    for (Index b = 0; b < batch.batch_size; ++b) {
      const Index length = batch.lengths[static_cast<std::size_t>(b)];
      for (Index t = 0; t < batch.max_length; ++t) {
        const Index c = batch.column(b, t);
        Index row = -1;
        if (t < length) {
          const Index id = batch.tokens[static_cast<std::size_t>(c)];
          if (id < 0 || id >= vocab_)
            throw ShapeError("mtlm: Embedding: token id " + std::to_string(id) + " (sequence " +
                             std::to_string(b) + ", position " + std::to_string(t) +
                             ") is outside the vocabulary of size " + std::to_string(vocab_));
          if (id != padding_index_.value_or(-1)) row = id;
        }
        rows_[static_cast<std::size_t>(c)] = row;
      }
    }
    y_.resize(dim_, batch.columns());
    embedding_gather(B{}, weight_.value.view(), std::span<const Index>(rows_), y_.view());
    return y_;
  }

  /// Adds the gradient of the ids looked up by the last forward; dy is (Dim x B*T).
  void backward(ConstView<S> dy, const Batch& = {}) {
    if (dy.rows != dim_ || dy.cols != static_cast<Index>(rows_.size()))
      throw ShapeError("mtlm: Embedding output gradient is " + std::to_string(dy.rows) + " x " +
                       std::to_string(dy.cols) + ", expected " + std::to_string(dim_) + " x " +
                       std::to_string(rows_.size()) + " (the shape of the last forward)");
    embedding_scatter_add(B{}, dy, std::span<const Index>(rows_), weight_.grad.view());
    if (weight_.grad_columns.tracking())
      for (const Index row : rows_)
        if (row >= 0) weight_.grad_columns.mark(row);
  }

  /// Tracks which columns of the table's gradient the batches touch (off by default), so that
  /// zeroing and clipping visit only those, and Adam with `lazy` updates only those (PyTorch's
  /// nn.Embedding(sparse=True) with SparseAdam). Dense optimizers give the same results either way.
  void set_sparse_gradient(bool sparse) { weight_.grad_columns.track(vocab_, sparse); }
  bool sparse_gradient() const { return weight_.grad_columns.tracking(); }

  template <class F>
  void for_each_param(F&& f) {
    f("weight", weight_);
  }

  Index vocab_size() const { return vocab_; }
  Index dim() const { return dim_; }
  std::optional<Index> padding_index() const { return padding_index_; }
  /// The (Dim x Vocab) table; column v is the vector of token v.
  Param<S, B>& weight() { return weight_; }
  const Param<S, B>& weight() const { return weight_; }

  /// Copies pre-trained vectors from a word2vec / GloVe text file into the table, for the words
  /// that `lookup` maps to an index; returns how many rows were set. Other rows keep their values.
  ///
  /// Format: UTF-8 text, one "word v1 ... vDim" per line, fields separated by spaces or tabs
  /// (a trailing space, as word2vec writes, is fine; so are CRLF line ends and a BOM). An optional
  /// first line of two integers "count dim" is a header (word2vec); count is not enforced, so a
  /// file cut to its first lines still loads. Words cannot contain spaces. The whole file is
  /// checked, including lines of words the vocabulary does not know.
  /// When a word occurs twice, its first line wins (vector files are sorted by frequency). The
  /// padding row is never set.
  /// Throws FormatError(file, line, what was expected) for a value that is not a number, a line
  /// with a number of values other than dim(), or a header whose dimension is not dim();
  /// FormatError(file, 0, ...) if the file cannot be read; ShapeError if `lookup` returns an
  /// index outside the vocabulary.
  Index load_pretrained(const std::filesystem::path& path, const Lookup& lookup) {
    const std::string file = path.string();
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FormatError(file, 0, "cannot open the file for reading");

    std::vector<S> table(static_cast<std::size_t>(weight_.size()));
    B::download(weight_.value.view(), table.data());
    std::vector<unsigned char> found(static_cast<std::size_t>(vocab_), 0);
    std::vector<std::string_view> fields;
    fields.reserve(static_cast<std::size_t>(dim_) + 1);
    std::vector<S> values(static_cast<std::size_t>(dim_));

    std::string line;
    std::size_t line_number = 0;
    bool first_content_line = true;
    Index count = 0;
    while (std::getline(in, line)) {
      ++line_number;
      std::string_view text(line);
      if (line_number == 1 && text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
      split_fields(text, fields);
      if (fields.empty()) continue;
      if (first_content_line) {
        first_content_line = false;
        Index header_count = 0, header_dim = 0;
        if (fields.size() == 2 && parse_integer(fields[0], header_count) &&
            parse_integer(fields[1], header_dim)) {
          if (header_dim != dim_)
            throw FormatError(file, line_number,
                              "the header announces vectors of dimension " +
                                  std::to_string(header_dim) + ", expected " +
                                  std::to_string(dim_) + " (the embedding dimension)");
          continue;
        }
      }
      if (static_cast<Index>(fields.size()) != dim_ + 1)
        throw FormatError(file, line_number,
                          "expected a word and " + std::to_string(dim_) + " values, found " +
                              std::to_string(fields.size() - 1) + " values after '" +
                              std::string(fields[0]) + "'");
      for (Index k = 0; k < dim_; ++k) {
        const std::string_view field = fields[static_cast<std::size_t>(k) + 1];
        if (!parse_value(field, values[static_cast<std::size_t>(k)]))
          throw FormatError(file, line_number,
                            "expected a number as value " + std::to_string(k + 1) + " of '" +
                                std::string(fields[0]) + "', found '" + std::string(field) + "'");
      }
      const std::optional<Index> index = lookup(fields[0]);
      if (!index) continue;
      if (*index < 0 || *index >= vocab_)
        throw ShapeError("mtlm: Embedding::load_pretrained: the vocabulary maps '" +
                         std::string(fields[0]) + "' to " + std::to_string(*index) +
                         ", outside the embedding's vocabulary of size " + std::to_string(vocab_));
      auto& seen = found[static_cast<std::size_t>(*index)];
      if (seen || *index == padding_index_.value_or(-1)) continue;
      seen = 1;
      std::copy(values.begin(), values.end(),
                table.begin() + static_cast<std::ptrdiff_t>(*index * dim_));
      ++count;
    }
    if (in.bad()) throw FormatError(file, line_number, "read error after this line");
    B::upload(table.data(), weight_.value.view());
    return count;
  }

  /// As above, with the vocabulary given as a map from word to index (std::map,
  /// std::unordered_map, ... keyed by std::string).
  template <class Map>
    requires requires(const Map& m, const std::string& key) {
      { m.find(key) == m.end() } -> std::convertible_to<bool>;
      { m.find(key)->second } -> std::convertible_to<Index>;
    }
  Index load_pretrained(const std::filesystem::path& path, const Map& vocabulary) {
    std::string key;
    return load_pretrained(path, [&](std::string_view word) -> std::optional<Index> {
      key.assign(word);
      const auto it = vocabulary.find(key);
      if (it == vocabulary.end()) return std::nullopt;
      return static_cast<Index>(it->second);
    });
  }

 private:
  void zero_padding_row() {
    if (padding_index_) B::fill(weight_.value.view().col(*padding_index_), S(0));
  }

  /// Splits on runs of spaces and tabs; a trailing '\r' (CRLF files) is whitespace too.
  static void split_fields(std::string_view text, std::vector<std::string_view>& fields) {
    fields.clear();
    auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
    std::size_t i = 0;
    while (i < text.size()) {
      while (i < text.size() && is_space(text[i])) ++i;
      const std::size_t start = i;
      while (i < text.size() && !is_space(text[i])) ++i;
      if (i > start) fields.push_back(text.substr(start, i - start));
    }
  }

  static bool parse_integer(std::string_view s, Index& out) {
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && end == s.data() + s.size();
  }

  /// Parsed in double whatever S is, so a tiny value in a float model rounds to zero (or a
  /// subnormal) instead of being reported as out of range.
  static bool parse_value(std::string_view s, S& out) {
    if (s.size() > 1 && s.front() == '+') s.remove_prefix(1);  // from_chars rejects a '+' sign
    double value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    out = static_cast<S>(value);
    return ec == std::errc() && end == s.data() + s.size();
  }

  Index vocab_, dim_;
  std::optional<Index> padding_index_;
  Param<S, B> weight_;
  std::vector<Index> rows_;  ///< per column of the last forward: table row, or -1 for zeros
  Matrix<S, B> y_;
};

}  // namespace mtlm
