//===- Engine.h - continuous batching over a ModelExecutor ------*- C++ -*-===//
//
// The generation loop the front ends share: requests join and leave between
// steps, and each step packs the running decodes (one token each) and then
// prefill chunks of newer sequences into one ragged batch under a token
// budget, as vLLM v1 does. KV blocks come from a BlockManager (with prefix
// caching); when they run out, the most recently admitted running sequence
// of the lowest priority is preempted by recompute: its blocks are freed and
// it is requeued ahead of later arrivals of its priority, to re-prefill its
// prompt and the tokens it generated. Its sampling state is kept, so seeded
// sampling gives the same tokens after preemption.
//
// Order: first come, first served, unless requests carry priorities (lower
// values first, as in vLLM). Waiting requests are admitted in (priority,
// arrival) order; running ones are scheduled in (priority, admission) order.
// With every priority equal this is plain FCFS.
//
// Not thread-safe: one thread calls addRequest, cancel and step.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_ENGINE_ENGINE_H
#define OPTMLIR_RUNTIME_ENGINE_ENGINE_H

#include "runtime/core/BlockManager.h"
#include "runtime/core/Sampler.h"
#include "runtime/core/Types.h"
#include "runtime/exec/ModelExecutor.h"

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace optrt {

class Tokenizer;

using RequestId = uint64_t;

struct EngineOptions {
  /// Packed tokens per step; 0 or more than the executor's limit: the
  /// executor's ExecutorLimits::maxTokensPerStep.
  int32_t maxTokensPerStep = 0;
  /// Sequences running at once (holding KV blocks).
  int32_t maxNumSequences = 256;
  /// Longest sequence (prompt and output) to serve; 0 or more than the
  /// model's: the model's (see Engine::contextLimit).
  int64_t maxModelLength = 0;
  bool enablePrefixCaching = true;
  /// Tokens that end a sequence (unless SamplingParams::ignoreEos).
  std::vector<TokenId> eosTokenIds;
  /// Detokenizes outputs into text deltas and stop-string checks; without
  /// one, outputs carry token ids only and stop strings never match.
  /// Must outlive the engine.
  const Tokenizer *tokenizer = nullptr;
  /// Whether special tokens (<s>, </s>, ...) are left out of the text.
  bool skipSpecialTokens = true;
};

/// What one step changed for one request.
struct RequestOutput {
  RequestId id = 0;
  /// Tokens generated in this step (the token that ended the sequence
  /// included, as Hugging Face does; its text is not).
  std::vector<TokenId> newTokenIds;
  /// Text that may be streamed now: held back while it could still turn out
  /// to be the start of a stop string.
  std::string textDelta;
  /// One entry per new token when SamplingParams::logprobs >= 0.
  std::vector<SampleResult> logprobs;
  bool finished = false;
  FinishReason finishReason = FinishReason::None;
  /// The stop string that matched, for FinishReason::StopString.
  std::string stopString;
  /// Set when the executor failed on the step: the request is aborted
  /// (finished, its blocks freed).
  std::string error;
};

struct EngineStats {
  int64_t numSteps = 0;
  int64_t numPreemptions = 0;
  /// Prompt (and recomputed) tokens run through the model, and those found
  /// in the prefix cache instead.
  int64_t numPrefillTokens = 0;
  int64_t numCachedTokens = 0;
  /// Tokens looked up in the prefix cache when sequences were admitted
  /// (numCachedTokens of them were found): the hit rate's denominator.
  int64_t numPrefixQueryTokens = 0;
  int64_t numGeneratedTokens = 0;
};

class Engine {
public:
  /// The executor (and options.tokenizer) must outlive the engine.
  Engine(ModelExecutor &executor, EngineOptions options);
  ~Engine();
  Engine(const Engine &) = delete;
  Engine &operator=(const Engine &) = delete;

  /// Queues a request. Refuses, setting `error`, an empty prompt, one longer
  /// than contextLimit(), token ids outside the vocabulary and invalid
  /// parameters. Lower `priority` values are served first; equal ones in
  /// arrival order.
  std::optional<RequestId> addRequest(std::vector<TokenId> promptIds,
                                      const SamplingParams &params,
                                      std::string &error, int32_t priority = 0);
  /// Drops a waiting or running request and frees its blocks; false when
  /// `id` is unknown or already finished. It produces no further output.
  bool cancel(RequestId id);

  /// Schedules and runs one batch, samples, and reports each request that
  /// advanced (or finished). Empty when nothing is unfinished.
  std::vector<RequestOutput> step();
  bool hasUnfinished() const { return !running.empty() || !waiting.empty(); }
  size_t numRunning() const { return running.size(); }
  size_t numWaiting() const { return waiting.size(); }

  /// Longest sequence (prompt and output) whose KV the engine will hold:
  /// the model's context (or EngineOptions::maxModelLength), capped by the
  /// cache so that one sequence alone always fits. A request stops
  /// (FinishReason::Length) when its next token would need more, so it
  /// generates at most contextLimit() - prompt + 1.
  int64_t contextLimit() const { return maxContext; }
  int32_t tokenBudget() const { return budget; }
  const BlockManager &blockManager() const { return blocks; }
  const EngineStats &stats() const { return counters; }

private:
  struct Request;
  /// A sequence's share of the batch being built.
  struct Scheduled {
    Request *request;
    int32_t numTokens;
  };

  bool scheduleRunning(Request &r, int32_t &remaining,
                       std::vector<Scheduled> &batch, bool &preempted);
  bool admitWaiting(int32_t &remaining, std::vector<Scheduled> &batch);
  /// Preempts the last running sequence (lowest priority, most recently
  /// admitted) not yet in the batch being built; returns it.
  Request *preemptNewest();
  /// Queues `r` among the waiting requests by (priority, arrival).
  void enqueueWaiting(Request &r);
  void preempt(Request &r);
  void release(Request &r);
  RequestOutput emit(Request &r, TokenId token, const SampleResult &sample);

  ModelExecutor &executor;
  EngineOptions options;
  ExecutorLimits limits;
  int32_t budget;
  int64_t maxContext;
  BlockManager blocks;
  Sampler sampler;
  RequestId nextId = 1;
  uint64_t nextAdmission = 0;
  std::unordered_map<RequestId, std::unique_ptr<Request>> requests;
  /// (priority, admission) order.
  std::vector<Request *> running;
  /// (priority, arrival) order: preempted sequences go back ahead of later
  /// arrivals.
  std::deque<Request *> waiting;
  std::vector<float> logits;
  std::vector<int32_t> greedyTokens;
  EngineStats counters;
};

} // namespace optrt

#endif // OPTMLIR_RUNTIME_ENGINE_ENGINE_H
