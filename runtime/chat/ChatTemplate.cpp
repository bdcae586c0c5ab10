//===- ChatTemplate.cpp - Turning chat messages into a prompt -------------===//

#include "runtime/chat/ChatTemplate.h"

#include <limits>

namespace optrt {

// Also in test/data/chat_templates/default.jinja, from which the tests'
// expected renderings were made with Python's jinja2.
const char *const kDefaultChatTemplate =
    "{{- bos_token }}\n"
    "{%- for message in messages %}\n"
    "    {{- message['role'] ~ ': ' ~ (message['content'] if "
    "message['content'] is string else '') ~ '\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- 'assistant:' }}\n"
    "{%- endif %}\n";

jinja::Value jsonToValue(const nlohmann::ordered_json &json) {
  switch (json.type()) {
  case nlohmann::ordered_json::value_t::null:
    return jinja::Value::none();
  case nlohmann::ordered_json::value_t::boolean:
    return jinja::Value(json.get<bool>());
  case nlohmann::ordered_json::value_t::number_integer:
    return jinja::Value(json.get<int64_t>());
  case nlohmann::ordered_json::value_t::number_unsigned: {
    uint64_t u = json.get<uint64_t>();
    if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return jinja::Value(static_cast<int64_t>(u));
    return jinja::Value(static_cast<double>(u));
  }
  case nlohmann::ordered_json::value_t::number_float:
    return jinja::Value(json.get<double>());
  case nlohmann::ordered_json::value_t::string:
    return jinja::Value(json.get<std::string>());
  case nlohmann::ordered_json::value_t::array: {
    jinja::List items;
    for (const auto &item : json)
      items.push_back(jsonToValue(item));
    return jinja::Value(std::move(items));
  }
  case nlohmann::ordered_json::value_t::object: {
    jinja::Dict dict;
    for (auto it = json.begin(); it != json.end(); ++it)
      dict.set(it.key(), jsonToValue(it.value()));
    return jinja::Value(std::move(dict));
  }
  default:
    return jinja::Value::none();
  }
}

bool readTokenizerChatConfig(std::string_view json, TokenizerChatConfig &out,
                             std::string &error) {
  nlohmann::ordered_json config =
      nlohmann::ordered_json::parse(json, nullptr, false);
  if (config.is_discarded() || !config.is_object()) {
    error = "tokenizer_config.json is not a JSON object";
    return false;
  }
  // transformers passes its special_tokens_map to the template.
  for (const char *key : {"bos_token", "eos_token", "unk_token", "sep_token",
                          "pad_token", "cls_token", "mask_token"}) {
    auto it = config.find(key);
    if (it == config.end())
      continue;
    if (it->is_string())
      out.specialTokens.set(key, jinja::Value(it->get<std::string>()));
    else if (it->is_object() && it->contains("content") &&
             (*it)["content"].is_string())
      out.specialTokens.set(key,
                            jinja::Value((*it)["content"].get<std::string>()));
  }
  auto additional = config.find("additional_special_tokens");
  if (additional != config.end() && additional->is_array()) {
    jinja::List tokens;
    for (const auto &token : *additional) {
      if (token.is_string())
        tokens.push_back(jinja::Value(token.get<std::string>()));
      else if (token.is_object() && token.contains("content") &&
               token["content"].is_string())
        tokens.push_back(jinja::Value(token["content"].get<std::string>()));
    }
    out.specialTokens.set("additional_special_tokens",
                          jinja::Value(std::move(tokens)));
  }

  auto chat = config.find("chat_template");
  if (chat == config.end() || chat->is_null())
    return true;
  if (chat->is_string()) {
    out.chatTemplate = chat->get<std::string>();
    return true;
  }
  if (chat->is_array()) {
    std::string names;
    for (const auto &entry : *chat) {
      if (!entry.is_object() || !entry.contains("name") ||
          !entry.contains("template") || !entry["name"].is_string() ||
          !entry["template"].is_string()) {
        error = "tokenizer_config.json: chat_template entries must be "
                "{\"name\": string, \"template\": string}";
        return false;
      }
      std::string name = entry["name"].get<std::string>();
      if (name == "default") {
        out.chatTemplate = entry["template"].get<std::string>();
        return true;
      }
      names += (names.empty() ? "" : ", ") + name;
    }
    error = "tokenizer_config.json: no chat template is named 'default' "
            "(there are: " +
            names + ")";
    return false;
  }
  error = "tokenizer_config.json: chat_template must be a string or a list";
  return false;
}

ChatTemplate::ChatTemplate(std::unique_ptr<jinja::Template> compiled,
                           jinja::Dict specialTokens)
    : compiled(std::move(compiled)), specialTokens(std::move(specialTokens)) {}

std::unique_ptr<ChatTemplate> ChatTemplate::create(std::string_view source,
                                                   jinja::Dict specialTokens,
                                                   std::string &error) {
  std::unique_ptr<jinja::Template> compiled =
      jinja::Template::parse(source, error);
  if (!compiled)
    return nullptr;
  return std::unique_ptr<ChatTemplate>(
      new ChatTemplate(std::move(compiled), std::move(specialTokens)));
}

bool ChatTemplate::render(const jinja::List &messages, bool addGenerationPrompt,
                          const jinja::Value &tools, std::string &prompt,
                          std::string &error) const {
  jinja::Dict variables = specialTokens;
  variables.set("messages", jinja::Value(messages));
  variables.set("tools", tools.isUndefined() ? jinja::Value::none() : tools);
  variables.set("documents", jinja::Value::none());
  variables.set("add_generation_prompt", jinja::Value(addGenerationPrompt));
  return compiled->render(variables, prompt, error);
}

} // namespace optrt
