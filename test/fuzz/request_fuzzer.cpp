//===- request_fuzzer.cpp - libFuzzer target for OpenAI request bodies ----===//
//
// Any body must either parse into a request that keeps the promises of
// GenerationRequest, or be refused with a 400 or 422 whose OpenAI-style
// body is valid JSON; never crash or hang. Chat requests that parse are
// also rendered with the default chat template, as the server does.
//
// The first byte picks the endpoint; the rest is the body.
//
//===----------------------------------------------------------------------===//

#include "runtime/chat/ChatTemplate.h"
#include "runtime/serve/OpenAiApi.h"

#include <cstdint>
#include <cstdlib>
#include <string>

using namespace optrt;
using namespace optrt::serve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  Endpoint endpoint =
      data[0] & 1 ? Endpoint::ChatCompletions : Endpoint::Completions;
  std::string body(reinterpret_cast<const char *>(data) + 1, size - 1);
  GenerationRequest request;
  ApiError error;
  if (!parseRequest(body, endpoint, request, error)) {
    if ((error.status != 400 && error.status != 422) || error.message.empty() ||
        error.message.find('\n') != std::string::npos)
      abort();
    nlohmann::json parsed = nlohmann::json::parse(error.body(), nullptr, false);
    if (parsed.is_discarded() || !parsed["error"].is_object())
      abort();
    return 0;
  }
  if (request.n < 1 || request.n > kMaxChoices ||
      (request.maxTokens && *request.maxTokens < 1) ||
      request.logprobs > kMaxLogprobs)
    abort();
  std::string validation;
  SamplingParams params = samplingParams(request, SamplingParams(), 0);
  if (!params.validate(validation))
    abort(); // the request's ranges must be within the sampler's
  if (endpoint == Endpoint::Completions) {
    if (request.prompts.empty())
      abort();
    return 0;
  }
  if (!request.messages.is_array() || request.messages.empty())
    abort();
  for (const auto &message : request.messages)
    if (!message["role"].is_string() || !message["content"].is_string())
      abort();
  static std::unique_ptr<ChatTemplate> chat = [] {
    std::string error;
    jinja::Dict tokens;
    tokens.set("bos_token", jinja::Value("<s>"));
    return ChatTemplate::create(kDefaultChatTemplate, tokens, error);
  }();
  std::string prompt, renderError;
  jinja::Value messages = jsonToValue(request.messages);
  if (!chat->render(messages.asList(), request.addGenerationPrompt,
                    jinja::Value::none(), prompt, renderError))
    abort(); // the default template renders every valid conversation
  return 0;
}
