//===- Regex.cpp - PCRE2 wrapper for tokenizer patterns -------------------===//

#include "runtime/tokenizer/Regex.h"

#include "runtime/tokenizer/Utf8.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace optrt::tok {

namespace {
// The matcher falls back to the interpreter when the JIT runs out of stack;
// give the interpreter room for long whitespace runs before it gives up.
constexpr uint32_t kHeapLimitKiB = 256 * 1024;

struct MatchData {
  pcre2_match_data *data;
  pcre2_match_context *context;
  explicit MatchData(const pcre2_code *code)
      : data(pcre2_match_data_create_from_pattern(code, nullptr)),
        context(pcre2_match_context_create(nullptr)) {
    if (context)
      pcre2_set_heap_limit(context, kHeapLimitKiB);
  }
  ~MatchData() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
  }
};
} // namespace

std::unique_ptr<Regex> Regex::compile(std::string_view pattern, bool literal,
                                      std::string *error) {
  if (literal) {
    // A plain substring search, as str::match_indices does in tokenizers.
    std::unique_ptr<Regex> regex(new Regex());
    regex->literal_ = std::string(pattern);
    return regex;
  }
  uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
  int errorCode = 0;
  PCRE2_SIZE errorOffset = 0;
  pcre2_code *code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()),
                    pattern.size(), options, &errorCode, &errorOffset, nullptr);
  if (!code) {
    PCRE2_UCHAR buffer[256];
    pcre2_get_error_message(errorCode, buffer, sizeof(buffer));
    if (error)
      *error = "cannot compile regex at offset " + std::to_string(errorOffset) +
               ": " + reinterpret_cast<const char *>(buffer);
    return nullptr;
  }
  std::unique_ptr<Regex> regex(new Regex());
  regex->code_ = code;
  // JIT is an optimization only; the interpreter is used where it is absent.
  regex->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return regex;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code *>(code_)); }

void Regex::findAll(std::string_view subject, std::vector<Match> &out) const {
  if (!code_) {
    if (literal_.empty())
      return; // tokenizers matches nothing for an empty string pattern
    for (size_t pos = subject.find(literal_); pos != std::string_view::npos;
         pos = subject.find(literal_, pos + literal_.size()))
      out.push_back({pos, pos + literal_.size()});
    return;
  }
  auto *code = static_cast<pcre2_code *>(code_);
  MatchData md(code);
  if (!md.data)
    return;
  auto *text = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t offset = 0;
  while (offset <= subject.size()) {
    int rc = jit_ ? pcre2_jit_match(code, text, subject.size(), offset, 0,
                                    md.data, md.context)
                  : PCRE2_ERROR_JIT_STACKLIMIT;
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
      rc = pcre2_match(code, text, subject.size(), offset, PCRE2_NO_JIT,
                       md.data, md.context);
    if (rc < 0)
      return; // no match, or a resource limit: the rest stays unmatched
    PCRE2_SIZE *ovector = pcre2_get_ovector_pointer(md.data);
    size_t start = ovector[0], end = ovector[1];
    if (start < offset || end < start)
      return; // \K tricks; never produced by tokenizer patterns
    out.push_back({start, end});
    if (end > start) {
      offset = end;
    } else {
      // Empty match: step over one unit so that the scan makes progress.
      if (end >= subject.size())
        break;
      offset = end + unitLength(subject, end);
    }
  }
}

} // namespace optrt::tok
