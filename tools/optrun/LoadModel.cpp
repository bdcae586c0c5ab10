//===- LoadModel.cpp - artifact, tokenizer and executor for optrun --------===//

#include "Commands.h"

#include <CLI/CLI.hpp>

namespace optrun {

bool loadModel(const std::string &path, const optrt::ExecutorOptions &options,
               LoadedModel &model, std::string &error) {
  model.artifact = optrt::artifact::Artifact::open(path, error);
  if (!model.artifact)
    return false;
  const optrt::fb::Tokenizer *tokenizer = model.artifact->tokenizer();
  if (!tokenizer || !tokenizer->json()) {
    error = model.artifact->hasVirtualWeights()
                ? "the artifact has no tokenizer (it was compiled from a "
                  "config with --random-weights); 'optrun bench' runs it "
                  "without one"
                : "the artifact has no tokenizer";
    return false;
  }
  std::string tokenizerError;
  model.tokenizer = optrt::Tokenizer::fromJson(
      std::string_view(tokenizer->json()->c_str(), tokenizer->json()->size()),
      &tokenizerError);
  if (!model.tokenizer) {
    error = "its tokenizer does not load: " + tokenizerError;
    return false;
  }
  model.executor = optrt::createExecutor(*model.artifact, options, error);
  return model.executor != nullptr;
}

optrt::EngineOptions engineOptionsFor(const LoadedModel &model) {
  optrt::EngineOptions options;
  options.tokenizer = model.tokenizer.get();
  if (const auto *eos = model.artifact->model().eos_ids())
    options.eosTokenIds.assign(eos->begin(), eos->end());
  return options;
}

void applyGenerationDefaults(const optrt::artifact::Artifact &artifact,
                             optrt::SamplingParams &params) {
  const optrt::fb::GenerationDefaults *defaults = artifact.generation();
  if (!defaults)
    return;
  if (defaults->temperature())
    params.temperature = defaults->temperature().value();
  if (defaults->top_k())
    params.topK = defaults->top_k().value();
  if (defaults->top_p())
    params.topP = defaults->top_p().value();
  if (defaults->repetition_penalty())
    params.repetitionPenalty = defaults->repetition_penalty().value();
  if (defaults->max_new_tokens())
    params.maxTokens = defaults->max_new_tokens().value();
}

CLI::Option *addGpuMemoryUtilizationOption(CLI::App *cmd, double &fraction) {
  return cmd
      ->add_option("--gpu-memory-utilization", fraction,
                   "Share of the GPU's memory to fill, the KV cache taking "
                   "what the model leaves (0 < F <= 1; ignored on the CPU)")
      ->type_name("F");
}

int reportInvalidGpuMemoryUtilization(double fraction) {
  std::string problem = optrt::checkGpuMemoryUtilization(fraction);
  return problem.empty() ? 0
                         : reportError("--gpu-memory-utilization", problem);
}

} // namespace optrun

