//===- Sampler.cpp - Next-token sampling and stop conditions --------------===//

#include "runtime/core/Sampler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <random>

using namespace optrt;

namespace {

constexpr float kGreedyTemperature = 1e-5f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kMaxFloat = std::numeric_limits<float>::max();

template <typename T> bool contains(const std::vector<T> &v, const T &x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

} // namespace

//===----------------------------------------------------------------------===//
// SamplingParams
//===----------------------------------------------------------------------===//

bool SamplingParams::isGreedy() const {
  return temperature < kGreedyTemperature;
}

bool SamplingParams::validate(std::string &error) const {
  auto reject = [&](const char *field, const char *expected, double got) {
    char buffer[160];
    std::snprintf(buffer, sizeof(buffer), "%s must be %s, got %g", field,
                  expected, got);
    error = buffer;
    return false;
  };
  if (!(temperature >= 0.0f) || !std::isfinite(temperature))
    return reject("temperature", ">= 0", temperature);
  if (topK < -1)
    return reject("topK", ">= -1 (0 or -1: off)", topK);
  if (!(topP > 0.0f && topP <= 1.0f))
    return reject("topP", "in (0, 1]", topP);
  if (!(minP >= 0.0f && minP <= 1.0f))
    return reject("minP", "in [0, 1]", minP);
  if (!(repetitionPenalty > 0.0f) || !std::isfinite(repetitionPenalty))
    return reject("repetitionPenalty", "> 0", repetitionPenalty);
  if (!(presencePenalty >= -2.0f && presencePenalty <= 2.0f))
    return reject("presencePenalty", "in [-2, 2]", presencePenalty);
  if (!(frequencyPenalty >= -2.0f && frequencyPenalty <= 2.0f))
    return reject("frequencyPenalty", "in [-2, 2]", frequencyPenalty);
  if (maxTokens && *maxTokens < 1)
    return reject("maxTokens", ">= 1", static_cast<double>(*maxTokens));
  if (logprobs < -1)
    return reject("logprobs", ">= -1 (-1: none)", logprobs);
  for (const std::string &stop : stopStrings) {
    if (stop.empty()) {
      error = "stopStrings must not contain an empty string";
      return false;
    }
  }
  return true;
}

//===----------------------------------------------------------------------===//
// SamplingState
//===----------------------------------------------------------------------===//

SamplingState::SamplingState(const SamplingParams &params,
                             const std::vector<TokenId> &prompt)
    : trackOutput(params.repetitionPenalty != 1.0f ||
                  params.presencePenalty != 0.0f ||
                  params.frequencyPenalty != 0.0f) {
  if (params.seed) {
    rngSeed = *params.seed;
  } else {
    std::random_device device;
    rngSeed = (static_cast<uint64_t>(device()) << 32) | device();
  }
  if (params.repetitionPenalty != 1.0f) {
    promptTokens = prompt;
    std::sort(promptTokens.begin(), promptTokens.end());
    promptTokens.erase(std::unique(promptTokens.begin(), promptTokens.end()),
                       promptTokens.end());
  }
}

void SamplingState::addOutputToken(TokenId token) {
  ++numOutput;
  if (trackOutput)
    ++outputCounts[token];
}

double SamplingState::nextUniform() const {
  // Counter-based: the draw depends only on (seed, position), not on how
  // many draws happened before, so recompute after preemption replays it.
  uint64_t bits = mix64(rngSeed ^ mix64(static_cast<uint64_t>(numOutput) +
                                        0x9e3779b97f4a7c15ULL));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

//===----------------------------------------------------------------------===//
// Sampler
//===----------------------------------------------------------------------===//

namespace {
/// Strict weak order: larger value first, then lower id (argmax's tie-break).
template <typename C> bool comesFirst(const C &a, const C &b) {
  return a.value > b.value || (a.value == b.value && a.id < b.id);
}
} // namespace

SampleResult Sampler::sample(const float *logits, int32_t vocabSize,
                             const SamplingParams &params,
                             const SamplingState &state) {
  if (vocabSize < 1) {
    std::fprintf(stderr, "optrt::Sampler: vocabulary size %d must be >= 1\n",
                 vocabSize);
    std::abort();
  }
  SampleResult result;
  bool penalized = params.repetitionPenalty != 1.0f ||
                   params.presencePenalty != 0.0f ||
                   params.frequencyPenalty != 0.0f;
  if (params.isGreedy() && !penalized) {
    // The common case needs no copy of the row.
    float best = kNegInf;
    for (TokenId id = 0; id < vocabSize; ++id) {
      if (logits[id] > best) {
        best = logits[id];
        result.token = id;
      }
    }
  } else {
    candidates.resize(vocabSize);
    // NaN would break the ordering that partition and sort rely on, and +inf
    // would turn the softmax into NaN; the largest float still wins.
    for (TokenId id = 0; id < vocabSize; ++id)
      candidates[id] = {
          std::isnan(logits[id]) ? kNegInf : std::min(logits[id], kMaxFloat),
          id};
    applyPenalties(params, state);
    result.token = params.isGreedy()
                       ? argmax()
                       : sampleFiltered(params, state.nextUniform());
  }
  if (params.logprobs < 0)
    return result;

  // Raw log-softmax, NaN as -inf.
  float maxLogit = kNegInf;
  for (TokenId id = 0; id < vocabSize; ++id)
    maxLogit = std::max(maxLogit, logits[id]);
  double sum = 0.0;
  for (TokenId id = 0; id < vocabSize; ++id)
    if (logits[id] > kNegInf)
      sum += std::exp(logits[id] - maxLogit);
  double logNorm = maxLogit + std::log(sum);
  auto logprobOf = [&](TokenId id) {
    return std::isnan(logits[id]) ? kNegInf
                                  : static_cast<float>(logits[id] - logNorm);
  };
  result.logprob = logprobOf(result.token);

  // The k best by a min-heap of the best seen so far (worst on top): one
  // pass over the vocabulary and O(k) memory.
  size_t k = std::min<size_t>(params.logprobs, vocabSize);
  struct Entry {
    float value;
    TokenId id;
  };
  auto better = [](const Entry &a, const Entry &b) { return comesFirst(a, b); };
  std::vector<Entry> heap;
  heap.reserve(k);
  for (TokenId id = 0; id < vocabSize && k > 0; ++id) {
    Entry entry{std::isnan(logits[id]) ? kNegInf : logits[id], id};
    if (heap.size() < k) {
      heap.push_back(entry);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (better(entry, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = entry;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort(heap.begin(), heap.end(), better);
  for (const Entry &entry : heap)
    result.topLogprobs.push_back({entry.id, logprobOf(entry.id)});
  return result;
}

void Sampler::applyPenalties(const SamplingParams &params,
                             const SamplingState &state) {
  const auto vocabSize = static_cast<TokenId>(candidates.size());
  auto inVocab = [&](TokenId id) { return id >= 0 && id < vocabSize; };

  float rep = params.repetitionPenalty;
  if (rep != 1.0f) {
    auto penalize = [&](TokenId id) {
      float &v = candidates[id].value;
      v = v > 0.0f ? v / rep : v * rep;
    };
    for (TokenId id : state.promptTokens)
      if (inVocab(id))
        penalize(id);
    for (const auto &[id, count] : state.outputCounts)
      if (inVocab(id) && !std::binary_search(state.promptTokens.begin(),
                                             state.promptTokens.end(), id))
        penalize(id);
  }
  if (params.presencePenalty == 0.0f && params.frequencyPenalty == 0.0f)
    return;
  for (const auto &[id, count] : state.outputCounts)
    if (inVocab(id))
      candidates[id].value -=
          params.frequencyPenalty * static_cast<float>(count) +
          params.presencePenalty;
}

TokenId Sampler::argmax() const {
  size_t best = 0;
  for (size_t i = 1; i < candidates.size(); ++i)
    if (candidates[i].value > candidates[best].value)
      best = i;
  return candidates[best].id;
}

size_t Sampler::selectTopK(int32_t k) {
  // The k-th largest value from a min-heap of the k largest seen so far: one
  // pass with about one comparison per token, where nth_element over a 128k
  // vocabulary costs several passes.
  topKHeap.clear();
  for (const Candidate &c : candidates) {
    if (topKHeap.size() < static_cast<size_t>(k)) {
      topKHeap.push_back(c.value);
      std::push_heap(topKHeap.begin(), topKHeap.end(), std::greater<float>());
    } else if (c.value > topKHeap.front()) {
      std::pop_heap(topKHeap.begin(), topKHeap.end(), std::greater<float>());
      topKHeap.back() = c.value;
      std::push_heap(topKHeap.begin(), topKHeap.end(), std::greater<float>());
    }
  }
  // Like Hugging Face and vLLM, keep every token tied with the k-th.
  float kth = topKHeap.front();
  auto end = std::partition(candidates.begin(), candidates.end(),
                            [&](const Candidate &c) { return c.value >= kth; });
  return end - candidates.begin();
}

namespace {
/// Buckets of weights in (0, 1] by their float bits, 16 per octave, so that
/// a bucket holds a contiguous run of the weights in sorted order and a flat
/// 128k distribution puts about a thousand tokens in one. Weights below
/// 2^-64 share the last bucket.
constexpr uint32_t kNumBuckets = 1024;
uint32_t bucketOf(float weight) {
  uint32_t bits;
  std::memcpy(&bits, &weight, sizeof(bits));
  return std::min((0x3f800000u - bits) >> 19, kNumBuckets - 1);
}
} // namespace

size_t Sampler::selectTopP(size_t n, float topP, double &sum) {
  // Sorting a 128k vocabulary is the cost to avoid: the mass per bucket
  // tells which bucket the nucleus ends in, and only that one is sorted.
  const double threshold = topP * sum;
  std::array<double, kNumBuckets> bucketMass{};
  auto first = candidates.begin();
  for (auto it = first; it != first + n; ++it)
    bucketMass[bucketOf(it->value)] += it->value;
  uint32_t boundary = 0;
  double mass = 0.0;
  while (boundary < kNumBuckets - 1 && mass + bucketMass[boundary] < threshold)
    mass += bucketMass[boundary++];

  auto keptEnd = std::partition(first, first + n, [&](const Candidate &c) {
    return bucketOf(c.value) < boundary;
  });
  auto boundaryEnd =
      std::partition(keptEnd, first + n, [&](const Candidate &c) {
        return bucketOf(c.value) == boundary;
      });
  std::sort(keptEnd, boundaryEnd, comesFirst<Candidate>);
  // Keep a token while the mass of the tokens before it is below topP.
  auto end = keptEnd;
  for (; end != boundaryEnd && mass < threshold; ++end)
    mass += end->value;
  sum = mass;
  return end - first;
}

TokenId Sampler::sampleFiltered(const SamplingParams &params, double uniform) {
  // Dividing by the temperature keeps the order, so top-k can select from
  // the unscaled logits and the division is folded into the softmax, over
  // the survivors only.
  size_t n = candidates.size();
  if (params.topK > 0 && static_cast<size_t>(params.topK) < n)
    n = selectTopK(params.topK);

  float maxValue = kNegInf;
  for (size_t i = 0; i < n; ++i)
    maxValue = std::max(maxValue, candidates[i].value);
  // Everything masked: fall back to the lowest id, as argmax would.
  if (maxValue == kNegInf)
    return std::min_element(candidates.begin(), candidates.begin() + n,
                            [](const Candidate &a, const Candidate &b) {
                              return a.id < b.id;
                            })
        ->id;

  // From here on `value` is an unnormalized probability; the largest is 1.
  const float invTemperature = 1.0f / params.temperature;
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) {
    candidates[i].value =
        std::exp((candidates[i].value - maxValue) * invTemperature);
    sum += candidates[i].value;
  }
  if (params.topP < 1.0f)
    n = selectTopP(n, params.topP, sum);
  if (params.minP > 0.0f) {
    // The ratio to the largest probability does not depend on normalization.
    auto end = std::remove_if(
        candidates.begin(), candidates.begin() + n,
        [&](const Candidate &c) { return c.value < params.minP; });
    n = end - candidates.begin();
    sum = 0.0;
    for (size_t i = 0; i < n; ++i)
      sum += candidates[i].value;
  }

  double target = uniform * sum;
  double cumulative = 0.0;
  for (size_t i = 0; i < n; ++i) {
    cumulative += candidates[i].value;
    if (target < cumulative)
      return candidates[i].id;
  }
  // Rounding left the target at the very end: take the last possible token.
  for (size_t i = n; i-- > 0;)
    if (candidates[i].value > 0.0f)
      return candidates[i].id;
  return candidates[0].id;
}

//===----------------------------------------------------------------------===//
// Stop conditions
//===----------------------------------------------------------------------===//

std::optional<StopMatch>
optrt::findStopString(std::string_view text, size_t numNewChars,
                      const std::vector<std::string> &stops) {
  std::optional<StopMatch> best;
  size_t oldSize = text.size() - std::min(numNewChars, text.size());
  for (size_t index = 0; index < stops.size(); ++index) {
    const std::string &stop = stops[index];
    if (stop.empty())
      continue;
    // A match ending in the new text starts at most stop.size() - 1 bytes
    // before it.
    size_t start = oldSize - std::min(oldSize, stop.size() - 1);
    size_t position = text.find(stop, start);
    if (position != std::string_view::npos &&
        (!best || position < best->position))
      best = StopMatch{position, index};
  }
  return best;
}

size_t optrt::stopStringHoldback(std::string_view text,
                                 const std::vector<std::string> &stops) {
  size_t holdback = 0;
  for (const std::string &stop : stops) {
    if (stop.empty())
      continue;
    size_t longest = std::min(stop.size() - 1, text.size());
    for (size_t length = longest; length > holdback; --length) {
      if (text.substr(text.size() - length) ==
          std::string_view(stop).substr(0, length)) {
        holdback = length;
        break;
      }
    }
  }
  return holdback;
}

StopChecker::StopChecker(const SamplingParams &params,
                         std::vector<TokenId> eosIds)
    : eosTokenIds(std::move(eosIds)), stopTokenIds(params.stopTokenIds),
      stopStrings(params.stopStrings), maxTokens(params.maxTokens),
      ignoreEos(params.ignoreEos) {}

std::string StopChecker::finish(FinishReason why, size_t textEnd) {
  reason = why;
  outputText.resize(textEnd);
  std::string delta = outputText.substr(std::min(numStreamed, textEnd));
  numStreamed = textEnd;
  return delta;
}

StopUpdate StopChecker::append(TokenId token, std::string_view newText) {
  StopUpdate update;
  if (finished()) {
    update.reason = reason;
    return update;
  }
  ++numGenerated;

  if (!ignoreEos && contains(eosTokenIds, token)) {
    update.delta = finish(FinishReason::Eos, outputText.size());
  } else if (contains(stopTokenIds, token)) {
    update.delta = finish(FinishReason::StopToken, outputText.size());
  } else {
    outputText.append(newText);
    if (auto match = findStopString(outputText, newText.size(), stopStrings)) {
      update.stopString = stopStrings[match->index];
      update.delta = finish(FinishReason::StopString, match->position);
    } else if (maxTokens && numGenerated >= *maxTokens) {
      update.delta = finish(FinishReason::Length, outputText.size());
    } else {
      size_t safe = std::max(numStreamed,
                             outputText.size() -
                                 stopStringHoldback(outputText, stopStrings));
      update.delta = outputText.substr(numStreamed, safe - numStreamed);
      numStreamed = safe;
    }
  }
  update.reason = reason;
  return update;
}
