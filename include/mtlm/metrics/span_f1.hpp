// @brief Entity-level (span) precision / recall / F1 for BIO (IOB2) and BIOES tag sequences,
// computed as conlleval does: a predicted entity counts only if its type and both boundaries
// match a gold entity. Token-level tag accuracy overstates tagging quality; this is the number
// NER and slot-filling papers report.
//
// Chunk rules (conlleval's, as ported to Python by seqeval, whose default mode is this one and
// which adds E-/S- for BIOES). A tag is a prefix character and a type ("B-fromloc.city_name":
// prefix B, type "fromloc.city_name"; "O" has type "_"). Between consecutive tags
// (prev, cur), an entity ends before cur when: prev is E or S; prev is B or I and cur is B, S or
// O; or prev is not O or '.' and the types differ. An entity starts at cur when: cur is B or S;
// (prev, cur) is (E, E), (E, I), (S, E), (S, I), (O, E) or (O, I); or cur is not O or '.' and
// the types differ. Hence I-X after O (or at the start) starts an entity, I-X after B-Y starts a
// new one, B-X B-X are two entities, and an entity at the end of a sentence is closed there. For
// IOB2 input this is exactly conlleval; tags outside B/I/E/S/O are treated exactly as seqeval
// treats them. Sentences are evaluated as one stream with an "O" between them (as both tools
// do), so results match seqeval's f1_score(y_true, y_pred) etc. to the last bit of logic.
#pragma once

#include "mtlm/core/config.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/metrics/scores.hpp"

#include <algorithm>
#include <functional>
#include <iterator>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace mtlm::metrics {

/// An entity: its type and the token range [begin, end).
struct Span {
  std::string type;
  Index begin = 0;
  Index end = 0;
  auto operator<=>(const Span&) const = default;
};

namespace detail {

/// The conlleval state machine; feed tags one by one with their stream position.
class ChunkDecoder {
 public:
  void push(std::string_view tag, Index position, std::vector<Span>& out) {
    if (tag.empty()) throw Error("mtlm: span_f1: empty tag");
    // The prefix is the first character; compare it as seqeval compares Python characters (a
    // non-ASCII first character equals none of B I E S O '.', which 0 reproduces).
    const auto lead = static_cast<unsigned char>(tag[0]);
    const char prefix = lead < 0x80 ? static_cast<char>(lead) : '\0';
    std::size_t first_length = 1;
    if (lead >= 0xF0) first_length = 4;
    else if (lead >= 0xE0) first_length = 3;
    else if (lead >= 0xC0) first_length = 2;
    std::string_view rest = tag.substr(std::min(first_length, tag.size()));
    if (const std::size_t dash = rest.find('-'); dash != std::string_view::npos)
      rest.remove_prefix(dash + 1);
    const std::string type = rest.empty() ? std::string("_") : std::string(rest);

    if (ends(prev_prefix_, prefix, prev_type_, type))
      out.push_back({prev_type_, begin_, position});
    if (starts(prev_prefix_, prefix, prev_type_, type)) begin_ = position;
    prev_prefix_ = prefix;
    prev_type_ = type;
  }

 private:
  static bool ends(char prev, char cur, const std::string& prev_type, const std::string& type) {
    if (prev == 'E' || prev == 'S') return true;
    if ((prev == 'B' || prev == 'I') && (cur == 'B' || cur == 'S' || cur == 'O')) return true;
    return prev != 'O' && prev != '.' && prev_type != type;
  }
  static bool starts(char prev, char cur, const std::string& prev_type, const std::string& type) {
    if (cur == 'B' || cur == 'S') return true;
    if ((prev == 'E' || prev == 'S' || prev == 'O') && (cur == 'E' || cur == 'I')) return true;
    return cur != 'O' && cur != '.' && prev_type != type;
  }

  char prev_prefix_ = 'O';
  std::string prev_type_;  // "" before the first tag, as seqeval
  Index begin_ = 0;
};

}  // namespace detail

/// The entities of one tag sequence, positions relative to it.
inline std::vector<Span> extract_spans(std::span<const std::string> tags) {
  detail::ChunkDecoder decoder;
  std::vector<Span> spans;
  for (std::size_t i = 0; i < tags.size(); ++i)
    decoder.push(tags[i], static_cast<Index>(i), spans);
  decoder.push("O", static_cast<Index>(tags.size()), spans);
  return spans;
}

struct SpanScores {
  Scores overall;                                     ///< micro over all entity types
  std::map<std::string, Scores, std::less<>> per_type;  ///< types seen in gold or predicted
};

/// Accumulates gold and predicted entities over sentences; result() scores them.
class SpanF1 {
 public:
  /// One sentence; gold and predicted must have the same length (else ShapeError).
  void add(std::span<const std::string> gold, std::span<const std::string> predicted) {
    if (gold.size() != predicted.size())
      throw ShapeError("mtlm: span_f1: sentence " + std::to_string(sentences_) + " has " +
                       std::to_string(gold.size()) + " gold tags but " +
                       std::to_string(predicted.size()) + " predicted tags");
    for (std::size_t i = 0; i < gold.size(); ++i) {
      gold_decoder_.push(gold[i], offset_ + static_cast<Index>(i), gold_);
      predicted_decoder_.push(predicted[i], offset_ + static_cast<Index>(i), predicted_);
    }
    offset_ += static_cast<Index>(gold.size());
    gold_decoder_.push("O", offset_, gold_);
    predicted_decoder_.push("O", offset_, predicted_);
    ++offset_;
    ++sentences_;
  }

  SpanScores result() const {
    std::vector<Span> gold = gold_, predicted = predicted_;
    std::sort(gold.begin(), gold.end());
    std::sort(predicted.begin(), predicted.end());
    std::map<std::string, std::tuple<Index, Index, Index>, std::less<>> counts;  // tp, pred, gold
    for (const Span& s : gold) ++std::get<2>(counts[s.type]);
    for (const Span& s : predicted) ++std::get<1>(counts[s.type]);
    std::vector<Span> matched;
    std::set_intersection(gold.begin(), gold.end(), predicted.begin(), predicted.end(),
                          std::back_inserter(matched));
    for (const Span& s : matched) ++std::get<0>(counts[s.type]);
    SpanScores out;
    Index tp = 0, pred = 0, support = 0;
    for (const auto& [type, c] : counts) {
      out.per_type[type] = scores_from_counts(std::get<0>(c), std::get<1>(c), std::get<2>(c));
      tp += std::get<0>(c);
      pred += std::get<1>(c);
      support += std::get<2>(c);
    }
    out.overall = scores_from_counts(tp, pred, support);
    return out;
  }

  Index sentences() const { return sentences_; }
  void reset() { *this = SpanF1{}; }

 private:
  detail::ChunkDecoder gold_decoder_, predicted_decoder_;
  std::vector<Span> gold_, predicted_;  // positions in the stream of all sentences
  Index offset_ = 0;
  Index sentences_ = 0;
};

/// Span scores of whole data sets (one tag sequence per sentence).
inline SpanScores span_f1(std::span<const std::vector<std::string>> gold,
                          std::span<const std::vector<std::string>> predicted) {
  if (gold.size() != predicted.size())
    throw ShapeError("mtlm: span_f1: " + std::to_string(gold.size()) + " gold sentences vs " +
                     std::to_string(predicted.size()) + " predicted");
  SpanF1 f1;
  for (std::size_t i = 0; i < gold.size(); ++i) f1.add(gold[i], predicted[i]);
  return f1.result();
}

}  // namespace mtlm::metrics
