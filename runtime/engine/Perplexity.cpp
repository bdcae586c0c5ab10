//===- Perplexity.cpp - the reference perplexity protocol -----------------===//

#include "runtime/engine/Perplexity.h"

#include "runtime/core/BlockManager.h"
#include "runtime/exec/ModelExecutor.h"
#include "runtime/tokenizer/Tokenizer.h"

#include <algorithm>
#include <cmath>

namespace optrt {

std::vector<TokenId>
perplexityTokenStream(const Tokenizer &tokenizer,
                      const std::vector<std::string> &documents, TokenId bos,
                      TokenId eos) {
  std::vector<TokenId> stream;
  for (const std::string &document : documents) {
    stream.push_back(bos);
    std::vector<int32_t> ids = tokenizer.encode(document, false);
    stream.insert(stream.end(), ids.begin(), ids.end());
    stream.push_back(eos);
  }
  return stream;
}

namespace {

/// -log softmax(row)[target], the log-softmax in float32 as the reference
/// computes it (the sum of exponentials in double only to lose nothing).
double negativeLogLikelihood(const float *row, int32_t vocabSize,
                             TokenId target) {
  float maxLogit = *std::max_element(row, row + vocabSize);
  double sum = 0.0;
  for (int32_t i = 0; i < vocabSize; ++i)
    sum += std::exp(static_cast<double>(row[i] - maxLogit));
  float logNorm = maxLogit + static_cast<float>(std::log(sum));
  return -static_cast<double>(row[target] - logNorm);
}

/// A window being scored: its first `done` tokens are in the cache.
struct ActiveWindow {
  int64_t index;
  int32_t done;
};

} // namespace

bool scorePerplexity(ModelExecutor &executor,
                     const std::vector<TokenId> &stream,
                     const PerplexityOptions &options, PerplexityResult &result,
                     std::string &error) {
  const ExecutorLimits &limits = executor.limits();
  const int32_t window = options.window;
  if (window < 2) {
    error =
        "the window must hold at least 2 tokens, got " + std::to_string(window);
    return false;
  }
  if (window > limits.maxContextLength) {
    error = "a window of " + std::to_string(window) +
            " tokens exceeds the model's context of " +
            std::to_string(limits.maxContextLength);
    return false;
  }
  int64_t blocksPerWindow = (window + limits.blockSize - 1) / limits.blockSize;
  if (blocksPerWindow > limits.numBlocks) {
    error = "a window of " + std::to_string(window) + " tokens needs " +
            std::to_string(blocksPerWindow) + " KV blocks, the cache has " +
            std::to_string(limits.numBlocks);
    return false;
  }
  const int64_t numWindows = static_cast<int64_t>(stream.size()) / window;
  if (numWindows == 0) {
    error = "the text has " + std::to_string(stream.size()) +
            " tokens, fewer than one window of " + std::to_string(window);
    return false;
  }
  const int32_t budget =
      options.maxTokensPerStep > 0
          ? std::min(options.maxTokensPerStep, limits.maxTokensPerStep)
          : limits.maxTokensPerStep;

  // Windows share nothing, so no prefix caching.
  BlockManager blocks(limits.numBlocks, limits.blockSize, false);
  std::vector<ActiveWindow> active;
  int64_t nextWindow = 0;
  int64_t windowsDone = 0;
  double sumNll = 0.0;
  std::vector<float> logits;
  const size_t vocab = static_cast<size_t>(limits.vocabSize);

  while (windowsDone < numWindows) {
    // Admit windows while their blocks fit; each window's blocks are taken
    // whole so that a started window always finishes.
    while (nextWindow < numWindows) {
      auto first = stream.begin() + nextWindow * window;
      std::vector<TokenId> tokens(first, first + window);
      if (!blocks.canAllocate(tokens))
        break;
      blocks.allocateWithPrefix(static_cast<SeqId>(nextWindow), tokens);
      active.push_back({nextWindow++, 0});
    }

    StepBatch batch;
    // (window, offset in it) of each logit row, for its target.
    std::vector<std::pair<int64_t, int32_t>> rowTargets;
    std::vector<ActiveWindow *> inBatch;
    int32_t remaining = budget;
    for (ActiveWindow &w : active) {
      if (remaining == 0)
        break;
      int32_t n = std::min(window - w.done, remaining);
      remaining -= n;
      const TokenId *tokens = stream.data() + w.index * window;
      for (int32_t i = w.done; i < w.done + n; ++i) {
        // The window's last token has no next token to predict.
        if (i + 1 < window) {
          batch.logitRows.push_back(static_cast<int32_t>(batch.tokens.size()));
          rowTargets.push_back({w.index, i});
        }
        batch.tokens.push_back(tokens[i]);
        batch.positions.push_back(i);
      }
      batch.sequences.push_back(
          {n, w.done + n, &blocks.blockTable(static_cast<SeqId>(w.index))});
      inBatch.push_back(&w);
    }

    logits.resize(batch.logitRows.size() * vocab);
    if (!executor.step(batch, logits.data(), error))
      return false;
    for (size_t row = 0; row < rowTargets.size(); ++row) {
      auto [index, offset] = rowTargets[row];
      TokenId target = stream[index * window + offset + 1];
      sumNll += negativeLogLikelihood(logits.data() + row * vocab,
                                      limits.vocabSize, target);
    }

    size_t before = active.size();
    for (size_t i = 0; i < inBatch.size(); ++i)
      inBatch[i]->done += batch.sequences[i].numQueryTokens;
    active.erase(std::remove_if(active.begin(), active.end(),
                                [&](const ActiveWindow &w) {
                                  if (w.done < window)
                                    return false;
                                  blocks.free(static_cast<SeqId>(w.index));
                                  return true;
                                }),
                 active.end());
    if (active.size() != before) {
      windowsDone += static_cast<int64_t>(before - active.size());
      if (options.progress)
        options.progress(windowsDone, numWindows);
    }
  }

  result.numWindows = numWindows;
  result.numScored = numWindows * (window - 1);
  result.sumNll = sumNll;
  result.meanNll = sumNll / static_cast<double>(result.numScored);
  result.perplexity = std::exp(result.meanNll);
  return true;
}

} // namespace optrt
