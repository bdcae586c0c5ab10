//===- HttpServer.h - The OpenAI-compatible HTTP server ---------*- C++ -*-===//
//
// `optrun serve` without the command line: cpp-httplib's server with
//   POST /v1/completions, POST /v1/chat/completions (JSON, or server-sent
//        events with "stream": true),
//   GET  /v1/models, /v1/models/{id}, /health, /metrics (Prometheus).
// Handler threads (httplib's pool) parse and validate a request, render
// the chat template, tokenize, and hand the request to the AsyncEngine;
// then they wait on the request's OutputChannel and write what comes. A
// streaming client that goes away fails a write (while tokens flow, or a
// keep-alive comment while it waits), which cancels its requests in the
// engine. Every error is an OpenAI-style JSON body (OpenAiApi.h); nothing a
// client sends crashes or hangs the server.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_SERVE_HTTPSERVER_H
#define OPTMLIR_RUNTIME_SERVE_HTTPSERVER_H

#include "runtime/core/Sampler.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace optrt {

class ChatTemplate;
class Tokenizer;

namespace serve {

class AsyncEngine;

struct ServerConfig {
  /// Where to listen; 127.0.0.1 keeps the server local unless asked.
  std::string host = "127.0.0.1";
  /// 0: any free port (port() says which).
  int port = 8000;
  /// When set, /v1/* needs "Authorization: Bearer <apiKey>".
  std::string apiKey;
  /// The model's name in /v1/models and the "model" requests may name.
  std::string modelName = "model";
  /// Larger request bodies get a 413.
  size_t maxBodyBytes = 4u << 20;
  /// Handler threads: HTTP requests served at once (each holds a thread
  /// while it waits for its tokens; more wait for a thread). As many as the
  /// engine's default --max-num-seqs, so that those can all be running.
  int numThreads = 256;
  /// How long a streaming request waits silently before a keep-alive
  /// comment checks that its client is still there.
  std::chrono::milliseconds keepAliveInterval{1000};
};

/// What the server needs to know of the model.
struct ServedModel {
  /// Both must outlive the server.
  const Tokenizer *tokenizer = nullptr;
  const ChatTemplate *chatTemplate = nullptr;
  /// The model's generation defaults, under what requests set.
  SamplingParams defaults;
  /// Longest prompt plus output (Engine::contextLimit()).
  int64_t contextLimit = 0;
  int32_t vocabSize = 0;
  /// /v1/completions without max_tokens generates at most this (OpenAI's
  /// default); chat completions without it run to the context limit.
  int64_t defaultCompletionTokens = 16;
  /// Seconds since the epoch, for /v1/models.
  int64_t created = 0;
};

class HttpServer {
public:
  /// `engine` must outlive the server. Ignores SIGPIPE for the process: a
  /// client that closes its socket must fail a write, not kill the server.
  HttpServer(AsyncEngine &engine, ServedModel model, ServerConfig config);
  ~HttpServer();
  HttpServer(const HttpServer &) = delete;
  HttpServer &operator=(const HttpServer &) = delete;

  /// Binds the listening socket. False, with `error`, when it cannot.
  bool bind(std::string &error);
  /// The bound port (after bind()).
  int port() const;
  /// Serves until stop() (from another thread or a signal handler's
  /// thread). False if the server failed.
  bool run();
  void stop();

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

} // namespace serve
} // namespace optrt

#endif // OPTMLIR_RUNTIME_SERVE_HTTPSERVER_H
