//===- HttpServer.cpp - The OpenAI-compatible HTTP server -----------------===//

#include "runtime/serve/HttpServer.h"

#include "runtime/chat/ChatTemplate.h"
#include "runtime/serve/AsyncEngine.h"
#include "runtime/serve/OpenAiApi.h"
#include "runtime/tokenizer/Tokenizer.h"

#include <httplib.h>

#include <csignal>
#include <map>
#include <random>

namespace optrt {
namespace serve {

namespace {

using Json = nlohmann::ordered_json;

ApiError makeError(int status, std::string message, std::string param = "",
                   std::string code = "") {
  ApiError error;
  error.status = status;
  error.message = std::move(message);
  error.type = status >= 500 ? "server_error" : "invalid_request_error";
  error.param = std::move(param);
  error.code = std::move(code);
  return error;
}

void sendError(httplib::Response &res, const ApiError &error) {
  res.status = error.status;
  res.set_content(error.body(), "application/json");
}

std::string randomId(const char *prefix) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  char hex[40];
  std::snprintf(hex, sizeof(hex), "%016llx%08llx",
                static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng() & 0xffffffffu));
  return prefix + std::string(hex);
}

int64_t unixTime() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

constexpr const char *kShuttingDown = "the server is shutting down";

/// The error a failed choice gets: 503 while stopping, 400 when the
/// engine refused the request, 500 when the model failed.
ApiError choiceError(const ChoiceEvent &event) {
  if (event.output.error == kShuttingDown)
    return makeError(503, kShuttingDown);
  if (event.refused)
    return makeError(400, event.output.error);
  return makeError(500, "the model failed: " + event.output.error);
}

/// A prompt, tokenized, with the output length it may have.
struct PreparedPrompt {
  std::vector<TokenId> ids;
  int64_t maxTokens = 0;
};

/// One streamed request: what the content provider needs between calls
/// (httplib calls it, and then its releaser, on the handler's thread).
struct StreamState {
  StreamState(AsyncEngine &engine, ResponseWriter writer)
      : engine(engine), writer(std::move(writer)) {}

  /// Writes what came since the last call; false when the client is gone.
  bool pump(httplib::DataSink &sink);
  /// httplib is done with the response: a client that went away (or a
  /// server that stops) leaves unfinished choices, which are cancelled.
  void release() {
    if (!done)
      for (uint64_t ticket : tickets)
        engine.cancel(ticket);
  }

  AsyncEngine &engine;
  ResponseWriter writer;
  std::shared_ptr<OutputChannel> channel = std::make_shared<OutputChannel>();
  std::vector<uint64_t> tickets;
  std::vector<bool> finished;
  size_t numFinished = 0;
  bool chat = false;
  bool includeUsage = false;
  bool wantLogprobs = false;
  int64_t promptTokens = 0;
  int64_t completionTokens = 0;
  std::chrono::milliseconds keepAliveInterval{1000};
  bool started = false;
  bool done = false;
};

bool write(httplib::DataSink &sink, const std::string &text) {
  // An empty write would tell httplib the content has ended.
  return text.empty() || sink.write(text.data(), text.size());
}

bool StreamState::pump(httplib::DataSink &sink) {
  std::string out;
  if (!started) {
    started = true;
    if (chat)
      for (size_t i = 0; i < finished.size(); ++i)
        out += sseEvent(writer.roleChunk(static_cast<int>(i)));
    return write(sink, out);
  }
  std::vector<ChoiceEvent> events;
  if (!channel->wait(events, keepAliveInterval))
    return write(sink, kSseKeepAlive);
  for (ChoiceEvent &event : events) {
    size_t index = static_cast<size_t>(event.index);
    if (index >= finished.size() || finished[index])
      continue;
    const RequestOutput &output = event.output;
    if (!output.error.empty()) {
      // The stream has started (status 200): the error is an event.
      out += sseEvent(choiceError(event).body());
    } else {
      completionTokens += static_cast<int64_t>(output.newTokenIds.size());
      bool hasLogprobs = wantLogprobs && !output.logprobs.empty();
      if (!output.textDelta.empty() || output.finished || hasLogprobs)
        out += sseEvent(writer.chunk(event.index, output.textDelta,
                                     hasLogprobs ? &output.logprobs : nullptr,
                                     output.finished ? output.finishReason
                                                     : FinishReason::None));
    }
    if (output.finished) {
      finished[index] = true;
      ++numFinished;
    }
  }
  if (numFinished < finished.size())
    return write(sink, out);
  if (includeUsage)
    out += sseEvent(writer.usageChunk(promptTokens, completionTokens));
  out += kSseDone;
  if (!write(sink, out))
    return false;
  done = true;
  sink.done();
  return true;
}

} // namespace

struct HttpServer::Impl {
  Impl(AsyncEngine &engine, ServedModel model, ServerConfig config)
      : engine(engine), model(std::move(model)), config(std::move(config)) {}

  void install();
  void handleGeneration(const httplib::Request &req, httplib::Response &res,
                        Endpoint endpoint);
  bool prepare(const GenerationRequest &request,
               std::vector<PreparedPrompt> &prompts, ApiError &error) const;
  void respond(const GenerationRequest &request,
               const std::vector<PreparedPrompt> &prompts,
               Clock::time_point arrival, httplib::Response &res);
  void stream(const GenerationRequest &request,
              const std::vector<PreparedPrompt> &prompts,
              Clock::time_point arrival, httplib::Response &res);
  Json modelJson() const {
    return Json{{"id", config.modelName},
                {"object", "model"},
                {"created", model.created},
                {"owned_by", "optmlir"},
                {"max_model_len", model.contextLimit}};
  }
  std::string tokenText(TokenId id) const {
    return model.tokenizer->decode(&id, 1, false);
  }

  AsyncEngine &engine;
  ServedModel model;
  ServerConfig config;
  httplib::Server server;
  int boundPort = -1;
  std::mutex statusMutex;
  std::map<int, int64_t> responsesByStatus;
};

void HttpServer::Impl::install() {
  int numThreads = std::max(1, config.numThreads);
  server.new_task_queue = [numThreads] {
    return new httplib::ThreadPool(static_cast<size_t>(numThreads));
  };
  server.set_payload_max_length(config.maxBodyBytes);
  server.set_keep_alive_max_count(100);

  server.set_pre_routing_handler(
      [this](const httplib::Request &req, httplib::Response &res) {
        if (config.apiKey.empty() || req.path.rfind("/v1/", 0) != 0)
          return httplib::Server::HandlerResponse::Unhandled;
        std::string auth = req.get_header_value("Authorization");
        if (auth == "Bearer " + config.apiKey)
          return httplib::Server::HandlerResponse::Unhandled;
        sendError(res, makeError(401,
                                 auth.empty() ? "no API key: send the header "
                                                "'Authorization: Bearer <key>'"
                                              : "incorrect API key provided",
                                 "", "invalid_api_key"));
        return httplib::Server::HandlerResponse::Handled;
      });
  // httplib's own refusals (no route, a body over the limit, a malformed
  // request) get OpenAI-style bodies too.
  server.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request &req, httplib::Response &res) {
        if (!res.body.empty())
          return httplib::Server::HandlerResponse::Unhandled;
        std::string message;
        switch (res.status) {
        case 404:
          message = "Invalid URL (" + req.method + " " + req.path + ")";
          break;
        case 413:
          message = "the request body is larger than " +
                    std::to_string(config.maxBodyBytes) + " bytes";
          break;
        case 400:
          message = "the HTTP request is malformed";
          break;
        default:
          message = "HTTP error " + std::to_string(res.status);
        }
        ApiError error = makeError(res.status, message);
        res.set_content(error.body(), "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }));
  server.set_exception_handler([](const httplib::Request &,
                                  httplib::Response &res,
                                  std::exception_ptr exception) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(exception);
    } catch (const std::exception &e) {
      what = e.what();
    } catch (...) {
    }
    sendError(res, makeError(500, "internal error: " + what));
  });
  server.set_logger(
      [this](const httplib::Request &, const httplib::Response &res) {
        std::lock_guard<std::mutex> lock(statusMutex);
        ++responsesByStatus[res.status];
      });

  server.Get("/health",
             [this](const httplib::Request &, httplib::Response &res) {
               if (!engine.running())
                 return sendError(res, makeError(503, kShuttingDown));
               res.set_content(R"({"status": "ok"})", "application/json");
             });
  server.Get(
      "/metrics", [this](const httplib::Request &, httplib::Response &res) {
        std::string text = engine.metricsText();
        std::vector<std::pair<std::string, double>> byStatus;
        {
          std::lock_guard<std::mutex> lock(statusMutex);
          for (const auto &[status, count] : responsesByStatus)
            byStatus.emplace_back("code=\"" + std::to_string(status) + "\"",
                                  static_cast<double>(count));
        }
        if (!byStatus.empty())
          appendCounter(text, "optmlir_http_responses_total",
                        "HTTP responses sent, by status code.", 0, byStatus);
        res.set_content(text, "text/plain; version=0.0.4");
      });
  server.Get(
      "/v1/models", [this](const httplib::Request &, httplib::Response &res) {
        Json list = {{"object", "list"}, {"data", Json::array({modelJson()})}};
        res.set_content(dumpJson(list), "application/json");
      });
  server.Get(R"(/v1/models/(.+))", [this](const httplib::Request &req,
                                          httplib::Response &res) {
    if (req.matches[1] != config.modelName)
      return sendError(res,
                       makeError(404,
                                 "The model '" + std::string(req.matches[1]) +
                                     "' does not exist",
                                 "model", "model_not_found"));
    res.set_content(dumpJson(modelJson()), "application/json");
  });
  server.Post("/v1/completions",
              [this](const httplib::Request &req, httplib::Response &res) {
                handleGeneration(req, res, Endpoint::Completions);
              });
  server.Post("/v1/chat/completions",
              [this](const httplib::Request &req, httplib::Response &res) {
                handleGeneration(req, res, Endpoint::ChatCompletions);
              });
}

bool HttpServer::Impl::prepare(const GenerationRequest &request,
                               std::vector<PreparedPrompt> &prompts,
                               ApiError &error) const {
  bool chat = request.endpoint == Endpoint::ChatCompletions;
  const char *param = chat ? "messages" : "prompt";
  if (chat) {
    std::string text, message;
    jinja::Value messages = jsonToValue(request.messages);
    if (!model.chatTemplate->render(messages.asList(),
                                    request.addGenerationPrompt,
                                    jinja::Value::none(), text, message)) {
      error = makeError(
          400, "the chat template refused the conversation: " + message,
          "messages");
      return false;
    }
    // The template wrote the special tokens it wants.
    prompts.push_back({model.tokenizer->encode(text, false), 0});
  } else {
    for (const PromptInput &input : request.prompts) {
      if (!input.isTokens) {
        prompts.push_back({model.tokenizer->encode(input.text, true), 0});
        continue;
      }
      for (TokenId id : input.tokenIds) {
        if (id >= model.vocabSize) {
          error = invalidValue("prompt", "token id " + std::to_string(id) +
                                             " is outside the vocabulary "
                                             "of " +
                                             std::to_string(model.vocabSize));
          return false;
        }
      }
      prompts.push_back({input.tokenIds, 0});
    }
  }
  for (TokenId id : request.stopTokenIds) {
    if (id >= model.vocabSize) {
      error =
          invalidValue("stop_token_ids", "token id " + std::to_string(id) +
                                             " is outside the vocabulary of " +
                                             std::to_string(model.vocabSize));
      return false;
    }
  }
  for (PreparedPrompt &prompt : prompts) {
    int64_t length = static_cast<int64_t>(prompt.ids.size());
    if (length == 0) {
      error = makeError(400, "the prompt is empty", param);
      return false;
    }
    // As vLLM: the prompt and max_tokens together must fit the context.
    int64_t room = model.contextLimit - length;
    std::string limit = "This model's maximum context length is " +
                        std::to_string(model.contextLimit) + " tokens";
    if (room < 1) {
      error =
          makeError(400,
                    limit + ", and the prompt has " + std::to_string(length) +
                        " tokens: no room is left to generate",
                    param, "context_length_exceeded");
      return false;
    }
    if (request.maxTokens && *request.maxTokens > room) {
      error = makeError(
          400,
          limit + ". However, you requested " +
              std::to_string(length + *request.maxTokens) + " tokens (" +
              std::to_string(length) + " in the prompt, " +
              std::to_string(*request.maxTokens) +
              " for the completion). Please reduce the prompt or max_tokens.",
          "max_tokens", "context_length_exceeded");
      return false;
    }
    prompt.maxTokens = request.maxTokens ? *request.maxTokens
                       : chat            ? room
                              : std::min(model.defaultCompletionTokens, room);
  }
  return true;
}

void HttpServer::Impl::handleGeneration(const httplib::Request &req,
                                        httplib::Response &res,
                                        Endpoint endpoint) {
  Clock::time_point arrival = Clock::now();
  GenerationRequest request;
  ApiError error;
  if (!parseRequest(req.body, endpoint, request, error))
    return sendError(res, error);
  if (!request.model.empty() && request.model != config.modelName)
    return sendError(res, makeError(404,
                                    "The model '" + request.model +
                                        "' does not exist (this server has '" +
                                        config.modelName + "')",
                                    "model", "model_not_found"));
  std::vector<PreparedPrompt> prompts;
  if (!prepare(request, prompts, error))
    return sendError(res, error);
  if (request.stream)
    stream(request, prompts, arrival, res);
  else
    respond(request, prompts, arrival, res);
}

void HttpServer::Impl::respond(const GenerationRequest &request,
                               const std::vector<PreparedPrompt> &prompts,
                               Clock::time_point arrival,
                               httplib::Response &res) {
  auto channel = std::make_shared<OutputChannel>();
  std::vector<uint64_t> tickets;
  int64_t promptTokens = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    promptTokens += static_cast<int64_t>(prompts[p].ids.size());
    for (int c = 0; c < request.n; ++c) {
      SamplingParams params = samplingParams(request, model.defaults, c);
      params.maxTokens = prompts[p].maxTokens;
      tickets.push_back(
          engine.submit(channel, static_cast<int>(p) * request.n + c,
                        prompts[p].ids, params, request.priority, arrival));
    }
  }
  // A client that disconnects now is noticed only when the response is
  // written: its choices run to their end (max_tokens bounds them).
  std::vector<ResponseWriter::Choice> choices(tickets.size());
  std::vector<bool> finished(tickets.size());
  size_t numFinished = 0;
  int64_t completionTokens = 0;
  bool wantLogprobs = request.logprobs >= 0;
  while (numFinished < choices.size()) {
    std::vector<ChoiceEvent> events;
    channel->wait(events, std::chrono::seconds(1));
    for (ChoiceEvent &event : events) {
      size_t index = static_cast<size_t>(event.index);
      if (finished[index])
        continue;
      const RequestOutput &output = event.output;
      if (!output.error.empty()) {
        for (uint64_t ticket : tickets)
          engine.cancel(ticket);
        return sendError(res, choiceError(event));
      }
      ResponseWriter::Choice &choice = choices[index];
      choice.text += output.textDelta;
      choice.wantLogprobs = wantLogprobs;
      choice.logprobs.insert(choice.logprobs.end(), output.logprobs.begin(),
                             output.logprobs.end());
      completionTokens += static_cast<int64_t>(output.newTokenIds.size());
      if (output.finished) {
        choice.finishReason = output.finishReason;
        finished[index] = true;
        ++numFinished;
      }
    }
  }
  bool chat = request.endpoint == Endpoint::ChatCompletions;
  ResponseWriter writer(
      request.endpoint, randomId(chat ? "chatcmpl-" : "cmpl-"), unixTime(),
      config.modelName, [this](TokenId id) { return tokenText(id); });
  res.set_content(writer.response(choices, promptTokens, completionTokens),
                  "application/json");
}

void HttpServer::Impl::stream(const GenerationRequest &request,
                              const std::vector<PreparedPrompt> &prompts,
                              Clock::time_point arrival,
                              httplib::Response &res) {
  bool chat = request.endpoint == Endpoint::ChatCompletions;
  auto state = std::make_shared<StreamState>(
      engine,
      ResponseWriter(request.endpoint, randomId(chat ? "chatcmpl-" : "cmpl-"),
                     unixTime(), config.modelName,
                     [this](TokenId id) { return tokenText(id); }));
  state->chat = chat;
  state->includeUsage = request.includeUsage;
  state->wantLogprobs = request.logprobs >= 0;
  state->keepAliveInterval = config.keepAliveInterval;
  for (size_t p = 0; p < prompts.size(); ++p) {
    state->promptTokens += static_cast<int64_t>(prompts[p].ids.size());
    for (int c = 0; c < request.n; ++c) {
      SamplingParams params = samplingParams(request, model.defaults, c);
      params.maxTokens = prompts[p].maxTokens;
      state->tickets.push_back(
          engine.submit(state->channel, static_cast<int>(p) * request.n + c,
                        prompts[p].ids, params, request.priority, arrival));
    }
  }
  state->finished.assign(state->tickets.size(), false);
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [state](size_t, httplib::DataSink &sink) { return state->pump(sink); },
      [state](bool) { state->release(); });
}

HttpServer::HttpServer(AsyncEngine &engine, ServedModel model,
                       ServerConfig config)
    : impl(
          std::make_unique<Impl>(engine, std::move(model), std::move(config))) {
  // httplib sends without MSG_NOSIGNAL: a write to a closed socket must
  // fail, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  impl->install();
}

HttpServer::~HttpServer() { stop(); }

bool HttpServer::bind(std::string &error) {
  const ServerConfig &c = impl->config;
  if (c.port == 0) {
    impl->boundPort = impl->server.bind_to_any_port(c.host);
  } else if (impl->server.bind_to_port(c.host, c.port)) {
    impl->boundPort = c.port;
  }
  if (impl->boundPort <= 0) {
    error = "cannot listen on " + c.host + ":" + std::to_string(c.port) +
            " (the port is taken, or the address is not this machine's)";
    return false;
  }
  return true;
}

int HttpServer::port() const { return impl->boundPort; }

bool HttpServer::run() { return impl->server.listen_after_bind(); }

void HttpServer::stop() { impl->server.stop(); }

} // namespace serve
} // namespace optrt
