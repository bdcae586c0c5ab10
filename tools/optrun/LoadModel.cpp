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

