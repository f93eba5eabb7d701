// @brief The padded batch of a character-aware demo: word ids plus, per token, a fixed number of
// character ids, for any prepared set with `words`, `chars` and `char_width`.
#pragma once

#include <mtlm/mtlm.hpp>

#include <algorithm>
#include <span>

namespace examples {

/// The batch of the examples at `indices`; `set.chars[i]` holds char_width ids per token of example i.
template <class EncodedSet>
mtlm::Batch word_char_batch(const EncodedSet& set, std::span<const mtlm::Index> indices) {
  mtlm::Batch batch = mtlm::make_batch(set.words, indices);
  batch.char_width = set.char_width;
  batch.chars.assign(static_cast<std::size_t>(batch.columns() * set.char_width), 0);
  for (mtlm::Index b = 0; b < batch.batch_size; ++b) {
    const auto& chars = set.chars[static_cast<std::size_t>(indices[static_cast<std::size_t>(b)])];
    std::copy(chars.begin(), chars.end(), batch.chars.begin() + batch.column(b, 0) * set.char_width);
  }
  return batch;
}

}  // namespace examples
