// @brief Vocabularies: the mapping between strings and the integer ids a model sees. A
// Vocabulary (words, characters) has padding and unknown entries so any input maps to some id;
// a LabelSet (tags, intents) has no unknown entry unless asked, so an unexpected label is an
// error rather than a silent class. Both are saved next to the model's weights: the ids are
// meaningless without them.
//
// Contract (Vocabulary): id 0 is "<pad>", id 1 is "<unk>", then extra specials in the order
// given, then tokens by decreasing training count (ties: byte order of the token). Tokens are
// normalised (optional lower-casing, digits -> '0') when counted and when looked up; specials
// are matched exactly. Counts are kept in memory only; a loaded vocabulary reports count 0.
//
// File format (both classes): UTF-8 text, a header line, then one entry per line in id order:
//   "#mtlm-vocab v1 specials=<n> lowercase=<0|1> digits=<0|1>"   (Vocabulary)
//   "#mtlm-labels v1 unknown=<0|1>"  (LabelSet; with unknown=1 the first entry is the unknown
//                                     label and has id 0)
// Entries are non-empty, unique and contain no CR or LF. Saving is atomic (temporary file +
// rename); loading a malformed file throws FormatError(file, line, what).
#pragma once

#include "mtlm/core/batch.hpp"
#include "mtlm/core/config.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/data/text_io.hpp"
#include "mtlm/data/utf8.hpp"

#include <algorithm>
#include <concepts>
#include <filesystem>
#include <functional>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mtlm {

/// How tokens are normalised before counting and lookup. Lower-casing covers ASCII, Latin-1,
/// Latin Extended-A, Greek and Cyrillic (utf8::to_lower); digit normalisation maps every ASCII
/// digit to '0' ("1990" -> "0000"), so numbers share statistics without flooding the vocabulary.
struct Normalizer {
  bool lowercase = false;
  bool digits_to_zero = false;

  bool is_identity() const { return !lowercase && !digits_to_zero; }

  /// Throws FormatError when `token` is not well-formed UTF-8 and lower-casing is on.
  std::string operator()(std::string_view token) const {
    std::string out = lowercase ? utf8::to_lower(token) : std::string(token);
    if (digits_to_zero)
      for (char& c : out)
        if (c >= '0' && c <= '9') c = '0';
    return out;
  }
  bool operator==(const Normalizer&) const = default;
};

/// Hash that accepts std::string and std::string_view alike (lookups without a copy).
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

using StringIdMap = std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>>;

/// Raw token counts gathered from training data (before normalisation).
class TokenCounter {
 public:
  void add(std::string_view token, Index times = 1) {
    auto it = counts_.find(token);
    if (it == counts_.end()) it = counts_.emplace(std::string(token), 0).first;
    it->second += times;
  }
  /// Adds every token of a range of strings, or of a range of such ranges (sentences).
  template <std::ranges::input_range R>
  void add_all(const R& tokens) {
    for (const auto& t : tokens) {
      if constexpr (std::convertible_to<decltype(t), std::string_view>)
        add(std::string_view(t));
      else
        add_all(t);
    }
  }
  const std::unordered_map<std::string, Index, StringHash, std::equal_to<>>& counts() const {
    return counts_;
  }

 private:
  std::unordered_map<std::string, Index, StringHash, std::equal_to<>> counts_;
};

struct VocabOptions {
  Index min_count = 1;  ///< tokens seen fewer times (after normalisation) map to <unk>
  Index max_size = 0;   ///< keep at most this many non-special tokens (0: no limit)
  Normalizer normalizer;
  std::vector<std::string> extra_specials;  ///< e.g. {"<bos>", "<eos>"}: ids 2, 3, ...
};

namespace detail {

inline void check_entry(std::string_view entry, const char* what) {
  if (entry.empty()) throw Error(std::string("mtlm: empty ") + what);
  if (entry.find_first_of("\r\n") != std::string_view::npos)
    throw Error(std::string("mtlm: ") + what + " contains a line break");
}

/// Parses "key=value" where value is 0 or 1 (flags) or a non-negative integer.
inline std::optional<Index> header_value(std::string_view field, std::string_view key) {
  if (!field.starts_with(key) || field.size() <= key.size() || field[key.size()] != '=')
    return std::nullopt;
  field.remove_prefix(key.size() + 1);
  if (field.empty() || field.size() > 9) return std::nullopt;
  Index value = 0;
  for (char c : field) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

}  // namespace detail

class Vocabulary {
 public:
  static constexpr TokenId pad_id = 0;
  static constexpr TokenId unk_id = 1;
  static constexpr std::string_view pad_token = "<pad>";
  static constexpr std::string_view unk_token = "<unk>";

  /// Specials only (<pad>, <unk>, then options.extra_specials); grow it with add().
  explicit Vocabulary(const VocabOptions& options = {}) : normalizer_(options.normalizer) {
    add_special(pad_token);
    add_special(unk_token);
    for (const auto& s : options.extra_specials) add_special(s);
  }

  /// Builds from raw counts: normalise, merge, drop tokens below min_count, sort by count.
  static Vocabulary build(const TokenCounter& counter, const VocabOptions& options = {}) {
    Vocabulary vocab(options);
    std::unordered_map<std::string, Index, StringHash, std::equal_to<>> merged;
    for (const auto& [token, count] : counter.counts()) {
      if (vocab.index_.contains(token)) continue;  // specials occurring in the text
      merged[vocab.normalizer_(token)] += count;
    }
    std::vector<std::pair<std::string, Index>> entries;
    for (auto& [token, count] : merged) {
      if (count < options.min_count || vocab.index_.contains(token)) continue;
      detail::check_entry(token, "token");
      entries.emplace_back(token, count);
    }
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    if (options.max_size > 0 && static_cast<Index>(entries.size()) > options.max_size)
      entries.resize(static_cast<std::size_t>(options.max_size));
    for (auto& [token, count] : entries) vocab.insert(std::move(token), count);
    return vocab;
  }

  /// Builds from sentences (a range of ranges of strings) or a flat range of tokens.
  template <std::ranges::input_range R>
  static Vocabulary build(const R& tokens, const VocabOptions& options = {}) {
    TokenCounter counter;
    counter.add_all(tokens);
    return build(counter, options);
  }

  /// Adds a token (normalised) if absent; returns its id either way.
  TokenId add(std::string_view token) {
    detail::check_entry(token, "token");
    if (auto id = find(token)) return *id;
    return insert(normalizer_(token), 0);
  }

  /// Id of `token` after normalisation; <unk> when absent.
  TokenId id(std::string_view token) const { return find(token).value_or(unk_id); }

  /// Id of `token` after normalisation, or nullopt. Specials are matched as written.
  std::optional<TokenId> find(std::string_view token) const {
    if (auto it = index_.find(token); it != index_.end()) return it->second;
    if (normalizer_.is_identity() || !utf8::is_valid(token)) return std::nullopt;
    if (auto it = index_.find(normalizer_(token)); it != index_.end()) return it->second;
    return std::nullopt;
  }
  bool contains(std::string_view token) const { return find(token).has_value(); }

  /// Ids of a sequence of tokens (unknown ones -> <unk>).
  template <std::ranges::input_range R>
  std::vector<TokenId> ids(const R& tokens) const {
    std::vector<TokenId> out;
    if constexpr (std::ranges::sized_range<R>) out.reserve(std::ranges::size(tokens));
    for (const auto& t : tokens) out.push_back(id(std::string_view(t)));
    return out;
  }

  const std::string& token(TokenId id) const {
    check_id(id);
    return tokens_[static_cast<std::size_t>(id)];
  }
  /// Training count of a token (0 for specials, added and loaded tokens).
  Index count(TokenId id) const {
    check_id(id);
    return counts_[static_cast<std::size_t>(id)];
  }
  Index size() const { return static_cast<Index>(tokens_.size()); }
  Index special_count() const { return specials_; }
  bool is_special(TokenId id) const { return id >= 0 && id < specials_; }
  const std::vector<std::string>& tokens() const { return tokens_; }
  const Normalizer& normalizer() const { return normalizer_; }
  std::string normalize(std::string_view token) const { return normalizer_(token); }

  /// The text that save() writes: a header line, then one entry per line.
  std::string to_text() const {
    std::string out = "#mtlm-vocab v1 specials=" + std::to_string(specials_) +
                      " lowercase=" + (normalizer_.lowercase ? "1" : "0") +
                      " digits=" + (normalizer_.digits_to_zero ? "1" : "0") + "\n";
    for (const auto& t : tokens_) out.append(t).append("\n");
    return out;
  }
  void save(const std::filesystem::path& path) const { write_text_atomically(path, to_text()); }

  static Vocabulary load(const std::filesystem::path& path) {
    return from_lines(read_text_lines(path), path.string());
  }
  /// Parses what to_text() wrote; `source` names the text in errors.
  static Vocabulary from_text(std::string_view text, const std::string& source) {
    return from_lines(split_text_lines(text, source), source);
  }

 private:
  static Vocabulary from_lines(const std::vector<std::string>& lines, const std::string& name) {
    if (lines.empty()) throw FormatError(name, 0, "empty file, expected a '#mtlm-vocab v1' header");
    const auto fields = split_whitespace(lines[0]);
    std::optional<Index> specials, lowercase, digits;
    if (fields.size() == 5 && fields[0] == "#mtlm-vocab" && fields[1] == "v1") {
      specials = detail::header_value(fields[2], "specials");
      lowercase = detail::header_value(fields[3], "lowercase");
      digits = detail::header_value(fields[4], "digits");
    }
    if (!specials || !lowercase || !digits || *lowercase > 1 || *digits > 1 || *specials < 2)
      throw FormatError(name, 1,
                        "expected header '#mtlm-vocab v1 specials=<n> lowercase=<0|1> "
                        "digits=<0|1>' (n >= 2), got '" + lines[0] + "'");
    if (static_cast<Index>(lines.size()) - 1 < *specials)
      throw FormatError(name, lines.size(), "header promises " + std::to_string(*specials) +
                                                " specials but the file has " +
                                                std::to_string(lines.size() - 1) + " entries");
    if (lines[1] != pad_token || lines[2] != unk_token)
      throw FormatError(name, lines[1] != pad_token ? 2 : 3,
                        "the first two entries must be <pad> and <unk>");
    Vocabulary vocab;
    vocab.normalizer_ = Normalizer{*lowercase == 1, *digits == 1};
    for (std::size_t i = 3; i < lines.size(); ++i) {
      const std::string& entry = lines[i];
      if (entry.empty()) throw FormatError(name, i + 1, "empty entry");
      if (entry.find('\r') != std::string::npos) throw FormatError(name, i + 1, "CR inside an entry");
      if (vocab.index_.contains(entry))
        throw FormatError(name, i + 1, "duplicate entry '" + entry + "'");
      if (static_cast<Index>(i) <= *specials)
        vocab.add_special(entry);
      else
        vocab.insert(entry, 0);
    }
    return vocab;
  }

  void add_special(std::string_view s) {
    detail::check_entry(s, "special token");
    if (index_.contains(s)) throw Error("mtlm: duplicate special token '" + std::string(s) + "'");
    insert(std::string(s), 0);
    specials_ = size();
  }
  TokenId insert(std::string token, Index count) {
    const auto id = static_cast<TokenId>(tokens_.size());
    index_.emplace(token, id);
    tokens_.push_back(std::move(token));
    counts_.push_back(count);
    return id;
  }
  void check_id(TokenId id) const {
    if (id < 0 || id >= size())
      throw Error("mtlm: token id " + std::to_string(id) + " outside a vocabulary of " +
                  std::to_string(size()));
  }

  Normalizer normalizer_;
  std::vector<std::string> tokens_;
  std::vector<Index> counts_;
  StringIdMap index_;
  Index specials_ = 0;
};

/// The label inventory of a task (intents, BIO tags): ids 0..size()-1, no padding entry.
/// find() returns nullopt for a label it has never seen. id() returns the designated unknown
/// label's id when the set has one (use this for evaluation data whose labels are not all in
/// training, e.g. ATIS test intents), and throws mtlm::Error otherwise.
class LabelSet {
 public:
  LabelSet() = default;

  /// Labels in the given order (ids 0, 1, ...); with `unknown`, that label is prepended (id 0).
  explicit LabelSet(const std::vector<std::string>& labels,
                    std::optional<std::string> unknown = std::nullopt) {
    if (unknown) {
      add(*unknown);
      has_unknown_ = true;
    }
    for (const auto& l : labels) {
      if (index_.contains(l)) throw Error("mtlm: duplicate label '" + l + "'");
      add(l);
    }
  }

  /// The distinct labels of a range of strings, or of a range of label sequences, in byte
  /// order (so ids do not depend on the order of the data).
  template <std::ranges::input_range R>
  static LabelSet build(const R& observed, std::optional<std::string> unknown = std::nullopt) {
    TokenCounter counter;
    counter.add_all(observed);
    std::vector<std::string> labels;
    for (const auto& [label, count] : counter.counts())
      if (!unknown || label != *unknown) labels.push_back(label);
    std::sort(labels.begin(), labels.end());
    return LabelSet(labels, std::move(unknown));
  }

  /// Adds a label if absent; returns its id.
  TokenId add(std::string_view label) {
    detail::check_entry(label, "label");
    if (auto it = index_.find(label); it != index_.end()) return it->second;
    const auto id = static_cast<TokenId>(labels_.size());
    labels_.emplace_back(label);
    index_.emplace(std::string(label), id);
    return id;
  }

  std::optional<TokenId> find(std::string_view label) const {
    if (auto it = index_.find(label); it != index_.end()) return it->second;
    return std::nullopt;
  }
  bool contains(std::string_view label) const { return index_.contains(label); }

  /// Id of `label`; the unknown label's id when absent and the set has one; else throws Error.
  TokenId id(std::string_view label) const {
    if (auto found = find(label)) return *found;
    if (has_unknown_) return unknown_id();
    throw Error("mtlm: unknown label '" + std::string(label) + "' (the label set has " +
                std::to_string(size()) + " labels and no unknown entry)");
  }
  template <std::ranges::input_range R>
  std::vector<TokenId> ids(const R& labels) const {
    std::vector<TokenId> out;
    for (const auto& l : labels) out.push_back(id(std::string_view(l)));
    return out;
  }

  const std::string& label(TokenId id) const {
    if (id < 0 || id >= size())
      throw Error("mtlm: label id " + std::to_string(id) + " outside a label set of " +
                  std::to_string(size()));
    return labels_[static_cast<std::size_t>(id)];
  }
  /// Strings of a sequence of ids (for metrics that work on tag strings).
  template <std::ranges::input_range R>
  std::vector<std::string> labels(const R& ids) const {
    std::vector<std::string> out;
    for (auto i : ids) out.push_back(label(static_cast<TokenId>(i)));
    return out;
  }
  Index size() const { return static_cast<Index>(labels_.size()); }
  bool has_unknown() const { return has_unknown_; }
  /// Id of the unknown label (always 0); only meaningful when has_unknown().
  TokenId unknown_id() const { return 0; }
  const std::vector<std::string>& labels() const { return labels_; }

  /// The text that save() writes: a header line, then one label per line.
  std::string to_text() const {
    std::string out = std::string("#mtlm-labels v1 unknown=") + (has_unknown_ ? "1" : "0") + "\n";
    for (const auto& l : labels_) out.append(l).append("\n");
    return out;
  }
  void save(const std::filesystem::path& path) const { write_text_atomically(path, to_text()); }

  static LabelSet load(const std::filesystem::path& path) {
    return from_lines(read_text_lines(path), path.string());
  }
  /// Parses what to_text() wrote; `source` names the text in errors.
  static LabelSet from_text(std::string_view text, const std::string& source) {
    return from_lines(split_text_lines(text, source), source);
  }

 private:
  static LabelSet from_lines(const std::vector<std::string>& lines, const std::string& name) {
    if (lines.empty()) throw FormatError(name, 0, "empty file, expected a '#mtlm-labels v1' header");
    const auto fields = split_whitespace(lines[0]);
    std::optional<Index> unknown;
    if (fields.size() == 3 && fields[0] == "#mtlm-labels" && fields[1] == "v1")
      unknown = detail::header_value(fields[2], "unknown");
    if (!unknown || *unknown > 1)
      throw FormatError(name, 1, "expected header '#mtlm-labels v1 unknown=<0|1>', got '" +
                                     lines[0] + "'");
    if (*unknown == 1 && lines.size() < 2)
      throw FormatError(name, 1, "unknown=1 but the file has no entries");
    LabelSet set;
    set.has_unknown_ = *unknown == 1;
    for (std::size_t i = 1; i < lines.size(); ++i) {
      if (lines[i].empty()) throw FormatError(name, i + 1, "empty label");
      if (lines[i].find('\r') != std::string::npos)
        throw FormatError(name, i + 1, "CR inside a label");
      if (set.contains(lines[i]))
        throw FormatError(name, i + 1, "duplicate label '" + lines[i] + "'");
      set.add(lines[i]);
    }
    return set;
  }

  std::vector<std::string> labels_;
  StringIdMap index_;
  bool has_unknown_ = false;
};

}  // namespace mtlm
