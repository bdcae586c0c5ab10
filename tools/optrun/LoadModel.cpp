//===- LoadModel.cpp - artifact, tokenizer and executor for optrun --------===//

#include "Commands.h"

namespace optrun {

bool loadModel(const std::string &path, int32_t numThreads, LoadedModel &model,
               std::string &error) {
  model.artifact = optrt::artifact::Artifact::open(path, error);
  if (!model.artifact)
    return false;
  const optrt::fb::Tokenizer *tokenizer = model.artifact->tokenizer();
  if (!tokenizer || !tokenizer->json()) {
    error = "the artifact has no tokenizer";
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
  optrt::ExecutorOptions options;
  options.numThreads = numThreads;
  model.executor = optrt::createCpuExecutor(*model.artifact, options, error);
  return model.executor != nullptr;
}

} // namespace optrun
