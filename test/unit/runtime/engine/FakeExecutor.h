//===- FakeExecutor.h - a deterministic ModelExecutor for tests -*- C++ -*-===//
//
// Stands in for a compiled model. It keeps a real paged "KV cache" (the token
// id written into each slot) and computes each logit row from the context it
// reads back through the block table, so wrong block tables, positions,
// prefix-cache hits or recompute show up as different tokens. Every batch is
// checked with validateStepBatch; an invalid one fails the test.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_TEST_UNIT_RUNTIME_ENGINE_FAKEEXECUTOR_H
#define OPTMLIR_TEST_UNIT_RUNTIME_ENGINE_FAKEEXECUTOR_H

#include "runtime/exec/ModelExecutor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace optrt {

class FakeExecutor : public ModelExecutor {
public:
  enum class Mode {
    /// A pseudo-random row from a hash of the whole context, with a clear
    /// argmax (logit 4 against values in [0, 2)).
    Hashed,
    /// All logits zero.
    Uniform,
    /// Logit kKnownLogit at favorite(token, position), zero elsewhere.
    Known,
  };
  static constexpr float kKnownLogit = 2.0f;

  FakeExecutor(ExecutorLimits limits, Mode mode = Mode::Hashed)
      : lim(limits), mode(mode),
        cache(static_cast<size_t>(limits.numBlocks) * limits.blockSize, -1) {}

  static TokenId favorite(TokenId token, int32_t position, int32_t vocab) {
    return static_cast<TokenId>((token * 7 + position) % vocab);
  }

  const ExecutorLimits &limits() const override { return lim; }

  bool step(const StepBatch &batch, float *logits,
            std::string &error) override {
    error = validateStepBatch(batch, lim);
    if (!error.empty()) {
      ADD_FAILURE() << "invalid step batch: " << error;
      return false;
    }
    if (failAtStep == numSteps++) {
      error = "injected failure";
      return false;
    }
    maxTokensSeen = std::max(maxTokensSeen, batch.tokens.size());
    maxSequencesSeen = std::max(maxSequencesSeen, batch.sequences.size());
    numTokensRun += batch.tokens.size();

    // Write the KV of every query token first, then read contexts: rows
    // are causal within their sequence.
    std::vector<size_t> sequenceOf;
    size_t next = 0;
    for (size_t s = 0; s < batch.sequences.size(); ++s) {
      const SequenceSlice &seq = batch.sequences[s];
      for (int32_t i = 0; i < seq.numQueryTokens; ++i, ++next) {
        cache[slot(*seq.blockTable, batch.positions[next])] =
            batch.tokens[next];
        sequenceOf.push_back(s);
      }
    }
    size_t vocab = static_cast<size_t>(lim.vocabSize);
    for (size_t r = 0; r < batch.logitRows.size(); ++r) {
      int32_t row = batch.logitRows[r];
      const SequenceSlice &seq = batch.sequences[sequenceOf[row]];
      float *out = logits + r * vocab;
      TokenId token = batch.tokens[row];
      int32_t position = batch.positions[row];
      switch (mode) {
      case Mode::Uniform:
        std::fill(out, out + vocab, 0.0f);
        break;
      case Mode::Known:
        std::fill(out, out + vocab, 0.0f);
        out[favorite(token, position, lim.vocabSize)] = kKnownLogit;
        break;
      case Mode::Hashed: {
        uint64_t h = 0;
        for (int32_t p = 0; p <= position; ++p) {
          TokenId seen = cache[slot(*seq.blockTable, p)];
          if (seen < 0) {
            ADD_FAILURE() << "reads an unwritten KV slot";
            return false;
          }
          h = mix64(h * 31 + static_cast<uint64_t>(seen) + 1);
        }
        for (size_t j = 0; j < vocab; ++j)
          out[j] = static_cast<float>(mix64(h ^ (j + 1)) >> 40) * 0x1.0p-23f;
        out[h % vocab] = 4.0f;
        break;
      }
      }
    }
    return true;
  }

  bool copyBlocks(const std::vector<BlockCopy> &, std::string &) override {
    ADD_FAILURE() << "the engine never forks, so it never copies blocks";
    return false;
  }

  size_t maxTokensSeen = 0;
  size_t maxSequencesSeen = 0;
  size_t numTokensRun = 0;
  int64_t numSteps = 0;
  /// The step (0-based) that reports a failure; -1: none.
  int64_t failAtStep = -1;

private:
  size_t slot(const std::vector<BlockId> &table, int32_t position) const {
    return static_cast<size_t>(table[position / lim.blockSize]) *
               lim.blockSize +
           position % lim.blockSize;
  }

  ExecutorLimits lim;
  Mode mode;
  std::vector<TokenId> cache;
};

} // namespace optrt

#endif // OPTMLIR_TEST_UNIT_RUNTIME_ENGINE_FAKEEXECUTOR_H
