//===- SamplerTest.cpp - Tests for the sampler and stop conditions --------===//

#include "runtime/core/Sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

using namespace optrt;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

int32_t size(const std::vector<float> &logits) {
  return static_cast<int32_t>(logits.size());
}

std::vector<float> logOf(const std::vector<double> &probs) {
  std::vector<float> logits;
  for (double p : probs)
    logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

std::vector<double> softmax(const std::vector<double> &x) {
  double maxX = *std::max_element(x.begin(), x.end());
  std::vector<double> p;
  double sum = 0.0;
  for (double v : x) {
    p.push_back(std::exp(v - maxX));
    sum += p.back();
  }
  for (double &v : p)
    v /= sum;
  return p;
}

std::vector<double> normalized(std::vector<double> weights) {
  double sum = std::accumulate(weights.begin(), weights.end(), 0.0);
  for (double &w : weights)
    w /= sum;
  return weights;
}

/// Frequencies of `numSamples` tokens drawn from one seeded sequence.
std::vector<double> empirical(const std::vector<float> &logits,
                              SamplingParams params, int numSamples = 40000) {
  params.seed = 1234;
  Sampler sampler;
  SamplingState state(params, {});
  std::vector<double> freq(logits.size(), 0.0);
  for (int i = 0; i < numSamples; ++i) {
    TokenId token =
        sampler.sample(logits.data(), size(logits), params, state).token;
    freq[token] += 1.0 / numSamples;
    state.addOutputToken(token);
  }
  return freq;
}

/// With 40000 samples one probability has a standard error below 0.0025.
void expectDistribution(const std::vector<double> &actual,
                        const std::vector<double> &expected,
                        double tolerance = 0.012) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    if (expected[i] == 0.0)
      EXPECT_EQ(actual[i], 0.0) << "token " << i << " must be masked";
    else
      EXPECT_NEAR(actual[i], expected[i], tolerance) << "token " << i;
  }
}

TokenId sampleOnce(const std::vector<float> &logits,
                   const SamplingParams &params,
                   const std::vector<TokenId> &prompt = {},
                   const std::vector<TokenId> &output = {}) {
  Sampler sampler;
  SamplingState state(params, prompt);
  for (TokenId t : output)
    state.addOutputToken(t);
  return sampler.sample(logits.data(), size(logits), params, state).token;
}

//===----------------------------------------------------------------------===//
// Greedy and temperature
//===----------------------------------------------------------------------===//

TEST(Sampler, GreedyPicksTheLowestIdAmongMaxima) {
  SamplingParams params;
  params.temperature = 0.0f;
  EXPECT_EQ(sampleOnce({1.0f, 5.0f, 3.0f, 5.0f, -2.0f}, params), 1);
  EXPECT_EQ(sampleOnce({-kInf, -kInf, -1.0f}, params), 2);
  // Filters do not change the argmax, whatever the seed.
  params.topK = 2;
  params.topP = 0.3f;
  params.minP = 0.5f;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    params.seed = seed;
    EXPECT_EQ(sampleOnce({0.0f, 2.0f, 2.0f, 1.9f}, params), 1);
  }
}

TEST(Sampler, TinyTemperatureMatchesGreedy) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-5.0f, 5.0f);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> logits(1000);
    for (float &l : logits)
      l = dist(rng);
    // A clear winner: at T = 1e-3 its lead is worth a factor e^100.
    TokenId best = static_cast<TokenId>(rng() % logits.size());
    logits[best] = *std::max_element(logits.begin(), logits.end()) + 0.1f;

    SamplingParams greedy;
    greedy.temperature = 0.0f;
    ASSERT_EQ(sampleOnce(logits, greedy), best);
    for (float temperature : {1e-6f, 1e-3f}) {
      SamplingParams params;
      params.temperature = temperature;
      params.seed = trial;
      EXPECT_EQ(sampleOnce(logits, params), best) << "T = " << temperature;
    }
  }
}

TEST(Sampler, TemperatureScalesTheDistribution) {
  std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f};
  for (float temperature : {1.0f, 0.7f, 2.0f}) {
    SamplingParams params;
    params.temperature = temperature;
    std::vector<double> scaled;
    for (float l : logits)
      scaled.push_back(l / temperature);
    SCOPED_TRACE(temperature);
    expectDistribution(empirical(logits, params), softmax(scaled));
  }
}

//===----------------------------------------------------------------------===//
// Filters
//===----------------------------------------------------------------------===//

TEST(Sampler, TopKKeepsTheKMostLikely) {
  std::vector<float> logits = {0.1f, 1.2f, 0.3f, 1.0f, -0.5f, 0.9f};
  SamplingParams params;
  params.topK = 3;
  std::vector<double> top = softmax({1.2, 1.0, 0.9});
  expectDistribution(empirical(logits, params),
                     {0, top[0], 0, top[1], 0, top[2]});
  // Off when 0, -1 or not smaller than the vocabulary.
  for (int32_t k : {0, -1, 6, 100}) {
    params.topK = k;
    std::vector<double> all(logits.begin(), logits.end());
    expectDistribution(empirical(logits, params), softmax(all));
  }
}

TEST(Sampler, TopKKeepsTiesWithTheKth) {
  SamplingParams params;
  params.topK = 2;
  std::vector<double> kept = softmax({3.0, 2.0, 2.0});
  expectDistribution(empirical({3.0f, 2.0f, 2.0f, 1.0f}, params),
                     {kept[0], kept[1], kept[2], 0.0});
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  // Probabilities 0.5, 0.25, 0.15, 0.1, out of order.
  std::vector<float> logits = logOf({0.15, 0.5, 0.1, 0.25});
  SamplingParams params;
  params.topP = 0.7f; // 0.5 + 0.25 reaches it
  expectDistribution(empirical(logits, params), {0, 2.0 / 3, 0, 1.0 / 3});
  params.topP = 0.8f;
  expectDistribution(empirical(logits, params),
                     normalized({0.15, 0.5, 0, 0.25}));
  params.topP = 0.3f; // the most likely token is always kept
  expectDistribution(empirical(logits, params), {0, 1, 0, 0});
}

TEST(Sampler, MinPDropsTokensBelowAFractionOfTheBest) {
  std::vector<float> logits = logOf({0.5, 0.3, 0.15, 0.05});
  SamplingParams params;
  params.minP = 0.25f; // threshold 0.125
  expectDistribution(empirical(logits, params),
                     normalized({0.5, 0.3, 0.15, 0}));
}

TEST(Sampler, FiltersApplyInOrder) {
  std::vector<float> logits = logOf({0.4, 0.3, 0.2, 0.1});
  SamplingParams params;
  // Top-p sees the distribution renormalized over the top 2: 4/7 >= 0.5.
  // (Applied to the original distribution it would keep two tokens.)
  params.topK = 2;
  params.topP = 0.5f;
  expectDistribution(empirical(logits, params), {1, 0, 0, 0});

  // Temperature before top-p: at T = 0.5 the probabilities are 16:9:4:1.
  params = SamplingParams();
  params.temperature = 0.5f;
  params.topP = 0.8f;
  expectDistribution(empirical(logits, params), normalized({16, 9, 0, 0}));

  // Top-p (0.4 + 0.3 + 0.2), then min-p against the best of those.
  params = SamplingParams();
  params.topP = 0.85f;
  params.minP = 0.6f;
  expectDistribution(empirical(logits, params), normalized({4, 3, 0, 0}));
}

/// The reference nucleus of a distribution: sorted by probability (ties:
/// lower id), every token whose predecessors' mass is below topP.
std::vector<TokenId> referenceNucleus(const std::vector<float> &logits,
                                      double topP) {
  std::vector<double> probs =
      softmax(std::vector<double>(logits.begin(), logits.end()));
  std::vector<TokenId> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](TokenId a, TokenId b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  double mass = 0.0;
  size_t n = 0;
  while (n < order.size() && mass < topP)
    mass += probs[order[n++]];
  order.resize(n);
  return order;
}

TEST(Sampler, TopPOnAFlatDistributionMatchesAFullSort) {
  // A flat distribution makes the nucleus span many selection chunks.
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 0.3f);
  std::vector<float> logits(300);
  for (float &l : logits)
    l = dist(rng);
  SamplingParams params;
  params.topP = 0.9f;
  std::vector<TokenId> nucleus = referenceNucleus(logits, params.topP);
  ASSERT_GT(nucleus.size(), 200u);
  std::vector<double> expected(logits.size(), 0.0);
  std::vector<double> probs =
      softmax(std::vector<double>(logits.begin(), logits.end()));
  for (TokenId t : nucleus)
    expected[t] = probs[t];
  expectDistribution(empirical(logits, params, 100000), normalized(expected),
                     0.0012);
}

TEST(Sampler, LargeVocabularyFiltersStayExact) {
  constexpr int32_t kVocab = 128256;
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> logits(kVocab);
  for (float &l : logits)
    l = dist(rng);

  std::vector<TokenId> order(kVocab);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](TokenId a, TokenId b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });

  Sampler sampler;
  SamplingParams topK;
  topK.topK = 50;
  topK.seed = 1;
  std::vector<TokenId> top50(order.begin(), order.begin() + 50);
  std::sort(top50.begin(), top50.end());
  SamplingState state(topK, {});
  for (int i = 0; i < 200; ++i) {
    TokenId t = sampler.sample(logits.data(), kVocab, topK, state).token;
    EXPECT_TRUE(std::binary_search(top50.begin(), top50.end(), t));
    state.addOutputToken(t);
  }

  SamplingParams topP;
  topP.topP = 0.5f;
  topP.seed = 2;
  std::vector<TokenId> nucleus = referenceNucleus(logits, topP.topP);
  ASSERT_GT(nucleus.size(), 1000u);
  std::sort(nucleus.begin(), nucleus.end());
  SamplingState topPState(topP, {});
  for (int i = 0; i < 200; ++i) {
    TokenId t = sampler.sample(logits.data(), kVocab, topP, topPState).token;
    EXPECT_TRUE(std::binary_search(nucleus.begin(), nucleus.end(), t));
    topPState.addOutputToken(t);
  }
}

TEST(Sampler, NonFiniteLogitsAreNeverSampled) {
  float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> logits = {nan, 1.0f, -kInf, 2.0f, nan};
  SamplingParams params;
  std::vector<double> kept = softmax({1.0, 2.0});
  expectDistribution(empirical(logits, params), {0, kept[0], 0, kept[1], 0});
  params.topP = 0.99f;
  params.topK = 3;
  expectDistribution(empirical(logits, params), {0, kept[0], 0, kept[1], 0});
  params.temperature = 0.0f;
  EXPECT_EQ(sampleOnce(logits, params), 3);
  // +inf wins outright instead of turning the softmax into NaN.
  params = SamplingParams();
  expectDistribution(empirical({1.0f, kInf, 2.0f}, params), {0, 1, 0});
}

//===----------------------------------------------------------------------===//
// Penalties
//===----------------------------------------------------------------------===//

TEST(Sampler, PenaltiesMatchHuggingFaceAndOpenAI) {
  // Raw logits of tokens 0..5; token 6 is a probe that is never seen.
  const std::vector<float> raw = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 0.0f};
  const std::vector<TokenId> prompt = {0, 1, 0};
  const std::vector<TokenId> output = {3, 3, 4, 0};
  SamplingParams params;
  params.temperature = 0.0f;
  params.repetitionPenalty = 2.0f;
  params.presencePenalty = 0.5f;
  params.frequencyPenalty = 0.25f;
  // Repetition over prompt + output (once per token), then
  // -(frequency * count + presence) over output tokens only.
  const std::vector<float> expected = {
      2.0f / 2 - (0.25f * 1 + 0.5f), // in both prompt and output
      -1.0f * 2,                     // prompt only, negative
      0.5f,                          // unseen
      3.0f / 2 - (0.25f * 2 + 0.5f), // output twice
      -2.0f * 2 - (0.25f + 0.5f),    // output, negative
      0.0f,                          // unseen
  };
  // Bracket each penalized logit with the probe: greedy tells which is larger.
  for (TokenId t = 0; t < 6; ++t) {
    for (float delta : {-0.01f, 0.01f}) {
      std::vector<float> logits(7, -kInf);
      logits[t] = raw[t];
      logits[6] = expected[t] + delta;
      EXPECT_EQ(sampleOnce(logits, params, prompt, output), delta < 0 ? t : 6)
          << "token " << t << " should be penalized to " << expected[t];
    }
  }
}

TEST(Sampler, PenaltiesIgnoreTokensOutsideTheVocabulary) {
  SamplingParams params;
  params.temperature = 0.0f;
  params.repetitionPenalty = 1.5f;
  params.frequencyPenalty = 1.0f;
  EXPECT_EQ(sampleOnce({1.0f, 0.5f}, params, {-3, 7}, {9, 0}), 1);
}

TEST(Sampler, PenaltiesApplyWhenSampling) {
  // Token 0 was generated: a presence penalty of 1 makes the two tokens tie.
  SamplingParams params;
  params.presencePenalty = 1.0f;
  Sampler sampler;
  std::vector<float> logits = {1.0f, 0.0f};
  int zeros = 0;
  for (int i = 0; i < 20000; ++i) {
    params.seed = i; // also checks that streams of nearby seeds are unrelated
    SamplingState state(params, {});
    state.addOutputToken(0);
    zeros += sampler.sample(logits.data(), 2, params, state).token == 0;
  }
  EXPECT_NEAR(zeros / 20000.0, 0.5, 0.015);
}

//===----------------------------------------------------------------------===//
// Seeds
//===----------------------------------------------------------------------===//

std::vector<std::vector<float>> randomRows(int numRows, int vocab,
                                           uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.5f);
  std::vector<std::vector<float>> rows(numRows, std::vector<float>(vocab));
  for (auto &row : rows)
    for (float &l : row)
      l = dist(rng);
  return rows;
}

TEST(Sampler, SeedGivesTheSameTokensWhateverTheBatch) {
  auto rows = randomRows(100, 50, 1);
  SamplingParams params;
  params.seed = 42;
  params.topP = 0.95f;
  params.temperature = 1.3f;

  auto generate = [&](bool withNeighbours, uint64_t seed) {
    SamplingParams mine = params;
    mine.seed = seed;
    Sampler sampler;
    SamplingState state(mine, {});
    SamplingParams other;
    other.topK = 5;
    other.seed = 7;
    SamplingState otherState(other, {});
    SamplingState unseeded(SamplingParams(), {});
    std::vector<TokenId> tokens;
    for (const auto &row : rows) {
      if (withNeighbours) {
        otherState.addOutputToken(
            sampler.sample(row.data(), 50, other, otherState).token);
        unseeded.addOutputToken(
            sampler.sample(row.data(), 50, SamplingParams(), unseeded).token);
      }
      tokens.push_back(sampler.sample(row.data(), 50, mine, state).token);
      state.addOutputToken(tokens.back());
    }
    return tokens;
  };
  std::vector<TokenId> alone = generate(false, 42);
  EXPECT_EQ(generate(true, 42), alone);
  EXPECT_NE(generate(false, 43), alone);
}

TEST(Sampler, SeededStreamReplaysAfterRecompute) {
  auto rows = randomRows(30, 20, 2);
  SamplingParams params;
  params.seed = 9;
  Sampler sampler;
  SamplingState state(params, {});
  std::vector<TokenId> tokens;
  for (const auto &row : rows) {
    tokens.push_back(sampler.sample(row.data(), 20, params, state).token);
    state.addOutputToken(tokens.back());
  }
  // A preempted sequence rebuilds its state from the tokens it kept.
  SamplingState rebuilt(params, {});
  for (int i = 0; i < 20; ++i)
    rebuilt.addOutputToken(tokens[i]);
  for (int i = 20; i < 30; ++i) {
    EXPECT_EQ(sampler.sample(rows[i].data(), 20, params, rebuilt).token,
              tokens[i]);
    rebuilt.addOutputToken(tokens[i]);
  }
}

TEST(Sampler, UnseededSequencesDiffer) {
  SamplingState a(SamplingParams(), {});
  SamplingState b(SamplingParams(), {});
  EXPECT_NE(a.seed(), b.seed());
  EXPECT_GE(a.nextUniform(), 0.0);
  EXPECT_LT(a.nextUniform(), 1.0);
}

//===----------------------------------------------------------------------===//
// Logprobs
//===----------------------------------------------------------------------===//

TEST(Sampler, LogprobsAreOfTheRawDistribution) {
  float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> logits = {1.0f, 3.0f, 3.0f, 0.5f, -kInf, nan};
  double logNorm = std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(0.5));
  SamplingParams params;
  params.temperature = 0.0f;
  params.repetitionPenalty = 3.0f; // changes the choice, not the logprobs
  params.logprobs = 3;
  Sampler sampler;
  SamplingState state(params, {1});
  SampleResult result = sampler.sample(logits.data(), 6, params, state);
  EXPECT_EQ(result.token, 2);
  ASSERT_TRUE(result.logprob.has_value());
  EXPECT_NEAR(*result.logprob, 3.0 - logNorm, 1e-5);
  ASSERT_EQ(result.topLogprobs.size(), 3u);
  EXPECT_EQ(result.topLogprobs[0].token, 1);
  EXPECT_EQ(result.topLogprobs[1].token, 2);
  EXPECT_EQ(result.topLogprobs[2].token, 0);
  EXPECT_NEAR(result.topLogprobs[0].logprob, 3.0 - logNorm, 1e-5);
  EXPECT_NEAR(result.topLogprobs[2].logprob, 1.0 - logNorm, 1e-5);

  params.logprobs = 10; // more than the vocabulary
  result = sampler.sample(logits.data(), 6, params, state);
  ASSERT_EQ(result.topLogprobs.size(), 6u);
  EXPECT_EQ(result.topLogprobs[4].logprob, -kInf);
  EXPECT_EQ(result.topLogprobs[5].logprob, -kInf);

  params.logprobs = 0;
  result = sampler.sample(logits.data(), 6, params, state);
  EXPECT_TRUE(result.logprob.has_value());
  EXPECT_TRUE(result.topLogprobs.empty());

  params.logprobs = -1;
  result = sampler.sample(logits.data(), 6, params, state);
  EXPECT_FALSE(result.logprob.has_value());
}

TEST(SamplerParams, ValidateNamesTheBadField) {
  std::string error;
  EXPECT_TRUE(SamplingParams().validate(error));
  auto check = [&](SamplingParams params, const char *field) {
    EXPECT_FALSE(params.validate(error));
    EXPECT_NE(error.find(field), std::string::npos) << error;
  };
  SamplingParams p;
  p.temperature = -1.0f;
  check(p, "temperature");
  p = SamplingParams();
  p.topP = 0.0f;
  check(p, "topP");
  p = SamplingParams();
  p.topK = -2;
  check(p, "topK");
  p = SamplingParams();
  p.minP = 1.5f;
  check(p, "minP");
  p = SamplingParams();
  p.repetitionPenalty = 0.0f;
  check(p, "repetitionPenalty");
  p = SamplingParams();
  p.frequencyPenalty = 3.0f;
  check(p, "frequencyPenalty");
  p = SamplingParams();
  p.maxTokens = 0;
  check(p, "maxTokens");
  p = SamplingParams();
  p.stopStrings = {"ok", ""};
  check(p, "stopStrings");
}

//===----------------------------------------------------------------------===//
// Stop conditions
//===----------------------------------------------------------------------===//

TEST(SamplerStopStrings, FoundWhenSpanningTokens) {
  std::vector<std::string> stops = {"world", "\n\n"};
  auto match = findStopString("Hello world", 2, stops);
  ASSERT_TRUE(match.has_value());
  EXPECT_EQ(match->position, 6u);
  EXPECT_EQ(match->index, 0u);
  // Only matches ending in the new text are looked for.
  EXPECT_FALSE(findStopString("Hello world!", 1, stops).has_value());
  // The earliest match wins, whatever the list order.
  match = findStopString("a\n\nworld", 8, stops);
  ASSERT_TRUE(match.has_value());
  EXPECT_EQ(match->index, 1u);
}

TEST(SamplerStopStrings, HoldbackIsTheLongestPartialMatch) {
  std::vector<std::string> stops = {"STOP", "\n\n"};
  EXPECT_EQ(stopStringHoldback("abc", stops), 0u);
  EXPECT_EQ(stopStringHoldback("abcS", stops), 1u);
  EXPECT_EQ(stopStringHoldback("abcSTO", stops), 3u);
  EXPECT_EQ(stopStringHoldback("abc\n", stops), 1u);
  EXPECT_EQ(stopStringHoldback("ST", stops), 2u);
  EXPECT_EQ(stopStringHoldback("STX", stops), 0u);
  EXPECT_EQ(stopStringHoldback("", stops), 0u);
}

TEST(SamplerStopChecker, HoldsBackAndCutsAStopStringAcrossTokens) {
  SamplingParams params;
  params.stopStrings = {"STOP"};
  StopChecker checker(params, {2});
  std::string streamed;
  auto feed = [&](std::string_view text) {
    StopUpdate update = checker.append(10, text);
    streamed += update.delta;
    return update;
  };
  EXPECT_EQ(feed("Hel").delta, "Hel");
  EXPECT_EQ(feed("lo S").delta, "lo ");
  EXPECT_EQ(feed("T").delta, "");
  EXPECT_EQ(feed("X ").delta, "STX "); // a false alarm is released
  EXPECT_EQ(feed("ST").delta, "");
  EXPECT_EQ(feed("O").delta, "");
  StopUpdate last = feed("P and more");
  EXPECT_EQ(last.reason, FinishReason::StopString);
  EXPECT_EQ(last.stopString, "STOP");
  EXPECT_EQ(streamed, "Hello STX ");
  EXPECT_EQ(checker.text(), "Hello STX ");
  EXPECT_TRUE(checker.finished());
  // Further tokens change nothing.
  EXPECT_EQ(checker.append(10, "x").reason, FinishReason::StopString);
  EXPECT_EQ(checker.text(), "Hello STX ");
}

TEST(SamplerStopChecker, StopStringInsideOneToken) {
  SamplingParams params;
  params.stopStrings = {"###", "User:"};
  StopChecker checker(params, {});
  EXPECT_EQ(checker.append(1, "answer").delta, "answer");
  StopUpdate update = checker.append(2, " 42\nUser: hi ### x");
  EXPECT_EQ(update.reason, FinishReason::StopString);
  EXPECT_EQ(update.stopString, "User:");
  EXPECT_EQ(update.delta, " 42\n");
  EXPECT_EQ(checker.text(), "answer 42\n");
}

TEST(SamplerStopChecker, EosAndStopTokens) {
  SamplingParams params;
  params.stopTokenIds = {7};
  {
    StopChecker checker(params, {2, 3});
    EXPECT_EQ(checker.append(5, "hi").reason, FinishReason::None);
    StopUpdate update = checker.append(3, "</s>");
    EXPECT_EQ(update.reason, FinishReason::Eos);
    EXPECT_EQ(checker.text(), "hi"); // the EOS text is not output
    EXPECT_EQ(checker.numTokens(), 2);
  }
  params.ignoreEos = true;
  {
    StopChecker checker(params, {2, 3});
    EXPECT_EQ(checker.append(2, "<eos>").reason, FinishReason::None);
    StopUpdate update = checker.append(7, "<stop>");
    EXPECT_EQ(update.reason, FinishReason::StopToken);
    EXPECT_EQ(checker.text(), "<eos>");
  }
}

TEST(SamplerStopChecker, MaxTokensFlushesHeldText) {
  SamplingParams params;
  params.maxTokens = 3;
  params.stopStrings = {"\n\n"};
  StopChecker checker(params, {});
  EXPECT_EQ(checker.append(1, "a").delta, "a");
  EXPECT_EQ(checker.append(1, "b\n").delta, "b");
  StopUpdate update = checker.append(1, "c\n");
  EXPECT_EQ(update.reason, FinishReason::Length);
  EXPECT_EQ(update.delta, "\nc\n");
  EXPECT_EQ(checker.text(), "ab\nc\n");
}

TEST(SamplerStopChecker, StopWinsOverLengthOnTheSameToken) {
  SamplingParams params;
  params.maxTokens = 1;
  params.stopStrings = {"."};
  StopChecker checker(params, {0});
  EXPECT_EQ(checker.append(1, "ok. x").reason, FinishReason::StopString);
  EXPECT_EQ(checker.text(), "ok");
}

} // namespace
