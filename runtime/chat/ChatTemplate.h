//===- ChatTemplate.h - Turning chat messages into a prompt -----*- C++ -*-===//
//
// A checkpoint's chat template (tokenizer_config.json "chat_template": a
// Jinja string, or a list of {name, template} of which "default" is used)
// rendered the way transformers' apply_chat_template renders it: with
// `messages`, `tools`, `documents`, `add_generation_prompt` and the special
// token strings (bos_token, eos_token, ...). Where a checkpoint has no
// template, kDefaultChatTemplate: a plain "role: content" transcript that
// ends with "assistant:" (documented in README.md and docs/design.md).
//
// The rendered text already holds the template's special tokens (its
// bos_token), so it is tokenized without adding any.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_CHAT_CHATTEMPLATE_H
#define OPTMLIR_RUNTIME_CHAT_CHATTEMPLATE_H

#include "runtime/chat/Jinja.h"

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace optrt {

/// The template used when a checkpoint has none:
///   {bos_token}system: ...\nuser: ...\nassistant:
extern const char *const kDefaultChatTemplate;

/// What tokenizer_config.json says about chat.
struct TokenizerChatConfig {
  /// The chat template's source; empty: the checkpoint has none.
  std::string chatTemplate;
  /// bos_token, eos_token, unk_token, pad_token, ... as strings (a string
  /// or an AddedToken object's "content"), and additional_special_tokens.
  jinja::Dict specialTokens;
};

/// Reads tokenizer_config.json text. False, with a one-line `error`, when
/// it is not a JSON object or its chat_template is neither a string nor a
/// list of {name, template} with one named "default".
bool readTokenizerChatConfig(std::string_view json, TokenizerChatConfig &out,
                             std::string &error);

/// A JSON value as a template value (objects keep their key order).
jinja::Value jsonToValue(const nlohmann::ordered_json &json);

class ChatTemplate {
public:
  /// Parses `source` (see jinja::Template::parse for the errors).
  static std::unique_ptr<ChatTemplate> create(std::string_view source,
                                              jinja::Dict specialTokens,
                                              std::string &error);

  /// Renders `messages` (a list of dicts with at least "role" and
  /// "content") with `tools` (none if not given). On failure `error` is the
  /// template's message (raise_exception) or "line N: ...".
  bool render(const jinja::List &messages, bool addGenerationPrompt,
              const jinja::Value &tools, std::string &prompt,
              std::string &error) const;

private:
  ChatTemplate(std::unique_ptr<jinja::Template> compiled,
               jinja::Dict specialTokens);

  std::unique_ptr<jinja::Template> compiled;
  jinja::Dict specialTokens;
};

} // namespace optrt

#endif // OPTMLIR_RUNTIME_CHAT_CHATTEMPLATE_H
