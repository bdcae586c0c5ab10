//===- KvCacheSizingTest.cpp - the KV cache from --gpu-memory-utilization -===//
//
// The arithmetic the CUDA executor sizes its KV cache with
// (kvBlocksForMemory), and the option's validation, as plain functions: no
// GPU needed.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/ModelExecutor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace optrt;

namespace {

constexpr uint64_t GiB = 1ull << 30, MiB = 1ull << 20;

/// An 80 GiB GPU with 10 GiB in use; blocks of 16 tokens, 1 MiB each; one
/// sequence of 4096 tokens needs 256 of them.
KvCacheBudget h100() {
  KvCacheBudget b;
  b.utilization = 0.9;
  b.totalBytes = 80 * GiB;
  b.freeBytes = 70 * GiB;
  b.bytesPerBlock = 1 * MiB;
  b.blockSize = 16;
  b.reserveBytes = 0;
  b.minBlocks = 256;
  b.maxSequenceTokens = 4096;
  return b;
}

TEST(GpuMemoryUtilization, ValidRange) {
  EXPECT_EQ(checkGpuMemoryUtilization(0.9), "");
  EXPECT_EQ(checkGpuMemoryUtilization(1.0), "");
  EXPECT_EQ(checkGpuMemoryUtilization(1e-6), "");
  for (double bad : {0.0, -0.5, 1.0000001, 2.0,
                     std::numeric_limits<double>::quiet_NaN(),
                     std::numeric_limits<double>::infinity()}) {
    SCOPED_TRACE(bad);
    std::string problem = checkGpuMemoryUtilization(bad);
    EXPECT_NE(problem.find("must be greater than 0 and at most 1, got"),
              std::string::npos)
        << problem;
  }
  EXPECT_EQ(checkGpuMemoryUtilization(1.5),
            "must be greater than 0 and at most 1, got 1.5");
  EXPECT_EQ(ExecutorOptions().gpuMemoryUtilization, 0.9);
  EXPECT_EQ(ExecutorOptions().kvCacheBytes, 0u);
  EXPECT_EQ(ExecutorOptions().numBlocks, 0);
}

TEST(KvCacheSizing, ShareOfTotalMinusWhatIsInUse) {
  std::string error;
  // 0.9 * 80 GiB = 72 GiB allowed, 10 GiB in use: 62 GiB of 1 MiB blocks.
  EXPECT_EQ(kvBlocksForMemory(h100(), error), 62 * 1024) << error;

  KvCacheBudget b = h100();
  b.utilization = 0.5; // 40 - 10 = 30 GiB
  EXPECT_EQ(kvBlocksForMemory(b, error), 30 * 1024) << error;
  b.utilization = 1.0; // everything free
  EXPECT_EQ(kvBlocksForMemory(b, error), 70 * 1024) << error;
  b.reserveBytes = 24 * MiB; // kept back for allocation rounding
  EXPECT_EQ(kvBlocksForMemory(b, error), 70 * 1024 - 24) << error;
}

TEST(KvCacheSizing, WholeBlocksOnly) {
  KvCacheBudget b = h100();
  b.bytesPerBlock = 3 * MiB + 5;
  std::string error;
  uint64_t available = uint64_t(0.9 * double(80 * GiB)) - 10 * GiB;
  EXPECT_EQ(kvBlocksForMemory(b, error), int32_t(available / b.bytesPerBlock))
      << error;
  // The fraction of an odd total rounds down to whole bytes first.
  b.totalBytes = 80 * GiB + 1;
  b.freeBytes = 70 * GiB + 1;
  uint64_t allowed = uint64_t(0.9 * double(b.totalBytes));
  EXPECT_EQ(kvBlocksForMemory(b, error),
            int32_t((allowed - 10 * GiB) / b.bytesPerBlock))
      << error;
}

TEST(KvCacheSizing, SlotNumbersStayInt32) {
  // Tiny blocks on a huge GPU: block * blockSize + offset must fit an int32.
  KvCacheBudget b = h100();
  b.bytesPerBlock = 64;
  b.minBlocks = 1;
  std::string error;
  EXPECT_EQ(kvBlocksForMemory(b, error), INT32_MAX / 16) << error;
}

TEST(KvCacheSizing, TooLittleForOneSequenceSaysWhatIsMissing) {
  KvCacheBudget b = h100();
  b.utilization = 0.128; // 10.24 GiB allowed, 10 GiB in use: 245 blocks
  std::string error;
  EXPECT_EQ(kvBlocksForMemory(b, error), 0);
  EXPECT_EQ(error,
            "the KV cache does not fit: GPU memory utilization 0.128 allows "
            "10.24 GiB of the GPU's 80.00 GiB, 10.00 GiB are in use after "
            "loading the model (weights, activations, workspaces; other "
            "processes count too), which leaves room for 245 KV blocks; one "
            "sequence of 4096 tokens needs 256 blocks of 16 tokens (256.0 "
            "MiB, 1.0 MiB each): 11.0 MiB missing; --gpu-memory-utilization "
            "0.13 would leave enough");
  EXPECT_EQ(error.find('\n'), std::string::npos);

  // What it suggests is enough: 10.4 GiB allowed, 409 blocks.
  b.utilization = 0.13;
  error.clear();
  EXPECT_EQ(kvBlocksForMemory(b, error), 409) << error;
}

TEST(KvCacheSizing, MoreInUseThanAllowed) {
  KvCacheBudget b = h100();
  b.utilization = 0.1; // 8 GiB allowed, 10 GiB in use
  std::string error;
  EXPECT_EQ(kvBlocksForMemory(b, error), 0);
  EXPECT_NE(error.find("allows 8.00 GiB of the GPU's 80.00 GiB, 10.00 GiB "
                       "are in use"),
            std::string::npos)
      << error;
  EXPECT_NE(error.find("room for 0 KV blocks"), std::string::npos) << error;
  EXPECT_NE(error.find("256.0 MiB missing"), std::string::npos) << error;
  EXPECT_NE(error.find("--gpu-memory-utilization 0.13 would leave enough"),
            std::string::npos)
      << error;
}

TEST(KvCacheSizing, EvenTheWholeGpuIsNotEnough) {
  KvCacheBudget b = h100();
  b.utilization = 1.0;
  b.freeBytes = 100 * MiB; // another process holds the rest
  std::string error;
  EXPECT_EQ(kvBlocksForMemory(b, error), 0);
  EXPECT_NE(error.find("room for 100 KV blocks"), std::string::npos) << error;
  EXPECT_NE(error.find("156.0 MiB missing"), std::string::npos) << error;
  EXPECT_NE(error.find("even the whole GPU is not enough"), std::string::npos)
      << error;
}

TEST(KvCacheSizing, AtLeastOneBlock) {
  // A sequence limit of 0 still needs one block (every layer has one).
  KvCacheBudget b = h100();
  b.minBlocks = 0;
  b.freeBytes = b.totalBytes - uint64_t(0.9 * double(b.totalBytes)) + MiB - 1;
  std::string error;
  EXPECT_EQ(kvBlocksForMemory(b, error), 0);
  EXPECT_NE(error.find("needs 1 block of 16 tokens"), std::string::npos) << error;
  b.freeBytes += 1;
  EXPECT_EQ(kvBlocksForMemory(b, error), 1) << error;
}

TEST(KvCacheSizing, BadInputsAreErrors) {
  std::string error;
  KvCacheBudget b = h100();
  b.utilization = 0;
  EXPECT_EQ(kvBlocksForMemory(b, error), 0);
  EXPECT_EQ(error, "GPU memory utilization must be greater than 0 and at "
                   "most 1, got 0");
  b = h100();
  b.bytesPerBlock = 0;
  EXPECT_EQ(kvBlocksForMemory(b, error), 0);
  EXPECT_NE(error.find("inconsistent sizes"), std::string::npos) << error;
  b = h100();
  b.freeBytes = b.totalBytes + 1;
  EXPECT_EQ(kvBlocksForMemory(b, error), 0);
  EXPECT_NE(error.find("inconsistent sizes"), std::string::npos) << error;
}

} // namespace
