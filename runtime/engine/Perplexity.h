//===- Perplexity.h - the reference perplexity protocol ---------*- C++ -*-===//
//
// Perplexity as ../shared/models/README.md defines it, so that a number from
// optrun is comparable with the Hugging Face reference: documents become one
// token stream, [bos] + encode(text, no special tokens) + [eos] each; the
// stream is cut into non-overlapping windows of W tokens from offset 0 (the
// tail is dropped); each window is scored on its own, positions 0..W-1, with
// its W-1 next-token predictions; NLL from a float32 log-softmax, summed in
// double; ppl = exp(sum / count).
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_ENGINE_PERPLEXITY_H
#define OPTMLIR_RUNTIME_ENGINE_PERPLEXITY_H

#include "runtime/core/Types.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace optrt {

class ModelExecutor;
class Tokenizer;

/// The protocol's token stream for `documents`, in order.
std::vector<TokenId>
perplexityTokenStream(const Tokenizer &tokenizer,
                      const std::vector<std::string> &documents, TokenId bos,
                      TokenId eos);

struct PerplexityOptions {
  int32_t window = 512;
  /// Packed tokens per step; 0 or more than the executor's limit: the
  /// executor's. Several windows share a step; a window longer than the
  /// budget is run in chunks.
  int32_t maxTokensPerStep = 0;
  /// Called after each step that completed windows.
  std::function<void(int64_t windowsDone, int64_t numWindows)> progress;
};

struct PerplexityResult {
  int64_t numWindows = 0;
  /// numWindows * (window - 1).
  int64_t numScored = 0;
  double sumNll = 0.0;
  double meanNll = 0.0;
  double perplexity = 0.0;
};

/// Scores `stream` with the protocol. Fails, with one line in `error`, when
/// the window is below 2 or beyond what the model or its KV cache holds, the
/// stream is shorter than one window, or the executor fails.
bool scorePerplexity(ModelExecutor &executor,
                     const std::vector<TokenId> &stream,
                     const PerplexityOptions &options, PerplexityResult &result,
                     std::string &error);

} // namespace optrt

#endif // OPTMLIR_RUNTIME_ENGINE_PERPLEXITY_H
