//===- Serve.cpp - optrun serve -------------------------------------------===//
//
// Loads an artifact (the executor chosen from it, as for generate), starts
// the engine thread and the OpenAI-compatible HTTP server, prints the
// address it listens on, and serves until SIGINT or SIGTERM. Everything
// that can be wrong with the artifact, the chat template or the options is
// reported before the first request, as one line with a non-zero exit.
//
//===----------------------------------------------------------------------===//

#include "Commands.h"

#include "runtime/chat/ChatTemplate.h"
#include "runtime/serve/AsyncEngine.h"
#include "runtime/serve/HttpServer.h"

#include <CLI/CLI.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <unistd.h>

namespace optrun {
namespace {

/// Written to by the signal handler, read by the thread that stops the
/// server.
int stopPipe[2] = {-1, -1};

struct ServeOptions {
  std::string path;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string apiKey;
  std::string modelName;
  std::string chatTemplateFile;
  int32_t maxNumSeqs = optrt::EngineOptions().maxNumSequences;
  int32_t maxNumBatchedTokens = 0;
  int64_t maxModelLength = 0;
  bool noPrefixCaching = false;
  uint64_t kvCacheBytes = 0;
  int32_t threads = 0;
  int httpThreads = optrt::serve::ServerConfig().numThreads;
  size_t maxBodyBytes = optrt::serve::ServerConfig().maxBodyBytes;
  int keepAliveMs = 1000;
  double gpuMemoryUtilization = optrt::ExecutorOptions().gpuMemoryUtilization;
};

/// The chat template: --chat-template FILE, else the checkpoint's, else
/// the default. Special token strings come from tokenizer_config.json, or
/// from the tokenizer where it has none.
std::unique_ptr<optrt::ChatTemplate>
loadChatTemplate(const ServeOptions &options, const LoadedModel &model,
                 std::string &description, std::string &error) {
  optrt::TokenizerChatConfig config;
  const optrt::fb::Tokenizer *stored = model.artifact->tokenizer();
  if (stored && stored->config_json() &&
      !optrt::readTokenizerChatConfig(stored->config_json()->string_view(),
                                      config, error))
    return nullptr;
  std::string source = config.chatTemplate;
  description =
      source.empty() ? "the default (role: content lines)" : "the checkpoint's";
  if (!options.chatTemplateFile.empty()) {
    if (!readTextFile(options.chatTemplateFile, source, error)) {
      error = options.chatTemplateFile + ": " + error;
      return nullptr;
    }
    description = options.chatTemplateFile;
  }
  if (source.empty())
    source = optrt::kDefaultChatTemplate;
  auto fallback = [&](const char *name, std::optional<int32_t> id) {
    if (!config.specialTokens.find(name) && id)
      config.specialTokens.set(
          name, optrt::jinja::Value(model.tokenizer->tokenToString(*id)));
  };
  fallback("bos_token", model.tokenizer->bosId());
  fallback("eos_token", model.tokenizer->eosId());
  std::unique_ptr<optrt::ChatTemplate> chat =
      optrt::ChatTemplate::create(source, config.specialTokens, error);
  if (!chat)
    error = "chat template (" + description + "): " + error;
  return chat;
}

/// The artifact's file name without directories and extension.
std::string defaultModelName(const std::string &path) {
  std::string name = path.substr(path.find_last_of('/') + 1);
  size_t dot = name.rfind('.');
  return dot == std::string::npos || dot == 0 ? name : name.substr(0, dot);
}

int runServe(ServeOptions options) {
  if (options.apiKey.empty())
    if (const char *key = std::getenv("OPTRUN_API_KEY"))
      options.apiKey = key;
  if (options.port < 0 || options.port > 65535)
    return reportError("--port", "must be from 0 to 65535, got " +
                                     std::to_string(options.port));

  LoadedModel model;
  optrt::ExecutorOptions executorOptions;
  executorOptions.numThreads = options.threads;
  executorOptions.gpuMemoryUtilization = options.gpuMemoryUtilization;
  executorOptions.kvCacheBytes = options.kvCacheBytes;
  executorOptions.touchKvCache = true;
  std::string error;
  if (!loadModel(options.path, executorOptions, model, error))
    return reportError(options.path, error);

  const optrt::ExecutorLimits &limits = model.executor->limits();
  if (options.maxModelLength > limits.maxContextLength)
    return reportError("--max-model-len",
                       std::to_string(options.maxModelLength) +
                           " is more than the model's context of " +
                           std::to_string(limits.maxContextLength));
  std::string templateDescription;
  std::unique_ptr<optrt::ChatTemplate> chat =
      loadChatTemplate(options, model, templateDescription, error);
  if (!chat)
    return reportError(options.path, error);

  optrt::EngineOptions engineOptions = engineOptionsFor(model);
  engineOptions.maxNumSequences = options.maxNumSeqs;
  engineOptions.maxTokensPerStep = options.maxNumBatchedTokens;
  engineOptions.maxModelLength = options.maxModelLength;
  engineOptions.enablePrefixCaching = !options.noPrefixCaching;
  optrt::Engine engine(*model.executor, engineOptions);

  optrt::serve::ServedModel served;
  served.tokenizer = model.tokenizer.get();
  served.chatTemplate = chat.get();
  // OpenAI's defaults (temperature 1), under the checkpoint's.
  applyGenerationDefaults(*model.artifact, served.defaults);
  served.defaults.maxTokens.reset();
  served.contextLimit = engine.contextLimit();
  served.vocabSize = limits.vocabSize;
  served.created = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();

  optrt::serve::ServerConfig config;
  config.host = options.host;
  config.port = options.port;
  config.apiKey = options.apiKey;
  config.modelName = options.modelName.empty() ? defaultModelName(options.path)
                                               : options.modelName;
  config.maxBodyBytes = options.maxBodyBytes;
  config.numThreads = options.httpThreads;
  config.keepAliveInterval = std::chrono::milliseconds(options.keepAliveMs);

  // The engine thread steps the executor: a GPU executor's context must be
  // current there.
  optrt::serve::AsyncEngine async(engine, [&](std::string &threadError) {
    return model.executor->bindToCurrentThread(threadError);
  });
  if (!async.startError().empty())
    return reportError(options.path, "the engine thread cannot use the "
                                     "device: " +
                                         async.startError());
  optrt::serve::HttpServer server(async, served, config);
  if (!server.bind(error))
    return reportError("--port", error);
  // SIGINT and SIGTERM write to a pipe that a thread of ours waits on:
  // any thread may take a signal (BLAS starts threads before main), and a
  // handler may do little more than write.
  if (::pipe(stopPipe) != 0)
    return reportError("serve", "cannot create a pipe");
  struct sigaction action = {};
  action.sa_handler = [](int) {
    char byte = 1;
    ssize_t ignored = ::write(stopPipe[1], &byte, 1);
    (void)ignored;
  };
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  std::thread stopper([&] {
    char byte;
    while (::read(stopPipe[0], &byte, 1) < 0 && errno == EINTR) {
    }
    // The engine first: every handler waiting for tokens wakes up (with
    // "the server is shutting down"), so the HTTP threads can finish.
    async.stop();
    server.stop();
  });

  std::printf("optrun serve: listening on http://%s:%d (model '%s', "
              "context %lld tokens, %d KV blocks of %d tokens, chat "
              "template: %s)\n",
              config.host.c_str(), server.port(), config.modelName.c_str(),
              static_cast<long long>(engine.contextLimit()), limits.numBlocks,
              limits.blockSize, templateDescription.c_str());
  std::fflush(stdout);
  bool ok = server.run();
  // If the server ended on its own, the stopper still waits.
  char byte = 1;
  ssize_t ignored = ::write(stopPipe[1], &byte, 1);
  (void)ignored;
  stopper.join();
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  std::fprintf(stderr, "optrun serve: stopped\n");
  return ok ? 0 : reportError(options.path, "the HTTP server failed");
}

} // namespace

void addServeCommand(CLI::App &app, int &exitCode) {
  auto options = std::make_shared<ServeOptions>();
  CLI::App *cmd = app.add_subcommand(
      "serve", "Serve an artifact with an OpenAI-compatible HTTP API");
  cmd->add_option("artifact", options->path, "The .optpkg file")->required();
  cmd->add_option("--host", options->host,
                  "Address to listen on (default 127.0.0.1: this machine "
                  "only)");
  cmd->add_option("--port", options->port,
                  "Port to listen on (default 8000; 0: any free port, "
                  "printed on stdout)");
  cmd->add_option("--api-key", options->apiKey,
                  "Require 'Authorization: Bearer KEY' on /v1/* (default: "
                  "$OPTRUN_API_KEY; none if unset)")
      ->type_name("KEY");
  cmd->add_option("--served-model-name", options->modelName,
                  "The model's name in the API (default: the artifact's "
                  "file name without .optpkg)");
  cmd->add_option("--chat-template", options->chatTemplateFile,
                  "A Jinja chat template to use instead of the checkpoint's")
      ->type_name("FILE");
  cmd->add_option("--max-num-seqs", options->maxNumSeqs,
                  "Sequences running at once")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-num-batched-tokens", options->maxNumBatchedTokens,
                  "Tokens per step (default: the plan's)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-model-len", options->maxModelLength,
                  "Longest prompt plus output (default: the model's)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-prefix-caching", options->noPrefixCaching,
                "Do not reuse the KV of shared prompt prefixes");
  cmd->add_option("--kv-cache-bytes", options->kvCacheBytes,
                  "KV cache size (CPU default 256 MiB; GPUs: "
                  "--gpu-memory-utilization)");
  cmd->add_option("--threads", options->threads,
                  "Host threads of the CPU executor (0: all cores)");
  cmd->add_option("--http-threads", options->httpThreads,
                  "Requests handled at once")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-body-bytes", options->maxBodyBytes,
                  "Larger request bodies get a 413")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--sse-keep-alive-ms", options->keepAliveMs,
                  "Quiet time after which a stream sends a keep-alive "
                  "comment (finds clients that left)")
      ->check(CLI::PositiveNumber);
  addGpuMemoryUtilizationOption(cmd, options->gpuMemoryUtilization);
  cmd->callback([options, &exitCode] {
    exitCode = reportInvalidGpuMemoryUtilization(options->gpuMemoryUtilization);
    if (exitCode == 0)
      exitCode = runServe(*options);
  });
}

} // namespace optrun
