//===- ModelExecutor.h - one unified step of a compiled model ---*- C++ -*-===//
//
// The device-facing half of the runtime: runs the artifact's plan over a
// ragged batch (prefill chunks and decode tokens of several sequences packed
// together, each with its block table into the paged KV cache) and returns
// the logits of the rows asked for. One implementation per device kind (CPU
// now, CUDA later); the engine above it (scheduler, sampler, tokenizer) is
// the same for all.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_EXEC_MODELEXECUTOR_H
#define OPTMLIR_RUNTIME_EXEC_MODELEXECUTOR_H

#include "runtime/core/BlockManager.h"
#include "runtime/core/Types.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace optrt {

namespace artifact {
class Artifact;
} // namespace artifact
using artifact::Artifact;

/// What the engine needs to know of the compiled model to schedule it.
struct ExecutorLimits {
  int32_t vocabSize = 0;
  /// Most packed tokens one step may carry (the plan's buffers are sized for
  /// it).
  int32_t maxTokensPerStep = 0;
  /// Longest context a sequence may reach (the model's maximum positions).
  int32_t maxContextLength = 0;
  /// KV cache: blocks of blockSize tokens, numBlocks of them.
  int32_t blockSize = 0;
  int32_t numBlocks = 0;
};

/// One sequence's share of a step. Its query tokens are the next
/// numQueryTokens entries of StepBatch::tokens (sequences are packed in
/// order); after the step its cache holds contextLength tokens, the last
/// numQueryTokens of which this step writes.
struct SequenceSlice {
  int32_t numQueryTokens = 0;
  int32_t contextLength = 0;
  /// Block table: block ids covering at least contextLength tokens.
  const std::vector<BlockId> *blockTable = nullptr;
};

struct StepBatch {
  /// Packed token ids of all sequences, and the position of each token in
  /// its sequence (contextLength - numQueryTokens + i).
  std::vector<TokenId> tokens;
  std::vector<int32_t> positions;
  std::vector<SequenceSlice> sequences;
  /// Indices into `tokens` whose logits step() returns, in this order (the
  /// last token of each sequence when generating; every token when scoring).
  std::vector<int32_t> logitRows;
};

/// The KV cache's size when nothing else decides it (ExecutorOptions).
inline constexpr uint64_t kDefaultKvCacheBytes = 256ull << 20;

struct ExecutorOptions {
  /// KV cache size in blocks; 0 picks it from kvCacheBytes, or else (GPU
  /// executors) from gpuMemoryUtilization.
  int32_t numBlocks = 0;
  /// Memory for the KV cache when numBlocks is 0; 0: not given (the CPU
  /// executor then takes kDefaultKvCacheBytes).
  uint64_t kvCacheBytes = 0;
  /// GPU executors, when neither numBlocks nor kvCacheBytes is given: the
  /// share of the device's total memory this executor may fill, as vLLM's
  /// --gpu-memory-utilization. The KV cache gets that share minus what the
  /// device has in use after loading the weights, the plan's buffers and
  /// the workspaces (other processes' memory counts as in use), in whole
  /// blocks (kvBlocksForMemory); loading fails when that is less than one
  /// sequence of the model's maximum length. 0 turns it off
  /// (kDefaultKvCacheBytes). The CPU executor ignores it.
  double gpuMemoryUtilization = 0.9;
  /// Host threads for the CPU executor (0: all cores).
  int32_t numThreads = 0;
  /// The CPU executor writes its whole KV cache once at load, so that its
  /// pages are resident from the start: a server's memory then stays flat
  /// instead of growing as blocks are first used. (GPU memory is always
  /// resident.)
  bool touchKvCache = false;
  /// GPU executors replay CUDA graphs for decode steps.
  bool useCudaGraphs = true;
  /// Seed of the values that fill virtual weights (--random-weights
  /// artifacts): uniform in [-0.05, 0.05], norm weights near 1.
  uint64_t randomSeed = 0;
  /// CPU executor: called before every gemm with its input rows (A, f32,
  /// `rows` rows of `cols`, `stride` apart) and the name of the weight it
  /// multiplies, for calibration (optc calibrate). GPU executors refuse it.
  std::function<void(std::string_view weight, const float *rows,
                     int64_t numRows, int64_t cols, int64_t stride)>
      gemmInputObserver;
};

/// "" when `fraction` is a valid --gpu-memory-utilization (0 < F <= 1),
/// else the problem in one line ("must be greater than 0 and at most 1,
/// got 1.5").
std::string checkGpuMemoryUtilization(double fraction);

/// What sizes a KV cache from a GPU's memory (ExecutorOptions::
/// gpuMemoryUtilization). Plain numbers, so that the arithmetic is tested
/// without a GPU.
struct KvCacheBudget {
  /// The share of totalBytes the executor may fill, in (0, 1].
  double utilization = 0.9;
  /// The device's memory (cuMemGetInfo) after everything but the KV cache
  /// is loaded.
  uint64_t totalBytes = 0, freeBytes = 0;
  /// One block: keys and values of blockSize tokens in every layer.
  uint64_t bytesPerBlock = 0;
  int32_t blockSize = 0;
  /// Kept back besides (the rounding of the cache's allocations).
  uint64_t reserveBytes = 0;
  /// Blocks of one sequence of the model's maximum length: fewer is an
  /// error.
  int64_t minBlocks = 1;
  /// For messages: the model's maximum length in tokens.
  int64_t maxSequenceTokens = 0;
};

/// The KV cache's blocks: floor((utilization x total - (total - free) -
/// reserve) / bytesPerBlock), at most INT32_MAX / blockSize (slot numbers
/// are int32). 0 and a one-line error saying what is missing (bytes, and
/// the utilization that would do) when that is fewer than minBlocks.
int32_t kvBlocksForMemory(const KvCacheBudget &budget, std::string &error);

/// What the device can do at best, measured on it (for rooflines).
struct DeviceCeilings {
  /// A large device-to-device copy, bytes read plus bytes written per second.
  double copyBytesPerSecond = 0;
  /// A large dense matrix product in the executor's compute type.
  double matmulFlopsPerSecond = 0;
  /// The device's name ("" if unknown).
  std::string deviceName;
};

class ModelExecutor {
public:
  virtual ~ModelExecutor() = default;

  virtual const ExecutorLimits &limits() const = 0;

  /// Runs the model over `batch` and writes the logits of batch.logitRows to
  /// `logits` (row-major, logitRows.size() x vocabSize floats). Fails with a
  /// one-line message (and changes no cache state the batch did not own)
  /// when the batch is malformed: too many tokens, token ids outside the
  /// vocabulary, positions or block tables inconsistent with the slices.
  virtual bool step(const StepBatch &batch, float *logits,
                    std::string &error) = 0;

  /// As step(), for greedy decoding: writes the argmax of each row of
  /// batch.logitRows (the lowest id among equal logits, as Sampler's greedy
  /// choice) to `tokens`. The default runs step() and picks on the host; GPU
  /// executors pick on the device and read back only the ids.
  virtual bool stepGreedy(const StepBatch &batch, int32_t *tokens,
                          std::string &error);

  /// Copies whole KV blocks (all layers), for copy-on-write after forks.
  virtual bool copyBlocks(const std::vector<BlockCopy> &copies,
                          std::string &error) = 0;

  /// Measures the copy bandwidth and matmul peak of the executor's device
  /// (takes a second or so). Zeros where an executor cannot measure.
  virtual DeviceCeilings measureCeilings() { return {}; }

  /// Makes the executor usable from the calling thread. A CUDA context is
  /// current only on the thread that made it current, so a GPU executor
  /// stepped from another thread than the one that loaded it (a server's
  /// engine thread) needs this first; the CPU executor needs nothing.
  virtual bool bindToCurrentThread(std::string &error) {
    (void)error;
    return true;
  }
};

/// Element `index` of virtual weight number `weight`, filled from `seed`.
/// Counter-based (a splitmix64 finalizer of seed, weight and index), so any
/// chunk can be computed on its own thread and every executor fills the
/// same values: uniform in [-0.05, 0.05], or in [0.95, 1.05] for norm
/// weights (a norm of small random weights would shrink every activation).
inline float randomWeightValue(uint64_t seed, uint64_t weight, uint64_t index,
                               bool isNorm) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (weight + 1) +
               0xbf58476d1ce4e5b9ull * index;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  float unit = float(z >> 40) * (1.0f / 16777216.0f); // [0, 1)
  return (isNorm ? 0.95f : -0.05f) + 0.1f * unit;
}

/// Whether a virtual weight is a norm's (randomWeightValue near 1): the 1-D
/// weights named "...norm...".
inline bool isNormWeight(std::string_view name, size_t rank) {
  return rank == 1 && name.find("norm") != std::string_view::npos;
}

/// Fills out[0, count) with convert(randomWeightValue(seed, weight,
/// first + e, isNorm)), e split over all cores (the values are
/// counter-based: every range is independent).
template <typename T, typename Convert>
void fillRandomWeight(uint64_t seed, uint64_t weight, bool isNorm,
                      uint64_t first, uint64_t count, T *out,
                      Convert convert) {
  unsigned numThreads = std::max(1u, std::thread::hardware_concurrency());
  uint64_t perThread = (count + numThreads - 1) / numThreads;
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < numThreads && t * perThread < count; ++t)
    threads.emplace_back([=] {
      uint64_t end = std::min(count, (t + 1) * perThread);
      for (uint64_t e = t * perThread; e < end; ++e)
        out[e] = convert(randomWeightValue(seed, weight, first + e, isNorm));
    });
  for (std::thread &thread : threads)
    thread.join();
}

/// The executor for the artifact's host (CPU) kernels. The artifact must
/// outlive it.
std::unique_ptr<ModelExecutor> createCpuExecutor(const Artifact &artifact,
                                                 const ExecutorOptions &options,
                                                 std::string &error);

/// The executor for the artifact's NVIDIA GPU kernels (built with
/// OPTMLIR_ENABLE_CUDA; fails with a clear error on a machine without a GPU).
std::unique_ptr<ModelExecutor> createCudaExecutor(const Artifact &artifact,
                                                  const ExecutorOptions &options,
                                                  std::string &error);

/// Whether the artifact carries GPU kernels (PTX or cubin), i.e. whether
/// createExecutor makes a CUDA executor for it.
bool isGpuArtifact(const Artifact &artifact);

/// The executor for whatever the artifact was compiled for.
std::unique_ptr<ModelExecutor> createExecutor(const Artifact &artifact,
                                              const ExecutorOptions &options,
                                              std::string &error);

/// Checks that every block of `copies` is in the cache; "" when valid.
std::string validateBlockCopies(const std::vector<BlockCopy> &copies,
                                const ExecutorLimits &limits);

/// Checks `batch` against `limits`: sizes agree, ids are in the vocabulary,
/// positions follow from the slices, block tables cover every context. Every
/// executor calls it first; "" when valid.
std::string validateStepBatch(const StepBatch &batch,
                              const ExecutorLimits &limits);

} // namespace optrt

#endif // OPTMLIR_RUNTIME_EXEC_MODELEXECUTOR_H
