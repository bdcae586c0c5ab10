//===- OpenAiApi.h - OpenAI-compatible requests and responses ---*- C++ -*-===//
//
// The wire format of POST /v1/completions and /v1/chat/completions, apart
// from HTTP: parsing and validating a request body (outside data: it never
// throws, and every problem is an ApiError with the HTTP status and the
// OpenAI-style body {"error": {"message", "type", "param", "code"}}), the
// JSON of responses and of streamed chunks, and server-sent-event framing.
//
// Status codes: 400 for a body that is not a JSON object and for requests
// that cannot be served as asked (the prompt does not fit the context, the
// chat template refuses the conversation); 422 for a field of the wrong
// type, out of range, missing or unsupported (`param` names it); 401, 404
// and 413 come from the HTTP layer.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_SERVE_OPENAIAPI_H
#define OPTMLIR_RUNTIME_SERVE_OPENAIAPI_H

#include "runtime/core/Sampler.h"
#include "runtime/core/Types.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace optrt {
namespace serve {

struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  /// The request field at fault; empty: none (null in the body).
  std::string param;
  /// A machine-readable code ("context_length_exceeded"); empty: null.
  std::string code;

  /// {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
  std::string body() const;
};

ApiError invalidValue(const std::string &param, const std::string &message);

enum class Endpoint { Completions, ChatCompletions };

/// One prompt of a completions request: text, or token ids.
struct PromptInput {
  std::string text;
  std::vector<TokenId> tokenIds;
  bool isTokens = false;
};

/// A request, validated field by field (what needs the model, such as the
/// prompt's length in tokens, is checked later).
struct GenerationRequest {
  Endpoint endpoint = Endpoint::Completions;
  /// Empty: not given.
  std::string model;
  /// Completions: one or more prompts; each gets `n` choices.
  std::vector<PromptInput> prompts;
  /// Chat: the messages, each an object with a string "role" and a string
  /// "content" (text parts joined; null content became ""), other fields
  /// (name, tool_calls, ...) kept for the template.
  nlohmann::ordered_json messages;
  bool addGenerationPrompt = true;

  int32_t n = 1;
  bool stream = false;
  /// stream_options.include_usage: a last chunk with the usage.
  bool includeUsage = false;
  std::optional<int64_t> maxTokens;
  std::optional<float> temperature, topP, minP, repetitionPenalty;
  std::optional<int32_t> topK;
  float presencePenalty = 0.0f, frequencyPenalty = 0.0f;
  std::optional<int64_t> seed;
  std::vector<std::string> stop;
  std::vector<TokenId> stopTokenIds;
  bool ignoreEos = false;
  /// < 0: none; else the number of alternatives per token (completions:
  /// `logprobs`; chat: `top_logprobs` when `logprobs` is true).
  int32_t logprobs = -1;
  int32_t priority = 0;
};

/// Most choices (prompts x n) one request may ask for.
constexpr int32_t kMaxChoices = 128;
constexpr int32_t kMaxLogprobs = 20;
constexpr size_t kMaxStopStrings = 16;
/// Nesting of arrays and objects in a body; deeper is refused (422).
constexpr int kMaxJsonDepth = 32;

/// Parses and validates `body`. On failure fills `error` and returns false.
bool parseRequest(std::string_view body, Endpoint endpoint,
                  GenerationRequest &request, ApiError &error);

/// The sampling parameters of one choice: the request's fields over
/// `defaults` (the model's generation defaults); choice `choice` of a
/// seeded request draws from seed + choice, so that n > 1 gives n
/// different samples that are each reproducible.
SamplingParams samplingParams(const GenerationRequest &request,
                              const SamplingParams &defaults, int choice);

/// "stop" or "length" (OpenAI's finish_reason).
const char *finishReasonName(FinishReason reason);

/// Builds the JSON of responses. `tokenText` gives a token's text for
/// logprobs (bytes that need not be valid UTF-8).
class ResponseWriter {
public:
  ResponseWriter(Endpoint endpoint, std::string id, int64_t created,
                 std::string model,
                 std::function<std::string(TokenId)> tokenText);

  /// One finished choice of a non-streamed response.
  struct Choice {
    std::string text;
    std::vector<SampleResult> logprobs;
    FinishReason finishReason = FinishReason::None;
    bool wantLogprobs = false;
  };
  std::string response(const std::vector<Choice> &choices, int64_t promptTokens,
                       int64_t completionTokens) const;

  /// A streamed chunk for choice `index`: its text delta and logprobs, and
  /// its finish reason when it ended (FinishReason::None: not yet). Chat
  /// streams start each choice with a role chunk (roleChunk). Completions'
  /// text_offset counts from the chunk's first token.
  std::string chunk(int index, const std::string &textDelta,
                    const std::vector<SampleResult> *logprobs,
                    FinishReason finishReason) const;
  std::string roleChunk(int index) const;
  /// The last chunk of a stream with stream_options.include_usage.
  std::string usageChunk(int64_t promptTokens, int64_t completionTokens) const;

private:
  nlohmann::ordered_json envelope(bool streamed) const;
  nlohmann::ordered_json logprobsJson(const std::vector<SampleResult> &samples,
                                      size_t &textOffset) const;

  Endpoint endpoint;
  std::string id;
  int64_t created;
  std::string model;
  std::function<std::string(TokenId)> tokenText;
};

/// JSON text of `json`, with bytes that are not UTF-8 replaced (model
/// output can split characters).
std::string dumpJson(const nlohmann::ordered_json &json);

/// One server-sent event carrying `data` (each line of it a "data:" line).
std::string sseEvent(std::string_view data);
/// The event that ends an OpenAI stream.
extern const char *const kSseDone;
/// A comment line: clients ignore it; the server writes it while a request
/// waits, to find out whether the client is still there.
extern const char *const kSseKeepAlive;

} // namespace serve
} // namespace optrt

#endif // OPTMLIR_RUNTIME_SERVE_OPENAIAPI_H
