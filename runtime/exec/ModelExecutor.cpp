//===- ModelExecutor.cpp - checks shared by every executor ----------------===//

#include "runtime/exec/ModelExecutor.h"

#include "runtime/artifact/Artifact.h"

#include <limits>
#include <string>
#include <vector>

namespace optrt {

#ifndef OPTMLIR_ENABLE_CUDA
std::unique_ptr<ModelExecutor> createCudaExecutor(const Artifact &,
                                                  const ExecutorOptions &,
                                                  std::string &error) {
  error = "this runtime was built without CUDA (OPTMLIR_ENABLE_CUDA=OFF)";
  return nullptr;
}
#endif

std::unique_ptr<ModelExecutor> createExecutor(const Artifact &artifact,
                                              const ExecutorOptions &options,
                                              std::string &error) {
  for (size_t i = 0; i < artifact.numKernels(); ++i) {
    fb::KernelFormat format = artifact.kernel(i).format();
    if (format == fb::KernelFormat::PTX || format == fb::KernelFormat::Cubin)
      return createCudaExecutor(artifact, options, error);
  }
  return createCpuExecutor(artifact, options, error);
}

bool ModelExecutor::stepGreedy(const StepBatch &batch, int32_t *tokens,
                               std::string &error) {
  const int64_t vocab = limits().vocabSize;
  std::vector<float> logits(batch.logitRows.size() * size_t(vocab));
  if (!step(batch, logits.data(), error))
    return false;
  for (size_t row = 0; row < batch.logitRows.size(); ++row) {
    const float *values = logits.data() + row * vocab;
    // The first maximum; NaN never wins; 0 when nothing exceeds -inf.
    int32_t best = 0;
    float bestValue = -std::numeric_limits<float>::infinity();
    for (int32_t id = 0; id < vocab; ++id)
      if (values[id] > bestValue) {
        bestValue = values[id];
        best = id;
      }
    tokens[row] = best;
  }
  return true;
}

std::string validateBlockCopies(const std::vector<BlockCopy> &copies,
                                const ExecutorLimits &limits) {
  for (const BlockCopy &copy : copies)
    for (BlockId block : {copy.src, copy.dst})
      if (block < 0 || block >= limits.numBlocks)
        return "block copy names block " + std::to_string(block) +
               ", outside the cache's " + std::to_string(limits.numBlocks) +
               " blocks";
  return "";
}

std::string validateStepBatch(const StepBatch &batch,
                              const ExecutorLimits &limits) {
  size_t numTokens = batch.tokens.size();
  if (numTokens == 0)
    return "step batch has no tokens";
  if (numTokens > static_cast<size_t>(limits.maxTokensPerStep))
    return "step batch has " + std::to_string(numTokens) +
           " tokens, more than the plan's " +
           std::to_string(limits.maxTokensPerStep) + " per step";
  if (batch.positions.size() != numTokens)
    return "step batch has " + std::to_string(batch.positions.size()) +
           " positions for " + std::to_string(numTokens) + " tokens";
  for (size_t i = 0; i < numTokens; ++i)
    if (batch.tokens[i] < 0 || batch.tokens[i] >= limits.vocabSize)
      return "token " + std::to_string(i) + " has id " +
             std::to_string(batch.tokens[i]) + ", outside the vocabulary of " +
             std::to_string(limits.vocabSize);

  size_t next = 0;
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const SequenceSlice &seq = batch.sequences[s];
    std::string where = "sequence " + std::to_string(s) + ": ";
    if (seq.numQueryTokens <= 0 || seq.contextLength < seq.numQueryTokens)
      return where + "needs 0 < query tokens (" +
             std::to_string(seq.numQueryTokens) + ") <= context length (" +
             std::to_string(seq.contextLength) + ")";
    if (seq.contextLength > limits.maxContextLength)
      return where + "context length " + std::to_string(seq.contextLength) +
             " exceeds the model's maximum of " +
             std::to_string(limits.maxContextLength);
    if (next + seq.numQueryTokens > numTokens)
      return where + "its query tokens run past the packed tokens";
    int64_t firstPosition = seq.contextLength - seq.numQueryTokens;
    for (int32_t i = 0; i < seq.numQueryTokens; ++i)
      if (batch.positions[next + i] != firstPosition + i)
        return where + "token " + std::to_string(i) + " has position " +
               std::to_string(batch.positions[next + i]) + ", expected " +
               std::to_string(firstPosition + i);
    next += seq.numQueryTokens;
    if (!seq.blockTable)
      return where + "has no block table";
    int64_t blocksNeeded =
        (seq.contextLength + limits.blockSize - 1) / limits.blockSize;
    if (static_cast<int64_t>(seq.blockTable->size()) < blocksNeeded)
      return where + "block table has " +
             std::to_string(seq.blockTable->size()) + " blocks for " +
             std::to_string(seq.contextLength) + " tokens";
    for (int64_t b = 0; b < blocksNeeded; ++b) {
      BlockId block = (*seq.blockTable)[b];
      if (block < 0 || block >= limits.numBlocks)
        return where + "block table entry " + std::to_string(b) + " is " +
               std::to_string(block) + ", outside the cache's " +
               std::to_string(limits.numBlocks) + " blocks";
    }
  }
  if (next != numTokens)
    return "step batch has " + std::to_string(numTokens) +
           " tokens but its sequences cover " + std::to_string(next);
  for (size_t i = 0; i < batch.logitRows.size(); ++i)
    if (batch.logitRows[i] < 0 ||
        static_cast<size_t>(batch.logitRows[i]) >= numTokens)
      return "logit row " + std::to_string(i) + " is " +
             std::to_string(batch.logitRows[i]) + ", outside the " +
             std::to_string(numTokens) + " tokens";
  return "";
}

} // namespace optrt
