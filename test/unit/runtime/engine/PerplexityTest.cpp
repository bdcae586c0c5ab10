//===- PerplexityTest.cpp - the perplexity protocol on fake models --------===//

#include "runtime/engine/Perplexity.h"

#include "FakeExecutor.h"
#include "MiniTokenizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

using namespace optrt;

namespace {

ExecutorLimits limits() {
  ExecutorLimits l;
  l.vocabSize = 32;
  l.maxTokensPerStep = 64;
  l.maxContextLength = 128;
  l.blockSize = 4;
  l.numBlocks = 64;
  return l;
}

std::vector<TokenId> randomStream(size_t length) {
  std::mt19937 rng(11);
  std::vector<TokenId> stream(length);
  for (TokenId &t : stream)
    t = static_cast<TokenId>(rng() % 32);
  return stream;
}

/// The NLL the Known fake implies, computed independently in double.
double knownNll(const std::vector<TokenId> &stream, int32_t window) {
  double logNorm = std::log(std::exp(double(FakeExecutor::kKnownLogit)) + 31);
  double sum = 0.0;
  for (size_t w = 0; w + window <= stream.size(); w += window)
    for (int32_t i = 0; i + 1 < window; ++i) {
      TokenId target = stream[w + i + 1];
      bool favored = target == FakeExecutor::favorite(stream[w + i], i, 32);
      sum += logNorm - (favored ? FakeExecutor::kKnownLogit : 0.0);
    }
  return sum;
}

TEST(PerplexityTest, TokenStreamFramesEachDocument) {
  const Tokenizer &t = miniTokenizer();
  std::vector<TokenId> stream =
      perplexityTokenStream(t, {"ab", "c d", ""}, 1, 2);
  std::vector<TokenId> expected = {1};
  for (const char *doc : {"ab", "c d", ""}) {
    if (expected.size() > 1)
      expected.push_back(1);
    std::vector<int32_t> ids = t.encode(doc, false);
    expected.insert(expected.end(), ids.begin(), ids.end());
    expected.push_back(2);
  }
  EXPECT_EQ(stream, expected);
  EXPECT_EQ(t.encode("ab", false), (std::vector<int32_t>{3, 4, 5}));
}

TEST(PerplexityTest, UniformLogitsGiveTheVocabularySize) {
  FakeExecutor executor(limits(), FakeExecutor::Mode::Uniform);
  PerplexityOptions options;
  options.window = 8;
  PerplexityResult result;
  std::string error;
  ASSERT_TRUE(
      scorePerplexity(executor, randomStream(100), options, result, error))
      << error;
  EXPECT_EQ(result.numWindows, 12);
  EXPECT_EQ(result.numScored, 12 * 7);
  EXPECT_NEAR(result.meanNll, std::log(32.0), 1e-6);
  EXPECT_NEAR(result.perplexity, 32.0, 1e-4);
}

TEST(PerplexityTest, KnownProbabilitiesGiveTheExactNll) {
  std::vector<TokenId> stream = randomStream(203);
  // Make the favorite the target now and then, so both cases count.
  for (size_t i = 1; i < stream.size(); i += 3)
    stream[i] = FakeExecutor::favorite(stream[i - 1], (i - 1) % 10, 32);
  FakeExecutor executor(limits(), FakeExecutor::Mode::Known);
  PerplexityOptions options;
  options.window = 10;
  PerplexityResult result;
  std::string error;
  ASSERT_TRUE(scorePerplexity(executor, stream, options, result, error))
      << error;
  EXPECT_EQ(result.numWindows, 20);
  EXPECT_EQ(result.numScored, 180);
  double expected = knownNll(stream, 10);
  EXPECT_NEAR(result.sumNll, expected, 1e-4);
  EXPECT_NEAR(result.meanNll, expected / 180, 1e-6);
  EXPECT_NEAR(result.perplexity, std::exp(expected / 180), 1e-5);
  EXPECT_GT(executor.maxSequencesSeen, 1u) << "windows were not packed";
}

TEST(PerplexityTest, BudgetsAndPoolsDoNotChangeTheResult) {
  std::vector<TokenId> stream = randomStream(300);
  double expected = knownNll(stream, 16);
  for (int32_t budget : {1, 5, 16, 40, 64}) {
    for (int32_t numBlocks : {4, 9, 64}) {
      ExecutorLimits l = limits();
      l.numBlocks = numBlocks;
      FakeExecutor executor(l, FakeExecutor::Mode::Known);
      PerplexityOptions options;
      options.window = 16;
      options.maxTokensPerStep = budget;
      std::vector<int64_t> progress;
      options.progress = [&](int64_t done, int64_t total) {
        EXPECT_EQ(total, 18);
        progress.push_back(done);
      };
      PerplexityResult result;
      std::string error;
      ASSERT_TRUE(scorePerplexity(executor, stream, options, result, error))
          << error;
      EXPECT_EQ(result.numScored, 18 * 15);
      EXPECT_NEAR(result.sumNll, expected, 1e-4)
          << "budget " << budget << ", blocks " << numBlocks;
      EXPECT_LE(executor.maxTokensSeen, static_cast<size_t>(budget));
      // Every token of every window runs exactly once.
      EXPECT_EQ(executor.numTokensRun, 18u * 16);
      ASSERT_FALSE(progress.empty());
      EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
      EXPECT_EQ(progress.back(), 18);
    }
  }
}

TEST(PerplexityTest, TailAndWindowLimits) {
  FakeExecutor executor(limits(), FakeExecutor::Mode::Uniform);
  PerplexityOptions options;
  PerplexityResult result;
  std::string error;

  options.window = 100;
  ASSERT_TRUE(
      scorePerplexity(executor, randomStream(100), options, result, error));
  EXPECT_EQ(result.numWindows, 1);
  EXPECT_EQ(result.numScored, 99);
  ASSERT_TRUE(
      scorePerplexity(executor, randomStream(199), options, result, error));
  EXPECT_EQ(result.numWindows, 1) << "the tail is dropped";

  options.window = 101;
  EXPECT_FALSE(
      scorePerplexity(executor, randomStream(100), options, result, error));
  EXPECT_EQ(error, "the text has 100 tokens, fewer than one window of 101");
  options.window = 1;
  EXPECT_FALSE(
      scorePerplexity(executor, randomStream(100), options, result, error));
  EXPECT_EQ(error, "the window must hold at least 2 tokens, got 1");
  options.window = 129;
  EXPECT_FALSE(
      scorePerplexity(executor, randomStream(300), options, result, error));
  EXPECT_EQ(error, "a window of 129 tokens exceeds the model's context of 128");

  ExecutorLimits small = limits();
  small.numBlocks = 3;
  FakeExecutor tiny(small, FakeExecutor::Mode::Uniform);
  options.window = 16;
  EXPECT_FALSE(
      scorePerplexity(tiny, randomStream(100), options, result, error));
  EXPECT_EQ(error, "a window of 16 tokens needs 4 KV blocks, the cache has 3");
}

} // namespace
