//===- Engine.cpp - continuous batching over a ModelExecutor --------------===//

#include "runtime/engine/Engine.h"

#include "runtime/tokenizer/Tokenizer.h"

#include <algorithm>
#include <cassert>
#include <limits>

namespace optrt {

struct Engine::Request {
  Request(RequestId id, std::vector<TokenId> prompt,
          const SamplingParams &params, const SamplingParams &stopParams,
          int64_t maxOutput, int32_t priority, const EngineOptions &options)
      : id(id), tokens(std::move(prompt)), promptLength(tokens.size()),
        params(params), state(params, tokens),
        stop(stopParams, options.eosTokenIds), maxOutput(maxOutput),
        priority(priority) {
    if (options.tokenizer)
      decoder.emplace(*options.tokenizer, options.skipSpecialTokens);
  }

  int64_t numUncomputed() const {
    return static_cast<int64_t>(tokens.size()) - numComputed;
  }
  /// Ids grow with arrival, so (priority, id) is the waiting order.
  bool waitsBefore(const Request &other) const {
    return priority != other.priority ? priority < other.priority
                                      : id < other.id;
  }
  bool runsBefore(const Request &other) const {
    return priority != other.priority ? priority < other.priority
                                      : admission < other.admission;
  }

  RequestId id;
  /// The prompt followed by the generated tokens: what a recompute after
  /// preemption prefills.
  std::vector<TokenId> tokens;
  size_t promptLength;
  SamplingParams params;
  SamplingState state;
  StopChecker stop;
  std::optional<StreamingDecoder> decoder;
  int64_t maxOutput;
  int32_t priority;
  /// When it was last admitted (a counter).
  uint64_t admission = 0;
  /// Leading tokens whose KV is in the cache.
  int64_t numComputed = 0;
  bool hasBlocks = false;
  /// Part of the batch being built.
  bool inBatch = false;
};

Engine::Engine(ModelExecutor &executor, EngineOptions options)
    : executor(executor), options(std::move(options)),
      limits(executor.limits()),
      budget(this->options.maxTokensPerStep > 0
                 ? std::min(this->options.maxTokensPerStep,
                            limits.maxTokensPerStep)
                 : limits.maxTokensPerStep),
      maxContext(std::min<int64_t>(
          {limits.maxContextLength,
           static_cast<int64_t>(limits.numBlocks) * limits.blockSize,
           this->options.maxModelLength > 0
               ? this->options.maxModelLength
               : std::numeric_limits<int64_t>::max()})),
      blocks(limits.numBlocks, limits.blockSize,
             this->options.enablePrefixCaching) {}

Engine::~Engine() = default;

std::optional<RequestId> Engine::addRequest(std::vector<TokenId> promptIds,
                                            const SamplingParams &params,
                                            std::string &error,
                                            int32_t priority) {
  if (promptIds.empty()) {
    error = "the prompt is empty";
    return std::nullopt;
  }
  if (static_cast<int64_t>(promptIds.size()) > maxContext) {
    error = "the prompt has " + std::to_string(promptIds.size()) +
            " tokens, more than the context limit of " +
            std::to_string(maxContext);
    return std::nullopt;
  }
  for (size_t i = 0; i < promptIds.size(); ++i) {
    if (promptIds[i] < 0 || promptIds[i] >= limits.vocabSize) {
      error = "prompt token " + std::to_string(i) + " has id " +
              std::to_string(promptIds[i]) + ", outside the vocabulary of " +
              std::to_string(limits.vocabSize);
      return std::nullopt;
    }
  }
  if (!params.validate(error))
    return std::nullopt;

  // The last token sampled needs no KV slot, hence the + 1.
  int64_t maxOutput = maxContext - static_cast<int64_t>(promptIds.size()) + 1;
  if (params.maxTokens)
    maxOutput = std::min(maxOutput, *params.maxTokens);
  SamplingParams stopParams = params;
  stopParams.maxTokens = maxOutput;

  RequestId id = nextId++;
  auto request =
      std::make_unique<Request>(id, std::move(promptIds), params, stopParams,
                                maxOutput, priority, options);
  enqueueWaiting(*request);
  requests.emplace(id, std::move(request));
  return id;
}

bool Engine::cancel(RequestId id) {
  auto it = requests.find(id);
  if (it == requests.end())
    return false;
  release(*it->second);
  requests.erase(it);
  return true;
}

void Engine::release(Request &r) {
  if (r.hasBlocks)
    blocks.free(r.id);
  r.hasBlocks = false;
  auto inRunning = std::find(running.begin(), running.end(), &r);
  if (inRunning != running.end())
    running.erase(inRunning);
  auto inWaiting = std::find(waiting.begin(), waiting.end(), &r);
  if (inWaiting != waiting.end())
    waiting.erase(inWaiting);
}

void Engine::preempt(Request &r) {
  blocks.free(r.id);
  r.hasBlocks = false;
  r.numComputed = 0;
  running.erase(std::find(running.begin(), running.end(), &r));
  enqueueWaiting(r);
  ++counters.numPreemptions;
}

void Engine::enqueueWaiting(Request &r) {
  auto before = std::upper_bound(
      waiting.begin(), waiting.end(), &r,
      [](const Request *a, const Request *b) { return a->waitsBefore(*b); });
  waiting.insert(before, &r);
}

Engine::Request *Engine::preemptNewest() {
  for (auto it = running.rbegin(); it != running.rend(); ++it) {
    if (!(*it)->inBatch) {
      Request *victim = *it;
      preempt(*victim);
      return victim;
    }
  }
  return nullptr;
}

bool Engine::scheduleRunning(Request &r, int32_t &remaining,
                             std::vector<Scheduled> &batch, bool &preempted) {
  int64_t want = std::min<int64_t>(r.numUncomputed(), remaining);
  assert(blocks.numTokens(r.id) == r.numComputed);
  while (true) {
    int64_t n = want;
    if (!blocks.canAppend(r.id, n)) {
      // A prefill chunk shrinks to the slots left before anyone is evicted.
      int64_t capacity =
          static_cast<int64_t>(blocks.blockTable(r.id).size()) *
              blocks.blockSize() -
          blocks.numTokens(r.id) +
          static_cast<int64_t>(blocks.numFreeBlocks()) * blocks.blockSize();
      n = std::min(n, capacity);
    }
    if (n > 0 && blocks.canAppend(r.id, n)) {
      std::vector<TokenId> ids(r.tokens.begin() + r.numComputed,
                               r.tokens.begin() + r.numComputed + n);
      std::vector<BlockCopy> copies;
      blocks.appendTokenIds(r.id, ids, copies);
      // Only forks share a partially filled block, and the engine never
      // forks.
      assert(copies.empty());
      r.inBatch = true;
      batch.push_back({&r, static_cast<int32_t>(n)});
      remaining -= static_cast<int32_t>(n);
      return true;
    }
    // `r` itself is unscheduled, so there is always a victim.
    Request *victim = preemptNewest();
    preempted = true;
    if (victim == &r)
      return false;
  }
}

bool Engine::admitWaiting(int32_t &remaining, std::vector<Scheduled> &batch) {
  Request &r = *waiting.front();
  const std::vector<TokenId> &all = r.tokens;
  int64_t cached = blocks.numCachedTokens(all);
  auto prefix = [&](int64_t end) {
    return std::vector<TokenId>(all.begin(), all.begin() + end);
  };
  int64_t end = std::min<int64_t>(all.size(), cached + remaining);
  if (!blocks.canAllocate(prefix(end))) {
    // The largest chunk that fits: canAllocate is monotone in the length.
    int64_t lo = cached, hi = end - 1;
    while (lo < hi) {
      int64_t mid = lo + (hi - lo + 1) / 2;
      if (blocks.canAllocate(prefix(mid)))
        lo = mid;
      else
        hi = mid - 1;
    }
    if (lo == cached)
      return false;
    end = lo;
  }
  std::optional<int64_t> hit = blocks.allocateWithPrefix(r.id, prefix(end));
  assert(hit);
  r.hasBlocks = true;
  r.numComputed = *hit;
  counters.numCachedTokens += *hit;
  if (blocks.prefixCachingEnabled())
    counters.numPrefixQueryTokens += static_cast<int64_t>(all.size());
  waiting.pop_front();
  r.admission = nextAdmission++;
  // Its admission is the newest: it goes after every request of its
  // priority.
  running.insert(std::upper_bound(running.begin(), running.end(), &r,
                                  [](const Request *a, const Request *b) {
                                    return a->runsBefore(*b);
                                  }),
                 &r);
  int32_t n = static_cast<int32_t>(end - *hit);
  r.inBatch = true;
  batch.push_back({&r, n});
  remaining -= n;
  return true;
}

RequestOutput Engine::emit(Request &r, TokenId token,
                           const SampleResult &sample) {
  std::string newText;
  if (r.decoder) {
    newText = r.decoder->push(token);
    // The last token allowed: nothing will complete a held-back partial
    // UTF-8 character any more.
    if (r.state.numOutputTokens() == r.maxOutput)
      newText += r.decoder->flush();
  }
  StopUpdate update = r.stop.append(token, newText);
  RequestOutput out;
  out.id = r.id;
  out.newTokenIds.push_back(token);
  out.textDelta = std::move(update.delta);
  if (r.params.logprobs >= 0)
    out.logprobs.push_back(sample);
  out.finished = r.stop.finished();
  out.finishReason = update.reason;
  out.stopString = std::move(update.stopString);
  return out;
}

std::vector<RequestOutput> Engine::step() {
  std::vector<RequestOutput> outputs;
  if (!hasUnfinished())
    return outputs;

  // Schedule: decodes, then prefill chunks of running sequences, then new
  // admissions, each in (priority, admission or arrival) order.
  std::vector<Scheduled> scheduled;
  int32_t remaining = budget;
  bool preempted = false;
  for (bool decodes : {true, false}) {
    for (size_t i = 0; i < running.size() && remaining > 0;) {
      Request &r = *running[i];
      if (r.inBatch || (r.numUncomputed() == 1) != decodes) {
        ++i;
        continue;
      }
      // A preemption removes r or a later sequence, never an earlier one.
      if (scheduleRunning(r, remaining, scheduled, preempted))
        ++i;
    }
  }
  // Admitting after a preemption would only evict again.
  while (remaining > 0 && !preempted && !waiting.empty() &&
         running.size() < static_cast<size_t>(options.maxNumSequences) &&
         admitWaiting(remaining, scheduled)) {
  }
  if (scheduled.empty())
    return outputs;

  // Build the batch now that no more sequences are created: block tables
  // are referenced, not copied.
  StepBatch batch;
  std::vector<Request *> sampled;
  for (const Scheduled &s : scheduled) {
    Request &r = *s.request;
    r.inBatch = false;
    for (int32_t i = 0; i < s.numTokens; ++i) {
      batch.tokens.push_back(r.tokens[r.numComputed + i]);
      batch.positions.push_back(static_cast<int32_t>(r.numComputed + i));
    }
    int32_t contextLength = static_cast<int32_t>(r.numComputed + s.numTokens);
    batch.sequences.push_back(
        {s.numTokens, contextLength, &blocks.blockTable(r.id)});
    if (contextLength == static_cast<int64_t>(r.tokens.size())) {
      batch.logitRows.push_back(static_cast<int32_t>(batch.tokens.size()) - 1);
      sampled.push_back(&r);
    }
    bool isDecode = s.numTokens == 1 && r.tokens.size() > r.promptLength &&
                    contextLength == static_cast<int64_t>(r.tokens.size());
    if (!isDecode)
      counters.numPrefillTokens += s.numTokens;
  }

  size_t vocab = static_cast<size_t>(limits.vocabSize);
  // Plain greedy rows need only each row's argmax, which GPU executors pick
  // on the device instead of returning every logit.
  bool greedyOnly = std::all_of(sampled.begin(), sampled.end(), [](Request *r) {
    const SamplingParams &p = r->params;
    return p.isGreedy() && p.logprobs < 0 && p.repetitionPenalty == 1.0f &&
           p.presencePenalty == 0.0f && p.frequencyPenalty == 0.0f;
  });
  std::string error;
  bool ran;
  if (greedyOnly) {
    greedyTokens.resize(batch.logitRows.size());
    ran = executor.stepGreedy(batch, greedyTokens.data(), error);
  } else {
    logits.resize(batch.logitRows.size() * vocab);
    ran = executor.step(batch, logits.data(), error);
  }
  if (!ran) {
    for (const Scheduled &s : scheduled) {
      RequestOutput out;
      out.id = s.request->id;
      out.finished = true;
      out.error = error;
      outputs.push_back(std::move(out));
      release(*s.request);
      // A copy: erase must not read a key inside the element it destroys.
      RequestId id = s.request->id;
      requests.erase(id);
    }
    return outputs;
  }
  ++counters.numSteps;

  for (const Scheduled &s : scheduled) {
    s.request->numComputed += s.numTokens;
    blocks.markComputed(s.request->id, s.request->numComputed);
  }
  for (size_t row = 0; row < sampled.size(); ++row) {
    Request &r = *sampled[row];
    SampleResult sample;
    if (greedyOnly)
      sample.token = greedyTokens[row];
    else
      sample = sampler.sample(logits.data() + row * vocab, limits.vocabSize,
                              r.params, r.state);
    r.state.addOutputToken(sample.token);
    r.tokens.push_back(sample.token);
    ++counters.numGeneratedTokens;
    outputs.push_back(emit(r, sample.token, sample));
    if (outputs.back().finished) {
      release(r);
      RequestId id = r.id;
      requests.erase(id);
    }
  }
  return outputs;
}

} // namespace optrt
