// @brief Reader for tab-separated sentence classification files with a header row (GLUE
// layout, e.g. SST-2 "sentence<TAB>label"). Columns are found by header name, so the unlabelled
// GLUE test files ("index<TAB>sentence") read with the same code.
//
// Contract: returns one SequenceExample per data row: tokens = the text column split on ASCII
// whitespace (GLUE text is pre-tokenised; run raw text through tokenize() yourself), label =
// the label column trimmed (empty when label_column is empty), tags empty, line = the file line.
// Fields are separated by single tabs and never quoted. Blank lines at the end of the file are
// ignored. FormatError(file, line, what) for: a missing file, invalid UTF-8, no header, a
// header without the named columns or with duplicate names, a row with another field count than
// the header, a blank row, an empty sentence, an empty label.
#pragma once

#include "mtlm/core/error.hpp"
#include "mtlm/data/example.hpp"
#include "mtlm/data/text_io.hpp"

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mtlm {

struct TsvOptions {
  std::string text_column = "sentence";
  std::string label_column = "label";  ///< empty: the file has no labels
};

/// Splits on every tab (empty fields are kept: "a\t\tb" has three fields).
inline std::vector<std::string_view> split_tabs(std::string_view line) {
  std::vector<std::string_view> out;
  while (true) {
    const std::size_t tab = line.find('\t');
    out.push_back(line.substr(0, tab));
    if (tab == std::string_view::npos) return out;
    line.remove_prefix(tab + 1);
  }
}

inline std::vector<SequenceExample> read_tsv(const std::filesystem::path& path,
                                             const TsvOptions& options = {}) {
  const std::string name = path.string();
  auto lines = read_text_lines(path);
  while (!lines.empty() && trim(lines.back()).empty()) lines.pop_back();
  if (lines.empty()) throw FormatError(name, 1, "missing header line");

  const auto header = split_tabs(lines[0]);
  auto column = [&](const std::string& wanted) -> std::size_t {
    std::optional<std::size_t> found;
    for (std::size_t c = 0; c < header.size(); ++c) {
      if (trim(header[c]) != wanted) continue;
      if (found) throw FormatError(name, 1, "column '" + wanted + "' appears twice in the header");
      found = c;
    }
    if (!found)
      throw FormatError(name, 1, "no column '" + wanted + "' in the header '" + lines[0] + "'");
    return *found;
  };
  const std::size_t text_col = column(options.text_column);
  const bool labelled = !options.label_column.empty();
  const std::size_t label_col = labelled ? column(options.label_column) : 0;

  std::vector<SequenceExample> out;
  out.reserve(lines.size() - 1);
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const std::size_t line_no = i + 1;
    if (trim(lines[i]).empty()) throw FormatError(name, line_no, "blank line");
    const auto fields = split_tabs(lines[i]);
    if (fields.size() != header.size())
      throw FormatError(name, line_no, std::to_string(fields.size()) + " fields, the header has " +
                                           std::to_string(header.size()));
    SequenceExample e;
    e.line = line_no;
    e.tokens = split_whitespace(fields[text_col]);
    if (e.tokens.empty()) throw FormatError(name, line_no, "empty sentence");
    if (labelled) {
      e.label = trim(fields[label_col]);
      if (e.label.empty()) throw FormatError(name, line_no, "empty label");
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace mtlm
