//===- Generate.cpp - optrun generate -------------------------------------===//
//
// Generates text for one prompt or a file of them, all batched in one
// engine. Text streams to stdout as it comes for one prompt; several prompts
// print each completion, labelled, as it finishes; --format jsonl writes one
// line per prompt in prompt order at the end. Throughput goes to stderr.
//
//===----------------------------------------------------------------------===//

#include "Commands.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>

using optrt::TokenId;

namespace optrun {
namespace {

struct GenerateOptions {
  std::string path;
  std::string prompt;
  std::string promptFile;
  int64_t maxTokens = 0;
  float temperature = 0.0f;
  int32_t topK = 0;
  float topP = 1.0f;
  float minP = 0.0f;
  float repetitionPenalty = 1.0f;
  uint64_t seed = 0;
  std::vector<std::string> stops;
  std::string format = "text";
  int32_t threads = 0;
  double gpuMemoryUtilization = optrt::ExecutorOptions().gpuMemoryUtilization;
  // Set when given, to tell a flag from the artifact's default.
  CLI::Option *promptOption = nullptr;
  CLI::Option *maxTokensOption = nullptr;
  CLI::Option *temperatureOption = nullptr;
  CLI::Option *topKOption = nullptr;
  CLI::Option *topPOption = nullptr;
  CLI::Option *repetitionPenaltyOption = nullptr;
  CLI::Option *seedOption = nullptr;
};

constexpr int64_t kDefaultMaxTokens = 64;

/// Reads JSON lines {"prompt": "..."}; blank lines are skipped.
bool readPromptFile(const std::string &path, std::vector<std::string> &prompts,
                    std::string &error) {
  std::string text;
  if (!readTextFile(path, text, error) ||
      !readJsonLinesField(text, "prompt", prompts, error))
    return false;
  if (prompts.empty()) {
    error = "the prompt file holds no prompts";
    return false;
  }
  return true;
}

/// Flags first, then the artifact's generation defaults, then greedy
/// decoding of kDefaultMaxTokens tokens.
optrt::SamplingParams samplingParams(const GenerateOptions &options,
                                     const optrt::artifact::Artifact &a) {
  optrt::SamplingParams params;
  params.temperature = 0.0f;
  params.maxTokens = kDefaultMaxTokens;
  applyGenerationDefaults(a, params);
  if (options.temperatureOption->count())
    params.temperature = options.temperature;
  if (options.topKOption->count())
    params.topK = options.topK;
  if (options.topPOption->count())
    params.topP = options.topP;
  if (options.repetitionPenaltyOption->count())
    params.repetitionPenalty = options.repetitionPenalty;
  if (options.maxTokensOption->count())
    params.maxTokens = options.maxTokens;
  if (options.seedOption->count())
    params.seed = options.seed;
  params.minP = options.minP;
  params.stopStrings = options.stops;
  return params;
}

/// JSON text of `s`, whose bytes may be invalid UTF-8 (replaced).
std::string jsonString(const std::string &s) {
  return nlohmann::json(s).dump(-1, ' ', false,
                                nlohmann::json::error_handler_t::replace);
}

int runGenerate(const GenerateOptions &options) {
  std::vector<std::string> prompts;
  std::string error;
  if (!options.promptFile.empty()) {
    if (!readPromptFile(options.promptFile, prompts, error))
      return reportError(options.promptFile, error);
  } else {
    prompts.push_back(options.prompt);
  }

  LoadedModel model;
  optrt::ExecutorOptions executorOptions;
  executorOptions.numThreads = options.threads;
  executorOptions.gpuMemoryUtilization = options.gpuMemoryUtilization;
  if (!loadModel(options.path, executorOptions, model, error))
    return reportError(options.path, error);

  optrt::Engine engine(*model.executor, engineOptionsFor(model));

  optrt::SamplingParams params = samplingParams(options, *model.artifact);
  if (!params.validate(error))
    return reportError("sampling options", error);
  std::vector<optrt::RequestId> ids;
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<TokenId> promptIds = model.tokenizer->encode(prompts[i], true);
    std::optional<optrt::RequestId> id =
        engine.addRequest(std::move(promptIds), params, error);
    if (!id)
      return reportError(prompts.size() == 1 ? "prompt"
                                             : "prompt " + std::to_string(i),
                         error);
    ids.push_back(*id);
  }

  // Request ids are handed out in order, so one subtraction finds the index.
  auto indexOf = [&](optrt::RequestId id) { return id - ids.front(); };
  std::vector<std::vector<TokenId>> tokens(prompts.size());
  std::vector<std::string> texts(prompts.size());
  bool jsonl = options.format == "jsonl";
  bool streaming = !jsonl && prompts.size() == 1;
  auto start = std::chrono::steady_clock::now();
  while (engine.hasUnfinished()) {
    for (const optrt::RequestOutput &out : engine.step()) {
      if (!out.error.empty())
        return reportError(options.path, out.error);
      size_t i = indexOf(out.id);
      tokens[i].insert(tokens[i].end(), out.newTokenIds.begin(),
                       out.newTokenIds.end());
      texts[i] += out.textDelta;
      if (streaming) {
        std::fwrite(out.textDelta.data(), 1, out.textDelta.size(), stdout);
        std::fflush(stdout);
      } else if (!jsonl && out.finished) {
        std::printf("--- completion %zu ---\n%s\n", i, texts[i].c_str());
        std::fflush(stdout);
      }
    }
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();

  if (streaming)
    std::printf("\n");
  if (jsonl) {
    for (size_t i = 0; i < prompts.size(); ++i) {
      std::string ids = "[";
      for (size_t t = 0; t < tokens[i].size(); ++t)
        ids += (t ? ", " : "") + std::to_string(tokens[i][t]);
      std::printf("{\"index\": %zu, \"token_ids\": %s], \"text\": %s}\n", i,
                  ids.c_str(), jsonString(texts[i]).c_str());
    }
  }
  std::fflush(stdout);
  const optrt::EngineStats &stats = engine.stats();
  std::fprintf(stderr,
               "generated %lld tokens for %zu prompt%s in %.3f s: %.1f "
               "tokens/s (%lld prompt tokens run, %lld from the prefix "
               "cache)\n",
               static_cast<long long>(stats.numGeneratedTokens), prompts.size(),
               prompts.size() == 1 ? "" : "s", seconds,
               seconds > 0 ? stats.numGeneratedTokens / seconds : 0.0,
               static_cast<long long>(stats.numPrefillTokens),
               static_cast<long long>(stats.numCachedTokens));
  return 0;
}

} // namespace

void addGenerateCommand(CLI::App &app, int &exitCode) {
  auto options = std::make_shared<GenerateOptions>();
  CLI::App *cmd = app.add_subcommand("generate", "Generate text from prompts");
  cmd->add_option("artifact", options->path, "The .optpkg file")->required();
  options->promptOption =
      cmd->add_option("--prompt", options->prompt, "The prompt text");
  CLI::Option *file =
      cmd->add_option("--prompt-file", options->promptFile,
                      "JSON lines {\"prompt\": \"...\"}, all run batched");
  file->type_name("FILE")->excludes(options->promptOption);
  options->maxTokensOption =
      cmd->add_option("--max-tokens", options->maxTokens,
                      "Tokens to generate at most (default: the artifact's, "
                      "else 64)");
  options->temperatureOption = cmd->add_option(
      "--temperature", options->temperature, "0: greedy (the default)");
  options->topKOption =
      cmd->add_option("--top-k", options->topK, "Keep the k most likely");
  options->topPOption =
      cmd->add_option("--top-p", options->topP, "Keep the most likely mass p");
  cmd->add_option("--min-p", options->minP,
                  "Drop tokens below p times the most likely");
  options->repetitionPenaltyOption =
      cmd->add_option("--repetition-penalty", options->repetitionPenalty,
                      "Hugging Face repetition penalty (1: off)");
  options->seedOption =
      cmd->add_option("--seed", options->seed, "Seed for sampling");
  cmd->add_option("--stop", options->stops,
                  "Stop at this string (repeatable); it is not printed")
      ->type_name("S")
      ->allow_extra_args(false);
  cmd->add_option("--format", options->format, "Output format")
      ->check(CLI::IsMember({"text", "jsonl"}));
  cmd->add_option("--threads", options->threads, "Host threads (0: all cores)");
  addGpuMemoryUtilizationOption(cmd, options->gpuMemoryUtilization);
  cmd->callback([options, file, &exitCode] {
    if (!options->promptOption->count() && !file->count())
      throw CLI::RequiredError("--prompt or --prompt-file");
    exitCode =
        reportInvalidGpuMemoryUtilization(options->gpuMemoryUtilization);
    if (exitCode == 0)
      exitCode = runGenerate(*options);
  });
}

} // namespace optrun
