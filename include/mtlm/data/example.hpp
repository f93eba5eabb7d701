// @brief The example type the readers produce: one sentence with optional per-token tags and an
// optional sentence label. One plain struct serves joint intent + slot data (ATIS, SNIPS),
// sentence classification (SST-2) and tagging (a CoNLL column), so the code after the reader
// (vocabularies, batching, metrics) is written once.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace mtlm {

struct SequenceExample {
  std::vector<std::string> tokens;  ///< never empty
  std::vector<std::string> tags;    ///< one per token, or empty when the format has no tags
  std::string label;                ///< sentence label (intent, sentiment), or empty
  std::size_t line = 0;             ///< 1-based line of the example in its (first) source file
};

/// All tokens (or tags) of a data set, as the sentences-of-tokens ranges that
/// Vocabulary::build, LabelSet::build and CharVocabulary::build take.
inline std::vector<std::vector<std::string>> tokens_of(const std::vector<SequenceExample>& data) {
  std::vector<std::vector<std::string>> out;
  out.reserve(data.size());
  for (const auto& e : data) out.push_back(e.tokens);
  return out;
}
inline std::vector<std::vector<std::string>> tags_of(const std::vector<SequenceExample>& data) {
  std::vector<std::vector<std::string>> out;
  out.reserve(data.size());
  for (const auto& e : data) out.push_back(e.tags);
  return out;
}
inline std::vector<std::string> labels_of(const std::vector<SequenceExample>& data) {
  std::vector<std::string> out;
  out.reserve(data.size());
  for (const auto& e : data) out.push_back(e.label);
  return out;
}

}  // namespace mtlm
