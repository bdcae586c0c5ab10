//===- CudaExecutorTest.cpp - the CUDA executor on a GPU
//-------------------===//
//
// Needs a GPU: without one every test skips with the reason. Two tiny
// models with random weights, each compiled at build time for the CPU and
// for sm_90a; both executors fill the same weights from the seed, so the
// CPU executor (f32) is the reference of the GPU one (bf16): Qwen2-shaped
// (biases on q/k/v, qwen2_tiny.json) and Llama-shaped (no biases, llama3
// rope scaling, llama_tiny.json). On the GPU machine, point
// OPTMLIR_TEST_ARTIFACT_DIR at a folder holding NAME.optpkg and
// NAME.sm_90a.optpkg of both.
//
// What it checks: the q/k/v bias added in the gemm's epilogue (GPU plans
// carry it there, PlanAbi.h) for prefill, ragged and decode row counts
// (decode ones included: biased gemms skip the GEMV kernels); the decode
// GEMVs of the Llama shape with everything they fuse (the rms_norm in, the
// residual add, swiglu, and rope with the cache write out); each with and
// without CUDA graphs; the KV cache sized from --gpu-memory-utilization.
//
//===----------------------------------------------------------------------===//

#include "runtime/artifact/Artifact.h"
#include "runtime/cuda/CudaDevice.h"
#include "runtime/exec/ModelExecutor.h"
#include "test/unit/Numerics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

using namespace optrt;

namespace {

std::string artifactPath(const char *name) {
  const char *dir = std::getenv("OPTMLIR_TEST_ARTIFACT_DIR");
  return std::string(dir && *dir ? dir : OPTMLIR_TEST_ARTIFACT_DIR) + "/" +
         name;
}

using optmlir::test::relativeL2;

/// Sequences of one executor, each with its own blocks; a step feeds every
/// sequence its next tokens and returns the logits of all of them.
class Sequences {
public:
  Sequences(ModelExecutor &executor, std::vector<std::vector<BlockId>> tables)
      : executor(executor), tables(std::move(tables)),
        lengths(this->tables.size(), 0) {}

  /// `tokens[s]` are sequence s's next tokens (none: it sits this step out).
  std::vector<std::vector<float>>
  step(const std::vector<std::vector<int32_t>> &tokens) {
    StepBatch batch;
    for (size_t s = 0; s < tokens.size(); ++s) {
      if (tokens[s].empty())
        continue;
      for (size_t i = 0; i < tokens[s].size(); ++i) {
        batch.tokens.push_back(tokens[s][i]);
        batch.positions.push_back(lengths[s] + int32_t(i));
        batch.logitRows.push_back(int32_t(batch.tokens.size()) - 1);
      }
      lengths[s] += int32_t(tokens[s].size());
      batch.sequences.push_back(
          {int32_t(tokens[s].size()), lengths[s], &tables[s]});
    }
    int32_t vocab = executor.limits().vocabSize;
    std::vector<float> logits(batch.logitRows.size() * vocab);
    std::string error;
    EXPECT_TRUE(executor.step(batch, logits.data(), error)) << error;
    std::vector<std::vector<float>> rows;
    for (size_t r = 0; r < batch.logitRows.size(); ++r)
      rows.emplace_back(logits.begin() + r * vocab,
                        logits.begin() + (r + 1) * vocab);
    return rows;
  }

private:
  ModelExecutor &executor;
  std::vector<std::vector<BlockId>> tables;
  std::vector<int32_t> lengths;
};

/// Blocks [first, first + count).
std::vector<BlockId> blockRange(BlockId first, int32_t count) {
  std::vector<BlockId> blocks(count);
  std::iota(blocks.begin(), blocks.end(), first);
  return blocks;
}

class CudaExecutorTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string why;
    if (!(device = cuda::CudaDevice::create(0, why)))
      GTEST_SKIP() << "no usable CUDA device: " << why;
    open("qwen2_tiny");
  }

  /// Opens NAME.optpkg and NAME.sm_90a.optpkg as the two artifacts.
  void open(const std::string &name) {
    std::string error;
    cpuArtifact =
        Artifact::open(artifactPath((name + ".optpkg").c_str()), error);
    ASSERT_TRUE(cpuArtifact) << error;
    gpuArtifact =
        Artifact::open(artifactPath((name + ".sm_90a.optpkg").c_str()), error);
    ASSERT_TRUE(gpuArtifact) << error;
    ASSERT_TRUE(isGpuArtifact(*gpuArtifact));
  }

  /// Prefill of three ragged prompts in one step (62 rows), then decode
  /// steps of 3 rows, 1 row and 2 rows, on the GPU with and without CUDA
  /// graphs, against the CPU executor.
  void compareStepsWithTheCpu();

  std::unique_ptr<ModelExecutor> make(const Artifact &artifact,
                                      ExecutorOptions options) {
    options.randomSeed = 5;
    std::string error;
    std::unique_ptr<ModelExecutor> executor =
        createExecutor(artifact, options, error);
    EXPECT_TRUE(executor) << error;
    return executor;
  }

  /// Random token ids of the model's vocabulary.
  std::vector<int32_t> tokens(size_t count, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> id(2, 511);
    std::vector<int32_t> out(count);
    for (int32_t &t : out)
      t = id(rng);
    return out;
  }

  /// Compares every row of `got` with `want`; returns the largest error.
  double compare(const std::vector<std::vector<float>> &got,
                 const std::vector<std::vector<float>> &want,
                 const std::string &what) {
    EXPECT_EQ(got.size(), want.size()) << what;
    double worst = 0;
    for (size_t r = 0; r < std::min(got.size(), want.size()); ++r) {
      double err = relativeL2(got[r], want[r]);
      EXPECT_LT(err, 2e-2) << what << ", row " << r;
      worst = std::max(worst, err);
    }
    return worst;
  }

  std::unique_ptr<cuda::CudaDevice> device;
  std::unique_ptr<Artifact> cpuArtifact, gpuArtifact;
};

void CudaExecutorTest::compareStepsWithTheCpu() {
  for (bool graphs : {true, false}) {
    SCOPED_TRACE(graphs ? "CUDA graphs" : "no graphs");
    ExecutorOptions options;
    options.numBlocks = 64;
    options.useCudaGraphs = graphs;
    std::unique_ptr<ModelExecutor> cpu = make(*cpuArtifact, options);
    std::unique_ptr<ModelExecutor> gpu = make(*gpuArtifact, options);
    ASSERT_TRUE(cpu && gpu);
    std::vector<std::vector<BlockId>> tables = {
        blockRange(0, 8), blockRange(40, 8), blockRange(17, 8)};
    Sequences onCpu(*cpu, tables), onGpu(*gpu, tables);

    std::vector<std::vector<int32_t>> prompts = {tokens(37, 1), tokens(20, 2),
                                                 tokens(5, 3)};
    double worst = compare(onGpu.step(prompts), onCpu.step(prompts),
                           "prefill of 62 rows");
    // Decode: each sequence's next token is the CPU's greedy choice, so
    // that both executors see the same inputs.
    std::vector<std::vector<int32_t>> next = {{7}, {8}, {9}};
    const std::vector<std::vector<int32_t>> pattern[] = {
        {{1}, {1}, {1}}, {{1}, {}, {}}, {{}, {1}, {1}}, {{1}, {1}, {1}}};
    for (int round = 0; round < 8; ++round) {
      const auto &who = pattern[round % 4];
      std::vector<std::vector<int32_t>> feed(3);
      for (int s = 0; s < 3; ++s)
        if (!who[s].empty())
          feed[s] = next[s];
      std::vector<std::vector<float>> want = onCpu.step(feed);
      worst = std::max(worst,
                       compare(onGpu.step(feed), want,
                               "decode round " + std::to_string(round)));
      size_t row = 0;
      for (int s = 0; s < 3; ++s)
        if (!feed[s].empty()) {
          const std::vector<float> &logits = want[row++];
          next[s] = {int32_t(std::max_element(logits.begin(), logits.end()) -
                             logits.begin())};
        }
    }
    std::printf("%s: largest rel. L2 against the CPU %.2e\n",
                graphs ? "graphs" : "no graphs", worst);
  }
}

// The CPU executor adds the biases with its own kernel.
TEST_F(CudaExecutorTest, BiasedProjectionsMatchTheCpu) {
  compareStepsWithTheCpu();
}

// Decode steps of 1 to 3 rows run the fused GEMVs (the q/k/v one rotating
// q and k and writing the cache), larger steps cuBLASLt and the separate
// kernels: both against the CPU's separate kernels.
TEST_F(CudaExecutorTest, FusedDecodeKernelsMatchTheCpu) {
  open("llama_tiny");
  if (HasFatalFailure())
    return;
  compareStepsWithTheCpu();
}

// With neither a block count nor a byte size, the cache takes 0.9 of the
// GPU minus what is in use after loading; a lower share gives fewer blocks;
// the last blocks of a huge cache work.
TEST_F(CudaExecutorTest, GpuMemoryUtilizationSizesTheCache) {
  const fb::KVCacheLayout &kv = *gpuArtifact->kvCache();
  uint64_t perBlock = 2ull * kv.num_layers() * kv.block_size() *
                      kv.num_kv_heads() * kv.head_dim() * 2;
  uint64_t reserve = 2ull * kv.num_layers() * (2ull << 20);
  int32_t blocks[2] = {};
  double shares[2] = {0.9, 0.5};
  std::vector<std::vector<float>> want, got;
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE(shares[i]);
    ExecutorOptions options;
    if (i == 1)
      options.gpuMemoryUtilization = shares[i];
    std::unique_ptr<ModelExecutor> gpu = make(*gpuArtifact, options);
    ASSERT_TRUE(gpu);
    blocks[i] = gpu->limits().numBlocks;
    uint64_t freeBytes = 0, totalBytes = 0;
    std::string error;
    ASSERT_TRUE(device->memoryInfo(freeBytes, totalBytes, error)) << error;
    uint64_t used = totalBytes - freeBytes;
    uint64_t allowed = uint64_t(shares[i] * double(totalBytes));
    EXPECT_LE(used, allowed);
    EXPECT_GE(used + perBlock + reserve + (16ull << 20), allowed);
    EXPECT_GE(blocks[i], 512 / kv.block_size()); // one sequence of 512
    std::printf("utilization %.1f: %d blocks (%.2f GiB) of the GPU's %.2f "
                "GiB, %.2f GiB in use after loading\n",
                shares[i], blocks[i], blocks[i] * double(perBlock) / (1 << 30),
                totalBytes / double(1 << 30), used / double(1 << 30));
    if (i == 0) {
      // The last blocks of the cache, as a long-running server reaches them.
      std::vector<int32_t> prompt = tokens(40, 11);
      ExecutorOptions small;
      small.numBlocks = 8;
      std::unique_ptr<ModelExecutor> cpu = make(*cpuArtifact, small);
      ASSERT_TRUE(cpu);
      Sequences onCpu(*cpu, {blockRange(0, 3)});
      Sequences onGpu(*gpu, {blockRange(blocks[i] - 3, 3)});
      compare(onGpu.step({prompt}), onCpu.step({prompt}), "last blocks");
      compare(onGpu.step({{5}}), onCpu.step({{5}}), "last blocks, decode");
    }
  }
  // The two caches differ by the 0.4 of the GPU between the two shares.
  uint64_t totalBytes = 0, freeBytes = 0;
  std::string error;
  ASSERT_TRUE(device->memoryInfo(freeBytes, totalBytes, error)) << error;
  EXPECT_NEAR(double(blocks[0] - blocks[1]) * perBlock,
              (shares[0] - shares[1]) * double(totalBytes),
              double(64ull << 20));
}

TEST_F(CudaExecutorTest, ExplicitSizesWinOverTheUtilization) {
  const fb::KVCacheLayout &kv = *gpuArtifact->kvCache();
  uint64_t perBlock = 2ull * kv.num_layers() * kv.block_size() *
                      kv.num_kv_heads() * kv.head_dim() * 2;
  ExecutorOptions options;
  options.kvCacheBytes = 64ull << 20;
  options.gpuMemoryUtilization = 0.001; // would not fit: ignored
  std::unique_ptr<ModelExecutor> gpu = make(*gpuArtifact, options);
  ASSERT_TRUE(gpu);
  EXPECT_EQ(uint64_t(gpu->limits().numBlocks), (64ull << 20) / perBlock);
  gpu.reset();
  options = {};
  options.numBlocks = 123;
  options.gpuMemoryUtilization = 2.0; // ignored too
  gpu = make(*gpuArtifact, options);
  ASSERT_TRUE(gpu);
  EXPECT_EQ(gpu->limits().numBlocks, 123);
}

TEST_F(CudaExecutorTest, TooSmallAUtilizationIsAClearError) {
  ExecutorOptions options;
  options.gpuMemoryUtilization = 0.001; // tens of MiB: less than the model's
  std::string error;
  EXPECT_EQ(createExecutor(*gpuArtifact, options, error), nullptr);
  EXPECT_NE(error.find("the KV cache does not fit: GPU memory utilization "
                       "0.001 allows"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("one sequence of 512 tokens needs 32 blocks"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("missing"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  std::printf("-> %s\n", error.c_str());

  options.gpuMemoryUtilization = 1.5;
  EXPECT_EQ(createExecutor(*gpuArtifact, options, error), nullptr);
  EXPECT_EQ(error, "GPU memory utilization must be greater than 0 and at "
                   "most 1, got 1.5");
}

} // namespace
