//===- Perplexity.cpp - optrun perplexity ---------------------------------===//
//
// Scores a text with the reference protocol (../shared/models/README.md):
// progress on stderr, the results on stdout with `perplexity: X` last.
//
//===----------------------------------------------------------------------===//

#include "Commands.h"

#include "runtime/engine/TextDocuments.h"

#include "runtime/engine/Perplexity.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <sstream>

namespace optrun {
namespace {

struct PerplexityCommandOptions {
  std::string path;
  std::string textFile;
  int32_t window = 512;
  int32_t threads = 0;
  double gpuMemoryUtilization = optrt::ExecutorOptions().gpuMemoryUtilization;
};

int runPerplexity(const PerplexityCommandOptions &options) {
  std::vector<std::string> documents;
  std::string error;
  if (!optrt::readDocuments(options.textFile, documents, error))
    return reportError(options.textFile, error);

  LoadedModel model;
  optrt::ExecutorOptions executorOptions;
  executorOptions.numThreads = options.threads;
  executorOptions.gpuMemoryUtilization = options.gpuMemoryUtilization;
  if (!loadModel(options.path, executorOptions, model, error))
    return reportError(options.path, error);
  const optrt::fb::ModelInfo &info = model.artifact->model();
  std::optional<int32_t> bos = model.tokenizer->bosId();
  if (info.bos_id() >= 0)
    bos = info.bos_id();
  std::optional<int32_t> eos = model.tokenizer->eosId();
  if (info.eos_ids() && info.eos_ids()->size() > 0)
    eos = info.eos_ids()->Get(0);
  if (!bos || !eos)
    return reportError(options.path,
                       "the model names no beginning- or end-of-sequence "
                       "token, which the protocol puts around documents");

  std::vector<optrt::TokenId> stream =
      optrt::perplexityTokenStream(*model.tokenizer, documents, *bos, *eos);
  optrt::PerplexityOptions scoring;
  scoring.window = options.window;
  scoring.progress = [](int64_t done, int64_t total) {
    std::fprintf(stderr, "\rscored %lld/%lld windows",
                 static_cast<long long>(done), static_cast<long long>(total));
    if (done == total)
      std::fprintf(stderr, "\n");
    std::fflush(stderr);
  };
  optrt::PerplexityResult result;
  if (!optrt::scorePerplexity(*model.executor, stream, scoring, result, error))
    return reportError(options.textFile, error);

  std::printf("documents: %zu\n", documents.size());
  std::printf("tokens: %zu\n", stream.size());
  std::printf("windows: %lld of %d tokens\n",
              static_cast<long long>(result.numWindows), options.window);
  std::printf("tokens scored: %lld\n",
              static_cast<long long>(result.numScored));
  std::printf("mean NLL: %.6f\n", result.meanNll);
  std::printf("perplexity: %.4f\n", result.perplexity);
  return 0;
}

} // namespace

void addPerplexityCommand(CLI::App &app, int &exitCode) {
  auto options = std::make_shared<PerplexityCommandOptions>();
  CLI::App *cmd = app.add_subcommand(
      "perplexity",
      "Perplexity of a text with the reference protocol (non-overlapping "
      "windows)");
  cmd->add_option("artifact", options->path, "The .optpkg file")->required();
  cmd->add_option("file", options->textFile,
                  "JSON lines with a \"text\" field, or plain text (one "
                  "document)")
      ->required();
  cmd->add_option("--window", options->window, "Tokens per window");
  cmd->add_option("--threads", options->threads, "Host threads (0: all cores)");
  addGpuMemoryUtilizationOption(cmd, options->gpuMemoryUtilization);
  cmd->callback([options, &exitCode] {
    exitCode =
        reportInvalidGpuMemoryUtilization(options->gpuMemoryUtilization);
    if (exitCode == 0)
      exitCode = runPerplexity(*options);
  });
}

} // namespace optrun
