//===- Tokenizer.cpp - Hugging Face tokenizer.json runtime tokenizer ------===//
//
// The pipeline mirrors tokenizers' TokenizerImpl::encode: added tokens are
// split out of the raw text first, each remaining segment is normalized,
// split again on "normalized" added tokens, pre-tokenized, and handed to the
// model word by word; the post-processor template runs last. Offsets are not
// tracked, which keeps every stage a plain string transformation.
//
//===----------------------------------------------------------------------===//

#include "runtime/tokenizer/Tokenizer.h"

#include "runtime/tokenizer/BpeModel.h"
#include "runtime/tokenizer/Regex.h"
#include "runtime/tokenizer/Utf8.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <unordered_set>

namespace optrt {

using json = nlohmann::json;
using tok::Regex;

namespace {

//===----------------------------------------------------------------------===//
// JSON helpers: each returns false with a message instead of throwing.
//===----------------------------------------------------------------------===//

struct Ctx {
  std::string error;
  bool fail(std::string message) {
    if (error.empty())
      error = std::move(message);
    return false;
  }
};

const json *member(const json &j, const char *key) {
  if (!j.is_object())
    return nullptr;
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

bool getString(Ctx &ctx, const json &j, const char *key, const char *where,
               std::string &out, const char *fallback = nullptr) {
  const json *v = member(j, key);
  if (!v) {
    if (fallback) {
      out = fallback;
      return true;
    }
    return ctx.fail(std::string(where) + ": missing string field '" + key +
                    "'");
  }
  if (!v->is_string())
    return ctx.fail(std::string(where) + ": field '" + key +
                    "' must be a string");
  out = v->get<std::string>();
  return true;
}

bool getBool(Ctx &ctx, const json &j, const char *key, const char *where,
             bool &out, bool fallback) {
  const json *v = member(j, key);
  if (!v) {
    out = fallback;
    return true;
  }
  if (!v->is_boolean())
    return ctx.fail(std::string(where) + ": field '" + key +
                    "' must be a boolean");
  out = v->get<bool>();
  return true;
}

bool getInt(Ctx &ctx, const json &j, const char *key, const char *where,
            int64_t &out, int64_t fallback) {
  const json *v = member(j, key);
  if (!v) {
    out = fallback;
    return true;
  }
  if (!v->is_number_integer())
    return ctx.fail(std::string(where) + ": field '" + key +
                    "' must be an integer");
  out = v->get<int64_t>();
  return true;
}

bool getType(Ctx &ctx, const json &j, const char *where, std::string &type) {
  if (!j.is_object())
    return ctx.fail(std::string(where) + " must be an object");
  return getString(ctx, j, "type", where, type);
}

bool unsupported(Ctx &ctx, const char *where, const std::string &type) {
  return ctx.fail(std::string("unsupported ") + where + " type '" + type + "'");
}

/// A {"String": s} or {"Regex": r} pattern, compiled either way by PCRE2.
bool getPattern(Ctx &ctx, const json &j, const char *where,
                std::unique_ptr<Regex> &out) {
  const json *p = member(j, "pattern");
  if (!p || !p->is_object())
    return ctx.fail(std::string(where) + ": missing object field 'pattern'");
  bool literal;
  const json *v;
  if ((v = member(*p, "String"))) {
    literal = true;
  } else if ((v = member(*p, "Regex"))) {
    literal = false;
  } else {
    return ctx.fail(std::string(where) +
                    ": pattern must have a 'String' or 'Regex' field");
  }
  if (!v->is_string())
    return ctx.fail(std::string(where) + ": pattern must be a string");
  std::string message;
  out = Regex::compile(v->get<std::string>(), literal, &message);
  if (!out)
    return ctx.fail(std::string(where) + ": " + message);
  return true;
}

std::string replaceAll(const Regex &pattern, std::string_view text,
                       std::string_view content) {
  std::vector<Regex::Match> matches;
  pattern.findAll(text, matches);
  if (matches.empty())
    return std::string(text);
  std::string out;
  out.reserve(text.size() + matches.size() * content.size());
  size_t prev = 0;
  for (const Regex::Match &m : matches) {
    out.append(text.substr(prev, m.start - prev));
    out.append(content);
    prev = m.end;
  }
  out.append(text.substr(prev));
  return out;
}

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

//===----------------------------------------------------------------------===//
// Normalizers: Sequence, Prepend, Replace.
//===----------------------------------------------------------------------===//

struct Normalizer {
  enum class Kind { Sequence, Prepend, Replace } kind;
  std::vector<Normalizer> children;
  std::string text; // Prepend: the prefix; Replace: the replacement
  std::unique_ptr<Regex> pattern;

  std::string apply(std::string s) const {
    switch (kind) {
    case Kind::Sequence:
      for (const Normalizer &child : children)
        s = child.apply(std::move(s));
      return s;
    case Kind::Prepend:
      return s.empty() ? s : text + s;
    case Kind::Replace:
      return replaceAll(*pattern, s, text);
    }
    return s;
  }
};

bool parseNormalizer(Ctx &ctx, const json &j, Normalizer &out) {
  std::string type;
  if (!getType(ctx, j, "normalizer", type))
    return false;
  if (type == "Sequence") {
    out.kind = Normalizer::Kind::Sequence;
    const json *list = member(j, "normalizers");
    if (!list || !list->is_array())
      return ctx.fail("normalizer Sequence: missing array 'normalizers'");
    for (const json &child : *list) {
      out.children.emplace_back();
      if (!parseNormalizer(ctx, child, out.children.back()))
        return false;
    }
    return true;
  }
  if (type == "Prepend") {
    out.kind = Normalizer::Kind::Prepend;
    return getString(ctx, j, "prepend", "normalizer Prepend", out.text);
  }
  if (type == "Replace") {
    out.kind = Normalizer::Kind::Replace;
    return getPattern(ctx, j, "normalizer Replace", out.pattern) &&
           getString(ctx, j, "content", "normalizer Replace", out.text);
  }
  return unsupported(ctx, "normalizer", type);
}

//===----------------------------------------------------------------------===//
// Pre-tokenizers: Sequence, Split, ByteLevel, Metaspace.
//===----------------------------------------------------------------------===//

struct Piece {
  std::string text;
  bool atOriginalStart; // begins at offset 0 of the original input
};

enum class SplitBehavior {
  Removed,
  Isolated,
  MergedWithPrevious,
  MergedWithNext,
  Contiguous
};

/// Splits one piece at the given matches the way tokenizers'
/// NormalizedString::split does, dropping empty results.
void splitPiece(Piece &&piece, const std::vector<Regex::Match> &matches,
                SplitBehavior behavior, bool invert, std::vector<Piece> &out) {
  struct Span {
    size_t start, end;
    bool isMatch;
  };
  const std::string &s = piece.text;
  std::vector<Span> spans;
  spans.reserve(matches.size() * 2 + 1);
  size_t prev = 0;
  for (const Regex::Match &m : matches) {
    if (prev != m.start)
      spans.push_back({prev, m.start, false});
    spans.push_back({m.start, m.end, true});
    prev = m.end;
  }
  if (prev != s.size())
    spans.push_back({prev, s.size(), false});
  if (invert)
    for (Span &span : spans)
      span.isMatch = !span.isMatch;

  // (start, end, remove)
  struct Cut {
    size_t start, end;
    bool remove;
  };
  std::vector<Cut> cuts;
  cuts.reserve(spans.size());
  bool previousMatch = false;
  switch (behavior) {
  case SplitBehavior::Isolated:
    for (const Span &span : spans)
      cuts.push_back({span.start, span.end, false});
    break;
  case SplitBehavior::Removed:
    for (const Span &span : spans)
      cuts.push_back({span.start, span.end, span.isMatch});
    break;
  case SplitBehavior::Contiguous:
    for (const Span &span : spans) {
      if (span.isMatch == previousMatch && !cuts.empty())
        cuts.back().end = span.end;
      else
        cuts.push_back({span.start, span.end, false});
      previousMatch = span.isMatch;
    }
    break;
  case SplitBehavior::MergedWithPrevious:
    for (const Span &span : spans) {
      if (span.isMatch && !previousMatch && !cuts.empty())
        cuts.back().end = span.end;
      else
        cuts.push_back({span.start, span.end, false});
      previousMatch = span.isMatch;
    }
    break;
  case SplitBehavior::MergedWithNext:
    for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
      if (it->isMatch && !previousMatch && !cuts.empty())
        cuts.back().start = it->start;
      else
        cuts.push_back({it->start, it->end, false});
      previousMatch = it->isMatch;
    }
    std::reverse(cuts.begin(), cuts.end());
    break;
  }
  for (const Cut &cut : cuts) {
    if (cut.remove || cut.end == cut.start)
      continue;
    out.push_back({s.substr(cut.start, cut.end - cut.start),
                   piece.atOriginalStart && cut.start == 0});
  }
}

// GPT-2's pattern, used by ByteLevel when use_regex is true (tokenizers
// hard-codes it too).
constexpr const char *kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|"
    "\\s+(?!\\S)|\\s+";

enum class PrependScheme { Always, First, Never };

bool parsePrependScheme(Ctx &ctx, const json &j, const char *where,
                        PrependScheme &out) {
  if (const json *v = member(j, "prepend_scheme")) {
    std::string s = v->is_string() ? v->get<std::string>() : "";
    if (s == "always")
      out = PrependScheme::Always;
    else if (s == "first")
      out = PrependScheme::First;
    else if (s == "never")
      out = PrependScheme::Never;
    else
      return ctx.fail(std::string(where) + ": unknown prepend_scheme '" + s +
                      "'");
    return true;
  }
  // Files written before prepend_scheme existed carry add_prefix_space.
  bool addPrefixSpace;
  if (!getBool(ctx, j, "add_prefix_space", where, addPrefixSpace, true))
    return false;
  out = addPrefixSpace ? PrependScheme::Always : PrependScheme::Never;
  return true;
}

struct PreTokenizer {
  enum class Kind { Sequence, Split, ByteLevel, Metaspace } kind;
  std::vector<PreTokenizer> children;
  std::unique_ptr<Regex> pattern; // Split; ByteLevel with use_regex
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool addPrefixSpace = false; // ByteLevel
  std::string replacement;     // Metaspace
  PrependScheme prependScheme = PrependScheme::Always;
  bool split = true; // Metaspace

  void apply(std::vector<Piece> &pieces) const {
    std::vector<Piece> out;
    std::vector<Regex::Match> matches;
    switch (kind) {
    case Kind::Sequence:
      for (const PreTokenizer &child : children)
        child.apply(pieces);
      return;
    case Kind::Split:
      out.reserve(pieces.size() * 2);
      for (Piece &piece : pieces) {
        matches.clear();
        pattern->findAll(piece.text, matches);
        splitPiece(std::move(piece), matches, behavior, invert, out);
      }
      break;
    case Kind::ByteLevel:
      for (Piece &piece : pieces) {
        if (addPrefixSpace && !startsWith(piece.text, " "))
          piece.text.insert(0, " ");
        if (pattern) {
          matches.clear();
          pattern->findAll(piece.text, matches);
          splitPiece(std::move(piece), matches, SplitBehavior::Isolated, false,
                     out);
        } else {
          out.push_back(std::move(piece));
        }
      }
      for (Piece &piece : out)
        piece.text = tok::byteLevelEncode(piece.text);
      break;
    case Kind::Metaspace:
      for (Piece &piece : pieces) {
        std::string s;
        s.reserve(piece.text.size() + replacement.size());
        for (char c : piece.text) {
          if (c == ' ')
            s += replacement;
          else
            s += c;
        }
        bool prepend =
            prependScheme == PrependScheme::Always ||
            (prependScheme == PrependScheme::First && piece.atOriginalStart);
        if (prepend && !startsWith(s, replacement))
          s.insert(0, replacement);
        Piece replaced{std::move(s), piece.atOriginalStart};
        if (!split) {
          if (!replaced.text.empty())
            out.push_back(std::move(replaced));
          continue;
        }
        matches.clear();
        for (size_t pos = replaced.text.find(replacement);
             pos != std::string::npos;
             pos = replaced.text.find(replacement, pos + replacement.size()))
          matches.push_back({pos, pos + replacement.size()});
        splitPiece(std::move(replaced), matches, SplitBehavior::MergedWithNext,
                   false, out);
      }
      break;
    }
    pieces = std::move(out);
  }
};

bool parsePreTokenizer(Ctx &ctx, const json &j, PreTokenizer &out) {
  std::string type;
  if (!getType(ctx, j, "pre_tokenizer", type))
    return false;
  if (type == "Sequence") {
    out.kind = PreTokenizer::Kind::Sequence;
    const json *list = member(j, "pretokenizers");
    if (!list || !list->is_array())
      return ctx.fail("pre_tokenizer Sequence: missing array 'pretokenizers'");
    for (const json &child : *list) {
      out.children.emplace_back();
      if (!parsePreTokenizer(ctx, child, out.children.back()))
        return false;
    }
    return true;
  }
  if (type == "Split") {
    out.kind = PreTokenizer::Kind::Split;
    std::string behavior;
    if (!getPattern(ctx, j, "pre_tokenizer Split", out.pattern) ||
        !getString(ctx, j, "behavior", "pre_tokenizer Split", behavior) ||
        !getBool(ctx, j, "invert", "pre_tokenizer Split", out.invert, false))
      return false;
    if (behavior == "Removed")
      out.behavior = SplitBehavior::Removed;
    else if (behavior == "Isolated")
      out.behavior = SplitBehavior::Isolated;
    else if (behavior == "MergedWithPrevious")
      out.behavior = SplitBehavior::MergedWithPrevious;
    else if (behavior == "MergedWithNext")
      out.behavior = SplitBehavior::MergedWithNext;
    else if (behavior == "Contiguous")
      out.behavior = SplitBehavior::Contiguous;
    else
      return ctx.fail("pre_tokenizer Split: unknown behavior '" + behavior +
                      "'");
    return true;
  }
  if (type == "ByteLevel") {
    out.kind = PreTokenizer::Kind::ByteLevel;
    bool useRegex;
    if (!getBool(ctx, j, "add_prefix_space", "pre_tokenizer ByteLevel",
                 out.addPrefixSpace, true) ||
        !getBool(ctx, j, "use_regex", "pre_tokenizer ByteLevel", useRegex,
                 true))
      return false;
    if (useRegex) {
      std::string message;
      out.pattern = Regex::compile(kGpt2Pattern, false, &message);
      if (!out.pattern)
        return ctx.fail("pre_tokenizer ByteLevel: " + message);
    }
    return true;
  }
  if (type == "Metaspace") {
    out.kind = PreTokenizer::Kind::Metaspace;
    return getString(ctx, j, "replacement", "pre_tokenizer Metaspace",
                     out.replacement, "\xE2\x96\x81") &&
           parsePrependScheme(ctx, j, "pre_tokenizer Metaspace",
                              out.prependScheme) &&
           getBool(ctx, j, "split", "pre_tokenizer Metaspace", out.split, true);
  }
  return unsupported(ctx, "pre_tokenizer", type);
}

//===----------------------------------------------------------------------===//
// Decoders: Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse,
// Strip. Tokens are byte strings; nothing is replaced by U+FFFD.
//===----------------------------------------------------------------------===//

struct Decoder {
  enum class Kind {
    Sequence,
    ByteLevel,
    Metaspace,
    Replace,
    ByteFallback,
    Fuse,
    Strip
  } kind;
  std::vector<Decoder> children;
  std::unique_ptr<Regex> pattern; // Replace
  std::string text;               // Replace: content; Metaspace/Strip: char
  PrependScheme prependScheme = PrependScheme::Always;
  int64_t start = 0, stop = 0; // Strip

  void apply(std::vector<std::string> &tokens) const {
    switch (kind) {
    case Kind::Sequence:
      for (const Decoder &child : children)
        child.apply(tokens);
      return;
    case Kind::ByteLevel: {
      const tok::ByteLevelTables &t = tok::ByteLevelTables::get();
      std::string bytes;
      for (const std::string &token : tokens) {
        size_t mark = bytes.size();
        bool mapped = true;
        for (size_t pos = 0; pos < token.size();) {
          size_t len = tok::validSequenceLength(token, pos);
          uint32_t cp = len ? tok::decodeCodePoint(token, pos, len) : 0x110000;
          int byte = cp < 324 ? t.codePointToByte[cp] : -1;
          if (byte < 0) {
            mapped = false;
            break;
          }
          bytes += static_cast<char>(byte);
          pos += len;
        }
        // A token outside the byte alphabet (an added token) stands for
        // its own bytes, as in tokenizers.
        if (!mapped) {
          bytes.resize(mark);
          bytes += token;
        }
      }
      tokens.assign(1, std::move(bytes));
      return;
    }
    case Kind::Metaspace:
      for (size_t i = 0; i < tokens.size(); ++i) {
        bool dropFirst = i == 0 && prependScheme != PrependScheme::Never;
        std::string out;
        const std::string &token = tokens[i];
        for (size_t pos = 0; pos < token.size();) {
          if (token.compare(pos, text.size(), text) == 0) {
            if (!dropFirst)
              out += ' ';
            pos += text.size();
          } else {
            out += token[pos++];
          }
        }
        tokens[i] = std::move(out);
      }
      return;
    case Kind::Replace:
      for (std::string &token : tokens)
        token = replaceAll(*pattern, token, text);
      return;
    case Kind::ByteFallback: {
      // Runs of <0xNN> tokens become their bytes (exactly; tokenizers
      // would write U+FFFD per byte of an invalid run).
      std::vector<std::string> out;
      out.reserve(tokens.size());
      std::string pendingBytes;
      bool pending = false;
      for (std::string &token : tokens) {
        int byte = -1;
        if (token.size() == 6 && startsWith(token, "<0x") && token[5] == '>') {
          auto hex = [](char c) {
            return c >= '0' && c <= '9'   ? c - '0'
                   : c >= 'A' && c <= 'F' ? c - 'A' + 10
                   : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : -1;
          };
          int hi = hex(token[3]), lo = hex(token[4]);
          if (hi >= 0 && lo >= 0)
            byte = hi * 16 + lo;
        }
        if (byte >= 0) {
          pendingBytes += static_cast<char>(byte);
          pending = true;
          continue;
        }
        if (pending) {
          out.push_back(std::move(pendingBytes));
          pendingBytes.clear();
          pending = false;
        }
        out.push_back(std::move(token));
      }
      if (pending)
        out.push_back(std::move(pendingBytes));
      tokens = std::move(out);
      return;
    }
    case Kind::Fuse: {
      std::string joined;
      for (const std::string &token : tokens)
        joined += token;
      tokens.assign(1, std::move(joined));
      return;
    }
    case Kind::Strip:
      for (std::string &token : tokens) {
        size_t begin = 0, end = token.size();
        for (int64_t i = 0; i < start && begin < end &&
                            token.compare(begin, text.size(), text) == 0;
             ++i)
          begin += text.size();
        for (int64_t i = 0;
             i < stop && end - begin >= text.size() &&
             token.compare(end - text.size(), text.size(), text) == 0;
             ++i)
          end -= text.size();
        token = token.substr(begin, end - begin);
      }
      return;
    }
  }
};

bool parseDecoder(Ctx &ctx, const json &j, Decoder &out) {
  std::string type;
  if (!getType(ctx, j, "decoder", type))
    return false;
  if (type == "Sequence") {
    out.kind = Decoder::Kind::Sequence;
    const json *list = member(j, "decoders");
    if (!list || !list->is_array())
      return ctx.fail("decoder Sequence: missing array 'decoders'");
    for (const json &child : *list) {
      out.children.emplace_back();
      if (!parseDecoder(ctx, child, out.children.back()))
        return false;
    }
    return true;
  }
  if (type == "ByteLevel") {
    out.kind = Decoder::Kind::ByteLevel;
    return true;
  }
  if (type == "Metaspace") {
    out.kind = Decoder::Kind::Metaspace;
    return getString(ctx, j, "replacement", "decoder Metaspace", out.text,
                     "\xE2\x96\x81") &&
           parsePrependScheme(ctx, j, "decoder Metaspace", out.prependScheme);
  }
  if (type == "Replace") {
    out.kind = Decoder::Kind::Replace;
    return getPattern(ctx, j, "decoder Replace", out.pattern) &&
           getString(ctx, j, "content", "decoder Replace", out.text);
  }
  if (type == "ByteFallback") {
    out.kind = Decoder::Kind::ByteFallback;
    return true;
  }
  if (type == "Fuse") {
    out.kind = Decoder::Kind::Fuse;
    return true;
  }
  if (type == "Strip") {
    out.kind = Decoder::Kind::Strip;
    if (!getString(ctx, j, "content", "decoder Strip", out.text, " ") ||
        !getInt(ctx, j, "start", "decoder Strip", out.start, 0) ||
        !getInt(ctx, j, "stop", "decoder Strip", out.stop, 0))
      return false;
    if (tok::validSequenceLength(out.text, 0) != out.text.size() ||
        out.text.empty())
      return ctx.fail("decoder Strip: content must be one character");
    return true;
  }
  return unsupported(ctx, "decoder", type);
}

//===----------------------------------------------------------------------===//
// Post-processors: TemplateProcessing (single-sequence template), ByteLevel
// (offsets only, so a no-op here), Sequence.
//===----------------------------------------------------------------------===//

struct TemplatePiece {
  bool isSequence;
  std::vector<int32_t> ids; // special token ids when !isSequence
};

bool parsePostProcessor(Ctx &ctx, const json &j,
                        std::vector<std::vector<TemplatePiece>> &templates) {
  std::string type;
  if (!getType(ctx, j, "post_processor", type))
    return false;
  if (type == "Sequence") {
    const json *list = member(j, "processors");
    if (!list || !list->is_array())
      return ctx.fail("post_processor Sequence: missing array 'processors'");
    for (const json &child : *list)
      if (!parsePostProcessor(ctx, child, templates))
        return false;
    return true;
  }
  if (type == "ByteLevel")
    return true;
  if (type != "TemplateProcessing")
    return unsupported(ctx, "post_processor", type);

  const char *where = "post_processor TemplateProcessing";
  const json *single = member(j, "single");
  const json *specials = member(j, "special_tokens");
  if (!single || !single->is_array())
    return ctx.fail(std::string(where) + ": missing array 'single'");
  std::vector<TemplatePiece> pieces;
  for (const json &item : *single) {
    if (const json *seq = member(item, "Sequence")) {
      std::string id;
      if (!getString(ctx, *seq, "id", where, id))
        return false;
      if (id != "A")
        return ctx.fail(std::string(where) +
                        ": single template uses "
                        "sequence '" +
                        id + "'");
      pieces.push_back({true, {}});
    } else if (const json *special = member(item, "SpecialToken")) {
      std::string id;
      if (!getString(ctx, *special, "id", where, id))
        return false;
      const json *entry = specials ? member(*specials, id.c_str()) : nullptr;
      const json *ids = entry ? member(*entry, "ids") : nullptr;
      if (!ids || !ids->is_array())
        return ctx.fail(std::string(where) + ": special token '" + id +
                        "' has no ids");
      TemplatePiece piece{false, {}};
      for (const json &v : *ids) {
        if (!v.is_number_integer())
          return ctx.fail(std::string(where) + ": special token '" + id +
                          "' has a non-integer id");
        piece.ids.push_back(v.get<int32_t>());
      }
      pieces.push_back(std::move(piece));
    } else {
      return ctx.fail(std::string(where) + ": unknown template item");
    }
  }
  templates.push_back(std::move(pieces));
  return true;
}

//===----------------------------------------------------------------------===//
// Added tokens.
//===----------------------------------------------------------------------===//

struct AddedToken {
  int32_t id;
  std::string content;
  bool singleWord, lstrip, rstrip, normalized, special;
  // What id_to_token reports: tokenizers 0.2x stores "normalized" tokens
  // with their normalized content (so decode shows "▁x" for such a "x").
  std::string storedContent;

  bool sameAs(const AddedToken &o) const {
    return content == o.content && singleWord == o.singleWord &&
           lstrip == o.lstrip && rstrip == o.rstrip &&
           normalized == o.normalized && special == o.special;
  }
};

struct Segment {
  size_t start, end;
  int32_t id; // -1: ordinary text
};

/// Leftmost-longest matcher over a byte trie, as tokenizers' aho-corasick
/// (MatchKind::LeftmostLongest) finds added tokens.
class AddedTokenMatcher {
public:
  void add(const std::string &pattern, size_t tokenIndex) {
    if (pattern.empty())
      return;
    int32_t node = 0;
    for (char c : pattern) {
      auto byte = static_cast<unsigned char>(c);
      int32_t next = child(node, byte);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        nodes_[node].children.push_back({byte, next});
        nodes_.emplace_back();
      }
      node = next;
    }
    if (nodes_[node].token < 0)
      nodes_[node].token = static_cast<int32_t>(tokenIndex);
    firstByte_[static_cast<unsigned char>(pattern[0])] = true;
  }
  bool empty() const { return nodes_.size() == 1; }

  /// Splits text like tokenizers' AddedVocabulary::find_matches.
  void split(std::string_view text, const std::vector<AddedToken> &tokens,
             std::vector<Segment> &out) const;

private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;
    int32_t token = -1;
  };
  int32_t child(int32_t node, unsigned char byte) const {
    for (const auto &[b, next] : nodes_[node].children)
      if (b == byte)
        return next;
    return -1;
  }
  std::vector<Node> nodes_ = std::vector<Node>(1);
  bool firstByte_[256] = {};
};

/// Last code point of s, or nullopt.
std::optional<uint32_t> lastCodePoint(std::string_view s) {
  if (s.empty())
    return std::nullopt;
  size_t pos = s.size() - 1;
  for (size_t back = 0; back < 3 && pos > 0 &&
                        (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80;
       ++back)
    --pos;
  size_t len = tok::validSequenceLength(s, pos);
  if (len == 0 || pos + len != s.size())
    return std::nullopt;
  return tok::decodeCodePoint(s, pos, len);
}

std::optional<uint32_t> firstCodePoint(std::string_view s) {
  size_t len = tok::validSequenceLength(s, 0);
  if (len == 0)
    return std::nullopt;
  return tok::decodeCodePoint(s, 0, len);
}

/// Rust regex's Unicode \\w, which tokenizers uses for single_word tokens.
bool isWordChar(std::optional<uint32_t> cp) {
  if (!cp)
    return false;
  if (*cp < 0x80)
    return (*cp >= '0' && *cp <= '9') || (*cp >= 'a' && *cp <= 'z') ||
           (*cp >= 'A' && *cp <= 'Z') || *cp == '_';
  static const std::unique_ptr<Regex> wordRe = [] {
    std::string ignored;
    auto re = Regex::compile(
        "^[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]", false,
        &ignored);
    // PCRE2 before 10.40 lacks binary properties.
    return re ? std::move(re)
              : Regex::compile("^[\\p{L}\\p{M}\\p{Nd}\\p{Pc}]", false,
                               &ignored);
  }();
  std::string s;
  tok::appendCodePoint(s, *cp);
  std::vector<Regex::Match> matches;
  if (wordRe)
    wordRe->findAll(s, matches);
  return !matches.empty();
}

void AddedTokenMatcher::split(std::string_view text,
                              const std::vector<AddedToken> &tokens,
                              std::vector<Segment> &out) const {
  size_t startOffset = 0;
  if (!empty()) {
    size_t pos = 0;
    while (pos < text.size()) {
      if (!firstByte_[static_cast<unsigned char>(text[pos])]) {
        ++pos;
        continue;
      }
      // Longest token starting here.
      int32_t node = 0, best = -1;
      size_t bestEnd = 0;
      for (size_t i = pos; i < text.size(); ++i) {
        node = child(node, static_cast<unsigned char>(text[i]));
        if (node < 0)
          break;
        if (nodes_[node].token >= 0) {
          best = nodes_[node].token;
          bestEnd = i + 1;
        }
      }
      if (best < 0) {
        ++pos;
        continue;
      }
      const AddedToken &token = tokens[best];
      size_t start = pos, stop = bestEnd;
      pos = bestEnd; // matching resumes after the match, whatever is kept
      if (token.singleWord) {
        bool startSpace =
            start == 0 || !isWordChar(lastCodePoint(text.substr(0, start)));
        bool stopSpace = stop == text.size() ||
                         !isWordChar(firstCodePoint(text.substr(stop)));
        if (!startSpace || !stopSpace)
          continue;
      }
      if (token.lstrip) {
        size_t newStart = start;
        while (auto cp = lastCodePoint(text.substr(0, newStart))) {
          if (!tok::isUnicodeWhitespace(*cp))
            break;
          newStart -= *cp < 0x80 ? 1 : *cp < 0x800 ? 2 : *cp < 0x10000 ? 3 : 4;
        }
        start = std::max(newStart, startOffset);
      }
      if (token.rstrip) {
        while (auto cp = firstCodePoint(text.substr(stop))) {
          if (!tok::isUnicodeWhitespace(*cp))
            break;
          stop += tok::validSequenceLength(text, stop);
        }
      }
      if (startOffset < start)
        out.push_back({startOffset, start, -1});
      out.push_back({start, stop, token.id});
      startOffset = stop;
    }
  }
  if (startOffset < text.size())
    out.push_back({startOffset, text.size(), -1});
}

/// Deepest [ / { nesting outside strings. Checked before parsing because
/// both the JSON library and the component parsers recurse per level.
size_t jsonNestingDepth(std::string_view text) {
  size_t depth = 0, deepest = 0;
  bool inString = false, escaped = false;
  for (char c : text) {
    if (inString) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        inString = false;
    } else if (c == '"') {
      inString = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

// Real files nest about 8 levels deep.
constexpr size_t kMaxJsonDepth = 128;

} // namespace

//===----------------------------------------------------------------------===//
// Tokenizer.
//===----------------------------------------------------------------------===//

struct Tokenizer::Impl {
  std::optional<Normalizer> normalizer;
  std::optional<PreTokenizer> preTokenizer;
  std::optional<Decoder> decoder;
  std::vector<std::vector<TemplatePiece>> templates;
  tok::BpeModel model;

  std::vector<AddedToken> addedTokens;
  std::unordered_map<std::string, int32_t> addedByContent;
  std::unordered_map<int32_t, size_t> addedById; // id -> index
  AddedTokenMatcher rawMatcher, normalizedMatcher;
  std::vector<bool> specialById;
  int32_t vocabSize = 0;
  std::optional<int32_t> bos, eos;

  const std::string *idToToken(int32_t id) const {
    auto it = addedById.find(id);
    if (it != addedById.end())
      return &addedTokens[it->second].storedContent;
    return model.idToToken(id);
  }

  void encodeText(std::string_view text, std::vector<int32_t> &ids) const;
  void modelEncode(std::string text, bool atOriginalStart,
                   std::vector<int32_t> &ids) const;
  bool load(Ctx &ctx, const json &root);
};

void Tokenizer::Impl::modelEncode(std::string text, bool atOriginalStart,
                                  std::vector<int32_t> &ids) const {
  if (text.empty())
    return;
  if (!preTokenizer) {
    model.tokenize(text, ids);
    return;
  }
  std::vector<Piece> pieces;
  pieces.push_back({std::move(text), atOriginalStart});
  preTokenizer->apply(pieces);
  for (const Piece &piece : pieces)
    model.tokenize(piece.text, ids);
}

void Tokenizer::Impl::encodeText(std::string_view text,
                                 std::vector<int32_t> &ids) const {
  std::vector<Segment> raw;
  rawMatcher.split(text, addedTokens, raw);
  std::vector<Segment> inner;
  for (const Segment &seg : raw) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    std::string_view piece = text.substr(seg.start, seg.end - seg.start);
    std::string normalized =
        normalizer ? normalizer->apply(std::string(piece)) : std::string(piece);
    bool atStart = seg.start == 0;
    if (normalizedMatcher.empty()) {
      modelEncode(std::move(normalized), atStart, ids);
      continue;
    }
    inner.clear();
    normalizedMatcher.split(normalized, addedTokens, inner);
    for (const Segment &sub : inner) {
      if (sub.id >= 0)
        ids.push_back(sub.id);
      else
        modelEncode(normalized.substr(sub.start, sub.end - sub.start),
                    atStart && sub.start == 0, ids);
    }
  }
}

bool Tokenizer::Impl::load(Ctx &ctx, const json &root) {
  if (!root.is_object())
    return ctx.fail("tokenizer.json must be a JSON object");

  // Model.
  const json *modelJson = member(root, "model");
  if (!modelJson || !modelJson->is_object())
    return ctx.fail("tokenizer.json has no 'model'");
  std::string modelType;
  if (const json *t = member(*modelJson, "type")) {
    if (!t->is_string())
      return ctx.fail("model: field 'type' must be a string");
    modelType = t->get<std::string>();
  } else if (member(*modelJson, "merges")) {
    modelType = "BPE"; // old files leave the type implicit
  }
  if (modelType != "BPE")
    return unsupported(ctx, "model",
                       modelType.empty() ? std::string("(none)") : modelType);
  const char *where = "model BPE";
  if (const json *dropout = member(*modelJson, "dropout"))
    if (!dropout->is_number() || dropout->get<double>() != 0.0)
      return ctx.fail("model BPE: dropout is not supported");
  for (const char *key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (const json *v = member(*modelJson, key))
      if (!v->is_string() || !v->get<std::string>().empty())
        return ctx.fail(std::string("model BPE: '") + key +
                        "' is not supported");
  tok::BpeModel::Options options;
  std::string unk;
  if (member(*modelJson, "unk_token")) {
    if (!getString(ctx, *modelJson, "unk_token", where, unk))
      return false;
    options.unkToken = unk;
  }
  if (!getBool(ctx, *modelJson, "fuse_unk", where, options.fuseUnk, false) ||
      !getBool(ctx, *modelJson, "byte_fallback", where, options.byteFallback,
               false) ||
      !getBool(ctx, *modelJson, "ignore_merges", where, options.ignoreMerges,
               false))
    return false;
  const json *vocabJson = member(*modelJson, "vocab");
  if (!vocabJson || !vocabJson->is_object())
    return ctx.fail("model BPE: missing object 'vocab'");
  std::unordered_map<std::string, int32_t> vocab;
  vocab.reserve(vocabJson->size());
  for (auto it = vocabJson->begin(); it != vocabJson->end(); ++it) {
    if (!it.value().is_number_integer())
      return ctx.fail("model BPE: vocab entry '" + it.key() +
                      "' is not an integer");
    int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > INT32_MAX)
      return ctx.fail("model BPE: vocab id out of range for '" + it.key() +
                      "'");
    vocab.emplace(it.key(), static_cast<int32_t>(id));
  }
  std::vector<std::pair<std::string, std::string>> merges;
  if (const json *mergesJson = member(*modelJson, "merges")) {
    if (!mergesJson->is_array())
      return ctx.fail("model BPE: 'merges' must be an array");
    merges.reserve(mergesJson->size());
    for (const json &m : *mergesJson) {
      // "a b" (older files) or ["a", "b"].
      if (m.is_string()) {
        const std::string &s = m.get_ref<const std::string &>();
        size_t space = s.find(' ');
        if (space == std::string::npos ||
            s.find(' ', space + 1) != std::string::npos)
          return ctx.fail("model BPE: bad merge '" + s + "'");
        merges.emplace_back(s.substr(0, space), s.substr(space + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() &&
                 m[1].is_string()) {
        merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        return ctx.fail("model BPE: a merge is neither \"a b\" nor [a, b]");
      }
    }
  }
  std::string message;
  if (!model.init(std::move(vocab), merges, options, &message))
    return ctx.fail("model BPE: " + message);

  // Pipeline components.
  if (const json *n = member(root, "normalizer")) {
    normalizer.emplace();
    if (!parseNormalizer(ctx, *n, *normalizer))
      return false;
  }
  if (const json *p = member(root, "pre_tokenizer")) {
    preTokenizer.emplace();
    if (!parsePreTokenizer(ctx, *p, *preTokenizer))
      return false;
  }
  if (const json *d = member(root, "decoder")) {
    decoder.emplace();
    if (!parseDecoder(ctx, *d, *decoder))
      return false;
  }
  if (const json *p = member(root, "post_processor"))
    if (!parsePostProcessor(ctx, *p, templates))
      return false;

  // Added tokens, registered as tokenizers' AddedVocabulary::add_tokens
  // does on load: ids come from the content (an added token already known,
  // else the model vocab, else the next free id), not from the "id" field,
  // which agrees in any file tokenizers itself wrote.
  std::vector<AddedToken> declared;
  if (const json *added = member(root, "added_tokens")) {
    if (!added->is_array())
      return ctx.fail("'added_tokens' must be an array");
    for (const json &a : *added) {
      AddedToken token{};
      int64_t id; // checked for type only; see above
      const char *w = "added token";
      if (!getInt(ctx, a, "id", w, id, -1) ||
          !getString(ctx, a, "content", w, token.content) ||
          !getBool(ctx, a, "single_word", w, token.singleWord, false) ||
          !getBool(ctx, a, "lstrip", w, token.lstrip, false) ||
          !getBool(ctx, a, "rstrip", w, token.rstrip, false) ||
          !getBool(ctx, a, "special", w, token.special, false) ||
          !getBool(ctx, a, "normalized", w, token.normalized, !token.special))
        return false;
      token.storedContent = token.normalized && normalizer
                                ? normalizer->apply(token.content)
                                : token.content;
      declared.push_back(std::move(token));
    }
  }
  std::unordered_set<std::string> specialContents;
  std::vector<std::string> matchOrder; // special tokens first, then others
  for (const AddedToken &token : declared)
    if (token.special && !token.content.empty() &&
        specialContents.insert(token.content).second)
      matchOrder.push_back(token.content);
  int64_t modelCount = model.vocabCount();
  int64_t maxAddedId = -1; // the largest id registered so far
  for (AddedToken &token : declared) {
    if (token.content.empty())
      continue;
    std::optional<int32_t> id;
    auto known = addedByContent.find(token.content);
    if (known != addedByContent.end()) {
      auto slot = addedById.find(known->second);
      if (slot != addedById.end() && addedTokens[slot->second].sameAs(token))
        continue; // an exact duplicate is ignored
      id = known->second;
    } else {
      id = model.tokenToId(token.content);
    }
    if (!id) {
      int64_t next = modelCount;
      if (maxAddedId >= 0 && (maxAddedId >= modelCount || modelCount == 0))
        next = maxAddedId + 1;
      if (next > INT32_MAX)
        return ctx.fail("too many added tokens");
      id = static_cast<int32_t>(next);
    }
    token.id = *id;
    maxAddedId = std::max<int64_t>(maxAddedId, *id);
    addedByContent[token.content] = *id;
    auto slot = addedById.find(*id);
    if (slot != addedById.end()) {
      addedTokens[slot->second] = token;
    } else {
      addedById[*id] = addedTokens.size();
      addedTokens.push_back(token);
    }
    if (!specialContents.count(token.content))
      matchOrder.push_back(token.content);
  }
  for (const std::string &content : matchOrder) {
    size_t index = addedById.at(addedByContent.at(content));
    const AddedToken &token = addedTokens[index];
    if (!token.normalized)
      rawMatcher.add(token.content, index);
    else
      // Normalized tokens are searched for in normalized text, so their
      // pattern is their normalized content.
      normalizedMatcher.add(
          normalizer ? normalizer->apply(token.content) : token.content, index);
  }

  vocabSize = model.idLimit();
  for (const AddedToken &token : addedTokens)
    vocabSize = std::max(vocabSize, token.id + 1);
  // tokenizers skips a token in decode when its id_to_token string is a
  // special token's content.
  specialById.assign(vocabSize, false);
  for (int32_t id = 0; id < vocabSize; ++id)
    if (const std::string *s = idToToken(id))
      specialById[id] = specialContents.count(*s) != 0;

  // BOS/EOS, by the template first, then by conventional names.
  if (!templates.empty() && !templates[0].empty() &&
      !templates[0][0].isSequence && templates[0][0].ids.size() == 1)
    bos = templates[0][0].ids[0];
  auto byName =
      [&](std::initializer_list<const char *> names) -> std::optional<int32_t> {
    for (const char *name : names) {
      auto it = addedByContent.find(name);
      if (it != addedByContent.end())
        return it->second;
    }
    return std::nullopt;
  };
  if (!bos)
    bos = byName({"<s>", "<|begin_of_text|>", "<bos>"});
  eos = byName({"</s>", "<|end_of_text|>", "<eos>"});
  return true;
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::fromJson(std::string_view jsonText,
                                               std::string *error) {
  Ctx ctx;
  try {
    if (jsonNestingDepth(jsonText) > kMaxJsonDepth) {
      if (error)
        *error = "tokenizer.json nests deeper than " +
                 std::to_string(kMaxJsonDepth) + " levels";
      return nullptr;
    }
    json root = json::parse(jsonText.begin(), jsonText.end(), nullptr,
                            /*allow_exceptions=*/false);
    if (root.is_discarded()) {
      ctx.fail("tokenizer.json is not valid JSON");
    } else {
      auto impl = std::make_unique<Impl>();
      if (impl->load(ctx, root))
        return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
    }
  } catch (const std::exception &e) {
    // Field checks above cover expected shapes; this catches the rest
    // (e.g. a JSON type error deep in an unexpected structure).
    ctx.fail(std::string("bad tokenizer.json: ") + e.what());
  }
  if (ctx.error.empty())
    ctx.error = "bad tokenizer.json";
  if (error)
    *error = ctx.error;
  return nullptr;
}

std::unique_ptr<Tokenizer> Tokenizer::fromFile(const std::string &path,
                                               std::string *error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (error)
      *error = "cannot open '" + path + "'";
    return nullptr;
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    if (error)
      *error = "cannot read '" + path + "'";
    return nullptr;
  }
  std::string text = buffer.str();
  std::string message;
  auto tokenizer = fromJson(text, &message);
  if (!tokenizer && error)
    *error = path + ": " + message;
  return tokenizer;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text,
                                       bool addSpecialTokens) const {
  std::vector<int32_t> ids;
  try {
    impl_->encodeText(text, ids);
    if (addSpecialTokens) {
      for (const std::vector<TemplatePiece> &tmpl : impl_->templates) {
        std::vector<int32_t> out;
        out.reserve(ids.size() + tmpl.size());
        for (const TemplatePiece &piece : tmpl) {
          if (piece.isSequence)
            out.insert(out.end(), ids.begin(), ids.end());
          else
            out.insert(out.end(), piece.ids.begin(), piece.ids.end());
        }
        ids = std::move(out);
      }
    }
  } catch (const std::exception &) {
    // Only allocation failure can get here; the API promises not to throw.
    ids.clear();
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t> &ids,
                              bool skipSpecialTokens) const {
  return decode(ids.data(), ids.size(), skipSpecialTokens);
}

std::string Tokenizer::decode(const int32_t *ids, size_t count,
                              bool skipSpecialTokens) const {
  try {
    std::vector<std::string> tokens;
    tokens.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      int32_t id = ids[i];
      const std::string *token = impl_->idToToken(id);
      if (!token)
        continue;
      if (skipSpecialTokens && impl_->specialById[id])
        continue;
      tokens.push_back(*token);
    }
    std::string out;
    if (!impl_->decoder) {
      for (size_t i = 0; i < tokens.size(); ++i) {
        if (i)
          out += ' ';
        out += tokens[i];
      }
      return out;
    }
    impl_->decoder->apply(tokens);
    for (const std::string &token : tokens)
      out += token;
    return out;
  } catch (const std::exception &) {
    return std::string();
  }
}

std::string Tokenizer::tokenToString(int32_t id) const {
  const std::string *token = impl_->idToToken(id);
  return token ? *token : std::string();
}

std::optional<int32_t> Tokenizer::tokenId(std::string_view token) const {
  auto it = impl_->addedByContent.find(std::string(token));
  if (it != impl_->addedByContent.end())
    return it->second;
  return impl_->model.tokenToId(token);
}

int32_t Tokenizer::vocabSize() const { return impl_->vocabSize; }

bool Tokenizer::isSpecialToken(int32_t id) const {
  return id >= 0 && id < impl_->vocabSize && impl_->specialById[id];
}

std::optional<int32_t> Tokenizer::bosId() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eosId() const { return impl_->eos; }

//===----------------------------------------------------------------------===//
// StreamingDecoder.
//===----------------------------------------------------------------------===//

namespace {
// Ids kept as left context after trimming: decoders treat the start of a
// sequence specially (Strip, Metaspace), so decoding always starts a few
// tokens back and only the difference is returned.
constexpr size_t kContextIds = 4;
constexpr size_t kTrimAt = 32;
constexpr size_t kMaxContextIds = 256;
} // namespace

StreamingDecoder::StreamingDecoder(const Tokenizer &tokenizer,
                                   bool skipSpecialTokens)
    : tokenizer_(tokenizer), skipSpecialTokens_(skipSpecialTokens) {}

std::string StreamingDecoder::push(int32_t id) {
  context_.push_back(id);
  std::string text = tokenizer_.decode(context_, skipSpecialTokens_);
  std::string out;
  if (text.size() > emitted_) {
    std::string_view fresh(text.data() + emitted_, text.size() - emitted_);
    size_t n = tok::completePrefixLength(fresh);
    out.assign(fresh.substr(0, n));
    emitted_ += n;
  }
  // Once everything is out, drop old ids but keep a tail that decodes to
  // something, so that the next token is decoded in context.
  if (emitted_ == text.size() && context_.size() >= kTrimAt) {
    std::vector<int32_t> tail(context_.end() - kContextIds, context_.end());
    std::string tailText = tokenizer_.decode(tail, skipSpecialTokens_);
    if (!tailText.empty() || context_.size() >= kMaxContextIds) {
      context_ = std::move(tail);
      emitted_ = tailText.size();
    }
  }
  return out;
}

std::string StreamingDecoder::flush() {
  std::string text = tokenizer_.decode(context_, skipSpecialTokens_);
  std::string out = text.size() > emitted_ ? text.substr(emitted_) : "";
  reset();
  return out;
}

void StreamingDecoder::reset() {
  context_.clear();
  emitted_ = 0;
}

std::string sanitizeUtf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t pos = 0; pos < bytes.size();) {
    size_t len = tok::validSequenceLength(bytes, pos);
    if (len) {
      out.append(bytes.substr(pos, len));
      pos += len;
      continue;
    }
    // One U+FFFD per maximal subpart: the longest prefix of a valid
    // sequence (at least one byte), as from_utf8_lossy does.
    size_t rest = bytes.size() - pos;
    size_t maximal = 1;
    // completePrefixLength returns 0 when the whole window is the valid
    // beginning of a sequence.
    for (size_t n = std::min<size_t>(rest, 3); n >= 2; --n) {
      if (tok::completePrefixLength(bytes.substr(pos, n)) == 0) {
        maximal = n;
        break;
      }
    }
    out += "\xEF\xBF\xBD";
    pos += maximal;
  }
  return out;
}

} // namespace optrt
