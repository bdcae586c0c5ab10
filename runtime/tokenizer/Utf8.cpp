//===- Utf8.cpp - UTF-8 helpers for the tokenizer -------------------------===//

#include "runtime/tokenizer/Utf8.h"

namespace optrt::tok {

size_t validSequenceLength(std::string_view s, size_t pos) {
  const auto *p = reinterpret_cast<const unsigned char *>(s.data()) + pos;
  size_t avail = s.size() - pos;
  if (avail == 0)
    return 0;
  unsigned char b0 = p[0];
  if (b0 < 0x80)
    return 1;
  auto cont = [&](size_t i) { return i < avail && (p[i] & 0xC0) == 0x80; };
  // Ranges from the Unicode standard, table 3-7 (well-formed byte sequences).
  if (b0 >= 0xC2 && b0 <= 0xDF)
    return cont(1) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (avail < 2)
      return 0;
    unsigned char b1 = p[1];
    bool ok = b0 == 0xE0   ? (b1 >= 0xA0 && b1 <= 0xBF)
              : b0 == 0xED ? (b1 >= 0x80 && b1 <= 0x9F)
                           : (b1 & 0xC0) == 0x80;
    return ok && cont(2) ? 3 : 0;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (avail < 2)
      return 0;
    unsigned char b1 = p[1];
    bool ok = b0 == 0xF0   ? (b1 >= 0x90 && b1 <= 0xBF)
              : b0 == 0xF4 ? (b1 >= 0x80 && b1 <= 0x8F)
                           : (b1 & 0xC0) == 0x80;
    return ok && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

uint32_t decodeCodePoint(std::string_view s, size_t pos, size_t len) {
  const auto *p = reinterpret_cast<const unsigned char *>(s.data()) + pos;
  switch (len) {
  case 1:
    return p[0];
  case 2:
    return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
  case 3:
    return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
  default:
    return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) |
           ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
  }
}

void appendCodePoint(std::string &out, uint32_t cp) {
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

bool isUnicodeWhitespace(uint32_t cp) {
  switch (cp) {
  case 0x09:
  case 0x0A:
  case 0x0B:
  case 0x0C:
  case 0x0D:
  case 0x20:
  case 0x85:
  case 0xA0:
  case 0x1680:
  case 0x2028:
  case 0x2029:
  case 0x202F:
  case 0x205F:
  case 0x3000:
    return true;
  default:
    return cp >= 0x2000 && cp <= 0x200A;
  }
}

size_t completePrefixLength(std::string_view s) {
  // An incomplete sequence is at most 3 bytes long: look back for its lead.
  size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    size_t pos = n - back;
    auto b0 = static_cast<unsigned char>(s[pos]);
    if ((b0 & 0xC0) == 0x80)
      continue; // continuation byte: keep looking for the lead
    size_t need = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : b0 >= 0xC0 ? 2 : 1;
    if (need <= back)
      return n; // the sequence (valid or not) is complete in length
    // Incomplete only if what is there could still become a valid sequence.
    if (b0 < 0xC2 || b0 > 0xF4)
      return n;
    if (back >= 2) {
      auto b1 = static_cast<unsigned char>(s[pos + 1]);
      bool ok = b0 == 0xE0   ? (b1 >= 0xA0 && b1 <= 0xBF)
                : b0 == 0xED ? (b1 >= 0x80 && b1 <= 0x9F)
                : b0 == 0xF0 ? (b1 >= 0x90 && b1 <= 0xBF)
                : b0 == 0xF4 ? (b1 >= 0x80 && b1 <= 0x8F)
                             : true;
      if (!ok)
        return n;
    }
    return pos;
  }
  return n;
}

const ByteLevelTables &ByteLevelTables::get() {
  static const ByteLevelTables tables = [] {
    ByteLevelTables t;
    for (int16_t &v : t.codePointToByte)
      v = -1;
    // GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves,
    // the rest to 256, 257, ... in byte order.
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
                       (b >= 0xAE && b <= 0xFF);
      uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
      appendCodePoint(t.byteToUtf8[b], cp);
      t.codePointToByte[cp] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return tables;
}

std::string byteLevelEncode(std::string_view s) {
  const ByteLevelTables &t = ByteLevelTables::get();
  std::string out;
  out.reserve(s.size() * 2);
  for (char c : s)
    out += t.byteToUtf8[static_cast<unsigned char>(c)];
  return out;
}

} // namespace optrt::tok
