// @brief Reader for CoNLL column files (CoNLL-2003: "WORD POS CHUNK NER" per line): one token
// per line, fields separated by spaces or tabs, a blank line between sentences. Document
// separators ("-DOCSTART- -X- -X- O") are not sentences and are skipped, together with the
// blank line that follows them.
//
// Contract: returns one ConllSentence per sentence: tokens (column 0) and tags[c][i] = column
// c + 1 of token i. Every token line must have the same number of fields: options.columns, or
// when that is 0 the count of the first token line. Consecutive blank (or whitespace-only)
// lines are one separator; a -DOCSTART- line inside a sentence ends that sentence. Wrong field
// counts, invalid UTF-8 and a missing file are FormatError(file, line, what); no token line is
// ever dropped.
#pragma once

#include "mtlm/core/config.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/data/example.hpp"
#include "mtlm/data/text_io.hpp"

#include <filesystem>
#include <string>
#include <vector>

namespace mtlm {

struct ConllSentence {
  std::vector<std::string> tokens;
  std::vector<std::vector<std::string>> tags;  ///< one entry per tag column, each tokens.size()
  std::size_t line = 0;                        ///< 1-based line of the first token
};

struct ConllOptions {
  Index columns = 0;          ///< fields per token line (token included); 0: as the first line
  bool skip_docstart = true;  ///< treat "-DOCSTART-" lines as document separators
};

/// Column indices into ConllSentence::tags for CoNLL-2003 files.
namespace conll2003 {
inline constexpr Index pos = 0;
inline constexpr Index chunk = 1;
inline constexpr Index ner = 2;
}  // namespace conll2003

inline std::vector<ConllSentence> read_conll(const std::filesystem::path& path,
                                             const ConllOptions& options = {}) {
  const std::string name = path.string();
  const auto lines = read_text_lines(path);
  std::vector<ConllSentence> out;
  ConllSentence current;
  Index columns = options.columns;
  std::size_t columns_line = 0;  // where the column count was fixed, for the error message
  if (columns < 0) throw Error("mtlm: read_conll: negative column count");

  auto finish = [&] {
    if (!current.tokens.empty()) out.push_back(std::move(current));
    current = ConllSentence{};
  };
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::size_t line_no = i + 1;
    const auto fields = split_whitespace(lines[i]);
    if (fields.empty()) {
      finish();
      continue;
    }
    if (options.skip_docstart && fields[0] == "-DOCSTART-") {
      finish();
      continue;
    }
    if (columns == 0) {
      columns = static_cast<Index>(fields.size());
      columns_line = line_no;
    }
    if (static_cast<Index>(fields.size()) != columns)
      throw FormatError(name, line_no,
                        std::to_string(fields.size()) + " fields, expected " +
                            std::to_string(columns) +
                            (columns_line ? " (as on line " + std::to_string(columns_line) + ")"
                                          : std::string()));
    if (current.tokens.empty()) {
      current.line = line_no;
      current.tags.resize(static_cast<std::size_t>(columns - 1));
    }
    current.tokens.push_back(fields[0]);
    for (std::size_t c = 1; c < fields.size(); ++c) current.tags[c - 1].push_back(fields[c]);
  }
  finish();
  return out;
}

/// One tag column of CoNLL sentences as SequenceExamples (tags = that column, no label), e.g.
/// to_sequence_examples(sentences, conll2003::ner).
inline std::vector<SequenceExample> to_sequence_examples(const std::vector<ConllSentence>& sentences,
                                                         Index tag_column) {
  std::vector<SequenceExample> out;
  out.reserve(sentences.size());
  for (const auto& s : sentences) {
    if (tag_column < 0 || tag_column >= static_cast<Index>(s.tags.size()))
      throw Error("mtlm: tag column " + std::to_string(tag_column) + " requested, sentence at line " +
                  std::to_string(s.line) + " has " + std::to_string(s.tags.size()) +
                  " tag columns");
    out.push_back({s.tokens, s.tags[static_cast<std::size_t>(tag_column)], std::string(), s.line});
  }
  return out;
}

}  // namespace mtlm
