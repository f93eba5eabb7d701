// @brief Plain-text file helpers shared by the readers and by the vocabulary files: read a file
// as validated UTF-8 lines, split on whitespace, and replace a file atomically, so a crash while
// saving a model never leaves a half-written vocabulary next to good weights.
//
// Contract: read_text_lines accepts LF and CRLF line ends (a final line without a newline is
// still a line; the newline after the last line does not start another one) and drops a UTF-8
// byte-order mark at the start of the file. A missing file, a directory, or an ill-formed UTF-8
// line is a FormatError naming the file (and the line, 1-based).
#pragma once

#include "mtlm/core/atomic_file.hpp"
#include "mtlm/core/error.hpp"
#include "mtlm/data/utf8.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

namespace mtlm {

/// Splits `content` into UTF-8 text lines (see the contract above); `source` names it in errors.
inline std::vector<std::string> split_text_lines(std::string_view content, const std::string& source) {
  std::string_view rest(content);
  if (rest.starts_with("\xEF\xBB\xBF")) rest.remove_prefix(3);
  std::vector<std::string> lines;
  while (!rest.empty()) {
    const std::size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (auto issue = utf8::find_invalid(line))
      throw FormatError(source, lines.size() + 1,
                        "invalid UTF-8 at byte " + std::to_string(issue->offset) +
                            " of the line: " + issue->reason);
    lines.emplace_back(line);
  }
  return lines;
}

/// Reads `path` as UTF-8 text lines (see the contract above).
inline std::vector<std::string> read_text_lines(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw FormatError(name, 0, "no such file");
  if (!std::filesystem::is_regular_file(path, ec)) throw FormatError(name, 0, "not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(name, 0, "cannot open file for reading");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw FormatError(name, 0, "read error");
  return split_text_lines(content, name);
}

/// True for the ASCII blanks that separate pre-tokenised words (space, tab, CR, LF, VT, FF).
inline bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/// Splits on runs of ASCII whitespace; leading and trailing whitespace yield no empty fields.
/// This is the right split for pre-tokenised corpora (ATIS, CoNLL, SST); raw text goes through
/// the tokenizer instead.
inline std::vector<std::string> split_whitespace(std::string_view s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_ascii_space(s[i])) ++i;
    const std::size_t begin = i;
    while (i < s.size() && !is_ascii_space(s[i])) ++i;
    if (i > begin) out.emplace_back(s.substr(begin, i - begin));
  }
  return out;
}

/// `s` without leading and trailing ASCII whitespace.
inline std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ascii_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back())) s.remove_suffix(1);
  return s;
}

/// Replaces `path` with `content` atomically (see core/atomic_file.hpp).
inline void write_text_atomically(const std::filesystem::path& path, std::string_view content) {
  write_atomically(path, [&](std::ostream& out) {
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
  });
}

}  // namespace mtlm
