//===- OpenAiApiTest.cpp - request validation, responses, SSE framing -----===//

#include "runtime/serve/OpenAiApi.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using namespace optrt;
using namespace optrt::serve;
using Json = nlohmann::ordered_json;

namespace {

GenerationRequest parseOk(const std::string &body,
                          Endpoint endpoint = Endpoint::Completions) {
  GenerationRequest r;
  ApiError error;
  EXPECT_TRUE(parseRequest(body, endpoint, r, error))
      << body << " -> " << error.body();
  return r;
}

ApiError parseFails(const std::string &body,
                    Endpoint endpoint = Endpoint::Completions) {
  GenerationRequest r;
  ApiError error;
  EXPECT_FALSE(parseRequest(body, endpoint, r, error)) << body;
  return error;
}

TEST(OpenAiApiTest, ParsesEveryCompletionsField) {
  GenerationRequest r = parseOk(R"({
      "model": "m", "prompt": "Hello", "n": 2, "max_tokens": 7,
      "temperature": 0.5, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
      "repetition_penalty": 1.1, "presence_penalty": 0.5,
      "frequency_penalty": -0.5, "seed": -3, "stop": ["\n", "END"],
      "stop_token_ids": [1, 2], "ignore_eos": true, "logprobs": 3,
      "priority": -2, "stream": true, "stream_options": {"include_usage": true},
      "user": "ignored", "echo": false, "best_of": 2, "logit_bias": {},
      "unknown_field": [1, 2, 3]})");
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].text, "Hello");
  EXPECT_FALSE(r.prompts[0].isTokens);
  EXPECT_EQ(r.n, 2);
  EXPECT_EQ(r.maxTokens, 7);
  EXPECT_EQ(r.temperature, 0.5f);
  EXPECT_EQ(r.topP, 0.9f);
  EXPECT_EQ(r.topK, 40);
  EXPECT_EQ(r.minP, 0.05f);
  EXPECT_EQ(r.repetitionPenalty, 1.1f);
  EXPECT_EQ(r.presencePenalty, 0.5f);
  EXPECT_EQ(r.frequencyPenalty, -0.5f);
  EXPECT_EQ(r.seed, -3);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_EQ(r.stopTokenIds, (std::vector<TokenId>{1, 2}));
  EXPECT_TRUE(r.ignoreEos);
  EXPECT_EQ(r.logprobs, 3);
  EXPECT_EQ(r.priority, -2);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.includeUsage);

  // Defaults.
  r = parseOk(R"({"prompt": "x"})");
  EXPECT_EQ(r.n, 1);
  EXPECT_FALSE(r.maxTokens);
  EXPECT_FALSE(r.temperature);
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.logprobs, -1);
  // An integral float counts as an integer; null as absent.
  r = parseOk(R"({"prompt": "x", "max_tokens": 5.0, "temperature": null})");
  EXPECT_EQ(r.maxTokens, 5);
  EXPECT_FALSE(r.temperature);
}

TEST(OpenAiApiTest, PromptsComeInFourShapes) {
  GenerationRequest r = parseOk(R"({"prompt": ["a", "b"]})");
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[1].text, "b");
  r = parseOk(R"({"prompt": [0, 5, 9]})");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_TRUE(r.prompts[0].isTokens);
  EXPECT_EQ(r.prompts[0].tokenIds, (std::vector<TokenId>{0, 5, 9}));
  r = parseOk(R"({"prompt": [[1, 2], "text", [3]]})");
  ASSERT_EQ(r.prompts.size(), 3u);
  EXPECT_EQ(r.prompts[2].tokenIds, (std::vector<TokenId>{3}));
  EXPECT_EQ(r.prompts[1].text, "text");
}

TEST(OpenAiApiTest, ParsesChatRequests) {
  GenerationRequest r = parseOk(
      R"({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "a"},
                                         {"type": "text", "text": "b"}],
             "name": "bob"},
            {"role": "assistant", "content": null}],
          "max_completion_tokens": 9, "logprobs": true, "top_logprobs": 2,
          "add_generation_prompt": false, "tools": []})",
      Endpoint::ChatCompletions);
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[1]["content"], "a\nb");
  EXPECT_EQ(r.messages[1]["name"], "bob");
  EXPECT_EQ(r.messages[2]["content"], "");
  EXPECT_EQ(r.maxTokens, 9);
  EXPECT_EQ(r.logprobs, 2);
  EXPECT_FALSE(r.addGenerationPrompt);
  r = parseOk(R"({"messages": [{"role": "user", "content": "x"}],
                  "logprobs": true})",
              Endpoint::ChatCompletions);
  EXPECT_EQ(r.logprobs, 0);
}

TEST(OpenAiApiTest, RefusesBadBodiesWithOpenAiErrors) {
  ApiError e = parseFails("{\"prompt\": ");
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.message, "the request body is not valid JSON");
  EXPECT_EQ(Json::parse(e.body()),
            Json::parse(R"({"error": {"message": "the request body is not )"
                        R"(valid JSON", "type": "invalid_request_error", )"
                        R"("param": null, "code": null}})"));
  EXPECT_EQ(parseFails("[1, 2]").status, 400);
  EXPECT_EQ(parseFails("[1, 2]").message,
            "the request body must be a JSON object, got an array");
  EXPECT_EQ(parseFails("").status, 400);
  EXPECT_EQ(parseFails("\xff\xfe").status, 400);

  struct Case {
    const char *body;
    const char *param;
    const char *message;
    Endpoint endpoint = Endpoint::Completions;
  };
  const Case cases[] = {
      {R"({})", "prompt", "'prompt' is required"},
      {R"({"prompt": 5})", "prompt",
       "'prompt' must be a string, an array of strings, or a non-empty "
       "array of token ids (or of such arrays)"},
      {R"({"prompt": []})", "prompt",
       "'prompt' must be a string, an array of strings, or a non-empty "
       "array of token ids (or of such arrays)"},
      {R"({"prompt": [1, -2]})", "prompt[1]",
       "'prompt[1]' must be from 0 to 2147483647"},
      {R"({"prompt": ["a", {}]})", "prompt[1]",
       "'prompt[1]' must be a string or a non-empty array of token ids, got "
       "an object"},
      {R"({"prompt": "x", "model": 3})", "model",
       "'model' must be a string, got an integer"},
      {R"({"prompt": "x", "n": 0})", "n", "'n' must be from 1 to 128"},
      {R"({"prompt": "x", "n": 129})", "n", "'n' must be from 1 to 128"},
      {R"({"prompt": ["a", "b", "c"], "n": 50})", "n",
       "prompts x n is 150, more than the 128 choices one request may ask "
       "for"},
      {R"({"prompt": "x", "max_tokens": 0})", "max_tokens",
       "'max_tokens' must be at least 1"},
      {R"({"prompt": "x", "max_tokens": -5})", "max_tokens",
       "'max_tokens' must be at least 1"},
      {R"({"prompt": "x", "max_tokens": 2.5})", "max_tokens",
       "'max_tokens' must be an integer, got 2.5"},
      {R"({"prompt": "x", "max_tokens": "10"})", "max_tokens",
       "'max_tokens' must be an integer, got a string"},
      {R"({"prompt": "x", "max_tokens": 1e300})", "max_tokens",
       "'max_tokens' must be an integer, got 1e+300"},
      {R"({"prompt": "x", "temperature": "hot"})", "temperature",
       "'temperature' must be a number, got a string"},
      {R"({"prompt": "x", "temperature": -0.1})", "temperature",
       "'temperature' must be in [0, 2], got -0.1"},
      {R"({"prompt": "x", "temperature": 1e9})", "temperature",
       "'temperature' must be in [0, 2], got 1000000000.0"},
      {R"({"prompt": "x", "top_p": 0})", "top_p",
       "'top_p' must be in (0, 1], got 0"},
      {R"({"prompt": "x", "top_p": true})", "top_p",
       "'top_p' must be a number, got a boolean"},
      {R"({"prompt": "x", "top_k": -2})", "top_k",
       "'top_k' must be from -1 to 2147483647"},
      {R"({"prompt": "x", "presence_penalty": 3})", "presence_penalty",
       "'presence_penalty' must be in [-2, 2], got 3"},
      {R"({"prompt": "x", "repetition_penalty": 0})", "repetition_penalty",
       "'repetition_penalty' must be in (0, 10], got 0"},
      {R"({"prompt": "x", "seed": "s"})", "seed",
       "'seed' must be an integer, got a string"},
      {R"({"prompt": "x", "seed": 18446744073709551615})", "seed",
       "'seed' must be a signed 64-bit integer"},
      {R"({"prompt": "x", "stream": "yes"})", "stream",
       "'stream' must be a boolean, got a string"},
      {R"({"prompt": "x", "stream_options": {"include_usage": true}})",
       "stream_options",
       "'stream_options' is only allowed when 'stream' is true"},
      {R"({"prompt": "x", "stop": 5})", "stop",
       "'stop' must be a string or an array of strings, got an integer"},
      {R"({"prompt": "x", "stop": [""]})", "stop",
       "'stop' strings must not be empty"},
      {R"({"prompt": "x", "stop": ["a","b","c","d","e","f","g","h","i","j",
          "k","l","m","n","o","p","q"]})",
       "stop", "'stop' has 17 strings, more than 16"},
      {R"({"prompt": "x", "logprobs": 21})", "logprobs",
       "'logprobs' must be from 0 to 20"},
      {R"({"prompt": "x", "echo": true})", "echo",
       "'echo' is not supported by this server"},
      {R"({"prompt": "x", "suffix": "s"})", "suffix",
       "'suffix' is not supported by this server"},
      {R"({"prompt": "x", "best_of": 3})", "best_of",
       "'best_of' is not supported by this server (other than equal to n)"},
      {R"({"prompt": "x", "logit_bias": {"5": 10}})", "logit_bias",
       "'logit_bias' is not supported by this server"},
      {R"({"prompt": "x", "priority": 1.5})", "priority",
       "'priority' must be an integer, got 1.5"},
      {R"({})", "messages", "'messages' is required",
       Endpoint::ChatCompletions},
      {R"({"messages": []})", "messages",
       "'messages' must be a non-empty array", Endpoint::ChatCompletions},
      {R"({"messages": ["hi"]})", "messages[0]",
       "'messages[0]' must be an object, got a string",
       Endpoint::ChatCompletions},
      {R"({"messages": [{"content": "hi"}]})", "messages[0].role",
       "'messages[0].role' must be a string", Endpoint::ChatCompletions},
      {R"({"messages": [{"role": "wizard", "content": "hi"}]})",
       "messages[0].role",
       "'messages[0].role' must be one of system, developer, user, "
       "assistant, tool; got 'wizard'",
       Endpoint::ChatCompletions},
      {R"({"messages": [{"role": "user"}]})", "messages[0].content",
       "'messages[0].content' is required", Endpoint::ChatCompletions},
      {R"({"messages": [{"role": "user", "content": 7}]})",
       "messages[0].content",
       "'messages[0].content' must be a string or an array of text parts, "
       "got an integer",
       Endpoint::ChatCompletions},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url",
          "image_url": {"url": "x"}}]}]})",
       "messages[0].content[0]",
       "'messages[0].content[0]' must be {\"type\": \"text\", \"text\": "
       "string} (only text is supported)",
       Endpoint::ChatCompletions},
      {R"({"messages": [{"role": "user", "content": "x"}],
           "top_logprobs": 2})",
       "top_logprobs", "'top_logprobs' needs 'logprobs' to be true",
       Endpoint::ChatCompletions},
      {R"({"messages": [{"role": "user", "content": "x"}],
           "tools": [{"type": "function"}]})",
       "tools", "'tools' (tool calling) is not supported by this server",
       Endpoint::ChatCompletions},
      {R"({"messages": [{"role": "user", "content": "x"}],
           "response_format": {"type": "json_object"}})",
       "response_format", "'response_format' is not supported by this server",
       Endpoint::ChatCompletions},
  };
  std::string deep = R"({"prompt": )" + std::string(40, '[') + "1" +
                     std::string(40, ']') + "}";
  ApiError tooDeep = parseFails(deep);
  EXPECT_EQ(tooDeep.status, 422);
  EXPECT_EQ(tooDeep.message,
            "the request nests arrays and objects more than 32 levels deep");
  // Very deep input is refused without exhausting the stack.
  EXPECT_EQ(
      parseFails(std::string(1000000, '[') + std::string(1000000, ']')).status,
      400);
  for (const Case &c : cases) {
    ApiError e = parseFails(c.body, c.endpoint);
    EXPECT_EQ(e.status, 422) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body;
    EXPECT_EQ(e.message, c.message) << c.body;
    Json body = Json::parse(e.body());
    EXPECT_EQ(body["error"]["type"], "invalid_request_error");
    EXPECT_EQ(body["error"]["param"], *c.param ? Json(c.param) : Json())
        << c.body;
  }
}

TEST(OpenAiApiTest, SamplingParamsLayerRequestOverDefaults) {
  SamplingParams defaults;
  defaults.temperature = 0.7f;
  defaults.topK = 50;
  defaults.repetitionPenalty = 1.2f;
  GenerationRequest r = parseOk(
      R"({"prompt": "x", "temperature": 0, "seed": 10, "max_tokens": 4,
          "stop": ["s"], "logprobs": 1})");
  SamplingParams p0 = samplingParams(r, defaults, 0);
  SamplingParams p2 = samplingParams(r, defaults, 2);
  EXPECT_EQ(p0.temperature, 0.0f);
  EXPECT_EQ(p0.topK, 50);
  EXPECT_EQ(p0.repetitionPenalty, 1.2f);
  EXPECT_EQ(p0.maxTokens, 4);
  EXPECT_EQ(p0.seed, 10u);
  EXPECT_EQ(p2.seed, 12u);
  EXPECT_EQ(p0.stopStrings, std::vector<std::string>{"s"});
  EXPECT_EQ(p0.logprobs, 1);
  std::string error;
  EXPECT_TRUE(p0.validate(error)) << error;
  // Without a seed each choice draws its own.
  EXPECT_FALSE(samplingParams(parseOk(R"({"prompt": "x"})"), defaults, 1).seed);
}

std::string tokenText(TokenId id) { return "t" + std::to_string(id); }

TEST(OpenAiApiTest, WritesCompletionResponses) {
  ResponseWriter writer(Endpoint::Completions, "cmpl-1", 1700000000, "m",
                        tokenText);
  ResponseWriter::Choice choice;
  choice.text = "ab\xff";
  choice.finishReason = FinishReason::Length;
  choice.wantLogprobs = true;
  SampleResult s;
  s.token = 4;
  s.logprob = -0.5f;
  s.topLogprobs = {{4, -0.5f}, {7, -1.5f}};
  choice.logprobs = {s, s};
  Json out = Json::parse(writer.response({choice}, 3, 2));
  EXPECT_EQ(out["id"], "cmpl-1");
  EXPECT_EQ(out["object"], "text_completion");
  EXPECT_EQ(out["created"], 1700000000);
  EXPECT_EQ(out["model"], "m");
  EXPECT_EQ(out["choices"][0]["index"], 0);
  // Bytes that are not UTF-8 become U+FFFD instead of breaking the JSON.
  EXPECT_EQ(out["choices"][0]["text"], "ab\xef\xbf\xbd");
  EXPECT_EQ(out["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(out["choices"][0]["logprobs"]["tokens"], Json({"t4", "t4"}));
  EXPECT_EQ(out["choices"][0]["logprobs"]["token_logprobs"],
            Json({-0.5, -0.5}));
  EXPECT_EQ(out["choices"][0]["logprobs"]["top_logprobs"][1],
            Json({{"t4", -0.5}, {"t7", -1.5}}));
  EXPECT_EQ(out["choices"][0]["logprobs"]["text_offset"], Json({0, 2}));
  EXPECT_EQ(out["usage"], Json({{"prompt_tokens", 3},
                                {"completion_tokens", 2},
                                {"total_tokens", 5}}));

  Json chunk = Json::parse(writer.chunk(1, "x", nullptr, FinishReason::None));
  EXPECT_EQ(chunk["choices"][0]["index"], 1);
  EXPECT_EQ(chunk["choices"][0]["text"], "x");
  EXPECT_TRUE(chunk["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(chunk["choices"][0]["logprobs"].is_null());
  chunk = Json::parse(writer.chunk(0, "", nullptr, FinishReason::StopString));
  EXPECT_EQ(chunk["choices"][0]["finish_reason"], "stop");
  Json usage = Json::parse(writer.usageChunk(3, 4));
  EXPECT_EQ(usage["choices"], Json::array());
  EXPECT_EQ(usage["usage"]["total_tokens"], 7);
}

TEST(OpenAiApiTest, WritesChatResponses) {
  ResponseWriter writer(Endpoint::ChatCompletions, "chatcmpl-1", 5, "m",
                        tokenText);
  ResponseWriter::Choice choice;
  choice.text = "hi";
  choice.finishReason = FinishReason::Eos;
  choice.wantLogprobs = true;
  SampleResult s;
  s.token = 2;
  s.logprob = -0.25f;
  s.topLogprobs = {{2, -0.25f}};
  choice.logprobs = {s};
  Json out = Json::parse(writer.response({choice, choice}, 1, 2));
  EXPECT_EQ(out["object"], "chat.completion");
  EXPECT_EQ(out["choices"][1]["index"], 1);
  EXPECT_EQ(out["choices"][0]["message"],
            Json({{"role", "assistant"}, {"content", "hi"}}));
  EXPECT_EQ(out["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(
      out["choices"][0]["logprobs"]["content"][0],
      Json({{"token", "t2"},
            {"logprob", -0.25},
            {"bytes", {116, 50}},
            {"top_logprobs",
             {{{"token", "t2"}, {"logprob", -0.25}, {"bytes", {116, 50}}}}}}));

  Json role = Json::parse(writer.roleChunk(0));
  EXPECT_EQ(role["object"], "chat.completion.chunk");
  EXPECT_EQ(role["choices"][0]["delta"],
            Json({{"role", "assistant"}, {"content", ""}}));
  Json delta = Json::parse(writer.chunk(0, "yo", nullptr, FinishReason::None));
  EXPECT_EQ(delta["choices"][0]["delta"], Json({{"content", "yo"}}));
  Json last = Json::parse(writer.chunk(0, "", nullptr, FinishReason::Length));
  EXPECT_EQ(last["choices"][0]["delta"], Json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
}

TEST(OpenAiApiTest, FramesServerSentEvents) {
  EXPECT_EQ(sseEvent("{\"a\": 1}"), "data: {\"a\": 1}\n\n");
  EXPECT_EQ(sseEvent(""), "data: \n\n");
  // Line breaks in data become separate data lines (the client rejoins
  // them with \n); none can end the event early.
  EXPECT_EQ(sseEvent("a\nb\r\nc\rd"), "data: a\ndata: b\ndata: c\ndata: d\n\n");
  EXPECT_EQ(sseEvent("a\n"), "data: a\ndata: \n\n");
  EXPECT_STREQ(kSseDone, "data: [DONE]\n\n");
  EXPECT_EQ(kSseKeepAlive[0], ':');
}

} // namespace
