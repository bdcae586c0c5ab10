//===- ChatTemplateTest.cpp - real chat templates against transformers ----===//
//
// The chat templates of Llama 3 and 3.1, Mistral 7B Instruct v0.1 and v0.3,
// Qwen2 and Qwen2.5 (test/data/chat_templates/*.jinja) render each
// conversation of conversations.json as Python's jinja2 renders it with
// transformers' settings (expected.json, from generate_expected.py).
//
//===----------------------------------------------------------------------===//

#include "runtime/chat/ChatTemplate.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

using namespace optrt;

namespace {

std::string dataDir() {
  return std::string(OPTMLIR_SOURCE_DIR) + "/test/data/chat_templates/";
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(ChatTemplateTest, RealTemplatesRenderAsTransformersDoes) {
  nlohmann::ordered_json conversations =
      nlohmann::ordered_json::parse(readFile(dataDir() + "conversations.json"));
  nlohmann::ordered_json expected = nlohmann::ordered_json::parse(
      readFile(dataDir() + "expected.json"))["templates"];
  jinja::Dict specialTokens;
  specialTokens.set(
      "bos_token", jinja::Value(conversations["bos_token"].get<std::string>()));
  specialTokens.set(
      "eos_token", jinja::Value(conversations["eos_token"].get<std::string>()));
  int numTemplates = 0, numOutputs = 0;
  for (const char *name :
       {"llama-3-instruct", "llama-3.1-instruct", "mistral-7b-instruct-v0.1",
        "mistral-7b-instruct-v0.3", "qwen2-instruct", "qwen2.5-instruct",
        "default"}) {
    SCOPED_TRACE(name);
    std::string error;
    std::unique_ptr<ChatTemplate> chat = ChatTemplate::create(
        readFile(dataDir() + name + ".jinja"), specialTokens, error);
    ASSERT_TRUE(chat) << error;
    ++numTemplates;
    for (const auto &c : conversations["cases"]) {
      std::string caseName = c["name"];
      SCOPED_TRACE(caseName);
      const auto &want = expected[name][caseName];
      jinja::Value messages = jsonToValue(c["messages"]);
      jinja::Value tools =
          c.contains("tools") ? jsonToValue(c["tools"]) : jinja::Value::none();
      std::string prompt;
      bool ok = chat->render(messages.asList(),
                             c["add_generation_prompt"].get<bool>(), tools,
                             prompt, error);
      if (want.contains("output")) {
        ASSERT_TRUE(ok) << error;
        EXPECT_EQ(prompt, want["output"].get<std::string>());
        ++numOutputs;
      } else {
        EXPECT_FALSE(ok) << prompt;
        if (want.contains("raise"))
          EXPECT_EQ(error, want["raise"].get<std::string>());
      }
    }
  }
  EXPECT_EQ(numTemplates, 7);
  EXPECT_GT(numOutputs, 60);
}

TEST(ChatTemplateTest, DefaultTemplateIsTheDocumentedOne) {
  EXPECT_EQ(std::string(kDefaultChatTemplate),
            readFile(dataDir() + "default.jinja"));
  std::string error, prompt;
  jinja::Dict tokens;
  tokens.set("bos_token", jinja::Value("<s>"));
  auto chat = ChatTemplate::create(kDefaultChatTemplate, tokens, error);
  ASSERT_TRUE(chat) << error;
  jinja::Value messages = jsonToValue(nlohmann::ordered_json::parse(
      R"([{"role": "system", "content": "Be brief."},
          {"role": "user", "content": "Hi"}])"));
  ASSERT_TRUE(chat->render(messages.asList(), true, jinja::Value::none(),
                           prompt, error))
      << error;
  EXPECT_EQ(prompt, "<s>system: Be brief.\nuser: Hi\nassistant:");
}

TEST(ChatTemplateTest, ReadsTokenizerConfig) {
  TokenizerChatConfig config;
  std::string error;
  ASSERT_TRUE(readTokenizerChatConfig(
      R"({"bos_token": {"content": "<|begin|>", "lstrip": false},
          "eos_token": "<|end|>", "pad_token": null,
          "additional_special_tokens": ["<a>", {"content": "<b>"}],
          "chat_template": "{{ bos_token }}"})",
      config, error))
      << error;
  EXPECT_EQ(config.chatTemplate, "{{ bos_token }}");
  ASSERT_TRUE(config.specialTokens.find("bos_token"));
  EXPECT_EQ(config.specialTokens.find("bos_token")->asString(), "<|begin|>");
  EXPECT_EQ(config.specialTokens.find("eos_token")->asString(), "<|end|>");
  EXPECT_FALSE(config.specialTokens.find("pad_token"));
  EXPECT_EQ(
      config.specialTokens.find("additional_special_tokens")->asList().size(),
      2u);

  // A list of named templates: "default" is the chat template.
  config = {};
  ASSERT_TRUE(readTokenizerChatConfig(
      R"({"chat_template": [{"name": "tool_use", "template": "T"},
                            {"name": "default", "template": "D"}]})",
      config, error));
  EXPECT_EQ(config.chatTemplate, "D");

  // None at all: no template, no error.
  config = {};
  ASSERT_TRUE(
      readTokenizerChatConfig(R"({"eos_token": "</s>"})", config, error));
  EXPECT_TRUE(config.chatTemplate.empty());

  EXPECT_FALSE(readTokenizerChatConfig(
      R"({"chat_template": [{"name": "rag", "template": "R"}]})", config,
      error));
  EXPECT_EQ(error, "tokenizer_config.json: no chat template is named "
                   "'default' (there are: rag)");
  EXPECT_FALSE(
      readTokenizerChatConfig(R"({"chat_template": 3})", config, error));
  EXPECT_EQ(error,
            "tokenizer_config.json: chat_template must be a string or a list");
  EXPECT_FALSE(readTokenizerChatConfig("[1, 2", config, error));
  EXPECT_EQ(error, "tokenizer_config.json is not a JSON object");
}

} // namespace
