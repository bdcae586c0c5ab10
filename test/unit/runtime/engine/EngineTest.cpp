//===- EngineTest.cpp - continuous batching against a fake model ----------===//

#include "runtime/engine/Engine.h"

#include "FakeExecutor.h"
#include "MiniTokenizer.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

using namespace optrt;

namespace {

constexpr TokenId kEos = 2;

ExecutorLimits defaultLimits() {
  ExecutorLimits limits;
  limits.vocabSize = 32;
  limits.maxTokensPerStep = 64;
  limits.maxContextLength = 128;
  limits.blockSize = 4;
  limits.numBlocks = 256;
  return limits;
}

EngineOptions defaultOptions() {
  EngineOptions options;
  options.eosTokenIds = {kEos};
  options.tokenizer = &miniTokenizer();
  return options;
}

struct Completion {
  std::vector<TokenId> tokens;
  std::string text;
  FinishReason reason = FinishReason::None;
  std::string stopString;
  std::vector<SampleResult> logprobs;
  bool operator==(const Completion &other) const {
    return tokens == other.tokens && text == other.text &&
           reason == other.reason;
  }
};

struct Job {
  std::vector<TokenId> prompt;
  SamplingParams params;
};

/// Steps until nothing is unfinished, checking the block manager after
/// every step; returns the completions by request id.
std::map<RequestId, Completion> runToEnd(Engine &engine) {
  std::map<RequestId, Completion> done;
  // A step may only advance prefills, but the oldest sequence always moves.
  for (int steps = 0; engine.hasUnfinished(); ++steps) {
    if (steps == 100000) {
      ADD_FAILURE() << "the engine makes no progress";
      break;
    }
    std::vector<RequestOutput> outputs = engine.step();
    for (const RequestOutput &out : outputs) {
      EXPECT_TRUE(out.error.empty()) << out.error;
      Completion &c = done[out.id];
      EXPECT_EQ(c.reason, FinishReason::None) << "output after finishing";
      c.tokens.insert(c.tokens.end(), out.newTokenIds.begin(),
                      out.newTokenIds.end());
      c.text += out.textDelta;
      c.logprobs.insert(c.logprobs.end(), out.logprobs.begin(),
                        out.logprobs.end());
      if (out.finished) {
        c.reason = out.finishReason;
        c.stopString = out.stopString;
      }
    }
    std::string error;
    EXPECT_TRUE(engine.blockManager().verify(&error)) << error;
  }
  return done;
}

/// Runs `jobs` in one engine, all added before the first step.
std::vector<Completion> runTogether(const std::vector<Job> &jobs,
                                    ExecutorLimits limits,
                                    EngineOptions options,
                                    EngineStats *stats = nullptr,
                                    FakeExecutor *seen = nullptr) {
  FakeExecutor executor(limits);
  Engine engine(executor, options);
  std::vector<RequestId> ids;
  for (const Job &job : jobs) {
    std::string error;
    auto id = engine.addRequest(job.prompt, job.params, error);
    EXPECT_TRUE(id) << error;
    ids.push_back(id.value_or(0));
  }
  std::map<RequestId, Completion> done = runToEnd(engine);
  EXPECT_EQ(engine.blockManager().numFreeBlocks(), limits.numBlocks);
  if (stats)
    *stats = engine.stats();
  if (seen)
    *seen = executor;
  std::vector<Completion> out;
  for (RequestId id : ids)
    out.push_back(done[id]);
  return out;
}

std::vector<Completion> runOneByOne(const std::vector<Job> &jobs) {
  std::vector<Completion> out;
  for (const Job &job : jobs)
    out.push_back(runTogether({job}, defaultLimits(), defaultOptions())[0]);
  return out;
}

std::vector<TokenId> randomPrompt(std::mt19937 &rng, int length) {
  std::uniform_int_distribution<TokenId> token(3, 31);
  std::vector<TokenId> prompt(length);
  for (TokenId &t : prompt)
    t = token(rng);
  return prompt;
}

/// Prompts of assorted lengths, two of them sharing a 13-token prefix.
std::vector<Job> mixedJobs(const SamplingParams &params) {
  std::mt19937 rng(7);
  std::vector<Job> jobs;
  for (int length : {1, 5, 9, 17, 30, 3, 12})
    jobs.push_back({randomPrompt(rng, length), params});
  std::vector<TokenId> shared = randomPrompt(rng, 13);
  for (int tail : {4, 7}) {
    std::vector<TokenId> prompt = shared;
    std::vector<TokenId> extra = randomPrompt(rng, tail);
    prompt.insert(prompt.end(), extra.begin(), extra.end());
    jobs.push_back({prompt, params});
  }
  return jobs;
}

SamplingParams greedy(int64_t maxTokens) {
  SamplingParams params;
  params.temperature = 0.0f;
  params.maxTokens = maxTokens;
  return params;
}

SamplingParams seeded(uint64_t seed, int64_t maxTokens) {
  SamplingParams params;
  params.temperature = 0.9f;
  params.topP = 0.95f;
  params.repetitionPenalty = 1.1f;
  params.seed = seed;
  params.maxTokens = maxTokens;
  return params;
}

TEST(EngineTest, GreedyIsBatchInvariant) {
  std::vector<Job> jobs = mixedJobs(greedy(20));
  std::vector<Completion> alone = runOneByOne(jobs);
  FakeExecutor seen(defaultLimits());
  std::vector<Completion> together =
      runTogether(jobs, defaultLimits(), defaultOptions(), nullptr, &seen);
  EXPECT_EQ(together, alone);
  EXPECT_GT(seen.maxSequencesSeen, 1u) << "the requests never shared a step";
  for (const Completion &c : alone) {
    EXPECT_FALSE(c.tokens.empty());
    EXPECT_NE(c.reason, FinishReason::None);
  }
}

TEST(EngineTest, ChunkedPrefillGivesTheSameOutputs) {
  std::vector<Job> jobs = mixedJobs(greedy(20));
  std::vector<Completion> alone = runOneByOne(jobs);
  for (int32_t budget : {1, 3, 7}) {
    EngineOptions options = defaultOptions();
    options.maxTokensPerStep = budget;
    FakeExecutor seen(defaultLimits());
    EXPECT_EQ(runTogether(jobs, defaultLimits(), options, nullptr, &seen),
              alone)
        << "budget " << budget;
    EXPECT_LE(seen.maxTokensSeen, static_cast<size_t>(budget));
  }
}

TEST(EngineTest, MaxNumSequencesIsRespected) {
  std::vector<Job> jobs = mixedJobs(greedy(12));
  EngineOptions options = defaultOptions();
  options.maxNumSequences = 2;
  FakeExecutor seen(defaultLimits());
  EXPECT_EQ(runTogether(jobs, defaultLimits(), options, nullptr, &seen),
            runOneByOne(jobs));
  EXPECT_EQ(seen.maxSequencesSeen, 2u);
}

TEST(EngineTest, PreemptionByRecomputeGivesTheSameOutputs) {
  std::vector<Job> jobs = mixedJobs(greedy(16));
  for (Job &job : jobs)
    job.params.ignoreEos = true;
  std::vector<Completion> alone = runOneByOne(jobs);
  ExecutorLimits tiny = defaultLimits();
  tiny.numBlocks = 12; // 48 slots: one sequence fits, all of them do not
  for (bool prefixCaching : {true, false}) {
    EngineOptions options = defaultOptions();
    options.enablePrefixCaching = prefixCaching;
    EngineStats stats;
    EXPECT_EQ(runTogether(jobs, tiny, options, &stats), alone);
    EXPECT_GT(stats.numPreemptions, 0);
  }
}

TEST(EngineTest, PrefixCacheHitsGiveTheSameOutputs) {
  std::vector<Job> jobs = mixedJobs(greedy(10));
  std::vector<Completion> alone = runOneByOne(jobs);
  FakeExecutor executor(defaultLimits());
  Engine engine(executor, defaultOptions());
  std::string error;
  // Sequentially, so that later prompts find the shared prefix computed.
  for (size_t i = 0; i < jobs.size(); ++i) {
    auto id = engine.addRequest(jobs[i].prompt, jobs[i].params, error);
    ASSERT_TRUE(id) << error;
    EXPECT_EQ(runToEnd(engine)[*id], alone[i]) << "prompt " << i;
  }
  EXPECT_GE(engine.stats().numCachedTokens, 12);
  // Every prompt token was looked up once (no preemption here).
  int64_t numPromptTokens = 0;
  for (const Job &job : jobs)
    numPromptTokens += static_cast<int64_t>(job.prompt.size());
  EXPECT_EQ(engine.stats().numPrefixQueryTokens, numPromptTokens);
  EXPECT_EQ(engine.blockManager().numFreeBlocks(), defaultLimits().numBlocks);
}

/// Steps `engine` to the end; returns request ids in the order they
/// finished.
std::vector<RequestId> finishOrder(Engine &engine) {
  std::vector<RequestId> order;
  while (engine.hasUnfinished())
    for (const RequestOutput &out : engine.step())
      if (out.finished)
        order.push_back(out.id);
  return order;
}

TEST(EngineTest, PriorityOrdersAdmissionAndEqualPrioritiesAreFcfs) {
  EngineOptions options = defaultOptions();
  options.maxNumSequences = 1;
  FakeExecutor executor(defaultLimits());
  Engine engine(executor, options);
  std::mt19937 rng(11);
  std::string error;
  auto add = [&](int32_t priority) {
    auto id =
        engine.addRequest(randomPrompt(rng, 5), greedy(3), error, priority);
    EXPECT_TRUE(id) << error;
    return id.value_or(0);
  };
  RequestId a = add(0), b = add(5), c = add(-1), d = add(0), e = add(5);
  // One at a time: lower values first, arrival order among equals.
  EXPECT_EQ(finishOrder(engine), (std::vector<RequestId>{c, a, d, b, e}));
  EXPECT_EQ(engine.blockManager().numFreeBlocks(), defaultLimits().numBlocks);
}

TEST(EngineTest, PreemptionTakesTheLowestPriorityFirst) {
  std::mt19937 rng(13);
  Job first{randomPrompt(rng, 10), greedy(30)};
  Job second{randomPrompt(rng, 10), greedy(30)};
  first.params.ignoreEos = second.params.ignoreEos = true;
  std::vector<Completion> alone = runOneByOne({first, second});
  ExecutorLimits tiny = defaultLimits();
  tiny.numBlocks = 14; // 56 slots: both start, but both cannot finish
  // The first request runs alone for a while; then the second arrives. With
  // equal priorities the newcomer is preempted and the first finishes
  // first; with a better priority the newcomer keeps running instead.
  for (int32_t secondPriority : {0, -1}) {
    FakeExecutor executor(tiny);
    Engine engine(executor, defaultOptions());
    std::string error;
    auto a = engine.addRequest(first.prompt, first.params, error);
    ASSERT_TRUE(a) << error;
    std::map<RequestId, Completion> done;
    for (int i = 0; i < 5; ++i)
      for (const RequestOutput &out : engine.step())
        done[out.id].tokens.insert(done[out.id].tokens.end(),
                                   out.newTokenIds.begin(),
                                   out.newTokenIds.end());
    auto b =
        engine.addRequest(second.prompt, second.params, error, secondPriority);
    ASSERT_TRUE(b) << error;
    std::vector<RequestId> order;
    while (engine.hasUnfinished()) {
      for (const RequestOutput &out : engine.step()) {
        done[out.id].tokens.insert(done[out.id].tokens.end(),
                                   out.newTokenIds.begin(),
                                   out.newTokenIds.end());
        if (out.finished)
          order.push_back(out.id);
      }
    }
    EXPECT_GT(engine.stats().numPreemptions, 0);
    std::vector<RequestId> expected = {*a, *b};
    if (secondPriority < 0)
      expected = {*b, *a};
    EXPECT_EQ(order, expected);
    EXPECT_EQ(done[*a].tokens, alone[0].tokens);
    EXPECT_EQ(done[*b].tokens, alone[1].tokens);
    EXPECT_EQ(engine.blockManager().numFreeBlocks(), tiny.numBlocks);
  }
}

TEST(EngineTest, SeededSamplingIsReproducible) {
  std::vector<Job> jobs = mixedJobs(greedy(16));
  for (size_t i = 0; i < jobs.size(); ++i)
    jobs[i].params = seeded(100 + i, 16);
  std::vector<Completion> alone = runOneByOne(jobs);
  EXPECT_EQ(runTogether(jobs, defaultLimits(), defaultOptions()), alone);
  ExecutorLimits tiny = defaultLimits();
  tiny.numBlocks = 12;
  EngineOptions chunked = defaultOptions();
  chunked.maxTokensPerStep = 5;
  EngineStats stats;
  EXPECT_EQ(runTogether(jobs, tiny, chunked, &stats), alone);
  EXPECT_GT(stats.numPreemptions, 0);

  // Sampling does pick other tokens than greedy, and other seeds others.
  Job job = jobs[4];
  Completion sampled = alone[4];
  job.params.temperature = 0.0f;
  EXPECT_NE(runOneByOne({job})[0].tokens, sampled.tokens);
  job = jobs[4];
  job.params.seed = 999;
  EXPECT_NE(runOneByOne({job})[0].tokens, sampled.tokens);
}

TEST(EngineTest, MaxTokensAndStopTokens) {
  std::mt19937 rng(3);
  Job job{randomPrompt(rng, 6), greedy(7)};
  job.params.ignoreEos = true;
  Completion seven = runOneByOne({job})[0];
  ASSERT_EQ(seven.tokens.size(), 7u);
  EXPECT_EQ(seven.reason, FinishReason::Length);

  // A stop token ends the sequence at its first occurrence, without text.
  job.params.stopTokenIds = {seven.tokens[3]};
  size_t first =
      std::find(seven.tokens.begin(), seven.tokens.end(), seven.tokens[3]) -
      seven.tokens.begin();
  Completion stopped = runOneByOne({job})[0];
  EXPECT_EQ(stopped.reason, FinishReason::StopToken);
  EXPECT_EQ(stopped.tokens,
            std::vector<TokenId>(seven.tokens.begin(),
                                 seven.tokens.begin() + first + 1));
  EXPECT_EQ(
      stopped.text,
      miniTokenizer().decode(std::vector<TokenId>(seven.tokens.begin(),
                                                  seven.tokens.begin() + first),
                             true));
}

TEST(EngineTest, StopStringsCutTheTextAndHoldBackPrefixes) {
  std::mt19937 rng(5);
  Job job{randomPrompt(rng, 4), greedy(40)};
  job.params.ignoreEos = true;
  Completion full = runOneByOne({job})[0];
  EXPECT_EQ(full.text, miniTokenizer().decode(full.tokens, true));
  ASSERT_GE(full.text.size(), 12u);

  std::string stop = full.text.substr(6, 3);
  size_t at = full.text.find(stop);
  job.params.stopStrings = {"never-generated", stop};
  Completion cut = runOneByOne({job})[0];
  EXPECT_EQ(cut.reason, FinishReason::StopString);
  EXPECT_EQ(cut.stopString, stop);
  // The concatenated deltas are the final text: nothing of the stop string
  // was streamed before it was complete.
  EXPECT_EQ(cut.text, full.text.substr(0, at));
  EXPECT_LT(cut.tokens.size(), full.tokens.size());
}

TEST(EngineTest, ContextLimitEndsGeneration) {
  ExecutorLimits limits = defaultLimits();
  limits.maxContextLength = 16;
  FakeExecutor executor(limits);
  Engine engine(executor, defaultOptions());
  EXPECT_EQ(engine.contextLimit(), 16);
  SamplingParams params = greedy(0);
  params.maxTokens.reset();
  params.ignoreEos = true;
  std::mt19937 rng(1);
  std::string error;
  auto ten = engine.addRequest(randomPrompt(rng, 10), params, error);
  auto sixteen = engine.addRequest(randomPrompt(rng, 16), params, error);
  ASSERT_TRUE(ten && sixteen) << error;
  std::map<RequestId, Completion> done = runToEnd(engine);
  EXPECT_EQ(done[*ten].tokens.size(), 7u);
  EXPECT_EQ(done[*ten].reason, FinishReason::Length);
  EXPECT_EQ(done[*sixteen].tokens.size(), 1u);

  // The cache caps the context too, so that one sequence always fits.
  limits.numBlocks = 3;
  FakeExecutor small(limits);
  EXPECT_EQ(Engine(small, defaultOptions()).contextLimit(), 12);
}

TEST(EngineTest, MaxModelLengthCapsTheContext) {
  FakeExecutor executor(defaultLimits());
  EngineOptions options = defaultOptions();
  options.maxModelLength = 20;
  Engine engine(executor, options);
  EXPECT_EQ(engine.contextLimit(), 20);
  std::string error;
  EXPECT_FALSE(
      engine.addRequest(std::vector<TokenId>(21, 5), greedy(4), error));
  EXPECT_EQ(error,
            "the prompt has 21 tokens, more than the context limit of 20");
  SamplingParams params = greedy(0);
  params.maxTokens.reset();
  params.ignoreEos = true;
  std::mt19937 rng(2);
  auto id = engine.addRequest(randomPrompt(rng, 15), params, error);
  ASSERT_TRUE(id) << error;
  std::map<RequestId, Completion> done = runToEnd(engine);
  EXPECT_EQ(done[*id].tokens.size(), 6u);
  EXPECT_EQ(done[*id].reason, FinishReason::Length);

  // More than the model's is the model's.
  options.maxModelLength = 1000;
  EXPECT_EQ(Engine(executor, options).contextLimit(),
            defaultLimits().maxContextLength);
}

TEST(EngineTest, RefusesBadRequests) {
  ExecutorLimits limits = defaultLimits();
  limits.maxContextLength = 16;
  FakeExecutor executor(limits);
  Engine engine(executor, defaultOptions());
  std::string error;
  EXPECT_FALSE(engine.addRequest({}, greedy(4), error));
  EXPECT_EQ(error, "the prompt is empty");
  EXPECT_FALSE(
      engine.addRequest(std::vector<TokenId>(17, 5), greedy(4), error));
  EXPECT_EQ(error,
            "the prompt has 17 tokens, more than the context limit of 16");
  EXPECT_FALSE(engine.addRequest({5, 32}, greedy(4), error));
  EXPECT_EQ(error, "prompt token 1 has id 32, outside the vocabulary of 32");
  SamplingParams bad = greedy(4);
  bad.topP = 0.0f;
  EXPECT_FALSE(engine.addRequest({5}, bad, error));
  EXPECT_EQ(error, "topP must be in (0, 1], got 0");
  EXPECT_FALSE(engine.hasUnfinished());
  EXPECT_TRUE(engine.step().empty());
}

TEST(EngineTest, LogprobsComeWithEachToken) {
  Job job{{5, 6, 7}, greedy(5)};
  job.params.logprobs = 3;
  job.params.ignoreEos = true;
  Completion c = runOneByOne({job})[0];
  ASSERT_EQ(c.logprobs.size(), c.tokens.size());
  for (size_t i = 0; i < c.tokens.size(); ++i) {
    const SampleResult &s = c.logprobs[i];
    EXPECT_EQ(s.token, c.tokens[i]);
    ASSERT_TRUE(s.logprob);
    ASSERT_EQ(s.topLogprobs.size(), 3u);
    EXPECT_EQ(s.topLogprobs[0].token, c.tokens[i]); // greedy: the best
    EXPECT_FLOAT_EQ(s.topLogprobs[0].logprob, *s.logprob);
    EXPECT_LT(*s.logprob, 0.0f);
  }
}

TEST(EngineTest, ExecutorFailureAbortsTheBatch) {
  FakeExecutor executor(defaultLimits());
  executor.failAtStep = 2;
  Engine engine(executor, defaultOptions());
  std::string error;
  std::vector<RequestId> ids;
  for (int i = 0; i < 3; ++i)
    ids.push_back(*engine.addRequest({5, 6, 7}, greedy(10), error));
  std::vector<RequestOutput> outputs;
  for (int i = 0; i < 3; ++i)
    outputs = engine.step();
  ASSERT_EQ(outputs.size(), 3u);
  for (const RequestOutput &out : outputs) {
    EXPECT_TRUE(out.finished);
    EXPECT_EQ(out.error, "injected failure");
  }
  EXPECT_FALSE(engine.hasUnfinished());
  EXPECT_FALSE(engine.cancel(ids[0]));
  EXPECT_EQ(engine.blockManager().numFreeBlocks(), defaultLimits().numBlocks);
}

// Admits, finishes and cancels at random under a small pool with prefix
// caching: whatever happens, every block is free at the end.
TEST(EngineTest, RandomCancellationsLeaveEveryBlockFree) {
  for (uint32_t seed : {1u, 2u, 3u, 4u, 5u}) {
    std::mt19937 rng(seed);
    ExecutorLimits limits = defaultLimits();
    limits.numBlocks = 16;
    EngineOptions options = defaultOptions();
    options.maxTokensPerStep = 1 + rng() % 24;
    options.maxNumSequences = 1 + rng() % 8;
    FakeExecutor executor(limits);
    Engine engine(executor, options);
    std::vector<TokenId> shared = randomPrompt(rng, 9);
    std::vector<RequestId> live;
    std::string error;
    int64_t numCancelled = 0, numFinished = 0;
    for (int iteration = 0; iteration < 300; ++iteration) {
      if (rng() % 3 == 0) {
        std::vector<TokenId> prompt =
            rng() % 2 ? shared : std::vector<TokenId>();
        std::vector<TokenId> tail = randomPrompt(rng, 1 + rng() % 30);
        prompt.insert(prompt.end(), tail.begin(), tail.end());
        SamplingParams params =
            rng() % 2 ? greedy(1 + rng() % 30) : seeded(rng(), 1 + rng() % 30);
        auto id = engine.addRequest(prompt, params, error);
        ASSERT_TRUE(id) << error;
        live.push_back(*id);
      }
      if (!live.empty() && rng() % 6 == 0) {
        size_t victim = rng() % live.size();
        EXPECT_TRUE(engine.cancel(live[victim]));
        EXPECT_FALSE(engine.cancel(live[victim]));
        live.erase(live.begin() + victim);
        ++numCancelled;
      }
      for (const RequestOutput &out : engine.step()) {
        EXPECT_TRUE(out.error.empty());
        if (out.finished) {
          live.erase(std::find(live.begin(), live.end(), out.id));
          EXPECT_FALSE(engine.cancel(out.id));
          ++numFinished;
        }
      }
      ASSERT_TRUE(engine.blockManager().verify(&error)) << error;
    }
    // Cancel half of what is left, run the rest to the end.
    for (size_t i = 0; i < live.size(); i += 2)
      EXPECT_TRUE(engine.cancel(live[i]));
    runToEnd(engine);
    EXPECT_FALSE(engine.hasUnfinished());
    EXPECT_EQ(engine.blockManager().numFreeBlocks(), limits.numBlocks)
        << "seed " << seed;
    EXPECT_EQ(engine.blockManager().numUsedBlocks(), 0);
    EXPECT_TRUE(engine.blockManager().verify(&error)) << error;
    EXPECT_GT(numCancelled, 0);
    EXPECT_GT(numFinished, 0);
  }
}

} // namespace
