// @brief Reader for the ATIS / SNIPS joint-NLU layout (Goo et al. 2018, JointBERT): a split
// folder with three line-aligned files, seq.in (tokens), seq.out (one BIO slot tag per token)
// and label (the intent; multi-intent labels such as "atis_flight#atis_airfare" are kept as
// one string).
//
// Contract: returns one SequenceExample per line (tokens, tags, label = intent, line). Tokens and
// tags are split on runs of ASCII whitespace; the intent is trimmed. Blank lines at the very end
// of the files are ignored. Everything else that is wrong is a FormatError(file, line, what): a
// missing file, invalid UTF-8, files with different line counts, an empty utterance, a token /
// tag count mismatch, an empty or whitespace-containing intent. No line is ever skipped.
#pragma once

#include "mtlm/core/error.hpp"
#include "mtlm/data/example.hpp"
#include "mtlm/data/text_io.hpp"

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

namespace mtlm {

struct AtisOptions {
  std::string tokens_file = "seq.in";
  std::string tags_file = "seq.out";  ///< empty: no slot tags
  std::string label_file = "label";   ///< empty: no intents
};

namespace detail {
inline void drop_trailing_blank_lines(std::vector<std::string>& lines) {
  while (!lines.empty() && trim(lines.back()).empty()) lines.pop_back();
}
}  // namespace detail

inline std::vector<SequenceExample> read_atis(const std::filesystem::path& folder,
                                              const AtisOptions& options = {}) {
  const std::string folder_name = folder.string();
  std::error_code ec;
  if (!std::filesystem::is_directory(folder, ec))
    throw FormatError(folder_name, 0, "no such directory (expected a split folder with " +
                                          options.tokens_file + ", " + options.tags_file +
                                          " and " + options.label_file + ")");
  const auto tokens_path = folder / options.tokens_file;
  auto token_lines = read_text_lines(tokens_path);
  detail::drop_trailing_blank_lines(token_lines);

  auto read_parallel = [&](const std::string& file) {
    const auto path = folder / file;
    auto lines = read_text_lines(path);
    detail::drop_trailing_blank_lines(lines);
    if (lines.size() != token_lines.size())
      throw FormatError(path.string(), std::min(lines.size(), token_lines.size()) + 1,
                        std::to_string(lines.size()) + " lines, but " + tokens_path.string() +
                            " has " + std::to_string(token_lines.size()));
    return lines;
  };
  const bool with_tags = !options.tags_file.empty();
  const bool with_labels = !options.label_file.empty();
  const auto tag_lines = with_tags ? read_parallel(options.tags_file) : std::vector<std::string>{};
  const auto label_lines =
      with_labels ? read_parallel(options.label_file) : std::vector<std::string>{};

  std::vector<SequenceExample> out;
  out.reserve(token_lines.size());
  for (std::size_t i = 0; i < token_lines.size(); ++i) {
    SequenceExample e;
    e.line = i + 1;
    e.tokens = split_whitespace(token_lines[i]);
    if (e.tokens.empty()) throw FormatError(tokens_path.string(), i + 1, "empty utterance");
    if (with_tags) {
      e.tags = split_whitespace(tag_lines[i]);
      if (e.tags.size() != e.tokens.size())
        throw FormatError((folder / options.tags_file).string(), i + 1,
                          std::to_string(e.tags.size()) + " tags for " +
                              std::to_string(e.tokens.size()) + " tokens");
    }
    if (with_labels) {
      const std::string_view label = trim(label_lines[i]);
      const std::string label_file = (folder / options.label_file).string();
      if (label.empty()) throw FormatError(label_file, i + 1, "empty label");
      if (split_whitespace(label).size() != 1)
        throw FormatError(label_file, i + 1, "label '" + std::string(label) +
                                                 "' contains whitespace");
      e.label = label;
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace mtlm
