// @brief A rule-based word tokenizer for raw user input (the demo's "type a sentence" path).
// Training corpora in mtlm's formats are already tokenised and are split on whitespace by the
// readers; this tokenizer produces tokens in the same style (punctuation on its own) from text
// that is not, working on code points so a multi-byte character is never cut.
//
// Rules, applied to each whitespace-separated chunk:
//  1. Whitespace separates tokens: ASCII blanks, NEL, NBSP, U+1680, U+2000..U+200B, U+2028,
//     U+2029, U+202F, U+205F, U+3000, U+FEFF; C0/C1 control characters are treated as blanks.
//  2. A chunk listed in `protected_tokens` is emitted whole ("st.", "a.m.").
//  3. Punctuation is its own token: ASCII punctuation, ¡ § « ¶ · » ¿, currency signs (¢..¥,
//     U+20A0..U+20CF), General Punctuation (U+2010..U+2027, U+2030..U+205E), CJK punctuation
//     (U+3001..U+3003, U+3008..U+3011, U+3014..U+301F). A run of the same punctuation
//     character is one token ("...", "--", "!!").
//  4. Kept inside a word: an apostrophe (' or U+2019) or hyphen (-, U+2010, U+2011) with word
//     characters on both sides ("don't", "o'clock", "christmas-tree", "covid-19"); and '.', ','
//     or ':' between two ASCII digits ("3.5", "1,000", "10:30").
//  5. A chunk that starts with an apostrophe followed by an English clitic (s, d, m, t, ll, re,
//     ve, any case) and then a non-word character keeps it as one token ("'s", "'ll"), matching
//     pre-tokenised corpora such as SST ("it 's").
//  6. Everything else (letters and digits of every script, other symbols, emoji) is word
//     material. Abbreviations are split ("e.g." -> "e.g" "."): list them in protected_tokens.
//
// Contract: input must be well-formed UTF-8, otherwise FormatError(source, line, "invalid UTF-8
// at byte N ..."). Token byte offsets refer to the input string.
#pragma once

#include "mtlm/core/error.hpp"
#include "mtlm/data/utf8.hpp"

#include <cstddef>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace mtlm {

struct TokenizerOptions {
  /// false: split on whitespace only (rule 1), for text that is already tokenised.
  bool split_punctuation = true;
  /// Chunks (between whitespace) that are never split, compared byte for byte.
  std::set<std::string, std::less<>> protected_tokens;
};

/// A token as a byte range [begin, end) of the input.
struct TokenSpan {
  std::size_t begin = 0;
  std::size_t end = 0;
  bool operator==(const TokenSpan&) const = default;
};

namespace detail {

inline bool is_blank_codepoint(char32_t c) {
  if (c <= 0x20 || (c >= 0x7F && c <= 0xA0)) return true;  // blanks, C0, DEL, C1, NEL, NBSP
  return c == 0x1680 || (c >= 0x2000 && c <= 0x200B) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

inline bool is_punctuation_codepoint(char32_t c) {
  if (c < 0x80) return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) ||
                       (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
  if (c < 0x100)
    return c == 0xA1 || (c >= 0xA2 && c <= 0xA5) || c == 0xA7 || c == 0xAB || c == 0xB6 ||
           c == 0xB7 || c == 0xBB || c == 0xBF;
  return (c >= 0x2010 && c <= 0x2027) || (c >= 0x2030 && c <= 0x205E) ||
         (c >= 0x20A0 && c <= 0x20CF) || (c >= 0x3001 && c <= 0x3003) ||
         (c >= 0x3008 && c <= 0x3011) || (c >= 0x3014 && c <= 0x301F);
}

inline bool is_apostrophe(char32_t c) { return c == U'\'' || c == 0x2019; }
inline bool is_hyphen(char32_t c) { return c == U'-' || c == 0x2010 || c == 0x2011; }
inline bool is_ascii_digit(char32_t c) { return c >= U'0' && c <= U'9'; }

struct CodepointAt {
  char32_t cp;
  std::size_t offset;  ///< byte offset of the code point in the input
};

/// Length (in code points) of an English clitic starting at cps[i] (just after an apostrophe)
/// and ending at a word boundary; 0 when there is none.
inline std::size_t clitic_length(const std::vector<CodepointAt>& cps, std::size_t i,
                                 std::size_t end) {
  auto lower = [&](std::size_t k) -> char32_t {
    const char32_t c = cps[k].cp;
    return (c >= U'A' && c <= U'Z') ? c + 0x20 : c;
  };
  auto is_word = [&](std::size_t k) {
    return !is_punctuation_codepoint(cps[k].cp) && !is_blank_codepoint(cps[k].cp);
  };
  for (std::u32string_view clitic : {U"ll", U"re", U"ve", U"s", U"d", U"m", U"t"}) {
    if (i + clitic.size() > end) continue;
    bool match = true;
    for (std::size_t k = 0; k < clitic.size() && match; ++k) match = lower(i + k) == clitic[k];
    if (match && (i + clitic.size() == end || !is_word(i + clitic.size()))) return clitic.size();
  }
  return 0;
}

}  // namespace detail

/// Tokenises `text` into byte ranges (see the rules at the top of this header).
inline std::vector<TokenSpan> tokenize_spans(std::string_view text,
                                             const TokenizerOptions& options = {},
                                             const std::string& source = "<input>",
                                             std::size_t line = 0) {
  using namespace detail;
  utf8::validate(text, source, line);
  std::vector<CodepointAt> cps;
  cps.reserve(text.size() + 1);
  for (std::size_t pos = 0; pos < text.size();) {
    const utf8::Decoded d = utf8::decode(text, pos);
    cps.push_back({d.codepoint, pos});
    pos += d.length;
  }
  const std::size_t n = cps.size();
  cps.push_back({0, text.size()});  // sentinel: offset of the end of the text
  auto offset = [&](std::size_t k) { return cps[k].offset; };
  auto is_word = [&](std::size_t k) {
    return !is_punctuation_codepoint(cps[k].cp) && !is_blank_codepoint(cps[k].cp);
  };

  std::vector<TokenSpan> out;
  std::size_t i = 0;
  while (i < n) {
    while (i < n && is_blank_codepoint(cps[i].cp)) ++i;
    if (i == n) break;
    const std::size_t chunk_begin = i;
    std::size_t chunk_end = i;
    while (chunk_end < n && !is_blank_codepoint(cps[chunk_end].cp)) ++chunk_end;
    const std::string_view chunk =
        text.substr(offset(chunk_begin), offset(chunk_end) - offset(chunk_begin));
    if (!options.split_punctuation || options.protected_tokens.contains(chunk)) {
      out.push_back({offset(chunk_begin), offset(chunk_end)});
      i = chunk_end;
      continue;
    }
    // Rule 4: punctuation at k joins the word around it.
    auto joins = [&](std::size_t k) {
      if (k == chunk_begin || k + 1 >= chunk_end) return false;
      const char32_t c = cps[k].cp;
      if (is_apostrophe(c) || is_hyphen(c)) return is_word(k - 1) && is_word(k + 1);
      if (c == U'.' || c == U',' || c == U':')
        return is_ascii_digit(cps[k - 1].cp) && is_ascii_digit(cps[k + 1].cp);
      return false;
    };
    while (i < chunk_end) {
      const char32_t c = cps[i].cp;
      if (is_word(i)) {
        std::size_t j = i + 1;
        while (j < chunk_end && (is_word(j) || joins(j))) ++j;
        out.push_back({offset(i), offset(j)});
        i = j;
      } else if (i == chunk_begin && is_apostrophe(c) && i + 1 < chunk_end &&
                 clitic_length(cps, i + 1, chunk_end) > 0) {
        const std::size_t j = i + 1 + clitic_length(cps, i + 1, chunk_end);
        out.push_back({offset(i), offset(j)});
        i = j;
      } else {
        std::size_t j = i + 1;
        while (j < chunk_end && cps[j].cp == c) ++j;
        out.push_back({offset(i), offset(j)});
        i = j;
      }
    }
  }
  return out;
}

/// Tokenises `text` into strings (see tokenize_spans).
inline std::vector<std::string> tokenize(std::string_view text,
                                         const TokenizerOptions& options = {},
                                         const std::string& source = "<input>",
                                         std::size_t line = 0) {
  std::vector<std::string> tokens;
  for (const TokenSpan& s : tokenize_spans(text, options, source, line))
    tokens.emplace_back(text.substr(s.begin, s.end - s.begin));
  return tokens;
}

}  // namespace mtlm
