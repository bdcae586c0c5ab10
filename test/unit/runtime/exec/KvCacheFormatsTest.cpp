//===- KvCacheFormatsTest.cpp - the KV cache's stored forms, end to end ---===//
//
// The draft model compiled with each KV cache element type (f32, fp8 e4m3,
// int8 with a scale per token and head): a sequence prefilled in one step
// and the same sequence prefilled in part and then decoded one token a step
// see the same logits (the cache holds what was written, wherever the
// blocks are), and the quantized caches stay close to the f32 one.
//
//===----------------------------------------------------------------------===//

#include "runtime/artifact/Artifact.h"
#include "runtime/exec/ModelExecutor.h"
#include "test/unit/Numerics.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace optrt;

namespace {

using optmlir::test::relativeL2;

class KvCacheFormatsTest : public ::testing::TestWithParam<const char *> {
protected:
  std::unique_ptr<artifact::Artifact> open(const std::string &name) {
    std::string error;
    auto artifact = artifact::Artifact::open(
        std::string(OPTMLIR_KV_ARTIFACT_DIR) + "/" + name, error);
    EXPECT_TRUE(artifact) << error;
    return artifact;
  }

  /// The logits of the last token of tokens[0, n): prefilled `prefix`
  /// tokens in one step, then one token a step, in the blocks of `table`.
  std::vector<float> lastLogits(ModelExecutor &executor, int32_t n,
                                int32_t prefix,
                                std::vector<BlockId> table) {
    std::vector<float> logits;
    for (int32_t from = 0; from < n;) {
      int32_t to = from == 0 ? prefix : from + 1;
      StepBatch batch;
      for (int32_t i = from; i < to; ++i) {
        batch.tokens.push_back(tokens[i]);
        batch.positions.push_back(i);
      }
      batch.logitRows.push_back(to - from - 1);
      batch.sequences.push_back({to - from, to, &table});
      logits.assign(executor.limits().vocabSize, 0.0f);
      std::string error;
      EXPECT_TRUE(executor.step(batch, logits.data(), error)) << error;
      from = to;
    }
    return logits;
  }

  std::vector<int32_t> tokens = [] {
    std::vector<int32_t> t;
    for (int32_t i = 0; i < 40; ++i)
      t.push_back(2 + (97 * i + 11) % 8000);
    return t;
  }();
};

TEST_P(KvCacheFormatsTest, DecodeSeesTheLogitsOfOnePrefill) {
  std::unique_ptr<artifact::Artifact> artifact = open(GetParam());
  ASSERT_TRUE(artifact);
  // The default cache (256 MiB: tens of thousands of blocks).
  std::string error;
  std::unique_ptr<ModelExecutor> executor =
      createExecutor(*artifact, ExecutorOptions(), error);
  ASSERT_TRUE(executor) << error;
  const BlockId last = executor->limits().numBlocks - 1;
  // 40 tokens cross two block boundaries; the decoded sequence's blocks
  // are elsewhere in the cache, the last one among them.
  std::vector<float> whole = lastLogits(*executor, 40, 40, {0, 1, 2});
  for (int32_t prefix : {1, 6, 15, 17, 33}) {
    std::vector<float> decoded =
        lastLogits(*executor, 40, prefix, {last, 7, last / 2});
    EXPECT_LT(relativeL2(decoded, whole), 1e-5) << "prefix " << prefix;
  }
}

TEST_P(KvCacheFormatsTest, StaysCloseToTheF32Cache) {
  std::unique_ptr<artifact::Artifact> artifact = open(GetParam()),
                                      f32 = open("draft.optpkg");
  ASSERT_TRUE(artifact && f32);
  ExecutorOptions options;
  options.numBlocks = 32;
  std::string error;
  std::unique_ptr<ModelExecutor> executor =
      createExecutor(*artifact, options, error);
  std::unique_ptr<ModelExecutor> reference =
      createExecutor(*f32, options, error);
  ASSERT_TRUE(executor && reference) << error;
  double err = relativeL2(lastLogits(*executor, 40, 5, {0, 1, 2}),
                          lastLogits(*reference, 40, 5, {0, 1, 2}));
  std::printf("%s: rel. L2 of the last logits against the f32 cache %.2e\n",
              GetParam(), err);
  EXPECT_LT(err, 2e-2);
}

INSTANTIATE_TEST_SUITE_P(Caches, KvCacheFormatsTest,
                         ::testing::Values("draft.optpkg",
                                           "draft.kv-fp8e4m3.optpkg",
                                           "draft.kv-int8.optpkg"),
                         [](const auto &info) {
                           std::string name = info.param;
                           for (char &c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c)))
                               c = '_';
                           return name;
                         });

} // namespace
