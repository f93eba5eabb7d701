// @brief UTF-8 validation, decoding and encoding. Every text mtlm reads is checked here first,
// so the tokenizer and the character features can walk code points without ever splitting a
// multi-byte sequence, and a bad byte is reported with its position instead of becoming a token.
//
// Contract: well-formed means RFC 3629 / Unicode Table 3-7: no overlong forms, no surrogates
// (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence. Offsets are byte offsets into
// the string that was checked (0-based).
#pragma once

#include "mtlm/core/error.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mtlm::utf8 {

/// One decoded code point and the number of bytes it occupied; length 0 means ill-formed.
struct Decoded {
  char32_t codepoint = 0;
  std::size_t length = 0;
};

/// Where and why a string is not well-formed UTF-8.
struct Issue {
  std::size_t offset = 0;  ///< byte offset of the first byte of the bad sequence
  std::string reason;      ///< e.g. "overlong encoding (bytes 0xc0 0xaf)"
};

namespace detail {

inline bool is_continuation(unsigned char b) { return (b & 0xC0u) == 0x80u; }

inline std::string hex_byte(unsigned char b) {
  constexpr char digits[] = "0123456789abcdef";
  return std::string("0x") + digits[b >> 4] + digits[b & 0xF];
}

inline std::string hex_bytes(std::string_view s, std::size_t pos, std::size_t count) {
  std::string out;
  for (std::size_t i = pos; i < pos + count && i < s.size(); ++i) {
    if (!out.empty()) out += ' ';
    out += hex_byte(static_cast<unsigned char>(s[i]));
  }
  return out;
}

/// Decodes at `pos`; on failure fills `reason` (when given) and returns length 0.
inline Decoded decode_checked(std::string_view s, std::size_t pos, std::string* reason) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(pos);
  if (lead < 0x80) return {lead, 1};
  auto fail = [&](const char* why, std::size_t count) {
    if (reason) *reason = std::string(why) + " (" + (count == 1 ? "byte " : "bytes ") +
                          hex_bytes(s, pos, count) + ")";
    return Decoded{0, 0};
  };
  if (is_continuation(lead)) return fail("unexpected continuation byte", 1);
  if (lead == 0xC0 || lead == 0xC1) return fail("overlong encoding", 1);
  if (lead > 0xF4) return fail("invalid lead byte", 1);
  const std::size_t length = lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
  // The first continuation byte carries the range restrictions of Table 3-7.
  unsigned char low = 0x80, high = 0xBF;
  if (lead == 0xE0) low = 0xA0;
  if (lead == 0xED) high = 0x9F;
  if (lead == 0xF0) low = 0x90;
  if (lead == 0xF4) high = 0x8F;
  for (std::size_t k = 1; k < length; ++k) {
    if (pos + k >= s.size()) return fail("truncated sequence at end of text", k);
    const unsigned char b = byte(pos + k);
    if (!is_continuation(b)) return fail("truncated sequence", k + 1);
    if (k == 1 && (b < low || b > high)) {
      if (lead == 0xED) return fail("UTF-16 surrogate", 2);
      if (lead == 0xF4) return fail("code point above U+10FFFF", 2);
      return fail("overlong encoding", 2);
    }
  }
  char32_t cp = lead & (length == 2 ? 0x1Fu : length == 3 ? 0x0Fu : 0x07u);
  for (std::size_t k = 1; k < length; ++k) cp = (cp << 6) | (byte(pos + k) & 0x3Fu);
  return {cp, length};
}

}  // namespace detail

/// Decodes the code point starting at byte `pos` (< s.size()); length 0 when ill-formed there.
inline Decoded decode(std::string_view s, std::size_t pos) {
  return detail::decode_checked(s, pos, nullptr);
}

/// The first ill-formed sequence in `s`, or nullopt when all of `s` is well-formed UTF-8.
inline std::optional<Issue> find_invalid(std::string_view s) {
  std::size_t pos = 0;
  std::string reason;
  while (pos < s.size()) {
    if (static_cast<unsigned char>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const Decoded d = detail::decode_checked(s, pos, &reason);
    if (d.length == 0) return Issue{pos, reason};
    pos += d.length;
  }
  return std::nullopt;
}

inline bool is_valid(std::string_view s) { return !find_invalid(s).has_value(); }

/// Throws FormatError(source, line, ...) naming the byte offset when `s` is not well-formed.
inline void validate(std::string_view s, const std::string& source = "<text>",
                     std::size_t line = 0) {
  if (auto issue = find_invalid(s))
    throw FormatError(source, line,
                      "invalid UTF-8 at byte " + std::to_string(issue->offset) + ": " +
                          issue->reason);
}

/// Appends the encoding of `cp`; a surrogate or value above U+10FFFF is encoded as U+FFFD.
inline void append(std::string& out, char32_t cp) {
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) cp = 0xFFFD;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

inline std::string encode(char32_t cp) {
  std::string out;
  append(out, cp);
  return out;
}

/// The code points of `s`; throws FormatError (with `source`) when `s` is ill-formed.
inline std::vector<char32_t> codepoints(std::string_view s, const std::string& source = "<text>") {
  validate(s, source);
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (std::size_t pos = 0; pos < s.size();) {
    const Decoded d = decode(s, pos);
    out.push_back(d.codepoint);
    pos += d.length;
  }
  return out;
}

/// Number of code points in `s`; throws FormatError when `s` is ill-formed.
inline std::size_t length(std::string_view s) {
  validate(s);
  std::size_t n = 0;
  for (unsigned char b : s) n += !detail::is_continuation(b);
  return n;
}

/// Simple lower-case mapping (Unicode's one-to-one mapping) for ASCII, Latin-1, Latin
/// Extended-A, Greek and Cyrillic capitals; every other code point maps to itself. A full
/// Unicode case table would be a dependency; these blocks cover the datasets mtlm targets.
inline char32_t to_lower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 0x20 : c;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 0x20;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x130) return 'i';
    if (c == 0x178) return 0xFF;
    if ((c <= 0x12F) || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177))
      return (c % 2 == 0) ? c + 1 : c;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 1) ? c + 1 : c;
    return c;
  }
  if (c >= 0x386 && c <= 0x3AB) {
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 0x25;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 0x3F;
    if (c >= 0x391 && c != 0x3A2) return c + 0x20;
    return c;
  }
  if (c >= 0x400 && c <= 0x40F) return c + 0x50;
  if (c >= 0x410 && c <= 0x42F) return c + 0x20;
  return c;
}

/// `s` with to_lower applied to every code point; throws FormatError when `s` is ill-formed.
inline std::string to_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : codepoints(s)) append(out, to_lower(cp));
  return out;
}

}  // namespace mtlm::utf8
