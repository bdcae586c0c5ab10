//===- CudaExecutor.cpp - the plan on an NVIDIA GPU -----------------------===//
//
// Runs an artifact's plan on the GPU: Gemm commands through cuBLASLt (bf16
// in, f32 accumulate, bf16 out), KernelCall commands launch the artifact's
// generated kernels (cubin for the device's chip, else PTX through the
// driver's JIT). Weights are uploaded once, activations and the bf16 KV
// cache live in device memory, a step's inputs go up through pinned staging
// and the logits come back as bf16, widened to f32 on the host (as
// transformers computes lm_head in bf16 and then calls .float()).
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/ModelExecutor.h"

#include "runtime/artifact/Artifact.h"
#include "runtime/cuda/CublasLtGemm.h"
#include "runtime/cuda/CudaDevice.h"
#include "runtime/cuda/CudaGraph.h"
#include "runtime/cuda/CudaModule.h"
#include "runtime/exec/PlanAbi.h"
#include "runtime/exec/PlanDecode.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

namespace optrt {
namespace {
namespace pa = planabi;
using namespace cuda;

class CudaExecutor : public ModelExecutor {
public:
  explicit CudaExecutor(const Artifact &artifact) : artifact(artifact) {}
  ~CudaExecutor() override { printProfile(); }

  bool bindToCurrentThread(std::string &error) override {
    return device->makeCurrent(error);
  }

  bool load(const ExecutorOptions &options, std::string &error);
  const ExecutorLimits &limits() const override { return lims; }
  bool step(const StepBatch &batch, float *logits,
            std::string &error) override;
  bool stepGreedy(const StepBatch &batch, int32_t *tokens,
                  std::string &error) override;
  bool copyBlocks(const std::vector<BlockCopy> &copies,
                  std::string &error) override;
  DeviceCeilings measureCeilings() override;

private:
  /// Uploads the weights of a --random-weights artifact: real ones copied,
  /// virtual ones generated on the host from `seed` in chunks and copied up
  /// through two pinned buffers (generation overlaps the previous copy).
  /// Not product compute, so no generated kernel is needed for it.
  bool uploadRandomWeights(uint64_t seed, std::string &error);
  /// The kernel image for this device: its chip's cubin, else the PTX.
  const fb::Kernel *chooseImage(std::string &error) const;
  /// Chooses cuBLASLt's algorithm of every bucket of row counts the plan's
  /// gemms send to it (CublasLtGemm::prepare), on their real operands.
  bool prepareGemms(std::string &error);
  /// Sizes (ExecutorOptions: blocks, bytes, or the GPU memory utilization)
  /// and allocates the KV cache; sets lims.numBlocks.
  bool allocateKvCache(const ExecutorOptions &options, std::string &error);
  /// Enqueues every command of the plan on `stream` for the current
  /// scalars.
  bool enqueue(CUstream stream, std::string &error);
  /// Validates `batch`, uploads its inputs and runs the plan (a graph for
  /// decode steps), leaving the results on the device.
  bool run(const StepBatch &batch, std::string &error);

  const Artifact &artifact;
  ExecutorLimits lims;
  std::unique_ptr<CudaDevice> device;
  CudaStream stream;
  std::unique_ptr<CublasLtGemm> gemm;
  std::unique_ptr<CudaModule> module;
  std::vector<CudaKernel> kernels; // per command; unused for gemms
  /// Per command: the GEMV kernels of its variants (gemms only).
  std::vector<std::vector<CudaKernel>> gemvKernels;
  DeviceBuffer weights;
  /// Each weight's offset in `weights` (the blob's, or our own layout when
  /// the artifact has virtual weights).
  std::vector<uint64_t> weightOffsets;
  std::vector<DeviceBuffer> buffers;
  std::vector<DeviceBuffer> kvCache; // per layer: keys, values
  uint64_t kvBlockBytes = 0;
  std::vector<DecodedCommand> commands;
  int64_t scalars[pa::NumRuntimeScalars] = {};
  int64_t maxBlocksPerSeq = 0;

  /// Host staging of the step's inputs, in the plan's buffer order.
  struct Staged {
    std::string_view name;
    PinnedBuffer host;
    CUdeviceptr device = 0;
  };
  std::vector<Staged> inputs;
  PinnedBuffer logitsHost;
  CUdeviceptr logitsDevice = 0;
  /// The plan's greedy_tokens buffer (0 in plans without one).
  PinnedBuffer greedyHost;
  CUdeviceptr greedyDevice = 0;
  /// Decode steps replay a graph captured once per token count: a step is
  /// then one launch instead of one per command.
  bool useGraphs = true;
  /// Generated kernels go out as programmatic dependent launches.
  bool programmatic = false;
  /// OPTMLIR_CUDA_PROFILE=1: every step runs command by command (no graphs,
  /// no early launches) with an event before each, and the executor prints
  /// the time per command name to stderr when it is destroyed. For finding
  /// where a step's time goes on machines without a profiler.
  bool profiling = false;
  std::vector<CudaEvent> profileEvents;
  std::map<std::string, std::pair<double, int64_t>> profile; // ms, count
  /// OPTMLIR_CUDA_SKIP=NAME,NAME...: commands whose name contains one of
  /// these are not launched. The results are then wrong; what a step's time
  /// loses tells what those commands cost inside graphs and early launches,
  /// where no per-command timing is possible (METHOD.md: leave one stage
  /// out). Measurement only.
  std::vector<bool> skipped; // per command
  void printProfile() const;
  CudaGraphCache graphs;
};

/// A Gemm command's problem (PlanAbi.h: A, B, C and an optional bias) for
/// the runtime scalars `scalars`.
GemmProblem gemmProblem(const DecodedCommand &command,
                        const int64_t *scalars) {
  const Operand &a = command.operands[0], &b = command.operands[1],
                &c = command.operands[2];
  GemmProblem problem;
  problem.m = a.sizes[0].resolve(scalars);
  problem.k = a.sizes[1].resolve(scalars);
  problem.n = b.sizes[0].resolve(scalars);
  problem.lda = a.strides[0].resolve(scalars);
  problem.ldb = b.strides[0].resolve(scalars);
  problem.ldc = c.strides[0].resolve(scalars);
  problem.a = a.address;
  problem.b = b.address;
  problem.c = c.address;
  if (command.operands.size() == 4)
    problem.bias = command.operands[3].address;
  return problem;
}

/// 90 for "sm_90a", 0 when `target` names no chip.
int chipNumber(std::string_view target) {
  if (target.substr(0, 3) != "sm_")
    return 0;
  int number = 0;
  for (char c : target.substr(3)) {
    if (c < '0' || c > '9')
      break;
    number = number * 10 + (c - '0');
  }
  return number;
}

const fb::Kernel *CudaExecutor::chooseImage(std::string &error) const {
  const DeviceInfo &info = device->info();
  std::string chip = "sm_" + std::to_string(info.computeMajor) +
                     std::to_string(info.computeMinor);
  const fb::Kernel *ptx = nullptr;
  for (size_t i = 0; i < artifact.numKernels(); ++i) {
    const fb::Kernel &kernel = artifact.kernel(i);
    std::string target = kernel.target()->str();
    if (kernel.format() == fb::KernelFormat::Cubin &&
        (target == chip || target == chip + "a"))
      return &kernel;
    if (kernel.format() == fb::KernelFormat::PTX && !ptx)
      ptx = &kernel;
  }
  if (!ptx)
    error = "the artifact has no GPU kernels (compile it with --target=sm_90a "
            "or sm_80)";
  return ptx;
}

bool CudaExecutor::load(const ExecutorOptions &options, std::string &error) {
  const fb::ModelInfo &model = artifact.model();
  const fb::KVCacheLayout *kv = artifact.kvCache();
  const fb::Plan &plan = artifact.plan();
  if (!kv || kv->dtype() != fb::DType::BF16 ||
      model.activation_dtype() != fb::DType::BF16)
    return error = "the artifact is not compiled for a GPU target (bf16 "
                   "activations and KV cache)",
           false;
  if (options.gemmInputObserver)
    return error = "calibration observes the gemms of the CPU executor only "
                   "(compile the model for --target=cpu)",
           false;
  useGraphs = options.useCudaGraphs;
  if (!(device = CudaDevice::create(0, error)) || !stream.create(error) ||
      !(gemm = CublasLtGemm::create(stream.handle(), error)))
    return false;
  const fb::Kernel *image = chooseImage(error);
  if (!image)
    return false;
  // Kernels generated for sm_90 and later wait for their predecessor
  // themselves (griddepcontrol): they may be launched early.
  // OPTMLIR_CUDA_PDL=0 turns that off (to measure what it buys).
  const char *pdl = std::getenv("OPTMLIR_CUDA_PDL");
  const char *profileEnv = std::getenv("OPTMLIR_CUDA_PROFILE");
  profiling = profileEnv && std::string_view(profileEnv) == "1";
  if (profiling)
    useGraphs = false, pdl = "0";
  programmatic = device->info().computeMajor >= 9 &&
                 chipNumber(image->target()->string_view()) >= 90 &&
                 !(pdl && std::string_view(pdl) == "0");
  module = CudaModule::load(
      std::string_view(reinterpret_cast<const char *>(image->data()->data()),
                       image->data()->size()),
      error);
  if (!module)
    return false;

  lims.vocabSize = model.vocab_size();
  lims.maxTokensPerStep = plan.max_tokens_per_step();
  lims.maxContextLength = model.max_position_embeddings();
  lims.blockSize = kv->block_size();
  maxBlocksPerSeq =
      (lims.maxContextLength + lims.blockSize - 1) / lims.blockSize;
  kvBlockBytes = uint64_t(kv->block_size()) * kv->num_kv_heads() *
                 artifact::kvCacheRowBytes(kv->dtype(), kv->head_dim());
  // The KV cache is sized and allocated last (below): from what the memory
  // budget leaves once everything else is on the device.

  if (artifact.hasVirtualWeights()) {
    if (!uploadRandomWeights(options.randomSeed, error))
      return false;
  } else {
    for (size_t i = 0; i < artifact.numWeights(); ++i)
      weightOffsets.push_back(artifact.weight(i).offset());
    if (!weights.create(std::max<uint64_t>(artifact.blobSize(), 1), error) ||
        !stream.copyToDevice(weights.ptr(), artifact.blobData(),
                             artifact.blobSize(), error))
      return false;
  }
  for (const fb::Buffer *buffer : *plan.buffers()) {
    buffers.emplace_back();
    // Zeroed: kernels may keep state across steps in a buffer (the split
    // attention's counters start at zero and are left at zero).
    if (!buffers.back().create(std::max<uint64_t>(buffer->size_bytes(), 1),
                               error) ||
        !stream.memset(buffers.back().ptr(), 0, buffers.back().size(), error))
      return false;
  }
  for (std::string_view name :
       {pa::kInputIds, pa::kPositions, pa::kSlotMapping, pa::kQueryStart,
        pa::kContextLen, pa::kBlockTable, pa::kLogitRows}) {
    Staged staged;
    staged.name = name;
    for (size_t i = 0; i < buffers.size(); ++i)
      if (plan.buffers()->Get(i)->name()->string_view() == name) {
        staged.device = buffers[i].ptr();
        if (!staged.host.create(buffers[i].size(), error))
          return false;
      }
    if (!staged.device)
      return error = "the plan has no '" + std::string(name) + "' buffer",
             false;
    inputs.push_back(std::move(staged));
  }
  for (size_t i = 0; i < buffers.size(); ++i)
    if (plan.buffers()->Get(i)->name()->string_view() == pa::kLogits) {
      logitsDevice = buffers[i].ptr();
      if (!logitsHost.create(buffers[i].size(), error))
        return false;
    }
  if (!logitsDevice)
    return error = "the plan has no 'logits' buffer", false;
  for (size_t i = 0; i < buffers.size(); ++i)
    if (plan.buffers()->Get(i)->name()->string_view() == pa::kGreedyTokens) {
      greedyDevice = buffers[i].ptr();
      if (!greedyHost.create(buffers[i].size(), error))
        return false;
    }

  auto baseAddress = [&](const fb::Arg &base, std::string &error) -> uint64_t {
    switch (base.kind()) {
    case fb::ArgKind::Buffer:
      return buffers[base.index()].ptr() + base.offset();
    case fb::ArgKind::Weight:
      return weights.ptr() + weightOffsets[base.index()] + base.offset();
    case fb::ArgKind::KVCache:
      if (base.offset() > pa::Values) {
        error = "a KV cache part other than keys and values";
        return 0;
      }
      // Before the cache exists (the first decode, for the gemms): a
      // placeholder, as no gemm reads the cache.
      return kvCache.empty() ? 1
                             : kvCache[2 * base.index() + base.offset()].ptr();
    default:
      error = "not an array";
      return 0;
    }
  };
  // cuBLASLt's algorithms are chosen (timed) now, so that neither steps nor
  // graph captures pay for it, and before the KV cache is sized, so that
  // what cuBLASLt loads counts as in use.
  if (!decodePlan(plan, /*withLaunch=*/true, baseAddress, commands, error))
    return false;
  for (const DecodedCommand &command : commands)
    if (command.kind == fb::CommandKind::QuantizedGemm)
      return error = "command '" + command.name +
                     "': quantized matmuls run on the CPU executor so far",
             false;
  if (!prepareGemms(error) || !allocateKvCache(options, error))
    return false;
  commands.clear();
  if (!decodePlan(plan, /*withLaunch=*/true, baseAddress, commands, error))
    return false;
  skipped.assign(commands.size(), false);
  if (const char *skip = std::getenv("OPTMLIR_CUDA_SKIP")) {
    std::string_view names(skip);
    while (!names.empty()) {
      size_t comma = names.find(',');
      std::string_view name = names.substr(0, comma);
      for (size_t i = 0; i < commands.size(); ++i)
        if (!name.empty() && commands[i].name.find(name) != std::string::npos)
          skipped[i] = true;
      names = comma == std::string_view::npos ? "" : names.substr(comma + 1);
    }
    std::fprintf(stderr,
                 "OPTMLIR_CUDA_SKIP: %zu of %zu commands not launched "
                 "(timing only, results wrong)\n",
                 size_t(std::count(skipped.begin(), skipped.end(), true)),
                 commands.size());
  }
  if (profiling) {
    profileEvents.resize(commands.size() + 1);
    for (CudaEvent &event : profileEvents)
      if (!event.create(/*timing=*/true, error))
        return false;
  }
  const auto *entries = image->entry_points();
  for (const DecodedCommand &command : commands) {
    kernels.emplace_back();
    gemvKernels.emplace_back();
    for (const GemvVariant &variant : command.gemvVariants) {
      gemvKernels.back().emplace_back();
      if (!entries || variant.entry >= entries->size())
        return error = "command '" + command.name + "' names no GEMV entry",
               false;
      if (!module->getKernel(entries->Get(variant.entry)->string_view(),
                             gemvKernels.back().back(), error))
        return false;
    }
    if (command.kind != fb::CommandKind::KernelCall)
      continue;
    if (!entries || command.entry >= entries->size())
      return error = "command '" + command.name + "' names no entry point",
             false;
    if (!module->getKernel(entries->Get(command.entry)->string_view(),
                           kernels.back(), error))
      return false;
  }
  return stream.synchronize(error);
}

bool CudaExecutor::prepareGemms(std::string &error) {
  int64_t maxRows = lims.maxTokensPerStep;
  for (const DecodedCommand &command : commands) {
    if (command.kind != fb::CommandKind::Gemm)
      continue;
    // Rows up to the largest GEMV variant's bound go to the GEMV kernels.
    int64_t gemvRows =
        command.gemvVariants.empty() ? 0 : command.gemvVariants.back().maxTokens;
    for (int64_t bucket = 1; bucket < 2 * maxRows; bucket *= 2) {
      int64_t m = std::min(bucket, maxRows);
      if (m <= gemvRows || !command.runsAt(m))
        continue;
      // As enqueue() builds it, for m rows (num_tokens or num_logit_rows).
      int64_t rows[pa::NumRuntimeScalars] = {};
      rows[pa::NumTokens] = rows[pa::NumLogitRows] = m;
      GemmProblem problem = gemmProblem(command, rows);
      // A gemm over a fixed number of rows has one bucket.
      bool fixedRows = !command.operands[0].sizes[0].isScalar;
      if ((!fixedRows || problem.m > gemvRows) &&
          !gemm->prepare(problem, error))
        return error = "command '" + command.name + "': " + error, false;
      if (fixedRows)
        break;
    }
  }
  return stream.synchronize(error);
}

bool CudaExecutor::allocateKvCache(const ExecutorOptions &options,
                                   std::string &error) {
  const fb::KVCacheLayout &kv = *artifact.kvCache();
  uint64_t perBlock = kvBlockBytes * 2 * kv.num_layers();
  if (options.numBlocks > 0) {
    lims.numBlocks = options.numBlocks;
  } else if (options.kvCacheBytes > 0 || options.gpuMemoryUtilization == 0) {
    uint64_t bytes =
        options.kvCacheBytes ? options.kvCacheBytes : kDefaultKvCacheBytes;
    lims.numBlocks = int32_t(std::min<uint64_t>(
        bytes / std::max<uint64_t>(perBlock, 1), INT32_MAX / lims.blockSize));
  } else {
    KvCacheBudget budget;
    budget.utilization = options.gpuMemoryUtilization;
    if (!device->memoryInfo(budget.freeBytes, budget.totalBytes, error))
      return false;
    budget.bytesPerBlock = perBlock;
    budget.blockSize = lims.blockSize;
    // cuMemAlloc rounds each of the cache's buffers (keys and values per
    // layer) up to its 2 MiB granularity.
    budget.reserveBytes = 2ull * kv.num_layers() * (2ull << 20);
    budget.minBlocks = maxBlocksPerSeq;
    budget.maxSequenceTokens = lims.maxContextLength;
    if (!(lims.numBlocks = kvBlocksForMemory(budget, error)))
      return false;
  }
  if (lims.numBlocks < 1)
    return error = "the KV cache holds no block", false;
  for (uint32_t part = 0; part < 2 * kv.num_layers(); ++part) {
    kvCache.emplace_back();
    if (!kvCache.back().create(kvBlockBytes * lims.numBlocks, error))
      return error = "the KV cache (" + std::to_string(lims.numBlocks) +
                     " blocks): " + error,
             false;
  }
  return true;
}

bool CudaExecutor::run(const StepBatch &batch, std::string &error) {
  error = validateStepBatch(batch, lims);
  if (!error.empty())
    return false;
  auto host = [&](size_t i) { return inputs[i].host.as<int32_t>(); };
  fillStepInputs(batch, lims, maxBlocksPerSeq,
                 {host(0), host(1), host(2), host(3), host(4), host(5),
                  host(6)},
                 scalars);
  int64_t numTokens = batch.tokens.size(), numSeqs = batch.sequences.size();
  int64_t numRows = batch.logitRows.size();
  uint64_t bytes[] = {uint64_t(numTokens) * 4, uint64_t(numTokens) * 4,
                      uint64_t(numTokens) * 4, uint64_t(numSeqs + 1) * 4,
                      uint64_t(numSeqs) * 4,
                      uint64_t(numSeqs * maxBlocksPerSeq) * 4,
                      uint64_t(numRows) * 4};
  for (size_t i = 0; i < inputs.size(); ++i)
    if (bytes[i] && !stream.copyToDevice(inputs[i].device, inputs[i].host.data(),
                                         bytes[i], error))
      return false;

  // A step of decode tokens only replays its token count's graph.
  bool decodeOnly = std::all_of(
      batch.sequences.begin(), batch.sequences.end(),
      [](const SequenceSlice &seq) { return seq.numQueryTokens == 1; });
  GraphRecorder record = [&](CUstream capture, std::string &error) {
    return enqueue(capture, error);
  };
  if (useGraphs && decodeOnly) {
    uint64_t signature = uint64_t(numTokens) | uint64_t(numRows) << 32;
    if (!graphs.run(numTokens, signature, stream.handle(), record, error))
      return false;
  } else if (!enqueue(stream.handle(), error)) {
    return false;
  }
  if (profiling) {
    if (!profileEvents.back().synchronize(error))
      return false;
    for (size_t i = 0; i < commands.size(); ++i) {
      float ms = 0;
      if (!CudaEvent::elapsedMs(profileEvents[i], profileEvents[i + 1], ms,
                                error))
        return false;
      // Gemms are told apart by their weight's shape.
      const DecodedCommand &command = commands[i];
      std::string key = command.name;
      if (command.kind == fb::CommandKind::Gemm &&
          command.operands.size() > 1 &&
          command.operands[1].sizes.size() == 2)
        key += " " + std::to_string(command.operands[1].sizes[0].value) +
               "x" + std::to_string(command.operands[1].sizes[1].value);
      auto &[total, count] = profile[key];
      total += ms;
      ++count;
    }
  }
  return true;
}

void CudaExecutor::printProfile() const {
  if (!profiling || profile.empty())
    return;
  std::vector<std::pair<double, std::string>> rows;
  double all = 0;
  for (const auto &[name, entry] : profile) {
    rows.push_back({entry.first, name});
    all += entry.first;
  }
  std::sort(rows.rbegin(), rows.rend());
  std::fprintf(stderr, "profile (OPTMLIR_CUDA_PROFILE): %.3f ms in all\n", all);
  for (const auto &[ms, name] : rows)
    std::fprintf(stderr, "  %8.3f ms %5.1f%% %8lld calls %8.2f us/call  %s\n",
                 ms, 100 * ms / all, (long long)profile.at(name).second,
                 1000 * ms / profile.at(name).second, name.c_str());
}

bool CudaExecutor::stepGreedy(const StepBatch &batch, int32_t *tokens,
                              std::string &error) {
  if (!greedyDevice)
    return ModelExecutor::stepGreedy(batch, tokens, error);
  if (!run(batch, error))
    return false;
  uint64_t bytes = batch.logitRows.size() * 4;
  if (!stream.copyToHost(greedyHost.data(), greedyDevice, bytes, error) ||
      !stream.synchronize(error))
    return false;
  std::memcpy(tokens, greedyHost.data(), bytes);
  return true;
}

bool CudaExecutor::step(const StepBatch &batch, float *logits,
                        std::string &error) {
  if (!run(batch, error))
    return false;
  int64_t numRows = batch.logitRows.size();
  uint64_t logitBytes = uint64_t(numRows) * lims.vocabSize * 2;
  if (!stream.copyToHost(logitsHost.data(), logitsDevice, logitBytes, error) ||
      !stream.synchronize(error))
    return false;
  const uint16_t *bf16 = logitsHost.as<uint16_t>();
  for (uint64_t i = 0; i < uint64_t(numRows) * lims.vocabSize; ++i) {
    uint32_t bits = uint32_t(bf16[i]) << 16;
    std::memcpy(&logits[i], &bits, 4);
  }
  return true;
}

/// f32 to bf16, rounding to nearest even (the values here are finite).
uint16_t toBF16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  bits += 0x7fff + ((bits >> 16) & 1);
  return uint16_t(bits >> 16);
}

/// Fills `out[0, count)` with elements [first, first + count) of virtual
/// weight `weight` as bf16, on all cores.
void fillRandomBF16(uint64_t seed, uint64_t weight, bool isNorm,
                    uint64_t first, uint64_t count, uint16_t *out) {
  fillRandomWeight(seed, weight, isNorm, first, count, out, toBF16);
}

bool CudaExecutor::uploadRandomWeights(uint64_t seed, std::string &error) {
  uint64_t total = 0;
  for (size_t i = 0; i < artifact.numWeights(); ++i) {
    const fb::WeightEntry &w = artifact.weight(i);
    if (w.no_data() && w.dtype() != fb::DType::BF16)
      return error = "virtual weight '" + w.name()->str() +
                     "' is not bf16: the CUDA executor fills only bf16 "
                     "weights",
             false;
    weightOffsets.push_back(total);
    total += (w.size() + 255) / 256 * 256;
  }
  if (!weights.create(std::max<uint64_t>(total, 1), error))
    return false;
  constexpr uint64_t kChunkElements = 16ull << 20; // 32 MiB of bf16
  PinnedBuffer staging[2];
  for (PinnedBuffer &buffer : staging)
    if (!buffer.create(kChunkElements * 2, error))
      return false;
  int next = 0;
  for (size_t i = 0; i < artifact.numWeights(); ++i) {
    const fb::WeightEntry &w = artifact.weight(i);
    CUdeviceptr dst = weights.ptr() + weightOffsets[i];
    if (!w.no_data()) {
      if (!stream.copyToDevice(dst, artifact.weightData(i), w.size(), error))
        return false;
      continue;
    }
    bool isNorm = isNormWeight(w.name()->string_view(),
                               w.shape() ? w.shape()->size() : 0);
    uint64_t count = w.size() / 2;
    for (uint64_t first = 0; first < count; first += kChunkElements) {
      uint64_t n = std::min(kChunkElements, count - first);
      uint16_t *host = staging[next].as<uint16_t>();
      fillRandomBF16(seed, i, isNorm, first, n, host);
      // The copy from this buffer two chunks ago finished at the previous
      // synchronize; the one from the other buffer overlaps the fill above.
      if (!stream.synchronize(error) ||
          !stream.copyToDevice(dst + first * 2, host, n * 2, error))
        return false;
      next ^= 1;
    }
  }
  return stream.synchronize(error);
}

DeviceCeilings CudaExecutor::measureCeilings() {
  DeviceCeilings ceilings;
  ceilings.deviceName = device->info().name;
  std::string error;
  CudaEvent start, end;
  if (!start.create(true, error) || !end.create(true, error))
    return ceilings;
  // Times `run` `repeats` times after one warm-up; the median in seconds.
  auto timeMedian = [&](int repeats, auto run) -> double {
    if (!run())
      return 0;
    std::vector<double> times;
    for (int r = 0; r < repeats; ++r) {
      float ms = 0;
      if (!start.record(stream, error) || !run() ||
          !end.record(stream, error) || !end.synchronize(error) ||
          !CudaEvent::elapsedMs(start, end, ms, error))
        return 0;
      times.push_back(ms * 1e-3);
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
  };

  // Copy: 1 GiB device to device, counted as bytes read plus written.
  constexpr uint64_t kCopyBytes = 1ull << 30;
  {
    DeviceBuffer src, dst;
    if (src.create(kCopyBytes, error) && dst.create(kCopyBytes, error) &&
        stream.memset(src.ptr(), 1, kCopyBytes, error)) {
      double s = timeMedian(10, [&] {
        return stream.copyOnDevice(dst.ptr(), src.ptr(), kCopyBytes, error);
      });
      if (s > 0)
        ceilings.copyBytesPerSecond = 2.0 * kCopyBytes / s;
    }
  }
  // Matmul: an 8192^3 bf16 GEMM through cuBLASLt on random data (zeros can
  // run faster than real data).
  constexpr int64_t kN = 8192;
  constexpr uint64_t kBytes = uint64_t(kN) * kN * 2;
  DeviceBuffer a, b, c;
  PinnedBuffer host;
  if (!a.create(kBytes, error) || !b.create(kBytes, error) ||
      !c.create(kBytes, error) || !host.create(kBytes, error))
    return ceilings;
  fillRandomBF16(1, 0, false, 0, uint64_t(kN) * kN, host.as<uint16_t>());
  if (!stream.copyToDevice(a.ptr(), host.data(), kBytes, error) ||
      !stream.copyToDevice(b.ptr(), host.data(), kBytes, error) ||
      !stream.synchronize(error))
    return ceilings;
  GemmProblem problem;
  problem.m = problem.n = problem.k = kN;
  problem.a = a.ptr();
  problem.b = b.ptr();
  problem.c = c.ptr();
  double s = timeMedian(10, [&] { return gemm->run(problem, error); });
  if (s > 0)
    ceilings.matmulFlopsPerSecond = 2.0 * kN * kN * kN / s;
  return ceilings;
}

bool CudaExecutor::enqueue(CUstream cudaStream, std::string &error) {
  std::vector<uint64_t> pointers;
  std::vector<int32_t> values;
  std::vector<void *> args;
  for (size_t index = 0; index < commands.size(); ++index) {
    const DecodedCommand &command = commands[index];
    if (profiling && !profileEvents[index].record(stream, error))
      return false;
    if (!command.runsAt(scalars[pa::NumTokens]) || skipped[index])
      continue;
    if (command.kind == fb::CommandKind::Gemm) {
      // A bias goes to cuBLASLt's epilogue (such gemms have no GEMV variants).
      GemmProblem problem = gemmProblem(command, scalars);
      if (!problem.m)
        continue;
      size_t variant = 0;
      while (variant < command.gemvVariants.size() &&
             command.gemvVariants[variant].maxTokens < problem.m)
        ++variant;
      if (variant < command.gemvVariants.size()) {
        const Launch &launch = command.gemvVariants[variant].launch;
        uint64_t x = problem.a, w = problem.b, y = problem.c;
        int32_t tokens = int32_t(problem.m);
        std::vector<void *> gemvArgs = {&x, &w, &y, &tokens};
        LaunchConfig config;
        config.grid[0] = unsigned(launch.gridX(problem.m));
        config.grid[1] = unsigned(launch.gridY);
        config.block[0] = unsigned(launch.blockX);
        config.sharedBytes = unsigned(launch.sharedBytes);
        config.programmatic = programmatic;
        if (!launchKernel(gemvKernels[index][variant], config, cudaStream,
                          gemvArgs, error))
          return error = "command '" + command.name + "': " + error, false;
        continue;
      }
      if (!gemm->run(problem, error))
        return error = "command '" + command.name + "': " + error, false;
      continue;
    }
    const Launch &launch = command.launch;
    int64_t rows = launch.rows.resolve(scalars);
    int64_t gridX = launch.gridX(rows);
    if (gridX == 0)
      continue;
    // Parameter storage must not move while `args` points into it.
    pointers.assign(command.operands.size(), 0);
    values.assign(command.scalars.size(), 0);
    args.clear();
    for (size_t i = 0; i < command.operands.size(); ++i) {
      pointers[i] = command.operands[i].address;
      args.push_back(&pointers[i]);
    }
    for (size_t i = 0; i < command.scalars.size(); ++i) {
      values[i] = int32_t(command.scalars[i].resolve(scalars));
      args.push_back(&values[i]);
    }
    LaunchConfig config;
    config.grid[0] = unsigned(gridX);
    config.grid[1] = unsigned(launch.gridY);
    config.block[0] = unsigned(launch.blockX);
    config.sharedBytes = unsigned(launch.sharedBytes);
    config.programmatic = programmatic;
    if (!launchKernel(kernels[index], config, cudaStream, args, error))
      return error = "command '" + command.name + "': " + error, false;
  }
  if (profiling && !profileEvents.back().record(stream, error))
    return false;
  return true;
}

bool CudaExecutor::copyBlocks(const std::vector<BlockCopy> &copies,
                              std::string &error) {
  error = validateBlockCopies(copies, lims);
  if (!error.empty())
    return false;
  for (const BlockCopy &copy : copies)
    for (DeviceBuffer &part : kvCache)
      if (!stream.copyOnDevice(part.ptr() + copy.dst * kvBlockBytes,
                               part.ptr() + copy.src * kvBlockBytes,
                               kvBlockBytes, error))
        return false;
  return true;
}
} // namespace

std::unique_ptr<ModelExecutor>
createCudaExecutor(const Artifact &artifact, const ExecutorOptions &options,
                   std::string &error) {
  auto executor = std::make_unique<CudaExecutor>(artifact);
  if (!executor->load(options, error))
    return nullptr;
  return executor;
}

} // namespace optrt
