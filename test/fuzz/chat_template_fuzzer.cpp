//===- chat_template_fuzzer.cpp - libFuzzer target for the Jinja subset ---===//
//
// Chat templates come from checkpoints. Any template source must either be
// refused when parsed, or render a small conversation (or fail to) with a
// one-line error; never crash, hang or grow without bound.
//
//===----------------------------------------------------------------------===//

#include "runtime/chat/ChatTemplate.h"
#include "runtime/chat/Jinja.h"

#include <cstdint>
#include <cstdlib>
#include <string>

using namespace optrt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string source(reinterpret_cast<const char *>(data), size);
  std::string error;
  jinja::Dict tokens;
  tokens.set("bos_token", jinja::Value("<s>"));
  tokens.set("eos_token", jinja::Value("</s>"));
  std::unique_ptr<ChatTemplate> chat =
      ChatTemplate::create(source, tokens, error);
  if (!chat) {
    if (error.empty() || error.find('\n') != std::string::npos)
      abort();
    return 0;
  }
  static const jinja::Value messages =
      jsonToValue(nlohmann::ordered_json::parse(
          R"([{"role": "system", "content": "Be brief."},
          {"role": "user", "content": "Hi \u00e9 {{ x }}"},
          {"role": "assistant", "content": "", "tool_calls": [{"id": "a",
           "function": {"name": "f", "arguments": {"k": [1, 2.5, null]}}}]},
          {"role": "user", "content": "again"}])"));
  std::string prompt;
  if (!chat->render(messages.asList(), true, jinja::Value::none(), prompt,
                    error) &&
      error.empty())
    abort();
  return 0;
}
