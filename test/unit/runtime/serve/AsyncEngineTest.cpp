//===- AsyncEngineTest.cpp - the engine thread against a fake model -------===//

#include "runtime/serve/AsyncEngine.h"
#include "runtime/serve/Metrics.h"

#include "FakeExecutor.h"
#include "MiniTokenizer.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

using namespace optrt;
using namespace optrt::serve;

namespace {

ExecutorLimits limits(int32_t numBlocks = 256) {
  ExecutorLimits l;
  l.vocabSize = 32;
  l.maxTokensPerStep = 64;
  l.maxContextLength = 128;
  l.blockSize = 4;
  l.numBlocks = numBlocks;
  return l;
}

EngineOptions options() {
  EngineOptions o;
  o.eosTokenIds = {2};
  o.tokenizer = &miniTokenizer();
  return o;
}

SamplingParams greedy(int64_t maxTokens) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.maxTokens = maxTokens;
  return p;
}

std::vector<TokenId> randomPrompt(std::mt19937 &rng, int length) {
  std::uniform_int_distribution<TokenId> token(3, 31);
  std::vector<TokenId> prompt(length);
  for (TokenId &t : prompt)
    t = token(rng);
  return prompt;
}

struct Result {
  std::vector<TokenId> tokens;
  std::string text;
  bool finished = false;
  std::string error;
  bool refused = false;
};

/// Collects one choice's events until it finishes (or `timeout`).
Result collect(OutputChannel &channel,
               std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  Result r;
  auto deadline = Clock::now() + timeout;
  while (!r.finished && Clock::now() < deadline) {
    std::vector<ChoiceEvent> events;
    channel.wait(events, std::chrono::milliseconds(50));
    for (ChoiceEvent &e : events) {
      r.tokens.insert(r.tokens.end(), e.output.newTokenIds.begin(),
                      e.output.newTokenIds.end());
      r.text += e.output.textDelta;
      r.finished = r.finished || e.output.finished;
      r.error = e.output.error;
      r.refused = r.refused || e.refused;
    }
  }
  return r;
}

/// What the engine alone gives for `prompt`.
std::vector<TokenId> alone(const std::vector<TokenId> &prompt,
                           const SamplingParams &params) {
  FakeExecutor executor(limits());
  Engine engine(executor, options());
  std::string error;
  EXPECT_TRUE(engine.addRequest(prompt, params, error)) << error;
  std::vector<TokenId> tokens;
  while (engine.hasUnfinished())
    for (const RequestOutput &out : engine.step())
      tokens.insert(tokens.end(), out.newTokenIds.begin(),
                    out.newTokenIds.end());
  return tokens;
}

/// Waits until the engine thread has nothing left.
ServingSnapshot settle(AsyncEngine &async) {
  ServingSnapshot s;
  for (int i = 0; i < 2000; ++i) {
    s = async.snapshot();
    if (s.numRunning == 0 && s.numWaiting == 0)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return s;
}

TEST(AsyncEngineTest, GivesWhatTheEngineGivesAlone) {
  FakeExecutor executor(limits());
  Engine engine(executor, options());
  AsyncEngine async(engine);
  std::mt19937 rng(3);
  std::vector<std::vector<TokenId>> prompts;
  for (int length : {1, 7, 13, 30, 4})
    prompts.push_back(randomPrompt(rng, length));
  // Each from its own thread, all at once.
  std::vector<Result> results(prompts.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < prompts.size(); ++i) {
    clients.emplace_back([&, i] {
      auto channel = std::make_shared<OutputChannel>();
      async.submit(channel, static_cast<int>(i), prompts[i], greedy(12));
      results[i] = collect(*channel);
    });
  }
  for (std::thread &t : clients)
    t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_TRUE(results[i].finished);
    EXPECT_TRUE(results[i].error.empty()) << results[i].error;
    EXPECT_EQ(results[i].tokens, alone(prompts[i], greedy(12))) << i;
  }
  ServingSnapshot s = settle(async);
  EXPECT_EQ(s.numUsedBlocks, 0);
  EXPECT_EQ(s.numFinishedStop + s.numFinishedLength, 5);
}

TEST(AsyncEngineTest, RefusedRequestsSayWhy) {
  FakeExecutor executor(limits());
  Engine engine(executor, options());
  AsyncEngine async(engine);
  auto channel = std::make_shared<OutputChannel>();
  async.submit(channel, 3, std::vector<TokenId>(200, 5), greedy(4));
  Result r = collect(*channel);
  EXPECT_TRUE(r.refused);
  EXPECT_TRUE(r.finished);
  EXPECT_EQ(r.error,
            "the prompt has 200 tokens, more than the context limit of 128");
  EXPECT_EQ(settle(async).numRefused, 1);
}

TEST(AsyncEngineTest, ThousandRequestsWithRandomCancellationsFreeEveryBlock) {
  // Few blocks, so that preemption happens too.
  FakeExecutor executor(limits(48));
  Engine engine(executor, options());
  AsyncEngine async(engine);
  constexpr int kThreads = 8, kPerThread = 125;
  std::atomic<int> numFinished{0}, numCancelled{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      for (int i = 0; i < kPerThread; ++i) {
        auto channel = std::make_shared<OutputChannel>();
        SamplingParams params = greedy(1 + rng() % 20);
        params.ignoreEos = rng() % 2;
        uint64_t ticket =
            async.submit(channel, i, randomPrompt(rng, 1 + rng() % 40), params);
        // Cancel a third: right away, or after a few outputs.
        int cancelAfter = rng() % 3 == 0 ? static_cast<int>(rng() % 4) : -1;
        if (cancelAfter == 0) {
          async.cancel(ticket);
          ++numCancelled;
          continue;
        }
        int outputs = 0;
        bool finished = false;
        while (!finished) {
          std::vector<ChoiceEvent> events;
          channel->wait(events, std::chrono::milliseconds(100));
          for (const ChoiceEvent &e : events) {
            EXPECT_TRUE(e.output.error.empty()) << e.output.error;
            finished = finished || e.output.finished;
            ++outputs;
          }
          if (!finished && cancelAfter > 0 && outputs >= cancelAfter) {
            async.cancel(ticket);
            ++numCancelled;
            break;
          }
        }
        if (finished)
          ++numFinished;
      }
    });
  }
  for (std::thread &t : clients)
    t.join();
  ServingSnapshot s = settle(async);
  EXPECT_EQ(s.numRunning, 0);
  EXPECT_EQ(s.numWaiting, 0);
  EXPECT_EQ(s.numUsedBlocks, 0);
  EXPECT_EQ(numFinished + numCancelled, kThreads * kPerThread);
  EXPECT_GT(numCancelled.load(), 100);
  EXPECT_GT(s.stats.numPreemptions, 0);
  // A cancel that lost the race with the last token counts as finished
  // in the engine.
  EXPECT_EQ(s.numFinishedStop + s.numFinishedLength + s.numCancelled,
            kThreads * kPerThread);
  std::string error;
  EXPECT_TRUE(engine.blockManager().verify(&error)) << error;
}

/// A fake model that takes its time, so that requests are in flight when
/// the server stops.
class SlowExecutor : public FakeExecutor {
public:
  using FakeExecutor::FakeExecutor;
  bool step(const StepBatch &batch, float *logits,
            std::string &error) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return FakeExecutor::step(batch, logits, error);
  }
};

TEST(AsyncEngineTest, StopWakesEveryWaiter) {
  SlowExecutor executor(limits());
  Engine engine(executor, options());
  AsyncEngine async(engine);
  std::vector<std::shared_ptr<OutputChannel>> channels;
  std::mt19937 rng(5);
  for (int i = 0; i < 20; ++i) {
    channels.push_back(std::make_shared<OutputChannel>());
    SamplingParams params = greedy(100);
    params.ignoreEos = true;
    async.submit(channels.back(), i, randomPrompt(rng, 10), params);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  async.stop();
  for (auto &channel : channels) {
    Result r = collect(*channel, std::chrono::seconds(2));
    EXPECT_TRUE(r.finished);
    EXPECT_EQ(r.error, "the server is shutting down");
  }
  // After stopping, submissions are refused at once.
  auto late = std::make_shared<OutputChannel>();
  async.submit(late, 0, {5, 6}, greedy(2));
  EXPECT_TRUE(collect(*late, std::chrono::seconds(1)).refused);
  EXPECT_EQ(engine.blockManager().numUsedBlocks(), 0);
}

TEST(AsyncEngineTest, MetricsCountWhatHappened) {
  FakeExecutor executor(limits());
  Engine engine(executor, options());
  AsyncEngine async(engine);
  std::mt19937 rng(9);
  for (int i = 0; i < 3; ++i) {
    auto channel = std::make_shared<OutputChannel>();
    SamplingParams params = greedy(5);
    params.ignoreEos = true;
    async.submit(channel, 0, randomPrompt(rng, 6), params);
    EXPECT_EQ(collect(*channel).tokens.size(), 5u);
  }
  settle(async);
  std::string text = async.metricsText();
  for (const char *line :
       {"optmlir_num_requests_running 0\n", "optmlir_num_requests_waiting 0\n",
        "optmlir_kv_cache_blocks 256\n", "optmlir_kv_cache_used_blocks 0\n",
        "optmlir_prompt_tokens_total 18\n",
        "optmlir_generation_tokens_total 15\n",
        "optmlir_request_success_total{finished_reason=\"length\"} 3\n",
        "optmlir_time_to_first_token_seconds_count 3\n",
        "optmlir_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3\n",
        "optmlir_time_per_output_token_seconds_count 12\n",
        "optmlir_e2e_request_latency_seconds_count 3\n",
        "# TYPE optmlir_time_to_first_token_seconds histogram\n",
        "# TYPE process_resident_memory_bytes gauge\n"})
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  EXPECT_GT(residentMemoryBytes(), 1 << 20);
}

TEST(AsyncEngineTest, PreparesItsThreadOrRefusesEverything) {
  FakeExecutor executor(limits());
  Engine engine(executor, options());
  std::thread::id prepared;
  AsyncEngine async(engine, [&](std::string &) {
    prepared = std::this_thread::get_id();
    return true;
  });
  EXPECT_TRUE(async.startError().empty());
  EXPECT_NE(prepared, std::this_thread::get_id());
  auto channel = std::make_shared<OutputChannel>();
  async.submit(channel, 0, {5, 6}, greedy(2));
  EXPECT_EQ(collect(*channel).tokens.size(), 2u);

  AsyncEngine failed(engine, [](std::string &error) {
    error = "no device here";
    return false;
  });
  EXPECT_EQ(failed.startError(), "no device here");
  EXPECT_FALSE(failed.running());
  auto refused = std::make_shared<OutputChannel>();
  failed.submit(refused, 0, {5, 6}, greedy(2));
  EXPECT_TRUE(collect(*refused, std::chrono::seconds(1)).refused);
}

TEST(MetricsTest, HistogramsAreCumulativeWithInfAndSum) {
  Histogram h({0.1, 1.0, 10.0});
  for (double v : {0.05, 0.1, 0.5, 20.0})
    h.observe(v);
  std::string out;
  h.render("x_seconds", "Help.", out);
  EXPECT_EQ(out, "# HELP x_seconds Help.\n"
                 "# TYPE x_seconds histogram\n"
                 "x_seconds_bucket{le=\"0.1\"} 2\n"
                 "x_seconds_bucket{le=\"1\"} 3\n"
                 "x_seconds_bucket{le=\"10\"} 3\n"
                 "x_seconds_bucket{le=\"+Inf\"} 4\n"
                 "x_seconds_sum 20.65\n"
                 "x_seconds_count 4\n");
  EXPECT_EQ(formatMetricValue(3.0), "3");
  EXPECT_EQ(formatMetricValue(0.25), "0.25");
  std::string counter;
  appendCounter(counter, "c_total", "Help.", 0, {{"a=\"b\"", 2}});
  EXPECT_EQ(counter, "# HELP c_total Help.\n# TYPE c_total counter\n"
                     "c_total{a=\"b\"} 2\n");
}

} // namespace
