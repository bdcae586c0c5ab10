//===- Utf8.h - UTF-8 helpers for the tokenizer (internal) ----------------===//
//
// Input may be any bytes, so every helper here treats a byte that does not
// start a valid UTF-8 sequence as a unit of its own instead of failing.
//
//===----------------------------------------------------------------------===//

#ifndef OPTRT_TOKENIZER_UTF8_H
#define OPTRT_TOKENIZER_UTF8_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace optrt::tok {

/// Length of the valid UTF-8 sequence at s[pos] (1-4), or 0 if the bytes
/// there are not a valid sequence (overlong, surrogate, > U+10FFFF,
/// truncated, stray continuation byte).
size_t validSequenceLength(std::string_view s, size_t pos);

/// Length of the unit at s[pos]: a valid sequence, else one byte.
inline size_t unitLength(std::string_view s, size_t pos) {
  size_t n = validSequenceLength(s, pos);
  return n ? n : 1;
}

/// Decodes the valid sequence of length len at s[pos].
uint32_t decodeCodePoint(std::string_view s, size_t pos, size_t len);

void appendCodePoint(std::string &out, uint32_t cp);

/// Unicode White_Space, as Rust's char::is_whitespace.
bool isUnicodeWhitespace(uint32_t cp);

/// Length of the longest prefix of s that does not end inside a UTF-8
/// sequence that is valid so far but incomplete. Invalid bytes count as
/// complete (they can never become valid).
size_t completePrefixLength(std::string_view s);

/// GPT-2 byte-level alphabet: each byte maps to one printable code point.
struct ByteLevelTables {
  std::string byteToUtf8[256];  // byte -> UTF-8 of its code point
  int16_t codePointToByte[324]; // inverse for code points < 324, else -1
  static const ByteLevelTables &get();
};

/// Maps each byte of s to its byte-level character.
std::string byteLevelEncode(std::string_view s);

} // namespace optrt::tok

#endif // OPTRT_TOKENIZER_UTF8_H
