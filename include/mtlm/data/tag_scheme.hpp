// @brief Conversions between the BIO (IOB2) and BIOES span encodings of token tags. BIOES marks
// an entity's last token (E-) and single-token entities (S-), so a tagger's labels say where an
// entity ends instead of leaving it to the next tag; NER taggers often train on BIOES and report
// on the corpus's own encoding. Both directions go through the entities conlleval's rules read
// (metrics::extract_spans), so a conversion never changes an entity-level score.
#pragma once

#include "mtlm/metrics/span_f1.hpp"

#include <span>
#include <string>
#include <vector>

namespace mtlm {

namespace detail {

template <class Mark>
std::vector<std::string> write_spans(std::span<const std::string> tags, Mark mark) {
  std::vector<std::string> out(tags.size(), "O");
  for (const metrics::Span& s : metrics::extract_spans(tags))
    for (Index t = s.begin; t < s.end; ++t) out[static_cast<std::size_t>(t)] = mark(s, t) + s.type;
  return out;
}

}  // namespace detail

/// Whether a tag set is BIOES: any tag starts with E- or S- (every BIOES-encoded entity has one).
inline bool is_bioes(std::span<const std::string> labels) {
  for (const std::string& l : labels)
    if (l.starts_with("E-") || l.starts_with("S-")) return true;
  return false;
}

/// The BIOES tags of the entities in `tags` (BIO, IOB1 or BIOES): B- I- ... E- for an entity of
/// several tokens, S- for one of a single token, O elsewhere.
inline std::vector<std::string> to_bioes(std::span<const std::string> tags) {
  return detail::write_spans(tags, [](const metrics::Span& s, Index t) -> std::string {
    if (s.end - s.begin == 1) return "S-";
    return t == s.begin ? "B-" : t + 1 == s.end ? "E-" : "I-";
  });
}

/// The BIO (IOB2) tags of the entities in `tags`: B- on each entity's first token, I- on the rest.
inline std::vector<std::string> to_bio(std::span<const std::string> tags) {
  return detail::write_spans(tags, [](const metrics::Span& s, Index t) -> std::string {
    return t == s.begin ? "B-" : "I-";
  });
}

}  // namespace mtlm
