//===- Jinja.cpp - The Jinja2 subset that chat templates use --------------===//
//
// Three parts: a lexer that applies Jinja's whitespace rules (trim_blocks,
// lstrip_blocks, `-` and `+`) while it splits the source into text and tag
// tokens, a recursive-descent parser with jinja2's operator precedence, and
// a tree-walking renderer over Python-like values.
//
//===----------------------------------------------------------------------===//

#include "runtime/chat/Jinja.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <set>
#include <unordered_map>

namespace optrt {
namespace jinja {

//===----------------------------------------------------------------------===//
// Values
//===----------------------------------------------------------------------===//

Value Value::undefined(std::string hint) {
  Value v;
  if (!hint.empty())
    v.data = std::make_shared<const std::string>(std::move(hint));
  return v;
}

const std::string &Value::undefinedHint() const {
  static const std::string none;
  const StringPtr *hint = std::get_if<StringPtr>(&data);
  return hint ? **hint : none;
}

Value Value::none() {
  Value v;
  v.k = Kind::None;
  return v;
}

Value::Value(bool b) : k(Kind::Bool), data(b) {}
Value::Value(int64_t i) : k(Kind::Int), data(i) {}
Value::Value(double f) : k(Kind::Float), data(f) {}
Value::Value(std::string s)
    : k(Kind::String), data(std::make_shared<const std::string>(std::move(s))) {
}
Value::Value(List items)
    : k(Kind::List), data(std::make_shared<const List>(std::move(items))) {}
Value::Value(Dict dict)
    : k(Kind::Dict), data(std::make_shared<Dict>(std::move(dict))) {}

Value Value::function(std::shared_ptr<const Function> fn) {
  Value v;
  v.k = Kind::Function;
  v.data = std::move(fn);
  return v;
}

Value Value::makeNamespace(Dict dict) {
  Value v(std::move(dict));
  v.ns = true;
  return v;
}

bool Value::truthy() const {
  switch (k) {
  case Kind::Undefined:
  case Kind::None:
    return false;
  case Kind::Bool:
    return asBool();
  case Kind::Int:
    return asInt() != 0;
  case Kind::Float:
    return asFloat() != 0.0;
  case Kind::String:
    return !asString().empty();
  case Kind::List:
    return !asList().empty();
  case Kind::Dict:
    return ns || asDict().size() != 0;
  case Kind::Function:
    return true;
  }
  return false;
}

const Value *Dict::find(std::string_view key) const {
  for (const auto &entry : entries)
    if (entry.first == key)
      return &entry.second;
  return nullptr;
}

void Dict::set(const std::string &key, Value value) {
  for (auto &entry : entries) {
    if (entry.first == key) {
      entry.second = std::move(value);
      return;
    }
  }
  entries.emplace_back(key, std::move(value));
}

namespace {

//===----------------------------------------------------------------------===//
// Strings: UTF-8 code points, Python's formatting
//===----------------------------------------------------------------------===//

/// Length of the UTF-8 sequence starting at s[i]; an invalid byte counts as
/// one code point of its own.
size_t utf8Length(std::string_view s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80         ? 1
             : (c >> 5) == 6  ? 2
             : (c >> 4) == 14 ? 3
             : (c >> 3) == 30 ? 4
                              : 1;
  if (i + n > s.size())
    return 1;
  for (size_t j = 1; j < n; ++j)
    if ((static_cast<unsigned char>(s[i + j]) & 0xC0) != 0x80)
      return 1;
  return n;
}

/// The code points of `s`, each as its bytes.
std::vector<std::string_view> codePoints(std::string_view s) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8Length(s, i);
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

uint32_t decodeCodePoint(std::string_view c) {
  unsigned char b0 = static_cast<unsigned char>(c[0]);
  if (c.size() == 1)
    return b0;
  uint32_t cp = b0 & (0xFF >> (c.size() + 1));
  for (size_t i = 1; i < c.size(); ++i)
    cp = (cp << 6) | (static_cast<unsigned char>(c[i]) & 0x3F);
  return cp;
}

void appendUtf8(std::string &out, uint32_t cp) {
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

/// Python's str.isspace() for one code point.
bool isPythonSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) ||
         cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/// Python's str.strip([chars]), lstrip and rstrip.
std::string pythonStrip(const std::string &s, const Value *chars, bool left,
                        bool right) {
  std::vector<std::string_view> cps = codePoints(s);
  // The views of `set` point into charsText: it must outlive them.
  std::string charsText;
  std::vector<std::string_view> set;
  bool whitespace = !chars || chars->isNone();
  if (!whitespace) {
    charsText = toString(*chars);
    set = codePoints(charsText);
  }
  auto strip = [&](std::string_view c) {
    if (whitespace)
      return isPythonSpace(decodeCodePoint(c));
    return std::find(set.begin(), set.end(), c) != set.end();
  };
  size_t begin = 0, end = cps.size();
  while (left && begin < end && strip(cps[begin]))
    ++begin;
  while (right && end > begin && strip(cps[end - 1]))
    --end;
  std::string out;
  for (size_t i = begin; i < end; ++i)
    out += cps[i];
  return out;
}

/// Case mapping for the scripts chat text mostly uses: ASCII, Latin-1,
/// Latin Extended-A, Greek and Cyrillic. Other code points are uncased.
uint32_t toUpperCp(uint32_t c) {
  if (c >= 'a' && c <= 'z')
    return c - 32;
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7) ||
      (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) || (c >= 0x430 && c <= 0x44F))
    return c - 32;
  if (c == 0x3C2) // final sigma
    return 0x3A3;
  if (c >= 0x450 && c <= 0x45F)
    return c - 80;
  if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 &&
      c != 0x149 && c != 0x17F) {
    bool evenUpper = (c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177);
    if (evenUpper ? (c % 2 == 1) : (c % 2 == 0 && c != 0x178))
      return c - 1;
  }
  return c;
}

uint32_t toLowerCp(uint32_t c) {
  if (c >= 'A' && c <= 'Z')
    return c + 32;
  if ((c >= 0xC0 && c <= 0xDE && c != 0xD7) ||
      (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) || (c >= 0x410 && c <= 0x42F))
    return c + 32;
  if (c >= 0x400 && c <= 0x40F)
    return c + 80;
  if (c == 0x178)
    return 0xFF;
  if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 &&
      c != 0x149 && c != 0x17F) {
    bool evenUpper = (c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177);
    if (evenUpper ? (c % 2 == 0) : (c % 2 == 1))
      return c + 1;
  }
  return c;
}

bool isCased(uint32_t c) { return toUpperCp(c) != c || toLowerCp(c) != c; }

enum class Case { Upper, Lower, Title, Capitalize };

/// Python's str.upper(), lower(), title() and capitalize() over the code
/// points toUpperCp and toLowerCp know.
std::string changeCase(const std::string &s, Case how) {
  std::string out;
  bool previousIsCased = false, first = true;
  for (std::string_view c : codePoints(s)) {
    uint32_t cp = decodeCodePoint(c);
    uint32_t mapped = cp;
    switch (how) {
    case Case::Upper:
      mapped = toUpperCp(cp);
      break;
    case Case::Lower:
      mapped = toLowerCp(cp);
      break;
    case Case::Title:
      mapped = previousIsCased ? toLowerCp(cp) : toUpperCp(cp);
      break;
    case Case::Capitalize:
      mapped = first ? toUpperCp(cp) : toLowerCp(cp);
      break;
    }
    previousIsCased = isCased(cp);
    first = false;
    if (mapped == cp)
      out += c;
    else
      appendUtf8(out, mapped);
  }
  return out;
}

/// Python's repr() of a float: the shortest digits that round-trip, fixed
/// notation for exponents in [-4, 16), else scientific ("1e+16").
std::string formatFloat(double d) {
  if (std::isnan(d))
    return "nan";
  if (std::isinf(d))
    return d < 0 ? "-inf" : "inf";
  char buf[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*e", precision - 1, d);
    if (std::strtod(buf, nullptr) == d)
      break;
  }
  std::string text(buf);
  bool negative = text[0] == '-';
  if (negative)
    text.erase(0, 1);
  size_t e = text.find('e');
  int exponent = std::atoi(text.c_str() + e + 1);
  std::string digits;
  for (size_t i = 0; i < e; ++i)
    if (text[i] != '.')
      digits += text[i];
  while (digits.size() > 1 && digits.back() == '0')
    digits.pop_back();
  std::string out = negative ? "-" : "";
  if (exponent < -4 || exponent >= 16) {
    out += digits[0];
    if (digits.size() > 1)
      out += "." + digits.substr(1);
    char exp[16];
    std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+',
                  std::abs(exponent));
    return out + exp;
  }
  if (exponent < 0)
    return out + "0." + std::string(-exponent - 1, '0') + digits;
  if (digits.size() <= static_cast<size_t>(exponent) + 1)
    return out + digits + std::string(exponent + 1 - digits.size(), '0') + ".0";
  return out + digits.substr(0, exponent + 1) + "." +
         digits.substr(exponent + 1);
}

std::string reprString(const std::string &s) {
  bool hasSingle = s.find('\'') != std::string::npos;
  bool hasDouble = s.find('"') != std::string::npos;
  char quote = hasSingle && !hasDouble ? '"' : '\'';
  std::string out(1, quote);
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == quote || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7F) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", u);
      out += hex;
    } else {
      out += c;
    }
  }
  return out + quote;
}

std::string htmlEscape(const std::string &s) {
  std::string out;
  for (char c : s) {
    switch (c) {
    case '&':
      out += "&amp;";
      break;
    case '<':
      out += "&lt;";
      break;
    case '>':
      out += "&gt;";
      break;
    case '"':
      out += "&#34;";
      break;
    case '\'':
      out += "&#39;";
      break;
    default:
      out += c;
    }
  }
  return out;
}

void jsonString(const std::string &s, bool ensureAscii, std::string &out) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = utf8Length(s, i);
    char hex[16];
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\b') {
      out += "\\b";
    } else if (c == '\f') {
      out += "\\f";
    } else if (c < 0x20 || (ensureAscii && c == 0x7F)) {
      std::snprintf(hex, sizeof(hex), "\\u%04x", c);
      out += hex;
    } else if (ensureAscii && c >= 0x80) {
      uint32_t cp = decodeCodePoint(std::string_view(s).substr(i, n));
      if (cp >= 0x10000) {
        cp -= 0x10000;
        std::snprintf(hex, sizeof(hex), "\\u%04x\\u%04x", 0xD800 + (cp >> 10),
                      0xDC00 + (cp & 0x3FF));
      } else {
        std::snprintf(hex, sizeof(hex), "\\u%04x", cp);
      }
      out += hex;
    } else {
      out.append(s, i, n);
    }
    i += n;
  }
  out += '"';
}

bool jsonValue(const Value &v, std::string &out, std::string &error,
               const JsonStyle &style, int level) {
  auto newline = [&](int depth) {
    if (style.indent >= 0)
      out += "\n" + std::string(static_cast<size_t>(style.indent) * depth, ' ');
  };
  const std::string &itemSeparator = !style.itemSeparator.empty()
                                         ? style.itemSeparator
                                     : style.indent >= 0 ? std::string(",")
                                                         : std::string(", ");
  const std::string &keySeparator =
      style.keySeparator.empty() ? std::string(": ") : style.keySeparator;
  bool ensureAscii = style.ensureAscii;
  switch (v.kind()) {
  case Value::Kind::Undefined:
    error = "Object of type Undefined is not JSON serializable";
    return false;
  case Value::Kind::Function:
    error = "Object of type function is not JSON serializable";
    return false;
  case Value::Kind::None:
    out += "null";
    return true;
  case Value::Kind::Bool:
    out += v.asBool() ? "true" : "false";
    return true;
  case Value::Kind::Int:
    out += std::to_string(v.asInt());
    return true;
  case Value::Kind::Float:
    if (std::isnan(v.asFloat()))
      out += "NaN";
    else if (std::isinf(v.asFloat()))
      out += v.asFloat() < 0 ? "-Infinity" : "Infinity";
    else
      out += formatFloat(v.asFloat());
    return true;
  case Value::Kind::String:
    jsonString(v.asString(), ensureAscii, out);
    return true;
  case Value::Kind::List: {
    const List &items = v.asList();
    if (items.empty()) {
      out += "[]";
      return true;
    }
    out += '[';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i)
        out += itemSeparator;
      newline(level + 1);
      if (!jsonValue(items[i], out, error, style, level + 1))
        return false;
    }
    newline(level);
    out += ']';
    return true;
  }
  case Value::Kind::Dict: {
    std::vector<const std::pair<std::string, Value> *> entries;
    for (const auto &entry : v.asDict().items())
      entries.push_back(&entry);
    if (entries.empty()) {
      out += "{}";
      return true;
    }
    if (style.sortKeys)
      std::stable_sort(entries.begin(), entries.end(),
                       [](auto *a, auto *b) { return a->first < b->first; });
    out += '{';
    for (size_t i = 0; i < entries.size(); ++i) {
      if (i)
        out += itemSeparator;
      newline(level + 1);
      jsonString(entries[i]->first, ensureAscii, out);
      out += keySeparator;
      if (!jsonValue(entries[i]->second, out, error, style, level + 1))
        return false;
    }
    newline(level);
    out += '}';
    return true;
  }
  }
  return false;
}

} // namespace

std::string toRepr(const Value &v) {
  switch (v.kind()) {
  case Value::Kind::String:
    return reprString(v.asString());
  case Value::Kind::List: {
    std::string out = "[";
    for (size_t i = 0; i < v.asList().size(); ++i)
      out += (i ? ", " : "") + toRepr(v.asList()[i]);
    return out + "]";
  }
  case Value::Kind::Dict: {
    if (v.isNamespace())
      return "<Namespace>";
    std::string out = "{";
    bool first = true;
    for (const auto &[key, value] : v.asDict().items()) {
      out += (first ? "" : ", ") + reprString(key) + ": " + toRepr(value);
      first = false;
    }
    return out + "}";
  }
  default:
    return toString(v);
  }
}

std::string toString(const Value &v) {
  switch (v.kind()) {
  case Value::Kind::Undefined:
    return "";
  case Value::Kind::None:
    return "None";
  case Value::Kind::Bool:
    return v.asBool() ? "True" : "False";
  case Value::Kind::Int:
    return std::to_string(v.asInt());
  case Value::Kind::Float:
    return formatFloat(v.asFloat());
  case Value::Kind::String:
    return v.asString();
  case Value::Kind::Function:
    return "<function " + v.asFunction().name + ">";
  case Value::Kind::List:
  case Value::Kind::Dict:
    return toRepr(v);
  }
  return "";
}

bool toJson(const Value &value, std::string &out, std::string &error,
            const JsonStyle &style) {
  return jsonValue(value, out, error, style, 0);
}

//===----------------------------------------------------------------------===//
// Lexer
//===----------------------------------------------------------------------===//

namespace {

enum class Tok {
  Text,
  VarBegin,
  VarEnd,
  BlockBegin,
  BlockEnd,
  Name,
  String,
  Int,
  Float,
  Op,
  End
};

struct Token {
  Tok kind;
  std::string text;
  int line;
  int64_t intValue = 0;
  double floatValue = 0;
};

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

std::string rstripWhitespace(const std::string &s) {
  size_t end = s.size();
  while (end > 0 && isSpace(s[end - 1]))
    --end;
  return s.substr(0, end);
}

class Lexer {
public:
  explicit Lexer(std::string_view input) {
    // Jinja normalizes newlines and drops one trailing newline
    // (keep_trailing_newline=False).
    for (size_t i = 0; i < input.size(); ++i) {
      if (input[i] == '\r') {
        src += '\n';
        if (i + 1 < input.size() && input[i + 1] == '\n')
          ++i;
      } else {
        src += input[i];
      }
    }
    if (!src.empty() && src.back() == '\n')
      src.pop_back();
  }

  bool run(std::vector<Token> &tokens, std::string &error);

private:
  bool fail(const std::string &message, std::string &error) {
    error = "line " + std::to_string(line) + ": " + message;
    return false;
  }
  void emitText(std::string text, std::vector<Token> &tokens) {
    int startLine = line;
    line += static_cast<int>(std::count(text.begin(), text.end(), '\n'));
    if (!text.empty())
      tokens.push_back({Tok::Text, std::move(text), startLine});
  }
  /// Skips what follows a closing `%}` / `#}` / `}}` per its control sign:
  /// '-' all whitespace, '+' nothing, none: one newline after blocks and
  /// comments (trim_blocks). Returns whether it stopped after a newline.
  bool skipAfterTag(char control, bool isBlock) {
    bool newline = false;
    if (control == '-') {
      while (pos < src.size() && isSpace(src[pos])) {
        newline = src[pos] == '\n';
        line += src[pos] == '\n';
        ++pos;
      }
    } else if (control != '+' && isBlock && pos < src.size() &&
               src[pos] == '\n') {
      ++pos;
      ++line;
      newline = true;
    }
    return newline;
  }
  /// Applies `{%-` / lstrip_blocks to the text before a tag.
  std::string stripBefore(std::string text, char control, bool isBlock) {
    if (control == '-')
      return rstripWhitespace(text);
    if (control == '+' || !isBlock)
      return text;
    size_t lineStart = text.rfind('\n');
    lineStart = lineStart == std::string::npos ? 0 : lineStart + 1;
    if (lineStart == 0 && !lineStarting)
      return text;
    for (size_t i = lineStart; i < text.size(); ++i)
      if (text[i] != ' ' && text[i] != '\t')
        return text;
    return text.substr(0, lineStart);
  }
  bool lexRaw(size_t contentStart, std::vector<Token> &tokens,
              std::string &error);
  bool lexTag(bool isBlock, std::vector<Token> &tokens, std::string &error);
  bool lexString(std::vector<Token> &tokens, std::string &error);
  void lexNumber(std::vector<Token> &tokens);

  std::string src;
  size_t pos = 0;
  int line = 1;
  /// Whether the last tag ended a line (or nothing came yet): lstrip_blocks
  /// then applies to a tag that follows only spaces.
  bool lineStarting = true;
};

/// If a `{% raw %}` tag starts at `at`, its end; else npos.
size_t rawTagEnd(const std::string &src, size_t at, const char *word,
                 char &endControl) {
  size_t i = at + 2;
  if (i < src.size() && (src[i] == '-' || src[i] == '+'))
    ++i;
  while (i < src.size() && isSpace(src[i]))
    ++i;
  size_t n = std::strlen(word);
  if (src.compare(i, n, word) != 0)
    return std::string::npos;
  i += n;
  while (i < src.size() && isSpace(src[i]))
    ++i;
  endControl = 0;
  if (i < src.size() && (src[i] == '-' || src[i] == '+'))
    endControl = src[i++];
  if (src.compare(i, 2, "%}") != 0)
    return std::string::npos;
  return i + 2;
}

bool Lexer::run(std::vector<Token> &tokens, std::string &error) {
  while (pos < src.size()) {
    size_t start = pos;
    while (true) {
      start = src.find('{', start);
      if (start == std::string::npos || start + 1 >= src.size())
        break;
      char next = src[start + 1];
      if (next == '{' || next == '%' || next == '#')
        break;
      ++start;
    }
    if (start == std::string::npos || start + 1 >= src.size()) {
      emitText(src.substr(pos), tokens);
      pos = src.size();
      break;
    }
    char kind = src[start + 1];
    char control = start + 2 < src.size() &&
                           (src[start + 2] == '-' || src[start + 2] == '+')
                       ? src[start + 2]
                       : 0;
    bool isBlock = kind != '{';
    std::string text = src.substr(pos, start - pos);
    char rawControl;
    size_t rawEnd = kind == '%' ? rawTagEnd(src, start, "raw", rawControl)
                                : std::string::npos;
    emitText(stripBefore(std::move(text), control, isBlock), tokens);
    pos = start + 2 + (control ? 1 : 0);

    if (rawEnd != std::string::npos) {
      pos = rawEnd;
      if (rawControl == '-')
        skipAfterTag('-', true);
      if (!lexRaw(pos, tokens, error))
        return false;
      continue;
    }
    if (kind == '#') {
      size_t end = src.find("#}", pos);
      if (end == std::string::npos)
        return fail("the comment is not closed", error);
      char endControl =
          end > pos && (src[end - 1] == '-' || src[end - 1] == '+')
              ? src[end - 1]
              : 0;
      line += static_cast<int>(
          std::count(src.begin() + pos, src.begin() + end, '\n'));
      pos = end + 2;
      lineStarting = skipAfterTag(endControl, true);
      continue;
    }
    if (!lexTag(kind == '%', tokens, error))
      return false;
  }
  tokens.push_back({Tok::End, "", line});
  return true;
}

bool Lexer::lexRaw(size_t contentStart, std::vector<Token> &tokens,
                   std::string &error) {
  for (size_t at = src.find("{%", contentStart); at != std::string::npos;
       at = src.find("{%", at + 1)) {
    char endControl;
    size_t end = rawTagEnd(src, at, "endraw", endControl);
    if (end == std::string::npos)
      continue;
    char beginControl =
        src[at + 2] == '-' || src[at + 2] == '+' ? src[at + 2] : 0;
    lineStarting = false;
    emitText(stripBefore(src.substr(contentStart, at - contentStart),
                         beginControl, true),
             tokens);
    line +=
        static_cast<int>(std::count(src.begin() + at, src.begin() + end, '\n'));
    pos = end;
    lineStarting = skipAfterTag(endControl, true);
    return true;
  }
  return fail("{% raw %} without {% endraw %}", error);
}

bool Lexer::lexTag(bool isBlock, std::vector<Token> &tokens,
                   std::string &error) {
  int startLine = line;
  tokens.push_back({isBlock ? Tok::BlockBegin : Tok::VarBegin, "", line});
  const char *close = isBlock ? "%}" : "}}";
  int depth = 0;
  while (true) {
    while (pos < src.size() && isSpace(src[pos])) {
      line += src[pos] == '\n';
      ++pos;
    }
    if (pos >= src.size()) {
      line = startLine;
      return fail(std::string("the tag is not closed with '") + close + "'",
                  error);
    }
    if (depth == 0) {
      char control = 0;
      size_t at = pos;
      if ((src[at] == '-' || src[at] == '+') &&
          src.compare(at + 1, 2, close) == 0)
        control = src[at++];
      if (src.compare(at, 2, close) == 0) {
        pos = at + 2;
        tokens.push_back({isBlock ? Tok::BlockEnd : Tok::VarEnd, "", line});
        lineStarting = skipAfterTag(control, isBlock);
        return true;
      }
    }
    char c = src[pos];
    if (c == '"' || c == '\'') {
      if (!lexString(tokens, error))
        return false;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      lexNumber(tokens);
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t begin = pos;
      while (pos < src.size() &&
             (std::isalnum(static_cast<unsigned char>(src[pos])) ||
              src[pos] == '_'))
        ++pos;
      tokens.push_back({Tok::Name, src.substr(begin, pos - begin), line});
    } else {
      static const char *const twoChar[] = {"//", "**", "==", "!=", "<=", ">="};
      std::string op;
      for (const char *candidate : twoChar)
        if (src.compare(pos, 2, candidate) == 0)
          op = candidate;
      if (op.empty()) {
        if (!std::strchr("+-*/%~<>=()[]{},.:|", c) || c == 0)
          return fail(std::string("unexpected character '") + c + "'", error);
        op = std::string(1, c);
      }
      if (op == "(" || op == "[" || op == "{")
        ++depth;
      if ((op == ")" || op == "]" || op == "}") && depth > 0)
        --depth;
      pos += op.size();
      tokens.push_back({Tok::Op, op, line});
    }
  }
}

bool Lexer::lexString(std::vector<Token> &tokens, std::string &error) {
  char quote = src[pos++];
  int startLine = line;
  std::string value;
  while (true) {
    if (pos >= src.size()) {
      line = startLine;
      return fail("the string is not closed", error);
    }
    char c = src[pos++];
    if (c == quote)
      break;
    if (c == '\n')
      ++line;
    if (c != '\\' || pos >= src.size()) {
      value += c;
      continue;
    }
    // Python's escapes (jinja2 decodes string literals with
    // "unicode-escape").
    char e = src[pos++];
    auto hexValue = [&](size_t digits, uint32_t &cp) {
      if (pos + digits > src.size())
        return false;
      cp = 0;
      for (size_t i = 0; i < digits; ++i) {
        char h = src[pos + i];
        if (!std::isxdigit(static_cast<unsigned char>(h)))
          return false;
        cp = cp * 16 +
             static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                       ? h - '0'
                                       : std::tolower(h) - 'a' + 10);
      }
      pos += digits;
      return true;
    };
    uint32_t cp;
    switch (e) {
    case 'n':
      value += '\n';
      break;
    case 't':
      value += '\t';
      break;
    case 'r':
      value += '\r';
      break;
    case 'b':
      value += '\b';
      break;
    case 'f':
      value += '\f';
      break;
    case 'v':
      value += '\v';
      break;
    case 'a':
      value += '\a';
      break;
    case '\\':
    case '\'':
    case '"':
      value += e;
      break;
    case '\n':
      ++line; // a line continuation
      break;
    case 'x':
    case 'u':
    case 'U':
      if (!hexValue(e == 'x' ? 2 : e == 'u' ? 4 : 8, cp) || cp > 0x10FFFF)
        return fail(std::string("invalid \\") + e + " escape in a string",
                    error);
      appendUtf8(value, cp);
      break;
    default:
      if (e >= '0' && e <= '7') {
        cp = static_cast<uint32_t>(e - '0');
        for (int i = 0;
             i < 2 && pos < src.size() && src[pos] >= '0' && src[pos] <= '7';
             ++i)
          cp = cp * 8 + static_cast<uint32_t>(src[pos++] - '0');
        appendUtf8(value, cp);
      } else {
        value += '\\';
        value += e;
      }
    }
  }
  tokens.push_back({Tok::String, std::move(value), startLine});
  return true;
}

void Lexer::lexNumber(std::vector<Token> &tokens) {
  size_t begin = pos;
  auto digits = [&] {
    while (pos < src.size() &&
           (std::isdigit(static_cast<unsigned char>(src[pos])) ||
            (src[pos] == '_' && pos + 1 < src.size() &&
             std::isdigit(static_cast<unsigned char>(src[pos + 1])))))
      ++pos;
  };
  digits();
  // After a dot (x.0) a number is an index, never a float.
  bool afterDot = begin > 0 && src[begin - 1] == '.';
  bool isFloat = false;
  if (!afterDot && pos + 1 < src.size() && src[pos] == '.' &&
      std::isdigit(static_cast<unsigned char>(src[pos + 1]))) {
    ++pos;
    digits();
    isFloat = true;
  }
  if (!afterDot && pos < src.size() && (src[pos] == 'e' || src[pos] == 'E')) {
    size_t save = pos++;
    if (pos < src.size() && (src[pos] == '+' || src[pos] == '-'))
      ++pos;
    if (pos < src.size() &&
        std::isdigit(static_cast<unsigned char>(src[pos]))) {
      digits();
      isFloat = true;
    } else {
      pos = save;
    }
  }
  std::string text;
  for (size_t i = begin; i < pos; ++i)
    if (src[i] != '_')
      text += src[i];
  Token token{isFloat ? Tok::Float : Tok::Int, text, line};
  if (isFloat) {
    token.floatValue = std::strtod(text.c_str(), nullptr);
  } else {
    errno = 0;
    unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
    if (errno == ERANGE || v > static_cast<unsigned long long>(INT64_MAX)) {
      // Beyond 64 bits: Python would keep a bignum; a float is the
      // closest this subset has.
      token.kind = Tok::Float;
      token.floatValue = std::strtod(text.c_str(), nullptr);
    } else {
      token.intValue = static_cast<int64_t>(v);
    }
  }
  tokens.push_back(std::move(token));
}

} // namespace

//===----------------------------------------------------------------------===//
// Syntax tree
//===----------------------------------------------------------------------===//

namespace {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum Kind {
    Literal,
    Name,
    ListLiteral,
    DictLiteral,
    Attr,
    Item,
    Slice,
    Call,
    Filter,
    Test,
    Not,
    Neg,
    Pos,
    And,
    Or,
    Compare,
    Binary,
    Cond,
  };
  Kind kind;
  int line;
  Value literal;
  /// Name, Attr, Filter and Test names; Binary's operator.
  std::string name;
  /// Operands, in an order each kind documents where it is built.
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> keywords;
  /// Compare's operators, one between each two operands.
  std::vector<std::string> ops;
  /// Test: `is not`.
  bool negated = false;
};

ExprPtr makeExpr(Expr::Kind kind, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  return e;
}

} // namespace

struct Template::Node {
  enum Kind {
    Body,
    Text,
    Output,
    If,
    For,
    Set,
    SetBlock,
    Macro,
    Break,
    Continue
  };
  Kind kind;
  int line;
  std::string text;
  /// Output's and Set's value, For's iterable.
  ExprPtr expr;
  /// For's `if` filter.
  ExprPtr filter;
  /// If: one condition per branch (bodies has one more for `else`).
  std::vector<ExprPtr> conditions;
  /// Body: one; If: branches then else; For: body then else; Macro,
  /// SetBlock: one.
  std::vector<std::vector<std::unique_ptr<Node>>> bodies;
  /// For and Set: the names assigned (several: tuple unpacking); Macro: its
  /// name. With attributeTarget: Set's namespace and attribute.
  std::vector<std::string> targets;
  bool attributeTarget = false;
  /// Macro parameters and their defaults (nullptr: none).
  std::vector<std::pair<std::string, ExprPtr>> params;
};

using Node = Template::Node;
using NodePtr = std::unique_ptr<Node>;
using NodeList = std::vector<NodePtr>;

//===----------------------------------------------------------------------===//
// What the subset knows: checked when parsing
//===----------------------------------------------------------------------===//

namespace {

const std::set<std::string> kFilters = {
    "abs",      "attr",    "capitalize", "count", "d",      "default",
    "dictsort", "e",       "escape",     "first", "float",  "indent",
    "int",      "items",   "join",       "last",  "length", "list",
    "lower",    "map",     "max",        "min",   "reject", "rejectattr",
    "replace",  "reverse", "round",      "safe",  "select", "selectattr",
    "sort",     "string",  "sum",        "title", "tojson", "trim",
    "unique",   "upper"};

const std::set<std::string> kTests = {
    "boolean",  "callable", "defined",  "divisibleby", "eq",    "equalto",
    "==",       "escaped",  "even",     "false",       "float", "ge",
    ">=",       "gt",       ">",        "greaterthan", "in",    "integer",
    "iterable", "le",       "<=",       "lower",       "lt",    "<",
    "lessthan", "mapping",  "ne",       "!=",          "none",  "number",
    "odd",      "sameas",   "sequence", "string",      "true",  "undefined",
    "upper"};

const std::set<std::string> kFunctions = {"range", "namespace", "dict",
                                          "raise_exception", "strftime_now"};

const std::set<std::string> kStringMethods = {
    "capitalize", "count",      "endswith", "find",  "join",
    "lower",      "lstrip",     "replace",  "rfind", "rstrip",
    "split",      "startswith", "strip",    "title", "upper"};

const std::set<std::string> kDictMethods = {"get", "items", "keys", "values"};

//===----------------------------------------------------------------------===//
// Parser
//===----------------------------------------------------------------------===//

/// Deep enough for any real template, shallow enough for the stack.
constexpr int kMaxNesting = 128;

class Parser {
public:
  Parser(std::vector<Token> tokens) : tokens(std::move(tokens)) {}

  NodePtr parseTemplate(std::string &error);

private:
  const Token &peek(size_t ahead = 0) const {
    return tokens[std::min(index + ahead, tokens.size() - 1)];
  }
  const Token &next() {
    const Token &t = tokens[index];
    if (index + 1 < tokens.size())
      ++index;
    return t;
  }
  bool isOp(const char *op, size_t ahead = 0) const {
    return peek(ahead).kind == Tok::Op && peek(ahead).text == op;
  }
  bool isName(const char *name, size_t ahead = 0) const {
    return peek(ahead).kind == Tok::Name && peek(ahead).text == name;
  }
  bool fail(const std::string &message, int line = 0) {
    if (error.empty())
      error =
          "line " + std::to_string(line ? line : peek().line) + ": " + message;
    return false;
  }
  bool expectOp(const char *op) {
    if (!isOp(op))
      return fail(std::string("expected '") + op + "', got " + describe());
    next();
    return true;
  }
  bool expectName(std::string &name) {
    if (peek().kind != Tok::Name)
      return fail("expected a name, got " + describe());
    name = next().text;
    return true;
  }
  bool expectBlockEnd() {
    if (peek().kind != Tok::BlockEnd)
      return fail("expected the end of the tag, got " + describe());
    next();
    return true;
  }
  std::string describe() const {
    switch (peek().kind) {
    case Tok::End:
      return "the end of the template";
    case Tok::BlockEnd:
      return "'%}'";
    case Tok::VarEnd:
      return "'}}'";
    case Tok::Text:
      return "text";
    case Tok::String:
      return "a string";
    default:
      return "'" + peek().text + "'";
    }
  }

  /// Parses statements until a `{% name %}` tag whose name is in `ends`
  /// (consumed up to the name; `which` says which); an empty `ends` parses
  /// to the end of the template.
  bool parseBody(NodeList &body, const std::set<std::string> &ends,
                 std::string &which);
  bool parseTag(NodeList &body, const std::set<std::string> &ends,
                std::string &which, bool &ended);
  bool parseIf(NodeList &body, int line);
  bool parseFor(NodeList &body, int line);
  bool parseSet(NodeList &body, int line);
  bool parseMacro(NodeList &body, int line);

  bool parseExpression(ExprPtr &out, bool withCondition = true);
  bool parseTupleOrExpression(ExprPtr &out, bool withCondition = true);
  bool parseOr(ExprPtr &out);
  bool parseAnd(ExprPtr &out);
  bool parseNot(ExprPtr &out);
  bool parseCompare(ExprPtr &out);
  bool parseMath1(ExprPtr &out);
  bool parseConcat(ExprPtr &out);
  bool parseMath2(ExprPtr &out);
  bool parsePow(ExprPtr &out);
  bool parseUnary(ExprPtr &out, bool withFilter = true);
  bool parsePrimary(ExprPtr &out);
  bool parsePostfix(ExprPtr &out);
  bool parseFilters(ExprPtr &out);
  bool parseCallArgs(Expr &call);
  bool parseSubscript(ExprPtr &out);

  std::vector<Token> tokens;
  size_t index = 0;
  int depth = 0;
  /// For loops around the current tag (a macro body starts at 0).
  int loopDepth = 0;
  std::string error;

public:
  std::set<std::string> macroNames;
  /// Every call, to check against macroNames once all are known.
  std::vector<const Expr *> calls;
};

/// Counts nesting depth over a scope.
struct DepthGuard {
  DepthGuard(int &depth) : depth(depth) { ++depth; }
  ~DepthGuard() { --depth; }
  int &depth;
};

NodePtr Parser::parseTemplate(std::string &out) {
  auto root = std::make_unique<Node>();
  root->kind = Node::Body;
  root->line = 1;
  root->bodies.emplace_back();
  std::string which;
  bool ok = parseBody(root->bodies[0], {}, which);
  if (ok) {
    // A call of a name must be a built-in or a macro of this template:
    // nothing else the server passes in is callable. A method must be one
    // of the str/dict methods the renderer has.
    for (const Expr *call : calls) {
      const Expr &callee = *call->args[0];
      if (callee.kind == Expr::Name && !kFunctions.count(callee.name) &&
          !macroNames.count(callee.name)) {
        ok = fail("unsupported function '" + callee.name + "'", call->line);
        break;
      }
      if (callee.kind == Expr::Attr && !kStringMethods.count(callee.name) &&
          !kDictMethods.count(callee.name) && callee.name != "cycle") {
        ok = fail("unsupported method '" + callee.name + "'", call->line);
        break;
      }
    }
  }
  if (!ok) {
    out = error;
    return nullptr;
  }
  return root;
}

bool Parser::parseBody(NodeList &body, const std::set<std::string> &ends,
                       std::string &which) {
  DepthGuard guard(depth);
  if (depth > kMaxNesting)
    return fail("tags are nested too deeply");
  while (true) {
    const Token &t = peek();
    switch (t.kind) {
    case Tok::End:
      if (!ends.empty())
        return fail("missing {% " + *ends.rbegin() + " %}");
      return true;
    case Tok::Text: {
      auto node = std::make_unique<Node>();
      node->kind = Node::Text;
      node->line = t.line;
      node->text = next().text;
      body.push_back(std::move(node));
      break;
    }
    case Tok::VarBegin: {
      int line = next().line;
      auto node = std::make_unique<Node>();
      node->kind = Node::Output;
      node->line = line;
      if (!parseTupleOrExpression(node->expr))
        return false;
      if (peek().kind != Tok::VarEnd)
        return fail("expected '}}', got " + describe());
      next();
      body.push_back(std::move(node));
      break;
    }
    case Tok::BlockBegin: {
      bool ended = false;
      if (!parseTag(body, ends, which, ended))
        return false;
      if (ended)
        return true;
      break;
    }
    default:
      return fail("unexpected " + describe());
    }
  }
}

bool Parser::parseTag(NodeList &body, const std::set<std::string> &ends,
                      std::string &which, bool &ended) {
  int line = next().line;
  std::string tag;
  if (!expectName(tag))
    return false;
  if (ends.count(tag)) {
    which = tag;
    ended = true;
    return true;
  }
  if (tag == "if")
    return parseIf(body, line);
  if (tag == "for")
    return parseFor(body, line);
  if (tag == "set")
    return parseSet(body, line);
  if (tag == "macro")
    return parseMacro(body, line);
  if (tag == "break" || tag == "continue") {
    if (loopDepth == 0)
      return fail("'" + tag + "' outside a for loop", line);
    auto node = std::make_unique<Node>();
    node->kind = tag == "break" ? Node::Break : Node::Continue;
    node->line = line;
    body.push_back(std::move(node));
    return expectBlockEnd();
  }
  if (tag == "generation") {
    // transformers' AssistantTracker marks assistant text; the output is
    // the body's.
    if (!expectBlockEnd())
      return false;
    std::string end;
    return parseBody(body, {"endgeneration"}, end) && expectBlockEnd();
  }
  static const std::set<std::string> kEndTags = {
      "endif",  "elif",     "else",          "endfor",
      "endset", "endmacro", "endgeneration", "endraw"};
  if (kEndTags.count(tag))
    return fail("unexpected {% " + tag + " %}", line);
  return fail("unsupported tag '" + tag + "'", line);
}

bool Parser::parseIf(NodeList &body, int line) {
  auto node = std::make_unique<Node>();
  node->kind = Node::If;
  node->line = line;
  while (true) {
    ExprPtr condition;
    if (!parseTupleOrExpression(condition) || !expectBlockEnd())
      return false;
    node->conditions.push_back(std::move(condition));
    node->bodies.emplace_back();
    std::string which;
    if (!parseBody(node->bodies.back(), {"elif", "else", "endif"}, which))
      return false;
    if (which == "elif")
      continue;
    if (which == "else") {
      if (!expectBlockEnd())
        return false;
      node->bodies.emplace_back();
      if (!parseBody(node->bodies.back(), {"endif"}, which))
        return false;
    }
    break;
  }
  body.push_back(std::move(node));
  return expectBlockEnd();
}

bool Parser::parseFor(NodeList &body, int line) {
  auto node = std::make_unique<Node>();
  node->kind = Node::For;
  node->line = line;
  do {
    std::string name;
    if (!expectName(name))
      return false;
    node->targets.push_back(name);
  } while (isOp(",") && (next(), true));
  if (!isName("in"))
    return fail("expected 'in' in the for tag, got " + describe());
  next();
  if (!parseTupleOrExpression(node->expr, false))
    return false;
  if (isName("if")) {
    next();
    if (!parseExpression(node->filter))
      return false;
  }
  if (isName("recursive"))
    return fail("unsupported recursive for loop");
  if (!expectBlockEnd())
    return false;
  node->bodies.emplace_back();
  std::string which;
  ++loopDepth;
  bool ok = parseBody(node->bodies[0], {"else", "endfor"}, which);
  --loopDepth;
  if (!ok)
    return false;
  if (which == "else") {
    if (!expectBlockEnd())
      return false;
    node->bodies.emplace_back();
    if (!parseBody(node->bodies[1], {"endfor"}, which))
      return false;
  }
  body.push_back(std::move(node));
  return expectBlockEnd();
}

bool Parser::parseSet(NodeList &body, int line) {
  auto node = std::make_unique<Node>();
  node->kind = Node::Set;
  node->line = line;
  std::string name;
  if (!expectName(name))
    return false;
  node->targets.push_back(name);
  if (isOp(".")) {
    next();
    if (!expectName(name))
      return false;
    node->targets.push_back(name);
    node->attributeTarget = true;
  } else {
    while (isOp(",")) {
      next();
      if (!expectName(name))
        return false;
      node->targets.push_back(name);
    }
  }
  if (peek().kind == Tok::BlockEnd && node->targets.size() == 1) {
    // {% set x %}...{% endset %}
    next();
    node->kind = Node::SetBlock;
    node->bodies.emplace_back();
    std::string which;
    if (!parseBody(node->bodies[0], {"endset"}, which))
      return false;
    body.push_back(std::move(node));
    return expectBlockEnd();
  }
  if (!expectOp("=") || !parseTupleOrExpression(node->expr))
    return false;
  body.push_back(std::move(node));
  return expectBlockEnd();
}

bool Parser::parseMacro(NodeList &body, int line) {
  auto node = std::make_unique<Node>();
  node->kind = Node::Macro;
  node->line = line;
  std::string name;
  if (!expectName(name) || !expectOp("("))
    return false;
  node->targets.push_back(name);
  macroNames.insert(name);
  while (!isOp(")")) {
    std::string param;
    if (!expectName(param))
      return false;
    ExprPtr defaultValue;
    if (isOp("=")) {
      next();
      if (!parseExpression(defaultValue))
        return false;
    }
    node->params.emplace_back(param, std::move(defaultValue));
    if (!isOp(","))
      break;
    next();
  }
  if (!expectOp(")") || !expectBlockEnd())
    return false;
  node->bodies.emplace_back();
  std::string which;
  int outerLoops = loopDepth;
  loopDepth = 0;
  bool ok = parseBody(node->bodies[0], {"endmacro"}, which);
  loopDepth = outerLoops;
  if (!ok)
    return false;
  if (peek().kind == Tok::Name)
    next(); // {% endmacro name %}
  body.push_back(std::move(node));
  return expectBlockEnd();
}

bool Parser::parseTupleOrExpression(ExprPtr &out, bool withCondition) {
  int line = peek().line;
  if (!parseExpression(out, withCondition))
    return false;
  if (!isOp(","))
    return true;
  auto tuple = makeExpr(Expr::ListLiteral, line);
  tuple->args.push_back(std::move(out));
  while (isOp(",")) {
    next();
    if (peek().kind == Tok::BlockEnd || peek().kind == Tok::VarEnd || isOp(")"))
      break;
    ExprPtr item;
    if (!parseExpression(item, withCondition))
      return false;
    tuple->args.push_back(std::move(item));
  }
  out = std::move(tuple);
  return true;
}

bool Parser::parseExpression(ExprPtr &out, bool withCondition) {
  DepthGuard guard(depth);
  if (depth > kMaxNesting)
    return fail("the expression is nested too deeply");
  if (!parseOr(out))
    return false;
  while (withCondition && isName("if")) {
    int line = next().line;
    auto cond = makeExpr(Expr::Cond, line);
    ExprPtr test;
    if (!parseOr(test))
      return false;
    ExprPtr otherwise;
    if (isName("else")) {
      next();
      if (!parseExpression(otherwise))
        return false;
    }
    cond->args.push_back(std::move(out));
    cond->args.push_back(std::move(test));
    cond->args.push_back(std::move(otherwise));
    out = std::move(cond);
  }
  return true;
}

bool Parser::parseOr(ExprPtr &out) {
  if (!parseAnd(out))
    return false;
  while (isName("or")) {
    auto e = makeExpr(Expr::Or, next().line);
    ExprPtr right;
    if (!parseAnd(right))
      return false;
    e->args.push_back(std::move(out));
    e->args.push_back(std::move(right));
    out = std::move(e);
  }
  return true;
}

bool Parser::parseAnd(ExprPtr &out) {
  if (!parseNot(out))
    return false;
  while (isName("and")) {
    auto e = makeExpr(Expr::And, next().line);
    ExprPtr right;
    if (!parseNot(right))
      return false;
    e->args.push_back(std::move(out));
    e->args.push_back(std::move(right));
    out = std::move(e);
  }
  return true;
}

bool Parser::parseNot(ExprPtr &out) {
  if (isName("not")) {
    DepthGuard guard(depth);
    if (depth > kMaxNesting)
      return fail("the expression is nested too deeply");
    auto e = makeExpr(Expr::Not, next().line);
    ExprPtr operand;
    if (!parseNot(operand))
      return false;
    e->args.push_back(std::move(operand));
    out = std::move(e);
    return true;
  }
  return parseCompare(out);
}

bool Parser::parseCompare(ExprPtr &out) {
  int line = peek().line;
  if (!parseMath1(out))
    return false;
  ExprPtr compare;
  while (true) {
    std::string op;
    if (peek().kind == Tok::Op &&
        (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
         peek().text == "<=" || peek().text == ">" || peek().text == ">=")) {
      op = next().text;
    } else if (isName("in")) {
      next();
      op = "in";
    } else if (isName("not") && isName("in", 1)) {
      next();
      next();
      op = "not in";
    } else {
      break;
    }
    ExprPtr right;
    if (!parseMath1(right))
      return false;
    if (!compare) {
      compare = makeExpr(Expr::Compare, line);
      compare->args.push_back(std::move(out));
    }
    compare->ops.push_back(op);
    compare->args.push_back(std::move(right));
  }
  if (compare)
    out = std::move(compare);
  return true;
}

bool Parser::parseMath1(ExprPtr &out) {
  if (!parseConcat(out))
    return false;
  while (isOp("+") || isOp("-")) {
    auto e = makeExpr(Expr::Binary, peek().line);
    e->name = next().text;
    ExprPtr right;
    if (!parseConcat(right))
      return false;
    e->args.push_back(std::move(out));
    e->args.push_back(std::move(right));
    out = std::move(e);
  }
  return true;
}

bool Parser::parseConcat(ExprPtr &out) {
  if (!parseMath2(out))
    return false;
  while (isOp("~")) {
    auto e = makeExpr(Expr::Binary, peek().line);
    e->name = next().text;
    ExprPtr right;
    if (!parseMath2(right))
      return false;
    e->args.push_back(std::move(out));
    e->args.push_back(std::move(right));
    out = std::move(e);
  }
  return true;
}

bool Parser::parseMath2(ExprPtr &out) {
  if (!parsePow(out))
    return false;
  while (isOp("*") || isOp("/") || isOp("//") || isOp("%")) {
    auto e = makeExpr(Expr::Binary, peek().line);
    e->name = next().text;
    ExprPtr right;
    if (!parsePow(right))
      return false;
    e->args.push_back(std::move(out));
    e->args.push_back(std::move(right));
    out = std::move(e);
  }
  return true;
}

bool Parser::parsePow(ExprPtr &out) {
  if (!parseUnary(out))
    return false;
  while (isOp("**")) {
    auto e = makeExpr(Expr::Binary, peek().line);
    e->name = next().text;
    ExprPtr right;
    if (!parseUnary(right))
      return false;
    e->args.push_back(std::move(out));
    e->args.push_back(std::move(right));
    out = std::move(e);
  }
  return true;
}

bool Parser::parseUnary(ExprPtr &out, bool withFilter) {
  DepthGuard guard(depth);
  if (depth > kMaxNesting)
    return fail("the expression is nested too deeply");
  if (isOp("-") || isOp("+")) {
    Expr::Kind kind = isOp("-") ? Expr::Neg : Expr::Pos;
    auto e = makeExpr(kind, next().line);
    ExprPtr operand;
    if (!parseUnary(operand, false))
      return false;
    e->args.push_back(std::move(operand));
    out = std::move(e);
  } else if (!parsePrimary(out)) {
    return false;
  }
  if (!parsePostfix(out))
    return false;
  return !withFilter || parseFilters(out);
}

bool Parser::parsePrimary(ExprPtr &out) {
  const Token &t = peek();
  switch (t.kind) {
  case Tok::Name: {
    next();
    auto e = makeExpr(Expr::Literal, t.line);
    if (t.text == "true" || t.text == "True") {
      e->literal = Value(true);
    } else if (t.text == "false" || t.text == "False") {
      e->literal = Value(false);
    } else if (t.text == "none" || t.text == "None") {
      e->literal = Value::none();
    } else {
      e->kind = Expr::Name;
      e->name = t.text;
    }
    out = std::move(e);
    return true;
  }
  case Tok::String: {
    auto e = makeExpr(Expr::Literal, t.line);
    std::string text;
    // Adjacent literals concatenate, as in Python.
    while (peek().kind == Tok::String)
      text += next().text;
    e->literal = Value(std::move(text));
    out = std::move(e);
    return true;
  }
  case Tok::Int:
  case Tok::Float: {
    next();
    auto e = makeExpr(Expr::Literal, t.line);
    e->literal = t.kind == Tok::Int ? Value(t.intValue) : Value(t.floatValue);
    out = std::move(e);
    return true;
  }
  case Tok::Op:
    if (t.text == "(") {
      next();
      if (isOp(")")) {
        next();
        out = makeExpr(Expr::ListLiteral, t.line);
        return true;
      }
      if (!parseTupleOrExpression(out))
        return false;
      return expectOp(")");
    }
    if (t.text == "[") {
      next();
      auto e = makeExpr(Expr::ListLiteral, t.line);
      while (!isOp("]")) {
        ExprPtr item;
        if (!parseExpression(item))
          return false;
        e->args.push_back(std::move(item));
        if (!isOp(","))
          break;
        next();
      }
      out = std::move(e);
      return expectOp("]");
    }
    if (t.text == "{") {
      next();
      auto e = makeExpr(Expr::DictLiteral, t.line);
      while (!isOp("}")) {
        ExprPtr key, value;
        if (!parseExpression(key) || !expectOp(":") || !parseExpression(value))
          return false;
        e->args.push_back(std::move(key));
        e->args.push_back(std::move(value));
        if (!isOp(","))
          break;
        next();
      }
      out = std::move(e);
      return expectOp("}");
    }
    break;
  default:
    break;
  }
  return fail("expected an expression, got " + describe());
}

bool Parser::parseCallArgs(Expr &call) {
  next(); // (
  while (!isOp(")")) {
    if (peek().kind == Tok::Name && isOp("=", 1)) {
      std::string key = next().text;
      next();
      ExprPtr value;
      if (!parseExpression(value))
        return false;
      call.keywords.emplace_back(key, std::move(value));
    } else {
      if (!call.keywords.empty())
        return fail("a positional argument follows a keyword argument");
      ExprPtr value;
      if (!parseExpression(value))
        return false;
      call.args.push_back(std::move(value));
    }
    if (!isOp(","))
      break;
    next();
  }
  return expectOp(")");
}

bool Parser::parseSubscript(ExprPtr &out) {
  int line = next().line; // [
  ExprPtr parts[3];
  int numColons = 0;
  for (int part = 0; part < 3; ++part) {
    if (!isOp(":") && !isOp("]") && !parseExpression(parts[part]))
      return false;
    if (!isOp(":") || part == 2)
      break;
    next();
    ++numColons;
  }
  if (!expectOp("]"))
    return false;
  if (numColons == 0) {
    if (!parts[0])
      return fail("expected a subscript", line);
    auto e = makeExpr(Expr::Item, line);
    e->args.push_back(std::move(out));
    e->args.push_back(std::move(parts[0]));
    out = std::move(e);
    return true;
  }
  auto e = makeExpr(Expr::Slice, line);
  e->args.push_back(std::move(out));
  for (ExprPtr &part : parts)
    e->args.push_back(std::move(part));
  out = std::move(e);
  return true;
}

bool Parser::parsePostfix(ExprPtr &out) {
  while (true) {
    if (isOp(".")) {
      int line = next().line;
      if (peek().kind == Tok::Int) {
        auto e = makeExpr(Expr::Item, line);
        auto index = makeExpr(Expr::Literal, line);
        index->literal = Value(next().intValue);
        e->args.push_back(std::move(out));
        e->args.push_back(std::move(index));
        out = std::move(e);
        continue;
      }
      auto e = makeExpr(Expr::Attr, line);
      if (!expectName(e->name))
        return false;
      e->args.push_back(std::move(out));
      out = std::move(e);
    } else if (isOp("[")) {
      if (!parseSubscript(out))
        return false;
    } else if (isOp("(")) {
      auto e = makeExpr(Expr::Call, peek().line);
      e->args.push_back(std::move(out));
      if (!parseCallArgs(*e))
        return false;
      calls.push_back(e.get());
      out = std::move(e);
    } else {
      return true;
    }
  }
}

bool Parser::parseFilters(ExprPtr &out) {
  while (true) {
    if (isOp("|")) {
      int line = next().line;
      auto e = makeExpr(Expr::Filter, line);
      if (!expectName(e->name))
        return false;
      // Dotted filter names do not exist in jinja2's built-ins either.
      if (!kFilters.count(e->name))
        return fail("unsupported filter '" + e->name + "'", line);
      e->args.push_back(std::move(out));
      if (isOp("(") && !parseCallArgs(*e))
        return false;
      out = std::move(e);
    } else if (isName("is")) {
      int line = next().line;
      auto e = makeExpr(Expr::Test, line);
      if (isName("not")) {
        next();
        e->negated = true;
      }
      if (peek().kind == Tok::Name) {
        e->name = next().text;
      } else if (peek().kind == Tok::Op &&
                 kTests.count(peek().text)) { // is == x, as jinja2 allows
        e->name = next().text;
      } else {
        return fail("expected a test name after 'is', got " + describe());
      }
      if (!kTests.count(e->name))
        return fail("unsupported test '" + e->name + "'", line);
      e->args.push_back(std::move(out));
      if (isOp("(")) {
        if (!parseCallArgs(*e))
          return false;
      } else if ((peek().kind == Tok::Name || peek().kind == Tok::String ||
                  peek().kind == Tok::Int || peek().kind == Tok::Float ||
                  isOp("[") || isOp("{")) &&
                 !isName("else") && !isName("or") && !isName("and") &&
                 !isName("if") && !isName("in") && !isName("not")) {
        // One argument without parentheses: `is divisibleby 3`.
        ExprPtr argument;
        if (!parsePrimary(argument) || !parsePostfix(argument))
          return false;
        e->args.push_back(std::move(argument));
      }
      out = std::move(e);
    } else {
      return true;
    }
  }
}

//===----------------------------------------------------------------------===//
// Renderer
//===----------------------------------------------------------------------===//

/// Bounds on one render, so that no template runs away.
constexpr size_t kMaxOutputBytes = 16u << 20;
constexpr int64_t kMaxSteps = 300'000;
constexpr int kMaxCallDepth = 64;
constexpr int64_t kMaxRangeLength = 10'000;

enum class Flow { Normal, Break, Continue };

using Scope = std::unordered_map<std::string, Value>;

/// Finds argument `index` by position or `name` by keyword; null if absent.
const Value *argument(const Arguments &args, size_t index, const char *name) {
  if (index < args.positional.size())
    return &args.positional[index];
  for (const auto &[key, value] : args.keywords)
    if (key == name)
      return &value;
  return nullptr;
}

std::string typeName(const Value &v) {
  switch (v.kind()) {
  case Value::Kind::Undefined:
    return "Undefined";
  case Value::Kind::None:
    return "NoneType";
  case Value::Kind::Bool:
    return "bool";
  case Value::Kind::Int:
    return "int";
  case Value::Kind::Float:
    return "float";
  case Value::Kind::String:
    return "str";
  case Value::Kind::List:
    return "list";
  case Value::Kind::Dict:
    return v.isNamespace() ? "Namespace" : "dict";
  case Value::Kind::Function:
    return "function";
  }
  return "?";
}

bool valuesEqual(const Value &a, const Value &b) {
  if (a.isNumber() && b.isNumber()) {
    if (a.isInteger() && b.isInteger())
      return a.asInt() == b.asInt();
    return a.asFloat() == b.asFloat();
  }
  if (a.kind() != b.kind())
    return false;
  switch (a.kind()) {
  case Value::Kind::Undefined:
  case Value::Kind::None:
    return true;
  case Value::Kind::String:
    return a.asString() == b.asString();
  case Value::Kind::List: {
    const List &x = a.asList(), &y = b.asList();
    if (x.size() != y.size())
      return false;
    for (size_t i = 0; i < x.size(); ++i)
      if (!valuesEqual(x[i], y[i]))
        return false;
    return true;
  }
  case Value::Kind::Dict: {
    if (a.isNamespace() || b.isNamespace())
      return &a.asDict() == &b.asDict();
    const Dict &x = a.asDict(), &y = b.asDict();
    if (x.size() != y.size())
      return false;
    for (const auto &[key, value] : x.items()) {
      const Value *other = y.find(key);
      if (!other || !valuesEqual(value, *other))
        return false;
    }
    return true;
  }
  case Value::Kind::Function:
    return &a.asFunction() == &b.asFunction();
  default:
    return false;
  }
}

/// Python's ordering: -1, 0, 1; false when the types do not order.
bool compareValues(const Value &a, const Value &b, int &result,
                   std::string &error) {
  if (a.isNumber() && b.isNumber()) {
    if (a.isInteger() && b.isInteger())
      result = a.asInt() < b.asInt() ? -1 : a.asInt() > b.asInt() ? 1 : 0;
    else
      result = a.asFloat() < b.asFloat()   ? -1
               : a.asFloat() > b.asFloat() ? 1
                                           : 0;
    return true;
  }
  if (a.isString() && b.isString()) {
    int c = a.asString().compare(b.asString());
    result = c < 0 ? -1 : c > 0 ? 1 : 0;
    return true;
  }
  if (a.isList() && b.isList()) {
    const List &x = a.asList(), &y = b.asList();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (valuesEqual(x[i], y[i]))
        continue;
      return compareValues(x[i], y[i], result, error);
    }
    result = x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
    return true;
  }
  error = "'<' not supported between instances of '" + typeName(a) + "' and '" +
          typeName(b) + "'";
  return false;
}

/// Python's sequence index: negative counts from the end; false if out of
/// range.
bool normalizeIndex(int64_t &index, size_t size) {
  if (index < 0)
    index += static_cast<int64_t>(size);
  return index >= 0 && index < static_cast<int64_t>(size);
}

/// The indices a Python slice selects.
bool sliceIndices(size_t size, const Value &start, const Value &stop,
                  const Value &step, std::vector<size_t> &out,
                  std::string &error) {
  auto isGiven = [](const Value &v) { return !v.isUndefined() && !v.isNone(); };
  for (const Value *v : {&start, &stop, &step}) {
    if (isGiven(*v) && !v->isInteger()) {
      error = "slice indices must be integers or None";
      return false;
    }
  }
  int64_t n = static_cast<int64_t>(size);
  int64_t s = isGiven(step) ? step.asInt() : 1;
  if (s == 0) {
    error = "slice step cannot be zero";
    return false;
  }
  auto clamp = [&](const Value &v, int64_t absent) {
    if (!isGiven(v))
      return absent;
    int64_t i = v.asInt();
    if (i < 0)
      i += n;
    if (s > 0)
      return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  int64_t begin = clamp(start, s > 0 ? 0 : n - 1);
  int64_t end = clamp(stop, s > 0 ? n : -1);
  for (int64_t i = begin; s > 0 ? i < end : i > end; i += s)
    out.push_back(static_cast<size_t>(i));
  return true;
}

class Renderer {
public:
  Renderer(const Dict &globals, std::string &out)
      : globals(globals), out(&out) {
    scopes.emplace_back();
  }

  bool renderBody(const NodeList &body, Flow &flow);
  const std::string &errorMessage() const { return error; }

private:
  bool fail(int line, const std::string &message) {
    if (error.empty())
      error = "line " + std::to_string(line) + ": " + message;
    return false;
  }
  bool step(int line) {
    if (++steps > kMaxSteps)
      return fail(line, "the template runs too long");
    return true;
  }
  bool write(int line, const std::string &text) {
    if (out->size() + text.size() > kMaxOutputBytes)
      return fail(line, "the output is larger than 16 MiB");
    *out += text;
    return true;
  }

  Value lookup(const std::string &name) const;
  void assign(const std::string &name, Value value) {
    scopes.back()[name] = std::move(value);
  }
  bool renderNode(const Node &node, Flow &flow);
  bool renderFor(const Node &node, Flow &flow);
  bool assignTargets(const std::vector<std::string> &targets,
                     const Value &value, int line);
  bool defineMacro(const Node &node);

  bool eval(const Expr &e, Value &result);
  bool evalBinary(const Expr &e, const Value &a, const Value &b, Value &result);
  bool evalCall(const Expr &e, Value &result);
  bool evalArgs(const Expr &e, size_t first, Arguments &args);
  bool getAttribute(const Value &object, const std::string &name, int line,
                    Value &result);
  bool getItem(const Value &object, const Value &key, int line, Value &result);
  bool callMethod(const Value &object, const std::string &name,
                  const Arguments &args, int line, Value &result);
  bool applyFilter(const std::string &name, const Value &input,
                   const Arguments &args, int line, Value &result);
  bool applyTest(const std::string &name, const Value &input,
                 const Arguments &args, int line, bool &result);
  bool iterate(const Value &v, int line, List &items);
  /// `obj.a.b` for selectattr, map and friends.
  bool dottedAttribute(const Value &object, const std::string &path, int line,
                       Value &result);
  bool builtinFunction(const std::string &name, const Arguments &args, int line,
                       Value &result);

  const Dict &globals;
  std::string *out;
  std::vector<Scope> scopes;
  std::string error;
  int64_t steps = 0;
  int callDepth = 0;
  /// Functions made by macro definitions and loop.cycle live as long as
  /// the render.
  std::vector<std::shared_ptr<Function>> functions;
};

Value Renderer::lookup(const std::string &name) const {
  for (auto scope = scopes.rbegin(); scope != scopes.rend(); ++scope) {
    auto it = scope->find(name);
    if (it != scope->end())
      return it->second;
  }
  if (const Value *v = globals.find(name))
    return *v;
  if (kFunctions.count(name)) {
    auto fn = std::make_shared<Function>();
    fn->name = name;
    // Built-ins are called through builtinFunction (evalCall checks the
    // name first); this value only makes `range is defined` true.
    fn->call = [name](const Arguments &, Value &, std::string &error) {
      error = "'" + name + "' cannot be called indirectly";
      return false;
    };
    return Value::function(fn);
  }
  return Value::undefined("'" + name + "' is undefined");
}

bool Renderer::renderBody(const NodeList &body, Flow &flow) {
  for (const NodePtr &node : body) {
    if (!renderNode(*node, flow))
      return false;
    if (flow != Flow::Normal)
      return true;
  }
  return true;
}

bool Renderer::renderNode(const Node &node, Flow &flow) {
  if (!step(node.line))
    return false;
  switch (node.kind) {
  case Node::Body:
    return renderBody(node.bodies[0], flow);
  case Node::Text:
    return write(node.line, node.text);
  case Node::Output: {
    Value v;
    return eval(*node.expr, v) && write(node.line, toString(v));
  }
  case Node::If:
    for (size_t i = 0; i < node.conditions.size(); ++i) {
      Value condition;
      if (!eval(*node.conditions[i], condition))
        return false;
      if (condition.truthy())
        return renderBody(node.bodies[i], flow);
    }
    if (node.bodies.size() > node.conditions.size())
      return renderBody(node.bodies.back(), flow);
    return true;
  case Node::For:
    return renderFor(node, flow);
  case Node::Set: {
    Value v;
    if (!eval(*node.expr, v))
      return false;
    if (node.attributeTarget) {
      Value target = lookup(node.targets[0]);
      if (!target.isNamespace())
        return fail(node.line, "cannot assign attribute on a " +
                                   typeName(target) +
                                   " (only on a namespace())");
      target.mutableDict().set(node.targets[1], std::move(v));
      return true;
    }
    return assignTargets(node.targets, v, node.line);
  }
  case Node::SetBlock: {
    std::string captured;
    std::string *saved = out;
    out = &captured;
    Flow inner = Flow::Normal;
    bool ok = renderBody(node.bodies[0], inner);
    out = saved;
    if (!ok)
      return false;
    assign(node.targets[0], Value(std::move(captured)));
    return true;
  }
  case Node::Macro:
    return defineMacro(node);
  case Node::Break:
    flow = Flow::Break;
    return true;
  case Node::Continue:
    flow = Flow::Continue;
    return true;
  }
  return true;
}

bool Renderer::assignTargets(const std::vector<std::string> &targets,
                             const Value &value, int line) {
  if (targets.size() == 1) {
    assign(targets[0], value);
    return true;
  }
  List items;
  if (!iterate(value, line, items))
    return false;
  if (items.size() != targets.size())
    return fail(line, "cannot unpack " + std::to_string(items.size()) +
                          " values into " + std::to_string(targets.size()));
  for (size_t i = 0; i < targets.size(); ++i)
    assign(targets[i], items[i]);
  return true;
}

bool Renderer::iterate(const Value &v, int line, List &items) {
  switch (v.kind()) {
  case Value::Kind::Undefined:
    return true;
  case Value::Kind::List:
    items = v.asList();
    return true;
  case Value::Kind::Dict:
    if (v.isNamespace())
      break;
    for (const auto &entry : v.asDict().items())
      items.push_back(Value(entry.first));
    return true;
  case Value::Kind::String:
    for (std::string_view c : codePoints(v.asString()))
      items.push_back(Value(std::string(c)));
    return true;
  default:
    break;
  }
  return fail(line, "'" + typeName(v) + "' object is not iterable");
}

bool Renderer::renderFor(const Node &node, Flow &flow) {
  Value iterable;
  if (!eval(*node.expr, iterable))
    return false;
  List items;
  if (!iterate(iterable, node.line, items))
    return false;
  // The `if` filter runs first: loop.length and loop.last count what it
  // keeps.
  if (node.filter) {
    List kept;
    for (const Value &item : items) {
      scopes.emplace_back();
      Value keep;
      bool ok = assignTargets(node.targets, item, node.line) &&
                eval(*node.filter, keep);
      scopes.pop_back();
      if (!ok)
        return false;
      if (keep.truthy())
        kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    if (node.bodies.size() > 1) {
      Flow inner = Flow::Normal;
      return renderBody(node.bodies[1], inner);
    }
    return true;
  }
  int64_t length = static_cast<int64_t>(items.size());
  auto index = std::make_shared<int64_t>(0);
  auto cycle = std::make_shared<Function>();
  cycle->name = "cycle";
  cycle->call = [index](const Arguments &args, Value &result,
                        std::string &error) {
    if (args.positional.empty()) {
      error = "no items for cycling given";
      return false;
    }
    result =
        args.positional[static_cast<size_t>(*index) % args.positional.size()];
    return true;
  };
  // One loop object, updated in place each iteration.
  Value loopValue{Dict()};
  Dict &loop = loopValue.mutableDict();
  loop.set("cycle", Value::function(cycle));
  for (int64_t i = 0; i < length; ++i) {
    if (!step(node.line))
      return false;
    *index = i;
    loop.set("index", Value(i + 1));
    loop.set("index0", Value(i));
    loop.set("revindex", Value(length - i));
    loop.set("revindex0", Value(length - i - 1));
    loop.set("first", Value(i == 0));
    loop.set("last", Value(i == length - 1));
    loop.set("length", Value(length));
    loop.set("depth", Value(int64_t(1)));
    loop.set("depth0", Value(int64_t(0)));
    loop.set("previtem", i > 0 ? items[i - 1]
                               : Value::undefined("there is no previous item"));
    loop.set("nextitem", i + 1 < length
                             ? items[i + 1]
                             : Value::undefined("there is no next item"));
    // Each iteration has its own scope: a set inside the loop is gone at
    // the next iteration and after the loop, as in jinja2.
    scopes.emplace_back();
    assign("loop", loopValue);
    Flow inner = Flow::Normal;
    bool ok = assignTargets(node.targets, items[i], node.line) &&
              renderBody(node.bodies[0], inner);
    scopes.pop_back();
    if (!ok)
      return false;
    if (inner == Flow::Break)
      break;
  }
  (void)flow;
  return true;
}

bool Renderer::defineMacro(const Node &node) {
  auto fn = std::make_shared<Function>();
  fn->name = node.targets[0];
  const Node *macro = &node;
  fn->call = [this, macro](const Arguments &args, Value &result,
                           std::string &message) {
    if (callDepth >= kMaxCallDepth) {
      message = "macros call each other too deeply";
      return false;
    }
    if (args.positional.size() > macro->params.size()) {
      message = "macro '" + macro->targets[0] + "' takes " +
                std::to_string(macro->params.size()) + " arguments";
      return false;
    }
    // A macro sees the template's top-level names and its parameters, not
    // its caller's locals.
    Scope parameters;
    for (size_t i = 0; i < macro->params.size(); ++i) {
      const auto &[name, defaultValue] = macro->params[i];
      if (const Value *v = argument(args, i, name.c_str())) {
        parameters[name] = *v;
      } else if (defaultValue) {
        Value v;
        if (!eval(*defaultValue, v))
          return false;
        parameters[name] = v;
      } else {
        parameters[name] = Value::undefined("'" + name + "' is undefined");
      }
    }
    std::vector<Scope> saved = std::move(scopes);
    scopes = {saved.front(), std::move(parameters)};
    std::string rendered;
    std::string *savedOut = out;
    out = &rendered;
    ++callDepth;
    Flow flow = Flow::Normal;
    bool ok = renderBody(macro->bodies[0], flow);
    --callDepth;
    out = savedOut;
    scopes = std::move(saved);
    if (!ok) {
      // The error is already recorded in `error`.
      message.clear();
      return false;
    }
    result = Value(std::move(rendered));
    return true;
  };
  functions.push_back(fn);
  assign(node.targets[0], Value::function(fn));
  return true;
}

bool Renderer::evalArgs(const Expr &e, size_t first, Arguments &args) {
  for (size_t i = first; i < e.args.size(); ++i) {
    Value v;
    if (!eval(*e.args[i], v))
      return false;
    args.positional.push_back(std::move(v));
  }
  for (const auto &[key, expr] : e.keywords) {
    Value v;
    if (!eval(*expr, v))
      return false;
    args.keywords.emplace_back(key, std::move(v));
  }
  return true;
}

bool Renderer::getAttribute(const Value &object, const std::string &name,
                            int line, Value &result) {
  if (object.isUndefined())
    return fail(line, object.undefinedHint().empty()
                          ? "'" + name + "' of an undefined value"
                          : object.undefinedHint());
  if (object.isDict()) {
    if (const Value *v = object.asDict().find(name)) {
      result = *v;
      return true;
    }
  }
  result = Value::undefined("'" + typeName(object) +
                            " object' has no attribute '" + name + "'");
  return true;
}

bool Renderer::getItem(const Value &object, const Value &key, int line,
                       Value &result) {
  if (object.isUndefined())
    return fail(line, object.undefinedHint().empty()
                          ? "subscript of an undefined value"
                          : object.undefinedHint());
  if (object.isDict() && key.isString())
    return getAttribute(object, key.asString(), line, result);
  if ((object.isList() || object.isString()) && key.isInteger()) {
    int64_t index = key.asInt();
    if (object.isList()) {
      if (normalizeIndex(index, object.asList().size())) {
        result = object.asList()[static_cast<size_t>(index)];
        return true;
      }
    } else {
      std::vector<std::string_view> cps = codePoints(object.asString());
      if (normalizeIndex(index, cps.size())) {
        result = Value(std::string(cps[static_cast<size_t>(index)]));
        return true;
      }
    }
  }
  result = Value::undefined("'" + typeName(object) + " object' has no item " +
                            toRepr(key));
  return true;
}

bool Renderer::dottedAttribute(const Value &object, const std::string &path,
                               int line, Value &result) {
  result = object;
  size_t begin = 0;
  while (true) {
    size_t dot = path.find('.', begin);
    std::string part = path.substr(begin, dot - begin);
    Value next;
    bool isIndex =
        !part.empty() && std::all_of(part.begin(), part.end(),
                                     [](char c) { return std::isdigit(c); });
    if (result.isUndefined()) {
      next = result;
    } else if (!(isIndex
                     ? getItem(result, Value(int64_t(std::atoll(part.c_str()))),
                               line, next)
                     : getAttribute(result, part, line, next))) {
      return false;
    }
    result = next;
    if (dot == std::string::npos)
      return true;
    begin = dot + 1;
  }
}

bool Renderer::eval(const Expr &e, Value &result) {
  switch (e.kind) {
  case Expr::Literal:
    result = e.literal;
    return true;
  case Expr::Name:
    result = lookup(e.name);
    return true;
  case Expr::ListLiteral: {
    List items;
    for (const ExprPtr &item : e.args) {
      Value v;
      if (!eval(*item, v))
        return false;
      items.push_back(std::move(v));
    }
    result = Value(std::move(items));
    return true;
  }
  case Expr::DictLiteral: {
    Dict dict;
    for (size_t i = 0; i < e.args.size(); i += 2) {
      Value key, value;
      if (!eval(*e.args[i], key) || !eval(*e.args[i + 1], value))
        return false;
      if (!key.isString())
        return fail(e.line,
                    "dict keys must be strings here, got " + typeName(key));
      dict.set(key.asString(), std::move(value));
    }
    result = Value(std::move(dict));
    return true;
  }
  case Expr::Attr: {
    Value object;
    return eval(*e.args[0], object) &&
           getAttribute(object, e.name, e.line, result);
  }
  case Expr::Item: {
    Value object, key;
    return eval(*e.args[0], object) && eval(*e.args[1], key) &&
           getItem(object, key, e.line, result);
  }
  case Expr::Slice: {
    Value object, bounds[3];
    if (!eval(*e.args[0], object))
      return false;
    for (int i = 0; i < 3; ++i)
      if (e.args[i + 1] && !eval(*e.args[i + 1], bounds[i]))
        return false;
    if (object.isUndefined())
      return fail(e.line, object.undefinedHint());
    std::vector<size_t> indices;
    std::string message;
    if (object.isList()) {
      if (!sliceIndices(object.asList().size(), bounds[0], bounds[1], bounds[2],
                        indices, message))
        return fail(e.line, message);
      List items;
      for (size_t i : indices)
        items.push_back(object.asList()[i]);
      result = Value(std::move(items));
      return true;
    }
    if (object.isString()) {
      std::vector<std::string_view> cps = codePoints(object.asString());
      if (!sliceIndices(cps.size(), bounds[0], bounds[1], bounds[2], indices,
                        message))
        return fail(e.line, message);
      std::string text;
      for (size_t i : indices)
        text += cps[i];
      result = Value(std::move(text));
      return true;
    }
    return fail(e.line, "'" + typeName(object) + "' object cannot be sliced");
  }
  case Expr::Call:
    return evalCall(e, result);
  case Expr::Filter: {
    Value input;
    Arguments args;
    return eval(*e.args[0], input) && evalArgs(e, 1, args) &&
           applyFilter(e.name, input, args, e.line, result);
  }
  case Expr::Test: {
    Value input;
    Arguments args;
    bool passed;
    if (!eval(*e.args[0], input) || !evalArgs(e, 1, args) ||
        !applyTest(e.name, input, args, e.line, passed))
      return false;
    result = Value(passed != e.negated);
    return true;
  }
  case Expr::Not: {
    Value v;
    if (!eval(*e.args[0], v))
      return false;
    result = Value(!v.truthy());
    return true;
  }
  case Expr::Neg:
  case Expr::Pos: {
    Value v;
    if (!eval(*e.args[0], v))
      return false;
    if (!v.isNumber())
      return fail(e.line, "bad operand type for unary " +
                              std::string(e.kind == Expr::Neg ? "-" : "+") +
                              ": '" + typeName(v) + "'");
    if (e.kind == Expr::Pos)
      result = v.isInteger() ? Value(v.asInt()) : v;
    else if (v.isInteger() && v.asInt() == INT64_MIN)
      return fail(e.line, "integer overflow");
    else
      result = v.isInteger() ? Value(-v.asInt()) : Value(-v.asFloat());
    return true;
  }
  case Expr::And:
  case Expr::Or: {
    // Python returns the deciding operand, not a bool.
    if (!eval(*e.args[0], result))
      return false;
    if (result.truthy() == (e.kind == Expr::Or))
      return true;
    return eval(*e.args[1], result);
  }
  case Expr::Compare: {
    Value left;
    if (!eval(*e.args[0], left))
      return false;
    for (size_t i = 0; i < e.ops.size(); ++i) {
      Value right;
      if (!eval(*e.args[i + 1], right))
        return false;
      const std::string &op = e.ops[i];
      bool holds;
      if (op == "==" || op == "!=") {
        holds = valuesEqual(left, right) == (op == "==");
      } else if (op == "in" || op == "not in") {
        bool found = false;
        if (right.isString()) {
          if (!left.isString())
            return fail(e.line, "'in <string>' requires a string as left "
                                "operand, not " +
                                    typeName(left));
          found = right.asString().find(left.asString()) != std::string::npos;
        } else if (right.isDict() && !right.isNamespace()) {
          found = left.isString() && right.asDict().find(left.asString());
        } else if (right.isList()) {
          for (const Value &item : right.asList())
            found = found || valuesEqual(item, left);
        } else if (!right.isUndefined()) {
          return fail(e.line, "argument of type '" + typeName(right) +
                                  "' is not iterable");
        }
        holds = found == (op == "in");
      } else {
        int order;
        std::string message;
        if (!compareValues(left, right, order, message))
          return fail(e.line, message);
        holds = op == "<"    ? order < 0
                : op == "<=" ? order <= 0
                : op == ">"  ? order > 0
                             : order >= 0;
      }
      if (!holds) {
        result = Value(false);
        return true;
      }
      left = std::move(right);
    }
    result = Value(true);
    return true;
  }
  case Expr::Binary: {
    Value a, b;
    return eval(*e.args[0], a) && eval(*e.args[1], b) &&
           evalBinary(e, a, b, result);
  }
  case Expr::Cond: {
    Value test;
    if (!eval(*e.args[1], test))
      return false;
    if (test.truthy())
      return eval(*e.args[0], result);
    if (e.args[2])
      return eval(*e.args[2], result);
    result = Value::undefined("the condition was false and there is no else");
    return true;
  }
  }
  return fail(e.line, "unknown expression");
}

bool Renderer::evalBinary(const Expr &e, const Value &a, const Value &b,
                          Value &result) {
  const std::string &op = e.name;
  if (op == "~") {
    std::string text = toString(a) + toString(b);
    if (text.size() > kMaxOutputBytes)
      return fail(e.line, "a string is larger than 16 MiB");
    result = Value(std::move(text));
    return true;
  }
  for (const Value *v : {&a, &b})
    if (v->isUndefined())
      return fail(e.line, v->undefinedHint().empty() ? "undefined operand"
                                                     : v->undefinedHint());
  auto unsupported = [&] {
    return fail(e.line, "unsupported operand types for " + op + ": '" +
                            typeName(a) + "' and '" + typeName(b) + "'");
  };
  if (op == "+" && a.isString() && b.isString()) {
    if (a.asString().size() + b.asString().size() > kMaxOutputBytes)
      return fail(e.line, "a string is larger than 16 MiB");
    result = Value(a.asString() + b.asString());
    return true;
  }
  if (op == "+" && a.isList() && b.isList()) {
    List items = a.asList();
    items.insert(items.end(), b.asList().begin(), b.asList().end());
    result = Value(std::move(items));
    return true;
  }
  if (op == "*" && (a.isString() || a.isList()) && b.isInteger()) {
    int64_t n = std::max<int64_t>(b.asInt(), 0);
    size_t unit = a.isString() ? a.asString().size() : a.asList().size();
    if (unit && static_cast<uint64_t>(n) > kMaxOutputBytes / unit)
      return fail(e.line, "a repetition is larger than 16 MiB");
    if (a.isString()) {
      std::string text;
      for (int64_t i = 0; i < n; ++i)
        text += a.asString();
      result = Value(std::move(text));
    } else {
      List items;
      for (int64_t i = 0; i < n; ++i)
        items.insert(items.end(), a.asList().begin(), a.asList().end());
      result = Value(std::move(items));
    }
    return true;
  }
  if (!a.isNumber() || !b.isNumber())
    return unsupported();
  if (a.isInteger() && b.isInteger() && op != "/") {
    int64_t x = a.asInt(), y = b.asInt(), r = 0;
    bool overflow = false;
    if (op == "+") {
      overflow = __builtin_add_overflow(x, y, &r);
    } else if (op == "-") {
      overflow = __builtin_sub_overflow(x, y, &r);
    } else if (op == "*") {
      overflow = __builtin_mul_overflow(x, y, &r);
    } else if (op == "//" || op == "%") {
      if (y == 0)
        return fail(e.line, "integer division or modulo by zero");
      if (x == INT64_MIN && y == -1)
        return fail(e.line, "integer overflow");
      int64_t q = x / y, m = x % y;
      // Python floors: the remainder takes the divisor's sign.
      if (m != 0 && ((m < 0) != (y < 0))) {
        --q;
        m += y;
      }
      r = op == "//" ? q : m;
    } else if (op == "**") {
      if (y < 0) {
        result =
            Value(std::pow(static_cast<double>(x), static_cast<double>(y)));
        return true;
      }
      r = 1;
      for (int64_t i = 0; i < y && !overflow; ++i)
        overflow = __builtin_mul_overflow(r, x, &r);
      if (y > 64 && (x == 0 || x == 1 || x == -1))
        overflow = false, r = x == 0 ? 0 : (x == 1 || y % 2 == 0) ? 1 : -1;
    } else {
      return unsupported();
    }
    if (overflow)
      return fail(e.line, "integer overflow (Python would use a bignum)");
    result = Value(r);
    return true;
  }
  double x = a.asFloat(), y = b.asFloat();
  if (op == "+")
    result = Value(x + y);
  else if (op == "-")
    result = Value(x - y);
  else if (op == "*")
    result = Value(x * y);
  else if (op == "/" || op == "//" || op == "%") {
    if (y == 0)
      return fail(e.line, "float division by zero");
    if (op == "/")
      result = Value(x / y);
    else if (op == "//")
      result = Value(std::floor(x / y));
    else {
      double m = std::fmod(x, y);
      if (m != 0 && ((m < 0) != (y < 0)))
        m += y;
      result = Value(m);
    }
  } else if (op == "**") {
    result = Value(std::pow(x, y));
  } else {
    return unsupported();
  }
  return true;
}

bool Renderer::builtinFunction(const std::string &name, const Arguments &args,
                               int line, Value &result) {
  if (name == "raise_exception") {
    // The template's own message, as transformers shows it.
    error = args.positional.empty() ? "raise_exception was called"
                                    : toString(args.positional[0]);
    return false;
  }
  if (name == "namespace" || name == "dict") {
    Dict dict;
    if (!args.positional.empty()) {
      if (!args.positional[0].isDict())
        return fail(line, name + "() takes keyword arguments or a dict");
      dict = args.positional[0].asDict();
    }
    for (const auto &[key, value] : args.keywords)
      dict.set(key, value);
    result = name == "namespace" ? Value::makeNamespace(std::move(dict))
                                 : Value(std::move(dict));
    return true;
  }
  if (name == "range") {
    if (args.positional.empty() || args.positional.size() > 3)
      return fail(line, "range() takes 1 to 3 integer arguments");
    for (const Value &v : args.positional)
      if (!v.isInteger())
        return fail(line, "range() takes integers, got " + typeName(v));
    int64_t start = 0, stop, stepSize = 1;
    if (args.positional.size() == 1) {
      stop = args.positional[0].asInt();
    } else {
      start = args.positional[0].asInt();
      stop = args.positional[1].asInt();
      if (args.positional.size() == 3)
        stepSize = args.positional[2].asInt();
    }
    if (stepSize == 0)
      return fail(line, "range() arg 3 must not be zero");
    List items;
    for (int64_t i = start; stepSize > 0 ? i < stop : i > stop; i += stepSize) {
      if (static_cast<int64_t>(items.size()) >= kMaxRangeLength)
        return fail(line, "range() is longer than 10,000 items");
      items.push_back(Value(i));
      if ((stepSize > 0 && i > INT64_MAX - stepSize) ||
          (stepSize < 0 && i < INT64_MIN - stepSize))
        break;
    }
    result = Value(std::move(items));
    return true;
  }
  if (name == "strftime_now") {
    if (args.positional.empty() || !args.positional[0].isString())
      return fail(line, "strftime_now() takes a format string");
    std::time_t now = std::time(nullptr);
    std::tm local;
    localtime_r(&now, &local);
    char buf[256];
    size_t n = std::strftime(buf, sizeof(buf),
                             args.positional[0].asString().c_str(), &local);
    result = Value(std::string(buf, n));
    return true;
  }
  return fail(line, "unsupported function '" + name + "'");
}

bool Renderer::evalCall(const Expr &e, Value &result) {
  const Expr &callee = *e.args[0];
  Arguments args;
  if (callee.kind == Expr::Attr) {
    Value object;
    if (!eval(*callee.args[0], object) || !evalArgs(e, 1, args))
      return false;
    return callMethod(object, callee.name, args, e.line, result);
  }
  if (callee.kind == Expr::Name && kFunctions.count(callee.name)) {
    bool shadowed = false;
    for (const Scope &scope : scopes)
      shadowed = shadowed || scope.count(callee.name);
    if (!shadowed)
      return evalArgs(e, 1, args) &&
             builtinFunction(callee.name, args, e.line, result);
  }
  Value fn;
  if (!eval(callee, fn) || !evalArgs(e, 1, args))
    return false;
  if (fn.kind() != Value::Kind::Function)
    return fail(e.line, fn.isUndefined()
                            ? fn.undefinedHint()
                            : "'" + typeName(fn) + "' object is not callable");
  std::string message;
  if (!fn.asFunction().call(args, result, message))
    return message.empty() ? false : fail(e.line, message);
  return true;
}

bool Renderer::callMethod(const Value &object, const std::string &name,
                          const Arguments &args, int line, Value &result) {
  if (object.isUndefined())
    return fail(line, object.undefinedHint());
  const Value *a0 = argument(args, 0, "");
  const Value *a1 = argument(args, 1, "");
  if (object.isDict() && !object.isNamespace()) {
    const Dict &dict = object.asDict();
    if (name == "items" || name == "keys" || name == "values") {
      List items;
      for (const auto &[key, value] : dict.items()) {
        if (name == "items")
          items.push_back(Value(List{Value(key), value}));
        else
          items.push_back(name == "keys" ? Value(key) : value);
      }
      result = Value(std::move(items));
      return true;
    }
    if (name == "get") {
      if (!a0)
        return fail(line, "get() takes a key");
      const Value *v = a0->isString() ? dict.find(a0->asString()) : nullptr;
      result = v ? *v : a1 ? *a1 : Value::none();
      return true;
    }
    // loop.cycle and other callables stored in a dict.
    if (const Value *v = dict.find(name)) {
      if (v->kind() == Value::Kind::Function) {
        std::string message;
        if (!v->asFunction().call(args, result, message))
          return message.empty() ? false : fail(line, message);
        return true;
      }
    }
  }
  if (!object.isString())
    return fail(line, "'" + typeName(object) + "' object has no method '" +
                          name + "'");
  const std::string &s = object.asString();
  auto stringArg = [&](const Value *v, const char *what, std::string &out) {
    if (!v || !v->isString())
      return fail(line, name + "() takes a string " + what);
    out = v->asString();
    return true;
  };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    result = Value(pythonStrip(s, a0, name != "rstrip", name != "lstrip"));
    return true;
  }
  if (name == "upper" || name == "lower") {
    result = Value(changeCase(s, name == "upper" ? Case::Upper : Case::Lower));
    return true;
  }
  if (name == "title" || name == "capitalize") {
    result =
        Value(changeCase(s, name == "title" ? Case::Title : Case::Capitalize));
    return true;
  }
  if (name == "startswith" || name == "endswith") {
    List candidates;
    if (a0 && a0->isList())
      candidates = a0->asList();
    else if (a0)
      candidates.push_back(*a0);
    bool found = false;
    for (const Value &candidate : candidates) {
      if (!candidate.isString())
        return fail(line, name + "() takes a string or a tuple of strings");
      const std::string &c = candidate.asString();
      found = found || (c.size() <= s.size() &&
                        (name == "startswith" ? s.compare(0, c.size(), c) == 0
                                              : s.compare(s.size() - c.size(),
                                                          c.size(), c) == 0));
    }
    result = Value(found);
    return true;
  }
  if (name == "split") {
    int64_t maxSplit = -1;
    if (const Value *m = argument(args, 1, "maxsplit")) {
      if (!m->isInteger())
        return fail(line, "split() maxsplit must be an integer");
      maxSplit = m->asInt();
    }
    const Value *sep = argument(args, 0, "sep");
    List parts;
    if (!sep || sep->isNone()) {
      std::vector<std::string_view> cps = codePoints(s);
      size_t i = 0;
      while (true) {
        while (i < cps.size() && isPythonSpace(decodeCodePoint(cps[i])))
          ++i;
        if (i == cps.size())
          break;
        std::string part;
        if (maxSplit >= 0 && static_cast<int64_t>(parts.size()) == maxSplit) {
          for (; i < cps.size(); ++i)
            part += cps[i];
          parts.push_back(Value(std::move(part)));
          break;
        }
        while (i < cps.size() && !isPythonSpace(decodeCodePoint(cps[i])))
          part += cps[i++];
        parts.push_back(Value(std::move(part)));
      }
    } else {
      std::string separator;
      if (!stringArg(sep, "separator", separator))
        return false;
      if (separator.empty())
        return fail(line, "empty separator");
      size_t begin = 0;
      while (true) {
        size_t at = s.find(separator, begin);
        if (at == std::string::npos ||
            (maxSplit >= 0 && static_cast<int64_t>(parts.size()) == maxSplit)) {
          parts.push_back(Value(s.substr(begin)));
          break;
        }
        parts.push_back(Value(s.substr(begin, at - begin)));
        begin = at + separator.size();
      }
    }
    result = Value(std::move(parts));
    return true;
  }
  if (name == "replace") {
    std::string from, to;
    if (!stringArg(a0, "to replace", from) || !stringArg(a1, "replacement", to))
      return false;
    int64_t count = -1;
    if (const Value *c = argument(args, 2, "count"))
      count = c->isInteger() ? c->asInt() : -1;
    std::string text;
    if (from.empty()) {
      std::vector<std::string_view> cps = codePoints(s);
      int64_t done = 0;
      for (size_t i = 0; i <= cps.size(); ++i) {
        if (count < 0 || done < count) {
          text += to;
          ++done;
        }
        if (i < cps.size())
          text += cps[i];
      }
    } else {
      size_t begin = 0;
      for (int64_t done = 0; count < 0 || done < count; ++done) {
        size_t at = s.find(from, begin);
        if (at == std::string::npos)
          break;
        text += s.substr(begin, at - begin) + to;
        begin = at + from.size();
        if (text.size() > kMaxOutputBytes)
          return fail(line, "a string is larger than 16 MiB");
      }
      text += s.substr(begin);
    }
    result = Value(std::move(text));
    return true;
  }
  if (name == "find" || name == "rfind" || name == "count") {
    std::string needle;
    if (!stringArg(a0, "to find", needle))
      return false;
    if (name == "count") {
      int64_t n = 0;
      if (needle.empty()) {
        n = static_cast<int64_t>(codePoints(s).size()) + 1;
      } else {
        for (size_t at = s.find(needle); at != std::string::npos;
             at = s.find(needle, at + needle.size()))
          ++n;
      }
      result = Value(n);
      return true;
    }
    size_t at = name == "find" ? s.find(needle) : s.rfind(needle);
    // Code points before the match, as Python counts.
    result =
        Value(at == std::string::npos
                  ? int64_t(-1)
                  : static_cast<int64_t>(codePoints(s.substr(0, at)).size()));
    return true;
  }
  if (name == "join") {
    List items;
    if (!a0 || !iterate(*a0, line, items))
      return false;
    std::string text;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].isString())
        return fail(line, "sequence item " + std::to_string(i) +
                              ": expected str instance, " + typeName(items[i]) +
                              " found");
      text += (i ? s : "") + items[i].asString();
    }
    result = Value(std::move(text));
    return true;
  }
  return fail(line, "'str' object has no method '" + name + "'");
}

bool Renderer::applyTest(const std::string &name, const Value &v,
                         const Arguments &args, int line, bool &result) {
  const Value *a0 = argument(args, 0, "");
  auto needArg = [&] {
    if (!a0)
      return fail(line, "the test '" + name + "' takes an argument");
    return true;
  };
  using K = Value::Kind;
  if (name == "defined")
    result = !v.isUndefined();
  else if (name == "undefined")
    result = v.isUndefined();
  else if (name == "none")
    result = v.isNone();
  else if (name == "boolean")
    result = v.kind() == K::Bool;
  else if (name == "true")
    result = v.kind() == K::Bool && v.asBool();
  else if (name == "false")
    result = v.kind() == K::Bool && !v.asBool();
  else if (name == "integer")
    result = v.kind() == K::Int;
  else if (name == "float")
    result = v.kind() == K::Float;
  else if (name == "number")
    result = v.isNumber();
  else if (name == "string")
    result = v.isString();
  else if (name == "mapping")
    result = v.isDict() && !v.isNamespace();
  else if (name == "iterable" || name == "sequence")
    result = v.isString() || v.isList() || (v.isDict() && !v.isNamespace()) ||
             v.isUndefined();
  else if (name == "callable")
    result = v.kind() == K::Function;
  else if (name == "escaped")
    result = false;
  else if (name == "lower" || name == "upper") {
    // Python's islower()/isupper(): some cased character, none of the
    // other case.
    bool cased = false, all = true;
    std::string text = toString(v);
    for (std::string_view c : codePoints(text)) {
      uint32_t cp = decodeCodePoint(c);
      if (!isCased(cp))
        continue;
      cased = true;
      all =
          all && (name == "lower" ? toLowerCp(cp) == cp : toUpperCp(cp) == cp);
    }
    result = cased && all;
  } else if (name == "odd" || name == "even" || name == "divisibleby") {
    if (!v.isInteger())
      return fail(line, "the test '" + name + "' takes an integer, got " +
                            typeName(v));
    int64_t divisor = 2;
    if (name == "divisibleby") {
      if (!needArg())
        return false;
      if (!a0->isInteger() || a0->asInt() == 0)
        return fail(line, "divisibleby takes a non-zero integer");
      divisor = a0->asInt();
    }
    int64_t m = divisor == -1 ? 0 : v.asInt() % divisor;
    result = name == "odd" ? m != 0 : m == 0;
  } else if (name == "eq" || name == "equalto" || name == "==" ||
             name == "ne" || name == "!=" || name == "sameas") {
    if (!needArg())
      return false;
    result = valuesEqual(v, *a0) == (name != "ne" && name != "!=");
  } else if (name == "in") {
    if (!needArg())
      return false;
    if (a0->isString())
      result = v.isString() &&
               a0->asString().find(v.asString()) != std::string::npos;
    else if (a0->isDict())
      result = v.isString() && a0->asDict().find(v.asString());
    else if (a0->isList())
      result = std::any_of(a0->asList().begin(), a0->asList().end(),
                           [&](const Value &x) { return valuesEqual(x, v); });
    else
      return fail(line,
                  "argument of type '" + typeName(*a0) + "' is not iterable");
  } else {
    if (!needArg())
      return false;
    int order;
    std::string message;
    if (!compareValues(v, *a0, order, message))
      return fail(line, message);
    if (name == "lt" || name == "<" || name == "lessthan")
      result = order < 0;
    else if (name == "le" || name == "<=")
      result = order <= 0;
    else if (name == "gt" || name == ">" || name == "greaterthan")
      result = order > 0;
    else
      result = order >= 0;
  }
  return true;
}

/// Python's int() of a string: optional sign and underscores between
/// digits, surrounding whitespace.
bool parseInt(const std::string &text, int64_t &out) {
  std::string s = pythonStrip(text, nullptr, true, true), digits;
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-'))
    negative = s[i++] == '-';
  for (; i < s.size(); ++i) {
    if (std::isdigit(static_cast<unsigned char>(s[i])))
      digits += s[i];
    else if (s[i] != '_' || digits.empty() || i + 1 == s.size())
      return false;
  }
  if (digits.empty())
    return false;
  errno = 0;
  unsigned long long v = std::strtoull(digits.c_str(), nullptr, 10);
  if (errno == ERANGE || v > static_cast<unsigned long long>(INT64_MAX))
    return false;
  out = negative ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  return true;
}

bool Renderer::applyFilter(const std::string &name, const Value &v,
                           const Arguments &args, int line, Value &result) {
  const Value *a0 = argument(args, 0, "");
  if (name == "safe" || name == "string") {
    result = name == "safe" ? v : Value(toString(v));
    return true;
  }
  if (name == "e" || name == "escape") {
    result = Value(htmlEscape(toString(v)));
    return true;
  }
  if (name == "trim") {
    result =
        Value(pythonStrip(toString(v), argument(args, 0, "chars"), true, true));
    return true;
  }
  if (name == "upper" || name == "lower") {
    result = Value(
        changeCase(toString(v), name == "upper" ? Case::Upper : Case::Lower));
    return true;
  }
  if (name == "title" || name == "capitalize") {
    result = Value(changeCase(toString(v), name == "title" ? Case::Title
                                                           : Case::Capitalize));
    return true;
  }
  if (name == "replace") {
    Arguments methodArgs = args;
    return callMethod(Value(toString(v)), "replace", methodArgs, line, result);
  }
  if (name == "default" || name == "d") {
    const Value *boolean = argument(args, 1, "boolean");
    bool useDefault =
        v.isUndefined() || (boolean && boolean->truthy() && !v.truthy());
    const Value *fallback = argument(args, 0, "default_value");
    result = useDefault ? (fallback ? *fallback : Value(std::string())) : v;
    return true;
  }
  if (name == "length" || name == "count") {
    if (v.isString())
      result = Value(static_cast<int64_t>(codePoints(v.asString()).size()));
    else if (v.isList())
      result = Value(static_cast<int64_t>(v.asList().size()));
    else if (v.isDict() && !v.isNamespace())
      result = Value(static_cast<int64_t>(v.asDict().size()));
    else if (v.isUndefined())
      result = Value(int64_t(0));
    else
      return fail(line, "object of type '" + typeName(v) + "' has no len()");
    return true;
  }
  if (name == "tojson") {
    // transformers' tojson(x, ensure_ascii=False, indent=None,
    // separators=None, sort_keys=False).
    JsonStyle style;
    if (const Value *ascii = argument(args, 0, "ensure_ascii"))
      style.ensureAscii = ascii->truthy();
    if (const Value *i = argument(args, 1, "indent")) {
      if (!i->isNone() &&
          (!i->isInteger() || i->asInt() < 0 || i->asInt() > 64))
        return fail(line, "tojson's indent must be an integer from 0 to 64");
      if (!i->isNone())
        style.indent = static_cast<int>(i->asInt());
    }
    if (const Value *separators = argument(args, 2, "separators")) {
      if (!separators->isNone()) {
        if (!separators->isList() || separators->asList().size() != 2 ||
            !separators->asList()[0].isString() ||
            !separators->asList()[1].isString())
          return fail(line, "tojson's separators must be two strings");
        style.itemSeparator = separators->asList()[0].asString();
        style.keySeparator = separators->asList()[1].asString();
      }
    }
    if (const Value *sortKeys = argument(args, 3, "sort_keys"))
      style.sortKeys = sortKeys->truthy();
    std::string text, message;
    if (!toJson(v, text, message, style))
      return fail(line, message);
    result = Value(std::move(text));
    return true;
  }
  if (name == "int") {
    const Value *fallback = argument(args, 0, "default");
    if (v.isInteger()) {
      result = Value(v.asInt());
    } else if (v.kind() == Value::Kind::Float && std::isfinite(v.asFloat()) &&
               std::fabs(v.asFloat()) < 9.2e18) {
      result = Value(static_cast<int64_t>(v.asFloat()));
    } else {
      int64_t parsed;
      if (v.isString() && parseInt(v.asString(), parsed))
        result = Value(parsed);
      else
        result = fallback ? *fallback : Value(int64_t(0));
    }
    return true;
  }
  if (name == "float") {
    const Value *fallback = argument(args, 0, "default");
    if (v.isNumber()) {
      result = Value(v.asFloat());
      return true;
    }
    std::string s = pythonStrip(toString(v), nullptr, true, true);
    char *end = nullptr;
    double d = s.empty() ? 0 : std::strtod(s.c_str(), &end);
    if (v.isString() && !s.empty() && end == s.c_str() + s.size())
      result = Value(d);
    else
      result = fallback ? *fallback : Value(0.0);
    return true;
  }
  if (name == "abs") {
    if (!v.isNumber())
      return fail(line, "bad operand type for abs(): '" + typeName(v) + "'");
    if (v.isInteger() && v.asInt() == INT64_MIN)
      return fail(line, "integer overflow");
    result = v.isInteger() ? Value(std::abs(v.asInt()))
                           : Value(std::fabs(v.asFloat()));
    return true;
  }
  if (name == "round") {
    if (!v.isNumber())
      return fail(line, "round takes a number, got " + typeName(v));
    const Value *precision = argument(args, 0, "precision");
    const Value *method = argument(args, 1, "method");
    int64_t digits =
        precision && precision->isInteger() ? precision->asInt() : 0;
    double scale = std::pow(10.0, static_cast<double>(digits));
    double x = v.asFloat() * scale;
    std::string how = method ? toString(*method) : "common";
    // "common" is Python's round(): halves to even.
    double r = how == "floor"  ? std::floor(x)
               : how == "ceil" ? std::ceil(x)
                               : std::nearbyint(x);
    result = Value(r / scale);
    return true;
  }
  if (name == "first" || name == "last") {
    List items;
    if (!iterate(v, line, items))
      return false;
    result = items.empty() ? Value::undefined("there is no " + name + " item")
             : name == "first" ? items.front()
                               : items.back();
    return true;
  }
  if (name == "list" || name == "reverse") {
    List items;
    if (!iterate(v, line, items))
      return false;
    if (name == "reverse") {
      std::reverse(items.begin(), items.end());
      if (v.isString()) {
        std::string text;
        for (const Value &c : items)
          text += c.asString();
        result = Value(std::move(text));
        return true;
      }
    }
    result = Value(std::move(items));
    return true;
  }
  if (name == "items" || name == "dictsort") {
    if (v.isUndefined()) {
      result = Value(List());
      return true;
    }
    if (!v.isDict() || v.isNamespace())
      return fail(line, "the filter '" + name + "' takes a mapping, got " +
                            typeName(v));
    List items;
    for (const auto &[key, value] : v.asDict().items())
      items.push_back(Value(List{Value(key), value}));
    if (name == "dictsort")
      std::stable_sort(
          items.begin(), items.end(), [](const Value &a, const Value &b) {
            return changeCase(a.asList()[0].asString(), Case::Lower) <
                   changeCase(b.asList()[0].asString(), Case::Lower);
          });
    result = Value(std::move(items));
    return true;
  }
  if (name == "join") {
    List items;
    if (!iterate(v, line, items))
      return false;
    const Value *separator = argument(args, 0, "d");
    const Value *attribute = argument(args, 1, "attribute");
    std::string sep = separator ? toString(*separator) : "", text;
    for (size_t i = 0; i < items.size(); ++i) {
      Value item = items[i];
      if (attribute &&
          !dottedAttribute(items[i], toString(*attribute), line, item))
        return false;
      text += (i ? sep : "") + toString(item);
      if (text.size() > kMaxOutputBytes)
        return fail(line, "a string is larger than 16 MiB");
    }
    result = Value(std::move(text));
    return true;
  }
  if (name == "select" || name == "reject" || name == "selectattr" ||
      name == "rejectattr") {
    List items;
    if (!iterate(v, line, items))
      return false;
    bool byAttribute = name == "selectattr" || name == "rejectattr";
    bool keepMatches = name == "select" || name == "selectattr";
    size_t first = 0;
    std::string attribute;
    if (byAttribute) {
      if (!a0)
        return fail(line, name + " takes an attribute name");
      attribute = toString(*a0);
      first = 1;
    }
    std::string test;
    if (first < args.positional.size()) {
      test = toString(args.positional[first]);
      if (!kTests.count(test))
        return fail(line, "unsupported test '" + test + "'");
    }
    Arguments testArgs;
    for (size_t i = first + 1; i < args.positional.size(); ++i)
      testArgs.positional.push_back(args.positional[i]);
    List kept;
    for (const Value &item : items) {
      Value subject = item;
      if (byAttribute && !dottedAttribute(item, attribute, line, subject))
        return false;
      bool passed = subject.truthy();
      if (!test.empty() && !applyTest(test, subject, testArgs, line, passed))
        return false;
      if (passed == keepMatches)
        kept.push_back(item);
    }
    result = Value(std::move(kept));
    return true;
  }
  if (name == "map") {
    List items;
    if (!iterate(v, line, items))
      return false;
    List mapped;
    const Value *attribute = nullptr;
    for (const auto &[key, value] : args.keywords)
      if (key == "attribute")
        attribute = &value;
    if (attribute) {
      const Value *fallback = nullptr;
      for (const auto &[key, value] : args.keywords)
        if (key == "default")
          fallback = &value;
      for (const Value &item : items) {
        Value x;
        if (!dottedAttribute(item, toString(*attribute), line, x))
          return false;
        mapped.push_back(x.isUndefined() && fallback ? *fallback : x);
      }
    } else {
      if (!a0)
        return fail(line, "map takes a filter name or attribute=");
      std::string filter = toString(*a0);
      if (!kFilters.count(filter))
        return fail(line, "unsupported filter '" + filter + "'");
      Arguments filterArgs;
      filterArgs.positional.assign(args.positional.begin() + 1,
                                   args.positional.end());
      for (const Value &item : items) {
        Value x;
        if (!applyFilter(filter, item, filterArgs, line, x))
          return false;
        mapped.push_back(std::move(x));
      }
    }
    result = Value(std::move(mapped));
    return true;
  }
  if (name == "sort" || name == "unique" || name == "min" || name == "max") {
    List items;
    if (!iterate(v, line, items))
      return false;
    const Value *caseSensitive =
        argument(args, name == "sort" ? 1 : 0, "case_sensitive");
    const Value *attribute =
        argument(args, name == "sort" ? 2 : 1, "attribute");
    bool reverse = false;
    if (name == "sort")
      if (const Value *r = argument(args, 0, "reverse"))
        reverse = r->truthy();
    bool folding = !(caseSensitive && caseSensitive->truthy());
    // Keys: the attribute if asked, lowered strings unless case matters.
    std::vector<Value> keys;
    for (const Value &item : items) {
      Value key = item;
      if (attribute && !dottedAttribute(item, toString(*attribute), line, key))
        return false;
      if (folding && key.isString())
        key = Value(changeCase(key.asString(), Case::Lower));
      keys.push_back(std::move(key));
    }
    if (name == "unique") {
      List kept;
      std::vector<Value> seen;
      for (size_t i = 0; i < items.size(); ++i) {
        bool duplicate =
            std::any_of(seen.begin(), seen.end(), [&](const Value &k) {
              return valuesEqual(k, keys[i]);
            });
        if (!duplicate) {
          seen.push_back(keys[i]);
          kept.push_back(items[i]);
        }
      }
      result = Value(std::move(kept));
      return true;
    }
    std::vector<size_t> order(items.size());
    for (size_t i = 0; i < order.size(); ++i)
      order[i] = i;
    std::string message;
    bool ok = true;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      int c = 0;
      if (ok && !compareValues(keys[a], keys[b], c, message))
        ok = false;
      return reverse ? c > 0 : c < 0;
    });
    if (!ok)
      return fail(line, message);
    if (name == "sort") {
      List sorted;
      for (size_t i : order)
        sorted.push_back(items[i]);
      result = Value(std::move(sorted));
    } else if (items.empty()) {
      result = Value::undefined("no " + name + " of an empty sequence");
    } else {
      result = items[name == "min" ? order.front() : order.back()];
    }
    return true;
  }
  if (name == "sum") {
    List items;
    if (!iterate(v, line, items))
      return false;
    const Value *attribute = argument(args, 0, "attribute");
    const Value *start = argument(args, 1, "start");
    Value total = start ? *start : Value(int64_t(0));
    Expr plus;
    plus.kind = Expr::Binary;
    plus.line = line;
    plus.name = "+";
    for (const Value &item : items) {
      Value x = item;
      if (attribute && !dottedAttribute(item, toString(*attribute), line, x))
        return false;
      Value next;
      if (!evalBinary(plus, total, x, next))
        return false;
      total = std::move(next);
    }
    result = std::move(total);
    return true;
  }
  if (name == "attr") {
    if (!a0)
      return fail(line, "attr takes a name");
    return getAttribute(v, toString(*a0), line, result);
  }
  if (name == "indent") {
    const Value *width = argument(args, 0, "width");
    const Value *first = argument(args, 1, "first");
    const Value *blank = argument(args, 2, "blank");
    std::string pad = !width              ? "    "
                      : width->isString() ? width->asString()
                      : width->isInteger()
                          ? std::string(static_cast<size_t>(std::clamp<int64_t>(
                                            width->asInt(), 0, 256)),
                                        ' ')
                          : "    ";
    std::string s = toString(v), text;
    bool atLineStart = first && first->truthy();
    size_t begin = 0;
    bool firstLine = true;
    while (begin <= s.size()) {
      size_t end = s.find('\n', begin);
      std::string lineText = s.substr(
          begin, end == std::string::npos ? std::string::npos : end - begin);
      bool indentThis = firstLine
                            ? atLineStart
                            : (!lineText.empty() || (blank && blank->truthy()));
      text += (indentThis ? pad : "") + lineText;
      if (end == std::string::npos)
        break;
      text += '\n';
      begin = end + 1;
      firstLine = false;
    }
    result = Value(std::move(text));
    return true;
  }
  return fail(line, "unsupported filter '" + name + "'");
}

} // namespace

//===----------------------------------------------------------------------===//
// Template
//===----------------------------------------------------------------------===//

Template::Template(std::unique_ptr<Node> root) : root(std::move(root)) {}
Template::~Template() = default;

std::unique_ptr<Template> Template::parse(std::string_view source,
                                          std::string &error) {
  std::vector<Token> tokens;
  Lexer lexer(source);
  if (!lexer.run(tokens, error))
    return nullptr;
  Parser parser(std::move(tokens));
  NodePtr root = parser.parseTemplate(error);
  if (!root)
    return nullptr;
  return std::unique_ptr<Template>(new Template(std::move(root)));
}

bool Template::render(const Dict &variables, std::string &out,
                      std::string &error) const {
  out.clear();
  Renderer renderer(variables, out);
  Flow flow = Flow::Normal;
  if (!renderer.renderBody(root->bodies[0], flow)) {
    error = renderer.errorMessage();
    if (error.empty())
      error = "the template failed";
    return false;
  }
  return true;
}

} // namespace jinja
} // namespace optrt
