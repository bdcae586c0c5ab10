//===- OpenAiApi.cpp - OpenAI-compatible requests and responses -----------===//

#include "runtime/serve/OpenAiApi.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace optrt {
namespace serve {

using Json = nlohmann::ordered_json;

std::string ApiError::body() const {
  Json error = {{"message", message},
                {"type", type},
                {"param", param.empty() ? Json() : Json(param)},
                {"code", code.empty() ? Json() : Json(code)}};
  return dumpJson(Json{{"error", error}});
}

ApiError invalidValue(const std::string &param, const std::string &message) {
  ApiError error;
  error.status = 422;
  error.param = param;
  error.message = message;
  return error;
}

std::string dumpJson(const Json &json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

namespace {

/// Whether arrays and objects nest deeper than `limit` (stops looking
/// there, so that it never recurses further).
bool nestsDeeperThan(const Json &json, int limit) {
  if (!json.is_structured())
    return false;
  if (limit == 0)
    return true;
  for (const Json &child : json)
    if (nestsDeeperThan(child, limit - 1))
      return true;
  return false;
}

std::string typeOf(const Json &v) {
  switch (v.type()) {
  case Json::value_t::null:
    return "null";
  case Json::value_t::boolean:
    return "a boolean";
  case Json::value_t::string:
    return "a string";
  case Json::value_t::array:
    return "an array";
  case Json::value_t::object:
    return "an object";
  case Json::value_t::number_float:
    return "a number";
  default:
    return "an integer";
  }
}

/// Reads the fields of one request object; each getter leaves its output
/// alone when the field is absent or null, and fails on a wrong type or
/// value.
class Fields {
public:
  Fields(const Json &object, ApiError &error) : object(object), error(error) {}

  const Json *find(const char *name) const {
    auto it = object.find(name);
    return it == object.end() || it->is_null() ? nullptr : &*it;
  }
  bool fail(const std::string &name, const std::string &message) {
    error = invalidValue(name, message);
    return false;
  }
  bool wrongType(const std::string &name, const Json &v, const char *want) {
    return fail(name, "'" + name + "' must be " + want + ", got " + typeOf(v));
  }

  bool getBool(const char *name, bool &out) {
    const Json *v = find(name);
    if (!v)
      return true;
    if (!v->is_boolean())
      return wrongType(name, *v, "a boolean");
    out = v->get<bool>();
    return true;
  }

  /// An integer in [lo, hi]; a float with an integral value counts.
  bool getInt(const char *name, int64_t lo, int64_t hi,
              std::optional<int64_t> &out) {
    const Json *v = find(name);
    if (!v)
      return true;
    return toInt(name, *v, lo, hi, out);
  }
  bool toInt(const std::string &name, const Json &v, int64_t lo, int64_t hi,
             std::optional<int64_t> &out) {
    int64_t value;
    if (v.is_number_integer() && !v.is_number_unsigned()) {
      value = v.get<int64_t>();
    } else if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(hi))
        return outOfRange(name, lo, hi);
      value = static_cast<int64_t>(u);
    } else if (v.is_number_float()) {
      double d = v.get<double>();
      if (!(std::floor(d) == d) || std::fabs(d) > 9.0e18)
        return fail(name, "'" + name + "' must be an integer, got " + v.dump());
      value = static_cast<int64_t>(d);
    } else {
      return wrongType(name, v, "an integer");
    }
    if (value < lo || value > hi)
      return outOfRange(name, lo, hi);
    out = value;
    return true;
  }
  bool outOfRange(const std::string &name, int64_t lo, int64_t hi) {
    std::string range =
        lo == std::numeric_limits<int64_t>::min() ? "a signed 64-bit integer"
        : hi == std::numeric_limits<int64_t>::max()
            ? "at least " + std::to_string(lo)
            : "from " + std::to_string(lo) + " to " + std::to_string(hi);
    return fail(name, "'" + name + "' must be " + range);
  }

  /// A number in [lo, hi] (or (lo, hi] when `openLow`).
  bool getFloat(const char *name, double lo, double hi, bool openLow,
                std::optional<float> &out) {
    const Json *v = find(name);
    if (!v)
      return true;
    if (!v->is_number())
      return wrongType(name, *v, "a number");
    // Checked as the float the sampler gets: 1e-50 is 0 there.
    float d = static_cast<float>(v->get<double>());
    if (!(openLow ? d > lo : d >= lo) || !(d <= hi)) {
      char range[96];
      std::snprintf(range, sizeof(range), "%s%g, %g]", openLow ? "(" : "[", lo,
                    hi);
      return fail(name, "'" + std::string(name) + "' must be in " + range +
                            ", got " + v->dump());
    }
    out = d;
    return true;
  }

  /// Fields that would change the answer but that this server does not
  /// implement: refused rather than ignored.
  bool refuseUnsupported(const char *name, const Json &allowed) {
    const Json *v = find(name);
    if (!v || *v == allowed)
      return true;
    if (v->is_object() && v->empty() && allowed.is_object())
      return true;
    return fail(name,
                "'" + std::string(name) + "' is not supported by this server");
  }

  const Json &object;
  ApiError &error;
};

bool parseTokenIds(Fields &f, const std::string &name, const Json &array,
                   std::vector<TokenId> &out) {
  for (size_t i = 0; i < array.size(); ++i) {
    std::optional<int64_t> id;
    if (!f.toInt(name + "[" + std::to_string(i) + "]", array[i], 0,
                 std::numeric_limits<int32_t>::max(), id))
      return false;
    out.push_back(static_cast<TokenId>(*id));
  }
  return true;
}

bool parsePrompts(Fields &f, GenerationRequest &r) {
  const Json *prompt = f.find("prompt");
  if (!prompt)
    return f.fail("prompt", "'prompt' is required");
  auto isTokenList = [](const Json &v) {
    if (!v.is_array() || v.empty())
      return false;
    for (const Json &x : v)
      if (!x.is_number())
        return false;
    return true;
  };
  if (prompt->is_string()) {
    r.prompts.push_back({prompt->get<std::string>(), {}, false});
  } else if (isTokenList(*prompt)) {
    PromptInput input;
    input.isTokens = true;
    if (!parseTokenIds(f, "prompt", *prompt, input.tokenIds))
      return false;
    r.prompts.push_back(std::move(input));
  } else if (prompt->is_array() && !prompt->empty()) {
    for (size_t i = 0; i < prompt->size(); ++i) {
      const Json &item = (*prompt)[i];
      std::string name = "prompt[" + std::to_string(i) + "]";
      if (item.is_string()) {
        r.prompts.push_back({item.get<std::string>(), {}, false});
      } else if (isTokenList(item)) {
        PromptInput input;
        input.isTokens = true;
        if (!parseTokenIds(f, name, item, input.tokenIds))
          return false;
        r.prompts.push_back(std::move(input));
      } else {
        return f.fail(name, "'" + name +
                                "' must be a string or a non-empty array "
                                "of token ids, got " +
                                typeOf(item));
      }
    }
  } else {
    return f.fail("prompt",
                  "'prompt' must be a string, an array of strings, or a "
                  "non-empty array of token ids (or of such arrays)");
  }
  return true;
}

bool parseMessages(Fields &f, GenerationRequest &r) {
  const Json *messages = f.find("messages");
  if (!messages)
    return f.fail("messages", "'messages' is required");
  if (!messages->is_array() || messages->empty())
    return f.fail("messages", "'messages' must be a non-empty array");
  r.messages = Json::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    const Json &m = (*messages)[i];
    std::string name = "messages[" + std::to_string(i) + "]";
    if (!m.is_object())
      return f.wrongType(name, m, "an object");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      return f.fail(name + ".role", "'" + name + ".role' must be a string");
    std::string roleName = role->get<std::string>();
    static const char *const kRoles[] = {"system", "developer", "user",
                                         "assistant", "tool"};
    if (std::find(std::begin(kRoles), std::end(kRoles), roleName) ==
        std::end(kRoles))
      return f.fail(name + ".role",
                    "'" + name +
                        ".role' must be one of system, developer, "
                        "user, assistant, tool; got '" +
                        roleName + "'");
    Json message = m;
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      if (roleName != "assistant")
        return f.fail(name + ".content", "'" + name + ".content' is required");
      message["content"] = "";
    } else if (content->is_array()) {
      // Text parts, joined with newlines as vLLM does for string
      // templates.
      std::string text;
      for (size_t p = 0; p < content->size(); ++p) {
        const Json &part = (*content)[p];
        std::string partName = name + ".content[" + std::to_string(p) + "]";
        auto type = part.is_object() ? part.find("type") : part.end();
        auto partText = part.is_object() ? part.find("text") : part.end();
        if (type == part.end() || *type != "text" || partText == part.end() ||
            !partText->is_string())
          return f.fail(partName, "'" + partName +
                                      "' must be {\"type\": \"text\", "
                                      "\"text\": string} (only text is "
                                      "supported)");
        text += (p ? "\n" : "") + partText->get<std::string>();
      }
      message["content"] = text;
    } else if (!content->is_string()) {
      return f.wrongType(name + ".content", *content,
                         "a string or an array of text parts");
    }
    r.messages.push_back(std::move(message));
  }
  return true;
}

} // namespace

bool parseRequest(std::string_view body, Endpoint endpoint,
                  GenerationRequest &r, ApiError &error) {
  r = GenerationRequest();
  r.endpoint = endpoint;
  Json json = Json::parse(body, nullptr, false);
  if (json.is_discarded()) {
    error = ApiError();
    error.message = "the request body is not valid JSON";
    return false;
  }
  if (!json.is_object()) {
    error = ApiError();
    error.message =
        "the request body must be a JSON object, got " + typeOf(json);
    return false;
  }
  if (nestsDeeperThan(json, kMaxJsonDepth)) {
    error =
        invalidValue("", "the request nests arrays and objects more "
                         "than " +
                             std::to_string(kMaxJsonDepth) + " levels deep");
    return false;
  }
  Fields f(json, error);
  bool chat = endpoint == Endpoint::ChatCompletions;

  if (const Json *model = f.find("model")) {
    if (!model->is_string())
      return f.wrongType("model", *model, "a string");
    r.model = model->get<std::string>();
  }
  if (chat ? !parseMessages(f, r) : !parsePrompts(f, r))
    return false;

  std::optional<int64_t> n, maxTokens, seed, topK, logprobs, topLogprobs,
      priority;
  if (!f.getInt("n", 1, kMaxChoices, n))
    return false;
  r.n = static_cast<int32_t>(n.value_or(1));
  if (static_cast<int64_t>(r.prompts.size()) * r.n > kMaxChoices)
    return f.fail("n", "prompts x n is " +
                           std::to_string(r.prompts.size() * r.n) +
                           ", more than the " + std::to_string(kMaxChoices) +
                           " choices one request may ask for");
  // max_completion_tokens is the chat API's newer name for max_tokens.
  const char *maxTokensName = chat && f.find("max_completion_tokens")
                                  ? "max_completion_tokens"
                                  : "max_tokens";
  if (!f.getInt(maxTokensName, 1, std::numeric_limits<int64_t>::max(),
                maxTokens))
    return false;
  r.maxTokens = maxTokens;
  if (!f.getBool("stream", r.stream))
    return false;
  if (const Json *options = f.find("stream_options")) {
    if (!options->is_object())
      return f.wrongType("stream_options", *options, "an object");
    if (!r.stream)
      return f.fail("stream_options",
                    "'stream_options' is only allowed when 'stream' is true");
    Fields o(*options, error);
    if (!o.getBool("include_usage", r.includeUsage)) {
      error.param = "stream_options.include_usage";
      return false;
    }
  }
  if (!f.getFloat("temperature", 0, 2, false, r.temperature) ||
      !f.getFloat("top_p", 0, 1, true, r.topP) ||
      !f.getFloat("min_p", 0, 1, false, r.minP) ||
      !f.getFloat("repetition_penalty", 0, 10, true, r.repetitionPenalty))
    return false;
  std::optional<float> presence, frequency;
  if (!f.getFloat("presence_penalty", -2, 2, false, presence) ||
      !f.getFloat("frequency_penalty", -2, 2, false, frequency))
    return false;
  r.presencePenalty = presence.value_or(0.0f);
  r.frequencyPenalty = frequency.value_or(0.0f);
  if (!f.getInt("top_k", -1, std::numeric_limits<int32_t>::max(), topK))
    return false;
  if (topK)
    r.topK = static_cast<int32_t>(*topK);
  if (!f.getInt("seed", std::numeric_limits<int64_t>::min(),
                std::numeric_limits<int64_t>::max(), seed))
    return false;
  r.seed = seed;
  if (!f.getInt("priority", std::numeric_limits<int32_t>::min(),
                std::numeric_limits<int32_t>::max(), priority))
    return false;
  r.priority = static_cast<int32_t>(priority.value_or(0));
  if (!f.getBool("ignore_eos", r.ignoreEos))
    return false;

  if (const Json *stop = f.find("stop")) {
    if (stop->is_string()) {
      r.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      if (stop->size() > kMaxStopStrings)
        return f.fail("stop", "'stop' has " + std::to_string(stop->size()) +
                                  " strings, more than " +
                                  std::to_string(kMaxStopStrings));
      for (const Json &s : *stop) {
        if (!s.is_string())
          return f.wrongType("stop", s, "a string or an array of strings");
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      return f.wrongType("stop", *stop, "a string or an array of strings");
    }
    for (const std::string &s : r.stop)
      if (s.empty())
        return f.fail("stop", "'stop' strings must not be empty");
  }
  if (const Json *ids = f.find("stop_token_ids")) {
    if (!ids->is_array())
      return f.wrongType("stop_token_ids", *ids, "an array of token ids");
    if (!parseTokenIds(f, "stop_token_ids", *ids, r.stopTokenIds))
      return false;
  }

  if (chat) {
    bool wantLogprobs = false;
    if (!f.getBool("logprobs", wantLogprobs) ||
        !f.getInt("top_logprobs", 0, kMaxLogprobs, topLogprobs))
      return false;
    if (topLogprobs && !wantLogprobs)
      return f.fail("top_logprobs",
                    "'top_logprobs' needs 'logprobs' to be true");
    if (wantLogprobs)
      r.logprobs = static_cast<int32_t>(topLogprobs.value_or(0));
    if (!f.getBool("add_generation_prompt", r.addGenerationPrompt))
      return false;
    for (const char *name : {"tools", "functions"})
      if (const Json *v = f.find(name); v && !(v->is_array() && v->empty()))
        return f.fail(name, "'" + std::string(name) +
                                "' (tool calling) is not supported by this "
                                "server");
    if (!f.refuseUnsupported("response_format", Json{{"type", "text"}}))
      return false;
  } else {
    if (!f.getInt("logprobs", 0, kMaxLogprobs, logprobs))
      return false;
    if (logprobs)
      r.logprobs = static_cast<int32_t>(*logprobs);
    if (!f.refuseUnsupported("echo", false) ||
        !f.refuseUnsupported("suffix", Json()))
      return false;
    if (const Json *bestOf = f.find("best_of"); bestOf && *bestOf != r.n)
      return f.fail("best_of", "'best_of' is not supported by this server "
                               "(other than equal to n)");
  }
  return f.refuseUnsupported("logit_bias", Json::object());
}

SamplingParams samplingParams(const GenerationRequest &r,
                              const SamplingParams &defaults, int choice) {
  SamplingParams p = defaults;
  if (r.temperature)
    p.temperature = *r.temperature;
  if (r.topP)
    p.topP = *r.topP;
  if (r.topK)
    p.topK = *r.topK;
  if (r.minP)
    p.minP = *r.minP;
  if (r.repetitionPenalty)
    p.repetitionPenalty = *r.repetitionPenalty;
  p.presencePenalty = r.presencePenalty;
  p.frequencyPenalty = r.frequencyPenalty;
  p.maxTokens = r.maxTokens;
  if (r.seed)
    p.seed = static_cast<uint64_t>(*r.seed) + static_cast<uint64_t>(choice);
  p.stopStrings = r.stop;
  p.stopTokenIds = r.stopTokenIds;
  p.ignoreEos = r.ignoreEos;
  p.logprobs = r.logprobs;
  return p;
}

const char *finishReasonName(FinishReason reason) {
  switch (reason) {
  case FinishReason::Length:
    return "length";
  case FinishReason::None:
    return nullptr;
  default:
    return "stop";
  }
}

ResponseWriter::ResponseWriter(Endpoint endpoint, std::string id,
                               int64_t created, std::string model,
                               std::function<std::string(TokenId)> tokenText)
    : endpoint(endpoint), id(std::move(id)), created(created),
      model(std::move(model)), tokenText(std::move(tokenText)) {}

Json ResponseWriter::envelope(bool streamed) const {
  const char *object =
      endpoint == Endpoint::ChatCompletions
          ? (streamed ? "chat.completion.chunk" : "chat.completion")
          : "text_completion";
  return Json{
      {"id", id}, {"object", object}, {"created", created}, {"model", model}};
}

namespace {

Json bytesOf(const std::string &text) {
  Json bytes = Json::array();
  for (unsigned char c : text)
    bytes.push_back(static_cast<int>(c));
  return bytes;
}

Json usageJson(int64_t promptTokens, int64_t completionTokens) {
  return Json{{"prompt_tokens", promptTokens},
              {"completion_tokens", completionTokens},
              {"total_tokens", promptTokens + completionTokens}};
}

Json finishJson(FinishReason reason) {
  const char *name = finishReasonName(reason);
  return name ? Json(name) : Json();
}

} // namespace

Json ResponseWriter::logprobsJson(const std::vector<SampleResult> &samples,
                                  size_t &textOffset) const {
  if (endpoint == Endpoint::ChatCompletions) {
    Json content = Json::array();
    for (const SampleResult &s : samples) {
      std::string text = tokenText(s.token);
      Json top = Json::array();
      for (const TokenLogprob &alt : s.topLogprobs) {
        std::string altText = tokenText(alt.token);
        top.push_back(Json{{"token", altText},
                           {"logprob", alt.logprob},
                           {"bytes", bytesOf(altText)}});
      }
      content.push_back(Json{{"token", text},
                             {"logprob", s.logprob.value_or(0.0f)},
                             {"bytes", bytesOf(text)},
                             {"top_logprobs", top}});
    }
    return Json{{"content", content}};
  }
  Json tokens = Json::array(), tokenLogprobs = Json::array(),
       top = Json::array(), offsets = Json::array();
  for (const SampleResult &s : samples) {
    std::string text = tokenText(s.token);
    tokens.push_back(text);
    tokenLogprobs.push_back(s.logprob.value_or(0.0f));
    Json alternatives = Json::object();
    for (const TokenLogprob &alt : s.topLogprobs)
      alternatives[tokenText(alt.token)] = alt.logprob;
    top.push_back(s.topLogprobs.empty() ? Json() : alternatives);
    offsets.push_back(textOffset);
    textOffset += text.size();
  }
  return Json{{"tokens", tokens},
              {"token_logprobs", tokenLogprobs},
              {"top_logprobs", top},
              {"text_offset", offsets}};
}

std::string ResponseWriter::response(const std::vector<Choice> &choices,
                                     int64_t promptTokens,
                                     int64_t completionTokens) const {
  Json out = envelope(false);
  Json array = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const Choice &c = choices[i];
    size_t offset = 0;
    Json logprobs = c.wantLogprobs ? logprobsJson(c.logprobs, offset) : Json();
    Json choice = {{"index", i}};
    if (endpoint == Endpoint::ChatCompletions)
      choice["message"] = Json{{"role", "assistant"}, {"content", c.text}};
    else
      choice["text"] = c.text;
    choice["logprobs"] = logprobs;
    choice["finish_reason"] = finishJson(c.finishReason);
    array.push_back(std::move(choice));
  }
  out["choices"] = std::move(array);
  out["usage"] = usageJson(promptTokens, completionTokens);
  return dumpJson(out);
}

std::string ResponseWriter::chunk(int index, const std::string &textDelta,
                                  const std::vector<SampleResult> *logprobs,
                                  FinishReason finishReason) const {
  Json out = envelope(true);
  Json choice = {{"index", index}};
  if (endpoint == Endpoint::ChatCompletions) {
    Json delta = Json::object();
    if (!textDelta.empty())
      delta["content"] = textDelta;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = textDelta;
  }
  size_t offset = 0;
  choice["logprobs"] = logprobs ? logprobsJson(*logprobs, offset) : Json();
  choice["finish_reason"] = finishJson(finishReason);
  out["choices"] = Json::array({std::move(choice)});
  return dumpJson(out);
}

std::string ResponseWriter::roleChunk(int index) const {
  Json out = envelope(true);
  out["choices"] =
      Json::array({Json{{"index", index},
                        {"delta", Json{{"role", "assistant"}, {"content", ""}}},
                        {"logprobs", Json()},
                        {"finish_reason", Json()}}});
  return dumpJson(out);
}

std::string ResponseWriter::usageChunk(int64_t promptTokens,
                                       int64_t completionTokens) const {
  Json out = envelope(true);
  out["choices"] = Json::array();
  out["usage"] = usageJson(promptTokens, completionTokens);
  return dumpJson(out);
}

const char *const kSseDone = "data: [DONE]\n\n";
const char *const kSseKeepAlive = ": keep-alive\n\n";

std::string sseEvent(std::string_view data) {
  // A line break inside the data would end the field: each line is its
  // own "data:" line, which the client joins back with "\n".
  std::string out;
  size_t begin = 0;
  while (true) {
    size_t end = data.find_first_of("\r\n", begin);
    out += "data: ";
    out += data.substr(begin, end == std::string_view::npos
                                  ? std::string_view::npos
                                  : end - begin);
    out += '\n';
    if (end == std::string_view::npos)
      break;
    begin = end +
            (data[end] == '\r' && end + 1 < data.size() && data[end + 1] == '\n'
                 ? 2
                 : 1);
  }
  return out + "\n";
}

} // namespace serve
} // namespace optrt
