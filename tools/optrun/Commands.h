//===- Commands.h - optrun subcommands --------------------------*- C++ -*-===//
//
// Each subcommand lives in its own file and registers itself on the main
// CLI11 app; when it is chosen its callback stores the process exit code.
// New subcommands (generate, perplexity, serve, bench) follow the same shape.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_TOOLS_OPTRUN_COMMANDS_H
#define OPTMLIR_TOOLS_OPTRUN_COMMANDS_H

#include "runtime/artifact/Artifact.h"
#include "runtime/engine/Engine.h"
#include "runtime/engine/TextDocuments.h"
#include "runtime/exec/ModelExecutor.h"
#include "runtime/tokenizer/Tokenizer.h"

#include <cstdint>
#include <memory>
#include <string>

namespace CLI {
class App;
class Option;
} // namespace CLI

namespace optrun {

/// Adds `optrun inspect`; sets `exitCode` when it runs.
void addInspectCommand(CLI::App &app, int &exitCode);
/// Adds `optrun generate`; sets `exitCode` when it runs.
void addGenerateCommand(CLI::App &app, int &exitCode);
/// Adds `optrun perplexity`; sets `exitCode` when it runs.
void addPerplexityCommand(CLI::App &app, int &exitCode);
/// Adds `optrun bench`; sets `exitCode` when it runs.
void addBenchCommand(CLI::App &app, int &exitCode);
/// Adds `optrun serve`; sets `exitCode` when it runs.
void addServeCommand(CLI::App &app, int &exitCode);

// Text files (runtime/engine/TextDocuments.h).
using optrt::readJsonLinesField;
using optrt::readTextFile;

/// What the commands that run a model need from an artifact.
struct LoadedModel {
  std::unique_ptr<optrt::artifact::Artifact> artifact;
  std::unique_ptr<optrt::Tokenizer> tokenizer;
  std::unique_ptr<optrt::ModelExecutor> executor;
};

/// Opens the artifact at `path` with its tokenizer and an executor made
/// with `options`. On failure sets `error` to one line without the path.
bool loadModel(const std::string &path, const optrt::ExecutorOptions &options,
               LoadedModel &model, std::string &error);

/// Engine options for `model`: its tokenizer and end-of-sequence ids.
optrt::EngineOptions engineOptionsFor(const LoadedModel &model);

/// Overrides the fields of `params` that the artifact's generation defaults
/// (generation_config.json) set: temperature, top_k, top_p,
/// repetition_penalty and max_new_tokens.
void applyGenerationDefaults(const optrt::artifact::Artifact &artifact,
                             optrt::SamplingParams &params);

/// Adds --gpu-memory-utilization F to a subcommand that runs an artifact
/// (ExecutorOptions::gpuMemoryUtilization, default 0.9; the CPU executor
/// ignores it).
CLI::Option *addGpuMemoryUtilizationOption(CLI::App *cmd, double &fraction);
/// When `fraction` is not in (0, 1], prints "optrun: error:
/// --gpu-memory-utilization: ..." and returns 1; else returns 0.
int reportInvalidGpuMemoryUtilization(double fraction);

/// Prints "optrun: error: <subject>: <problem>" to stderr; returns 1, the
/// exit code for every failure after arguments were parsed.
int reportError(const std::string &subject, const std::string &problem);

} // namespace optrun

#endif // OPTMLIR_TOOLS_OPTRUN_COMMANDS_H
