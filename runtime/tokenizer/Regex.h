//===- Regex.h - PCRE2 wrapper for tokenizer patterns (internal) ----------===//
//
// tokenizers uses Oniguruma; PCRE2 in UTF+UCP mode accepts the same syntax
// for the patterns Llama tokenizers use and matches them the same way.
// PCRE2_MATCH_INVALID_UTF lets subjects hold invalid UTF-8: invalid bytes are
// matched by nothing, so they fall between matches.
//
//===----------------------------------------------------------------------===//

#ifndef OPTRT_TOKENIZER_REGEX_H
#define OPTRT_TOKENIZER_REGEX_H

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace optrt::tok {

class Regex {
public:
  /// Compiles pattern (a regex, or a literal string when literal is true).
  /// Returns nullptr and sets error on failure.
  static std::unique_ptr<Regex> compile(std::string_view pattern, bool literal,
                                        std::string *error);
  ~Regex();

  struct Match {
    size_t start, end;
  };
  /// Appends all non-overlapping matches in subject, left to right.
  void findAll(std::string_view subject, std::vector<Match> &out) const;

private:
  Regex() = default;
  void *code_ = nullptr; // pcre2_code_8*; null for a literal
  bool jit_ = false;
  std::string literal_;
};

} // namespace optrt::tok

#endif // OPTRT_TOKENIZER_REGEX_H
