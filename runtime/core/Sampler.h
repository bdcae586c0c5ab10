//===- Sampler.h - Next-token sampling and stop conditions ------*- C++ -*-===//
//
// The host-side sampler: the reference for the generated sampling kernels and
// the path used on the CPU target. Logits are processed in the order of
// Hugging Face and vLLM: penalties, temperature, top-k, top-p, min-p, then a
// draw. Each sequence's draws come from its own counter-based random stream
// (seed, output index), so a seeded sequence produces the same tokens whatever
// else is in the batch, and also after preemption and recompute.
//
// StopChecker turns sampled tokens and their decoded text into what may be
// streamed and whether the sequence is finished.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_CORE_SAMPLER_H
#define OPTMLIR_RUNTIME_CORE_SAMPLER_H

#include "runtime/core/Types.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace optrt {

struct SamplingParams {
  /// 0 means greedy; so does anything below 1e-5, as in vLLM, because
  /// dividing logits by it would overflow. Applied inside the softmax, as
  /// exp((logit - max) / temperature).
  float temperature = 1.0f;
  /// Keep the k most likely tokens (and any tied with the k-th); <= 0: off.
  int32_t topK = 0;
  /// Keep the smallest set of most likely tokens with mass >= topP; 1: off.
  float topP = 1.0f;
  /// Keep tokens with probability >= minP * the largest probability; 0: off.
  float minP = 0.0f;
  /// Hugging Face semantics over prompt and output tokens: positive logits
  /// are divided by it, negative ones multiplied; 1: off.
  float repetitionPenalty = 1.0f;
  /// OpenAI semantics over output tokens: subtracted once per seen token.
  float presencePenalty = 0.0f;
  /// OpenAI semantics over output tokens: subtracted once per occurrence.
  float frequencyPenalty = 0.0f;
  /// Without a seed each sequence draws a random one.
  std::optional<uint64_t> seed;
  /// Without a limit the scheduler stops at the context length.
  std::optional<int64_t> maxTokens;
  std::vector<TokenId> stopTokenIds;
  std::vector<std::string> stopStrings;
  /// Keep generating past the model's end-of-sequence tokens.
  bool ignoreEos = false;
  /// < 0: no logprobs; 0: the chosen token's; k > 0: also the k most likely.
  /// Logprobs are of the model's raw distribution, before any processing.
  int32_t logprobs = -1;

  bool isGreedy() const;
  /// On failure describes the first bad field in `error`.
  bool validate(std::string &error) const;
};

/// Per-sequence history the sampler needs: token counts for the penalties and
/// the random stream. The caller reports each accepted token.
class SamplingState {
public:
  SamplingState(const SamplingParams &params,
                const std::vector<TokenId> &promptTokens);

  void addOutputToken(TokenId token);
  int64_t numOutputTokens() const { return numOutput; }
  uint64_t seed() const { return rngSeed; }
  /// The uniform draw in [0, 1) for the next output token.
  double nextUniform() const;

private:
  friend class Sampler;

  uint64_t rngSeed;
  int64_t numOutput = 0;
  /// Sorted, unique; kept only when the repetition penalty is on.
  std::vector<TokenId> promptTokens;
  /// Kept only when a penalty is on.
  bool trackOutput;
  std::unordered_map<TokenId, int32_t> outputCounts;
};

struct TokenLogprob {
  TokenId token;
  float logprob;
};

struct SampleResult {
  TokenId token = 0;
  /// Set when SamplingParams::logprobs >= 0.
  std::optional<float> logprob;
  /// The SamplingParams::logprobs most likely tokens, most likely first
  /// (ties: lower id first).
  std::vector<TokenLogprob> topLogprobs;
};

/// Holds scratch buffers reused across calls: one per thread.
class Sampler {
public:
  /// Chooses the next token from one row of `vocabSize` logits. Greedy picks
  /// the lowest id among the maxima. NaN logits count as -inf.
  SampleResult sample(const float *logits, int32_t vocabSize,
                      const SamplingParams &params, const SamplingState &state);

private:
  struct Candidate {
    float value;
    TokenId id;
  };

  void applyPenalties(const SamplingParams &params, const SamplingState &state);
  TokenId argmax() const;
  TokenId sampleFiltered(const SamplingParams &params, double uniform);
  size_t selectTopK(int32_t k);
  size_t selectTopP(size_t n, float topP, double &sum);

  /// One entry per token, in id order until filtering reorders them.
  std::vector<Candidate> candidates;
  /// Min-heap of the largest logits while selecting the top k.
  std::vector<float> topKHeap;
};

//===----------------------------------------------------------------------===//
// Stop conditions
//===----------------------------------------------------------------------===//

enum class FinishReason {
  None,
  /// An end-of-sequence token of the model (unless ignoreEos).
  Eos,
  /// One of SamplingParams::stopTokenIds.
  StopToken,
  /// One of SamplingParams::stopStrings appeared in the text.
  StopString,
  /// SamplingParams::maxTokens reached.
  Length,
};

/// Where a stop string was found: its byte offset in the text and its index
/// in the list of stop strings.
struct StopMatch {
  size_t position;
  size_t index;
};

/// The earliest stop string in `text` that ends within its last `numNewChars`
/// bytes (so that one spanning several tokens is found once complete).
std::optional<StopMatch> findStopString(std::string_view text,
                                        size_t numNewChars,
                                        const std::vector<std::string> &stops);

/// Bytes at the end of `text` that must not be streamed yet: the longest
/// suffix that is a proper prefix of a stop string.
size_t stopStringHoldback(std::string_view text,
                          const std::vector<std::string> &stops);

/// What one generated token changed for the client.
struct StopUpdate {
  FinishReason reason = FinishReason::None;
  /// Text that may be streamed now.
  std::string delta;
  /// The stop string that matched, for FinishReason::StopString.
  std::string stopString;
};

/// Per-sequence stop logic. Stop tokens, end-of-sequence tokens and stop
/// strings are not part of the output text, as in the OpenAI API.
class StopChecker {
public:
  StopChecker(const SamplingParams &params, std::vector<TokenId> eosIds);

  /// Reports one generated token and the text its detokenization added
  /// (possibly empty). After the sequence finished, returns its reason again.
  StopUpdate append(TokenId token, std::string_view newText);

  bool finished() const { return reason != FinishReason::None; }
  FinishReason finishReason() const { return reason; }
  /// The output text so far; once finished, the final text.
  const std::string &text() const { return outputText; }
  int64_t numTokens() const { return numGenerated; }

private:
  std::string finish(FinishReason why, size_t textEnd);

  std::vector<TokenId> eosTokenIds;
  std::vector<TokenId> stopTokenIds;
  std::vector<std::string> stopStrings;
  std::optional<int64_t> maxTokens;
  bool ignoreEos;

  FinishReason reason = FinishReason::None;
  std::string outputText;
  /// Bytes of outputText already handed out as deltas.
  size_t numStreamed = 0;
  int64_t numGenerated = 0;
};

} // namespace optrt

#endif // OPTMLIR_RUNTIME_CORE_SAMPLER_H
