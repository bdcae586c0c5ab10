//===- ModelExecutor.cpp - checks shared by every executor ----------------===//

#include "runtime/exec/ModelExecutor.h"

#include "runtime/artifact/Artifact.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
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

bool isGpuArtifact(const Artifact &artifact) {
  for (size_t i = 0; i < artifact.numKernels(); ++i) {
    fb::KernelFormat format = artifact.kernel(i).format();
    if (format == fb::KernelFormat::PTX || format == fb::KernelFormat::Cubin)
      return true;
  }
  return false;
}

std::unique_ptr<ModelExecutor> createExecutor(const Artifact &artifact,
                                              const ExecutorOptions &options,
                                              std::string &error) {
  if (isGpuArtifact(artifact))
    return createCudaExecutor(artifact, options, error);
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

std::string checkGpuMemoryUtilization(double fraction) {
  if (fraction > 0 && fraction <= 1) // false for NaN too
    return "";
  char text[96];
  std::snprintf(text, sizeof(text),
                "must be greater than 0 and at most 1, got %g", fraction);
  return text;
}

namespace {
/// "512 bytes", "48.0 KiB", "6.0 MiB", "71.23 GiB".
std::string formatBytes(uint64_t bytes) {
  char text[32];
  if (bytes >= (1ull << 30))
    std::snprintf(text, sizeof(text), "%.2f GiB", bytes / double(1ull << 30));
  else if (bytes >= (1ull << 20))
    std::snprintf(text, sizeof(text), "%.1f MiB", bytes / double(1ull << 20));
  else if (bytes >= 1024)
    std::snprintf(text, sizeof(text), "%.1f KiB", bytes / 1024.0);
  else
    std::snprintf(text, sizeof(text), "%llu bytes", (unsigned long long)bytes);
  return text;
}
} // namespace

int32_t kvBlocksForMemory(const KvCacheBudget &b, std::string &error) {
  std::string problem = checkGpuMemoryUtilization(b.utilization);
  if (!problem.empty()) {
    error = "GPU memory utilization " + problem;
    return 0;
  }
  if (b.bytesPerBlock == 0 || b.blockSize < 1 || b.freeBytes > b.totalBytes) {
    error = "KV cache sizing: inconsistent sizes (" +
            std::to_string(b.bytesPerBlock) + " bytes per block of " +
            std::to_string(b.blockSize) + " tokens, " +
            std::to_string(b.freeBytes) + " of " +
            std::to_string(b.totalBytes) + " bytes free)";
    return 0;
  }
  uint64_t allowed = uint64_t(b.utilization * double(b.totalBytes));
  uint64_t used = b.totalBytes - b.freeBytes;
  uint64_t available =
      allowed > used + b.reserveBytes ? allowed - used - b.reserveBytes : 0;
  uint64_t blocks = std::min<uint64_t>(available / b.bytesPerBlock,
                                       INT32_MAX / b.blockSize);
  int64_t minBlocks = std::max<int64_t>(b.minBlocks, 1);
  if (int64_t(blocks) >= minBlocks)
    return int32_t(blocks);

  // Say what is missing, and the utilization that would leave enough.
  uint64_t needed = uint64_t(minBlocks) * b.bytesPerBlock;
  uint64_t missing = needed - blocks * b.bytesPerBlock;
  char fraction[64];
  std::snprintf(fraction, sizeof(fraction), "%g", b.utilization);
  error = "the KV cache does not fit: GPU memory utilization " +
          std::string(fraction) + " allows " + formatBytes(allowed) +
          " of the GPU's " + formatBytes(b.totalBytes) + ", " +
          formatBytes(used) +
          " are in use after loading the model (weights, activations, "
          "workspaces; other processes count too), which leaves room for " +
          std::to_string(blocks) + " KV blocks; one sequence of " +
          std::to_string(b.maxSequenceTokens) + " tokens needs " +
          std::to_string(minBlocks) + (minBlocks == 1 ? " block" : " blocks") +
          " of " +
          std::to_string(b.blockSize) + " tokens (" + formatBytes(needed) +
          ", " + formatBytes(b.bytesPerBlock) + " each): " +
          formatBytes(missing) + " missing";
  double wanted = double(used + b.reserveBytes + needed) /
                  double(std::max<uint64_t>(b.totalBytes, 1));
  double rounded = std::ceil(wanted * 100) / 100;
  if (rounded <= 1) {
    std::snprintf(fraction, sizeof(fraction), "%.2f", rounded);
    error += "; --gpu-memory-utilization " + std::string(fraction) +
             " would leave enough";
  } else {
    error += "; even the whole GPU is not enough (free memory, or a GPU "
             "with more)";
  }
  return 0;
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
