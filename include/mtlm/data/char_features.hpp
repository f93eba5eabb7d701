// @brief Character-level features of words, so that a word the word vocabulary has never seen
// ("lufthansa", "covid-19") still tells the model something: its spelling. Two pure data
// transforms, for the layers that consume them (written elsewhere):
//  - char_ids: a fixed-width list of character ids per word for a char-CNN / char-RNN,
//      [<bow>, c1, ..., ck, <eow>, <pad>, ...] with k <= max_chars (longer words keep their
//      first max_chars characters); characters are code points, looked up in a CharVocabulary;
//  - char_ngram_buckets: fastText-style hashed character n-grams (n = min_n..max_n code points
//      of the word wrapped in boundary markers), each hashed with 32-bit FNV-1a into `buckets`
//      bins, for an embedding bag.
// Batch forms lay the words of a padded Batch out column by column (column b*T + t), like every
// activation in mtlm; padding columns get only <pad> ids / no n-grams.
#pragma once

#include "mtlm/core/batch.hpp"
#include "mtlm/core/config.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/data/utf8.hpp"
#include "mtlm/data/vocab.hpp"

#include <concepts>
#include <cstdint>
#include <filesystem>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mtlm {

/// Code point -> id. Ids 0..3 are <pad>, <unk>, <bow> (begin of word), <eow> (end of word);
/// characters follow by decreasing training count. Stored as a Vocabulary whose entries are
/// single code points (one per line in the saved file). Whitespace and control characters never
/// get an id of their own (they cannot be written one per line); they map to <unk>.
class CharVocabulary {
 public:
  static constexpr TokenId pad_id = 0;
  static constexpr TokenId unk_id = 1;
  static constexpr TokenId begin_id = 2;
  static constexpr TokenId end_id = 3;

  CharVocabulary() : CharVocabulary(Vocabulary(options(1, {}))) {}

  /// Counts the characters of every word in `words` (a range of strings, or of sentences) and
  /// keeps those seen at least min_count times. The normaliser applies per character (e.g.
  /// digits -> '0'); case is usually worth keeping for characters.
  template <std::ranges::input_range R>
  static CharVocabulary build(const R& words, Index min_count = 1, Normalizer normalizer = {}) {
    TokenCounter counter;
    count_chars(words, counter);
    return CharVocabulary(Vocabulary::build(counter, options(min_count, normalizer)));
  }

  TokenId id(char32_t c) const {
    if (normalizer_.lowercase) c = utf8::to_lower(c);
    if (normalizer_.digits_to_zero && c >= U'0' && c <= U'9') c = U'0';
    auto it = ids_.find(c);
    return it == ids_.end() ? unk_id : it->second;
  }
  Index size() const { return vocab_.size(); }
  const Vocabulary& vocabulary() const { return vocab_; }

  void save(const std::filesystem::path& path) const { vocab_.save(path); }
  std::string to_text() const { return vocab_.to_text(); }

  /// Loads a saved CharVocabulary; FormatError unless the specials are <pad> <unk> <bow> <eow>
  /// and every other entry is a single code point.
  static CharVocabulary load(const std::filesystem::path& path) {
    return checked(Vocabulary::load(path), path.string());
  }
  static CharVocabulary from_text(std::string_view text, const std::string& source) {
    return checked(Vocabulary::from_text(text, source), source);
  }

 private:
  static CharVocabulary checked(Vocabulary v, const std::string& name) {
    if (v.special_count() != 4 || v.token(begin_id) != "<bow>" || v.token(end_id) != "<eow>")
      throw FormatError(name, 1, "a character vocabulary has exactly the specials <pad> <unk> "
                                 "<bow> <eow>");
    for (TokenId i = 4; i < v.size(); ++i)
      if (utf8::length(v.token(i)) != 1)
        throw FormatError(name, static_cast<std::size_t>(i) + 2,
                          "entry '" + v.token(i) + "' is not a single character");
    return CharVocabulary(std::move(v));
  }

  explicit CharVocabulary(Vocabulary v) : vocab_(std::move(v)), normalizer_(vocab_.normalizer()) {
    for (TokenId i = 4; i < vocab_.size(); ++i)
      ids_.emplace(utf8::codepoints(vocab_.token(i)).front(), i);
  }
  static VocabOptions options(Index min_count, Normalizer normalizer) {
    VocabOptions o;
    o.min_count = min_count;
    o.normalizer = normalizer;
    o.extra_specials = {"<bow>", "<eow>"};
    return o;
  }
  static bool has_own_id(char32_t c) {
    return c > 0x20 && !(c >= 0x7F && c <= 0xA0) && c != 0x2028 && c != 0x2029;
  }
  template <class R>
  static void count_chars(const R& words, TokenCounter& counter) {
    for (const auto& w : words) {
      if constexpr (std::convertible_to<decltype(w), std::string_view>) {
        for (char32_t c : utf8::codepoints(std::string_view(w)))
          if (has_own_id(c)) counter.add(utf8::encode(c));
      } else {
        count_chars(w, counter);
      }
    }
  }

  Vocabulary vocab_;
  Normalizer normalizer_;
  std::unordered_map<char32_t, TokenId> ids_;
};

struct CharIdOptions {
  Index max_chars = 20;  ///< characters kept per word (the first ones)
  bool markers = true;   ///< wrap the characters in <bow> ... <eow>

  Index width() const { return max_chars + (markers ? 2 : 0); }
};

/// Writes the width() character ids of `word` into `out` (which must have width() entries).
/// Throws FormatError when `word` is not well-formed UTF-8.
inline void char_ids(std::string_view word, const CharVocabulary& chars,
                     const CharIdOptions& options, std::span<TokenId> out) {
  if (static_cast<Index>(out.size()) != options.width())
    throw ShapeError("mtlm: char_ids: output has " + std::to_string(out.size()) +
                     " entries, width is " + std::to_string(options.width()));
  utf8::validate(word, "<word>");
  std::size_t k = 0;
  if (options.markers) out[k++] = CharVocabulary::begin_id;
  Index kept = 0;
  for (std::size_t pos = 0; pos < word.size() && kept < options.max_chars; ++kept) {
    const utf8::Decoded d = utf8::decode(word, pos);
    out[k++] = chars.id(d.codepoint);
    pos += d.length;
  }
  if (options.markers) out[k++] = CharVocabulary::end_id;
  for (; k < out.size(); ++k) out[k] = CharVocabulary::pad_id;
}

inline std::vector<TokenId> char_ids(std::string_view word, const CharVocabulary& chars,
                                     const CharIdOptions& options = {}) {
  std::vector<TokenId> out(static_cast<std::size_t>(options.width()));
  char_ids(word, chars, options, out);
  return out;
}

/// Character ids of the words of a batch: a column-major (width x B*T) block, entry
/// ids[col * width + k]; padding columns are all <pad>.
struct CharIdBatch {
  Index width = 0;
  Index columns = 0;
  std::vector<TokenId> ids;

  TokenId operator()(Index k, Index column) const {
    return ids[static_cast<std::size_t>(column * width + k)];
  }
};

namespace detail {
inline void check_batch_sentence(std::size_t words, const Batch& batch, Index b) {
  if (static_cast<Index>(words) != batch.lengths[static_cast<std::size_t>(b)])
    throw ShapeError("mtlm: sentence " + std::to_string(b) + " of the batch has " +
                     std::to_string(words) + " words but length " +
                     std::to_string(batch.lengths[static_cast<std::size_t>(b)]));
}
}  // namespace detail

/// `sentences` holds the words of every example; `indices` picks the batch's examples in batch
/// order (as produced by bucket_batches), and `batch` is their padded Batch.
inline CharIdBatch char_id_batch(std::span<const std::vector<std::string>> sentences,
                                 std::span<const Index> indices, const Batch& batch,
                                 const CharVocabulary& chars, const CharIdOptions& options = {}) {
  if (static_cast<Index>(indices.size()) != batch.batch_size)
    throw ShapeError("mtlm: char_id_batch: " + std::to_string(indices.size()) +
                     " indices for a batch of " + std::to_string(batch.batch_size));
  CharIdBatch out{options.width(), batch.columns(), {}};
  out.ids.assign(static_cast<std::size_t>(out.width * out.columns), CharVocabulary::pad_id);
  for (Index b = 0; b < batch.batch_size; ++b) {
    const auto& words = sentences[static_cast<std::size_t>(indices[static_cast<std::size_t>(b)])];
    detail::check_batch_sentence(words.size(), batch, b);
    for (Index t = 0; t < static_cast<Index>(words.size()); ++t) {
      std::span<TokenId> slot(out.ids.data() + batch.column(b, t) * out.width,
                              static_cast<std::size_t>(out.width));
      char_ids(words[static_cast<std::size_t>(t)], chars, options, slot);
    }
  }
  return out;
}

/// 32-bit FNV-1a over bytes (offset basis 2166136261, prime 16777619).
inline std::uint32_t fnv1a32(std::string_view bytes, std::uint32_t hash = 2166136261u) {
  for (unsigned char b : bytes) {
    hash ^= b;
    hash *= 16777619u;
  }
  return hash;
}

struct NgramOptions {
  Index min_n = 2;
  Index max_n = 4;
  std::uint32_t buckets = 1u << 18;  ///< K: bucket ids are in [0, K)
  bool markers = true;  ///< wrap the word in begin/end markers, so prefixes and suffixes differ
};

/// Bucket ids of the character n-grams of `word`, for n = min_n..max_n (in code points, a
/// marker counting as one), in order of n, then of start position; repeated n-grams repeat.
/// Hashed bytes are the n-gram's UTF-8 bytes, with the begin marker as byte 0xFE and the end
/// marker as 0xFF: neither occurs in UTF-8, so no n-gram of a word collides with a marker.
/// Throws FormatError when `word` is not well-formed UTF-8.
inline std::vector<std::uint32_t> char_ngram_buckets(std::string_view word,
                                                     const NgramOptions& options = {}) {
  if (options.min_n < 1 || options.max_n < options.min_n || options.buckets == 0)
    throw Error("mtlm: char_ngram_buckets: need 1 <= min_n <= max_n and buckets > 0");
  utf8::validate(word, "<word>");
  std::string bytes;
  std::vector<std::size_t> starts;  // byte offset of each code point in `bytes`
  if (options.markers) {
    starts.push_back(0);
    bytes += '\xFE';
  }
  for (std::size_t pos = 0; pos < word.size();) {
    starts.push_back(bytes.size());
    const std::size_t len = utf8::decode(word, pos).length;
    bytes.append(word.substr(pos, len));
    pos += len;
  }
  if (options.markers) {
    starts.push_back(bytes.size());
    bytes += '\xFF';
  }
  const auto count = static_cast<Index>(starts.size());
  starts.push_back(bytes.size());
  std::vector<std::uint32_t> out;
  for (Index n = options.min_n; n <= options.max_n; ++n)
    for (Index i = 0; i + n <= count; ++i) {
      const std::size_t begin = starts[static_cast<std::size_t>(i)];
      const std::size_t end = starts[static_cast<std::size_t>(i + n)];
      out.push_back(fnv1a32(std::string_view(bytes).substr(begin, end - begin)) %
                    options.buckets);
    }
  return out;
}

/// N-gram buckets of the words of a batch in compressed form: the buckets of column c are
/// buckets[offsets[c] .. offsets[c + 1]); padding columns are empty.
struct NgramBatch {
  std::vector<Index> offsets;  ///< columns + 1 entries
  std::vector<std::uint32_t> buckets;
};

inline NgramBatch char_ngram_batch(std::span<const std::vector<std::string>> sentences,
                                   std::span<const Index> indices, const Batch& batch,
                                   const NgramOptions& options = {}) {
  if (static_cast<Index>(indices.size()) != batch.batch_size)
    throw ShapeError("mtlm: char_ngram_batch: " + std::to_string(indices.size()) +
                     " indices for a batch of " + std::to_string(batch.batch_size));
  std::vector<std::vector<std::uint32_t>> per_column(static_cast<std::size_t>(batch.columns()));
  for (Index b = 0; b < batch.batch_size; ++b) {
    const auto& words = sentences[static_cast<std::size_t>(indices[static_cast<std::size_t>(b)])];
    detail::check_batch_sentence(words.size(), batch, b);
    for (Index t = 0; t < static_cast<Index>(words.size()); ++t)
      per_column[static_cast<std::size_t>(batch.column(b, t))] =
          char_ngram_buckets(words[static_cast<std::size_t>(t)], options);
  }
  NgramBatch out;
  out.offsets.reserve(per_column.size() + 1);
  out.offsets.push_back(0);
  for (const auto& column : per_column) {
    out.buckets.insert(out.buckets.end(), column.begin(), column.end());
    out.offsets.push_back(static_cast<Index>(out.buckets.size()));
  }
  return out;
}

}  // namespace mtlm
