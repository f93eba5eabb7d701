// @brief A batch of variable-length token sequences: token ids padded to the longest sequence,
// plus the real lengths. Activations for the batch are (features x B*T) matrices with column
// b*T + t for token t of sequence b (see matrix_view.hpp), so padding costs a few wasted
// columns in large matrix products rather than many small products.
#pragma once

#include "mtlm/core/config.hpp"
#include "mtlm/core/error.hpp"

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace mtlm {

using TokenId = std::int32_t;

struct Batch {
  Index batch_size = 0;
  Index max_length = 0;            ///< T: every sequence is padded to this length
  std::vector<TokenId> tokens;     ///< batch_size * max_length ids, sequence-major
  std::vector<Index> lengths;      ///< real length of each sequence, 1 <= length <= max_length
  TokenId pad_id = 0;
  /// Optional character ids of every word, for character-aware layers: a column-major
  /// (char_width x B*T) block, entry chars[column * char_width + k]; empty when unused.
  Index char_width = 0;
  std::vector<TokenId> chars;

  Index columns() const { return batch_size * max_length; }
  Index column(Index b, Index t) const { return b * max_length + t; }
  bool is_real(Index col) const { return col % max_length < lengths[col / max_length]; }
  TokenId token(Index b, Index t) const { return tokens[column(b, t)]; }

  /// Number of real (non-padding) tokens.
  Index token_count() const {
    Index n = 0;
    if (!chars.empty() && static_cast<Index>(chars.size()) != char_width * columns())
      throw ShapeError("mtlm: Batch: " + std::to_string(chars.size()) + " character ids, expected " +
                       std::to_string(char_width) + " x " + std::to_string(columns()));
    for (Index len : lengths) n += len;
    return n;
  }

  /// 1 for real positions, 0 for padding, one entry per column.
  std::vector<unsigned char> mask() const {
    std::vector<unsigned char> m(static_cast<std::size_t>(columns()), 0);
    for (Index b = 0; b < batch_size; ++b)
      std::fill_n(m.begin() + column(b, 0), lengths[b], 1);
    return m;
  }

  /// Builds a batch from sequences of ids; every sequence must be non-empty.
  static Batch from_sequences(std::span<const std::vector<TokenId>> sequences, TokenId pad = 0) {
    Batch batch;
    batch.batch_size = static_cast<Index>(sequences.size());
    batch.pad_id = pad;
    for (const auto& s : sequences) {
      if (s.empty()) throw ShapeError("mtlm: Batch::from_sequences: empty sequence");
      batch.max_length = std::max(batch.max_length, static_cast<Index>(s.size()));
    }
    batch.tokens.assign(static_cast<std::size_t>(batch.columns()), pad);
    batch.lengths.reserve(sequences.size());
    for (Index b = 0; b < batch.batch_size; ++b) {
      const auto& s = sequences[static_cast<std::size_t>(b)];
      std::copy(s.begin(), s.end(), batch.tokens.begin() + batch.column(b, 0));
      batch.lengths.push_back(static_cast<Index>(s.size()));
    }
    return batch;
  }

  /// A batch shape without tokens (for layers that only need lengths), every sequence full.
  static Batch dense(Index batch_size, Index length) {
    Batch batch;
    batch.batch_size = batch_size;
    batch.max_length = length;
    batch.tokens.assign(static_cast<std::size_t>(batch_size * length), 0);
    batch.lengths.assign(static_cast<std::size_t>(batch_size), length);
    return batch;
  }

  /// Throws ShapeError unless lengths and tokens are consistent.
  void validate() const {
    if (static_cast<Index>(lengths.size()) != batch_size)
      throw ShapeError("mtlm: Batch: " + std::to_string(lengths.size()) + " lengths for " +
                       std::to_string(batch_size) + " sequences");
    if (!tokens.empty() && static_cast<Index>(tokens.size()) != columns())
      throw ShapeError("mtlm: Batch: " + std::to_string(tokens.size()) + " tokens, expected " +
                       std::to_string(columns()));
    if (!chars.empty() && static_cast<Index>(chars.size()) != char_width * columns())
      throw ShapeError("mtlm: Batch: " + std::to_string(chars.size()) + " character ids, expected " +
                       std::to_string(char_width) + " x " + std::to_string(columns()));
    for (Index len : lengths)
      if (len < 1 || len > max_length)
        throw ShapeError("mtlm: Batch: sequence length " + std::to_string(len) +
                         " outside [1, " + std::to_string(max_length) + "]");
  }
};

}  // namespace mtlm
