//===- Bench.cpp - optrun bench -------------------------------------------===//
//
// Decode and prefill throughput of an artifact, measured on the executor
// directly (no engine, scheduler or sampler in the way) with random tokens,
// next to the roofline of the device it ran on:
//   decode:  bytes a step must read (every weight once, but of an untied
//            embedding table only the rows of the step's tokens, plus the
//            KV cache of every sequence) over the measured copy bandwidth;
//   prefill: flops (2 x linear parameters x tokens, plus attention's
//            4 x layers x heads x head_dim x tokens^2 / 2, causal) over the
//            measured matmul peak.
// The linear parameters leave out the embedding table and lm_head: a
// lookup costs no flops, and the plan computes logits for the last row only.
// Each figure is the median of --repeat runs after --warmup untimed ones.
// Steps are greedy (ModelExecutor::stepGreedy: the argmax of every logit row
// is picked where the logits are, as `optrun generate` does for greedy
// requests) and return with the tokens on the host, so a steady clock around
// steps measures finished device work.
//
//===----------------------------------------------------------------------===//

#include "Commands.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>

namespace optrun {
namespace {

struct BenchOptions {
  std::string path;
  std::vector<int32_t> batches = {1, 8, 32, 128};
  int32_t promptTokens = 128;
  int32_t decodeTokens = 256;
  std::vector<int32_t> prefills = {512, 4096};
  int32_t warmup = 1;
  int32_t repeat = 3;
  std::string format = "text";
  uint64_t seed = 0;
  int32_t threads = 0;
  /// Given: a GPU's KV cache is sized from memory instead of for the runs.
  double gpuMemoryUtilization = optrt::ExecutorOptions().gpuMemoryUtilization;
  CLI::Option *gpuMemoryUtilizationOption = nullptr;
};

/// The model quantities the rooflines need.
struct ModelCost {
  uint64_t weightBytes = 0;
  /// An untied embedding table (0 when lm_head reads it): a decode step
  /// reads only its tokens' rows of it, of embeddingRowBytes each.
  uint64_t embeddingBytes = 0, embeddingRowBytes = 0;
  /// Elements of the linear layers (no embedding, lm_head or norms).
  uint64_t linearParams = 0;
  /// KV cache bytes per token of context (keys and values, all layers).
  uint64_t kvBytesPerToken = 0;
  uint64_t numLayers = 0, numHeads = 0, headDim = 0;
};

ModelCost modelCost(const optrt::artifact::Artifact &artifact) {
  ModelCost cost;
  const optrt::fb::ModelInfo &model = artifact.model();
  const optrt::fb::KVCacheLayout *kv = artifact.kvCache();
  cost.numLayers = model.num_layers();
  cost.numHeads = model.num_heads();
  cost.headDim = model.head_dim();
  if (kv)
    cost.kvBytesPerToken =
        2ull * kv->num_layers() * kv->num_kv_heads() *
        optrt::artifact::kvCacheRowBytes(kv->dtype(), kv->head_dim());
  for (size_t i = 0; i < artifact.numWeights(); ++i) {
    const optrt::fb::WeightEntry &w = artifact.weight(i);
    cost.weightBytes += w.size();
    if (!model.tie_word_embeddings() && w.name() &&
        w.name()->string_view() == "model.embed_tokens.weight") {
      cost.embeddingBytes = w.size();
      cost.embeddingRowBytes =
          w.size() / std::max<uint64_t>(1, model.vocab_size());
    }
    if (!w.shape() || w.shape()->size() != 2)
      continue;
    uint64_t rows = w.shape()->Get(0), cols = w.shape()->Get(1);
    // [vocab, hidden]: the embedding table or lm_head.
    if (rows == model.vocab_size() && cols == model.hidden_size())
      continue;
    cost.linearParams += rows * cols;
  }
  return cost;
}

double median(std::vector<double> values) {
  if (values.empty())
    return 0;
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// Runs steps over sequences that own disjoint runs of KV blocks.
class StepDriver {
public:
  StepDriver(optrt::ModelExecutor &executor, uint64_t seed)
      : executor(executor), limits(executor.limits()), rng(seed) {}

  /// Gives `numSeqs` sequences room for `contextLength` tokens each; false
  /// if the cache is too small.
  bool reset(int32_t numSeqs, int32_t contextLength) {
    int32_t perSeq = (contextLength + limits.blockSize - 1) / limits.blockSize;
    if (int64_t(perSeq) * numSeqs > limits.numBlocks)
      return false;
    tables.assign(numSeqs, {});
    for (int32_t s = 0; s < numSeqs; ++s)
      for (int32_t b = 0; b < perSeq; ++b)
        tables[s].push_back(s * perSeq + b);
    contexts.assign(numSeqs, 0);
    return true;
  }

  /// Feeds each sequence `tokens` more random tokens (prefill when > 1),
  /// chunked so that no step carries more than maxTokensPerStep tokens.
  bool advance(int32_t tokens, std::string &error) {
    size_t numSeqs = tables.size();
    std::vector<int32_t> left(numSeqs, tokens);
    std::uniform_int_distribution<int32_t> token(0, limits.vocabSize - 1);
    for (size_t first = 0; first < numSeqs;) {
      optrt::StepBatch batch;
      int32_t budget = limits.maxTokensPerStep;
      for (size_t s = first; s < numSeqs && budget > 0; ++s) {
        int32_t n = std::min(left[s], budget);
        if (n == 0)
          continue;
        for (int32_t i = 0; i < n; ++i) {
          batch.tokens.push_back(token(rng));
          batch.positions.push_back(contexts[s] + i);
        }
        contexts[s] += n;
        left[s] -= n;
        budget -= n;
        batch.sequences.push_back({n, contexts[s], &tables[s]});
        batch.logitRows.push_back(int32_t(batch.tokens.size()) - 1);
      }
      greedy.resize(batch.logitRows.size());
      if (!executor.stepGreedy(batch, greedy.data(), error))
        return false;
      while (first < numSeqs && left[first] == 0)
        ++first;
    }
    return true;
  }

private:
  optrt::ModelExecutor &executor;
  const optrt::ExecutorLimits &limits;
  std::mt19937_64 rng;
  std::vector<std::vector<optrt::BlockId>> tables;
  std::vector<int32_t> contexts;
  std::vector<int32_t> greedy;
};

struct DecodeResult {
  int32_t batch = 0;
  double tokensPerSecond = 0, rooflineTokensPerSecond = 0, msPerStep = 0;
  std::string skipped; // why there is no figure
};

struct PrefillResult {
  int32_t tokens = 0;
  double tokensPerSecond = 0, rooflineTokensPerSecond = 0;
  std::string skipped;
};

std::string formatRate(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), value >= 100 ? "%.0f" : "%.1f", value);
  return text;
}

std::string percent(double value, double roof) {
  if (roof <= 0)
    return "-";
  char text[16];
  std::snprintf(text, sizeof(text), "%.1f%%", 100 * value / roof);
  return text;
}

int runBench(const BenchOptions &options) {
  auto fail = [&](const std::string &problem) {
    return reportError(options.path, problem);
  };
  if (options.batches.empty() && options.prefills.empty())
    return fail("nothing to measure: give --batch or --prefill sizes");
  for (int32_t b : options.batches)
    if (b < 1)
      return fail("--batch sizes must be at least 1");
  for (int32_t p : options.prefills)
    if (p < 1)
      return fail("--prefill lengths must be at least 1");
  if (options.promptTokens < 1 || options.decodeTokens < 1)
    return fail("--prompt-tokens and --decode-tokens must be at least 1");
  if (options.repeat < 1 || options.warmup < 0)
    return fail("--repeat must be at least 1 and --warmup at least 0");

  std::string error;
  std::unique_ptr<optrt::artifact::Artifact> artifact =
      optrt::artifact::Artifact::open(options.path, error);
  if (!artifact)
    return fail(error);
  const optrt::fb::KVCacheLayout *kv = artifact->kvCache();
  if (!kv || kv->block_size() == 0)
    return fail("the artifact has no KV cache layout");
  int64_t maxContext = artifact->model().max_position_embeddings();
  int32_t decodeContext = options.promptTokens + options.decodeTokens;
  if (!options.batches.empty() && decodeContext > maxContext)
    return fail("--prompt-tokens + --decode-tokens (" +
                std::to_string(decodeContext) +
                ") exceeds the model's maximum context of " +
                std::to_string(maxContext));

  // Blocks for the largest run: the biggest batch at full context, or the
  // longest prefill.
  auto blocksFor = [&](int64_t tokens) {
    return (tokens + kv->block_size() - 1) / kv->block_size();
  };
  int64_t numBlocks = 1;
  for (int32_t b : options.batches)
    if (b <= int64_t(artifact->plan().max_tokens_per_step())) // else skipped
      numBlocks = std::max(numBlocks, b * blocksFor(decodeContext));
  for (int32_t p : options.prefills)
    numBlocks =
        std::max(numBlocks, blocksFor(std::min<int64_t>(p, maxContext)));
  if (numBlocks > INT32_MAX)
    return fail("the KV cache for these sizes has too many blocks");
  optrt::ExecutorOptions executorOptions;
  executorOptions.numBlocks = int32_t(numBlocks);
  executorOptions.numThreads = options.threads;
  // As serving would size it; runs that do not fit are skipped.
  if (options.gpuMemoryUtilizationOption->count() &&
      optrt::isGpuArtifact(*artifact)) {
    executorOptions.numBlocks = 0;
    executorOptions.gpuMemoryUtilization = options.gpuMemoryUtilization;
  }
  executorOptions.randomSeed = options.seed;
  std::unique_ptr<optrt::ModelExecutor> executor =
      optrt::createExecutor(*artifact, executorOptions, error);
  if (!executor)
    return fail(error);
  const optrt::ExecutorLimits &limits = executor->limits();

  optrt::DeviceCeilings ceilings = executor->measureCeilings();
  ModelCost cost = modelCost(*artifact);
  StepDriver driver(*executor, options.seed + 1);

  std::vector<DecodeResult> decodes;
  for (int32_t batch : options.batches) {
    DecodeResult result;
    result.batch = batch;
    // Mean bytes of a decode step: weights once (of an untied embedding
    // table, only the batch's rows), plus every sequence's KV cache at its
    // average context over the timed steps.
    double meanContext =
        options.promptTokens + 0.5 * (options.decodeTokens + 1);
    double stepBytes = double(cost.weightBytes - cost.embeddingBytes) +
                       double(batch) * cost.embeddingRowBytes +
                       double(batch) * meanContext * cost.kvBytesPerToken;
    if (ceilings.copyBytesPerSecond > 0)
      result.rooflineTokensPerSecond =
          batch * ceilings.copyBytesPerSecond / stepBytes;
    if (batch > limits.maxTokensPerStep) {
      result.skipped = "more than the " +
                       std::to_string(limits.maxTokensPerStep) +
                       " tokens a step may carry";
      decodes.push_back(result);
      continue;
    }
    std::vector<double> times;
    for (int32_t run = 0; run < options.warmup + options.repeat; ++run) {
      if (!driver.reset(batch, decodeContext))
        return fail("the KV cache is too small for batch " +
                    std::to_string(batch));
      if (!driver.advance(options.promptTokens, error))
        return fail(error);
      Clock::time_point start = Clock::now();
      for (int32_t step = 0; step < options.decodeTokens; ++step)
        if (!driver.advance(1, error))
          return fail(error);
      if (run >= options.warmup)
        times.push_back(secondsSince(start));
    }
    double seconds = median(times);
    result.tokensPerSecond =
        seconds > 0 ? double(batch) * options.decodeTokens / seconds : 0;
    result.msPerStep = 1e3 * seconds / options.decodeTokens;
    decodes.push_back(result);
  }

  std::vector<PrefillResult> prefills;
  for (int32_t tokens : options.prefills) {
    PrefillResult result;
    result.tokens = tokens;
    double flops = 2.0 * double(cost.linearParams) * tokens +
                   4.0 * cost.numLayers * cost.numHeads * cost.headDim *
                       double(tokens) * tokens / 2;
    if (ceilings.matmulFlopsPerSecond > 0)
      result.rooflineTokensPerSecond =
          tokens * ceilings.matmulFlopsPerSecond / flops;
    if (tokens > maxContext) {
      result.skipped = "longer than the model's " + std::to_string(maxContext) +
                       " positions";
      prefills.push_back(result);
      continue;
    }
    std::vector<double> times;
    for (int32_t run = 0; run < options.warmup + options.repeat; ++run) {
      if (!driver.reset(1, tokens))
        return fail("the KV cache is too small for a prefill of " +
                    std::to_string(tokens));
      Clock::time_point start = Clock::now();
      if (!driver.advance(tokens, error))
        return fail(error);
      if (run >= options.warmup)
        times.push_back(secondsSince(start));
    }
    double seconds = median(times);
    result.tokensPerSecond = seconds > 0 ? tokens / seconds : 0;
    prefills.push_back(result);
  }

  std::string device =
      ceilings.deviceName.empty() ? "unknown device" : ceilings.deviceName;
  if (options.format == "json") {
    nlohmann::json out;
    out["artifact"] = options.path;
    out["device"] = device;
    out["copy_bytes_per_second"] = ceilings.copyBytesPerSecond;
    out["matmul_flops_per_second"] = ceilings.matmulFlopsPerSecond;
    out["random_weights"] = artifact->hasVirtualWeights();
    out["weight_bytes"] = cost.weightBytes;
    out["unread_embedding_bytes"] = cost.embeddingBytes;
    out["kv_bytes_per_token"] = cost.kvBytesPerToken;
    out["prompt_tokens"] = options.promptTokens;
    out["decode_tokens"] = options.decodeTokens;
    out["warmup"] = options.warmup;
    out["repeat"] = options.repeat;
    out["decode"] = nlohmann::json::array();
    for (const DecodeResult &r : decodes) {
      nlohmann::json j = {{"batch", r.batch}};
      if (!r.skipped.empty()) {
        j["skipped"] = r.skipped;
      } else {
        j["tokens_per_second"] = r.tokensPerSecond;
        j["ms_per_step"] = r.msPerStep;
      }
      j["roofline_tokens_per_second"] = r.rooflineTokensPerSecond;
      out["decode"].push_back(j);
    }
    out["prefill"] = nlohmann::json::array();
    for (const PrefillResult &r : prefills) {
      nlohmann::json j = {{"tokens", r.tokens}};
      if (!r.skipped.empty())
        j["skipped"] = r.skipped;
      else
        j["tokens_per_second"] = r.tokensPerSecond;
      j["roofline_tokens_per_second"] = r.rooflineTokensPerSecond;
      out["prefill"].push_back(j);
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }

  char line[256];
  std::cout << "device: " << device << "\n";
  std::snprintf(line, sizeof(line),
                "ceilings: copy %.1f GB/s (read + write), matmul %.1f "
                "TFLOP/s (measured)\n",
                ceilings.copyBytesPerSecond / 1e9,
                ceilings.matmulFlopsPerSecond / 1e12);
  std::cout << line;
  std::snprintf(line, sizeof(line),
                "model: %.3f GB of weights%s, %.1f KiB of KV cache per token\n",
                cost.weightBytes / 1e9,
                artifact->hasVirtualWeights() ? " (random)" : "",
                cost.kvBytesPerToken / 1024.0);
  std::cout << line;
  if (!decodes.empty()) {
    std::cout << "decode: prompt " << options.promptTokens << ", "
              << options.decodeTokens << " new tokens, median of "
              << options.repeat << " after " << options.warmup << " warm-up\n";
    std::snprintf(line, sizeof(line), "%8s %12s %10s %12s %9s\n", "batch",
                  "tokens/s", "ms/step", "roofline", "of roof");
    std::cout << line;
    for (const DecodeResult &r : decodes) {
      if (!r.skipped.empty()) {
        std::snprintf(line, sizeof(line), "%8d  skipped: %s\n", r.batch,
                      r.skipped.c_str());
        std::cout << line;
        continue;
      }
      std::snprintf(
          line, sizeof(line), "%8d %12s %10.3f %12s %9s\n", r.batch,
          formatRate(r.tokensPerSecond).c_str(), r.msPerStep,
          formatRate(r.rooflineTokensPerSecond).c_str(),
          percent(r.tokensPerSecond, r.rooflineTokensPerSecond).c_str());
      std::cout << line;
    }
  }
  if (!prefills.empty()) {
    std::cout << "prefill: one sequence, median of " << options.repeat
              << " after " << options.warmup << " warm-up\n";
    std::snprintf(line, sizeof(line), "%8s %12s %10s %12s %9s\n", "tokens",
                  "tokens/s", "ms", "roofline", "of roof");
    std::cout << line;
    for (const PrefillResult &r : prefills) {
      if (!r.skipped.empty()) {
        std::snprintf(line, sizeof(line), "%8d  skipped: %s\n", r.tokens,
                      r.skipped.c_str());
        std::cout << line;
        continue;
      }
      std::snprintf(
          line, sizeof(line), "%8d %12s %10.3f %12s %9s\n", r.tokens,
          formatRate(r.tokensPerSecond).c_str(),
          r.tokensPerSecond > 0 ? 1e3 * r.tokens / r.tokensPerSecond : 0.0,
          formatRate(r.rooflineTokensPerSecond).c_str(),
          percent(r.tokensPerSecond, r.rooflineTokensPerSecond).c_str());
      std::cout << line;
    }
  }
  return 0;
}
} // namespace

void addBenchCommand(CLI::App &app, int &exitCode) {
  auto options = std::make_shared<BenchOptions>();
  CLI::App *bench = app.add_subcommand(
      "bench", "Measure decode and prefill throughput against the device's "
               "roofline (random tokens; no tokenizer needed)");
  bench->add_option("artifact", options->path, "Artifact (.optpkg)")
      ->required();
  bench
      ->add_option("--batch", options->batches,
                   "Decode batch sizes (comma-separated)")
      ->delimiter(',');
  bench->add_option("--prompt-tokens", options->promptTokens,
                    "Prompt length of each sequence before decoding");
  bench->add_option("--decode-tokens", options->decodeTokens,
                    "Decode steps timed per run");
  bench
      ->add_option("--prefill", options->prefills,
                   "Prefill lengths of one sequence (comma-separated)")
      ->delimiter(',');
  bench->add_option("--warmup", options->warmup, "Untimed runs first");
  bench->add_option("--repeat", options->repeat,
                    "Timed runs; the median is reported");
  bench->add_option("--format", options->format, "text or json")
      ->check(CLI::IsMember({"text", "json"}));
  bench->add_option("--seed", options->seed,
                    "Seed of the random tokens and random weights");
  bench->add_option("--threads", options->threads,
                    "Host threads for the CPU executor (0: all cores)");
  options->gpuMemoryUtilizationOption =
      addGpuMemoryUtilizationOption(bench, options->gpuMemoryUtilization);
  bench->callback([options, &exitCode] {
    exitCode =
        reportInvalidGpuMemoryUtilization(options->gpuMemoryUtilization);
    if (exitCode == 0)
      exitCode = runBench(*options);
  });
}

} // namespace optrun
