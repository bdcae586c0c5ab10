//===- CpuExecutor.cpp - the plan on the host -----------------------------===//
//
// Runs an artifact's plan on the CPU: Gemm commands through BLAS, KernelCall
// commands through the generated kernels of the artifact's shared object
// (loaded from memory), activations in buffers allocated once, and the KV
// cache as f32 blocks per layer. The commands are decoded once at load; a
// step only fills the inputs, resolves runtime scalars and calls.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/ModelExecutor.h"

#include "runtime/core/QuantizedWeights.h"

#include "runtime/artifact/Artifact.h"
#include "runtime/exec/PlanAbi.h"
#include "runtime/exec/PlanDecode.h"
#include "runtime/host/HostModule.h"

#include <cblas.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string_view>
#include <thread>

namespace optrt {
namespace {
namespace pa = planabi;


struct AlignedFree {
  void operator()(void *p) const { std::free(p); }
};
using AlignedBytes = std::unique_ptr<uint8_t, AlignedFree>;

AlignedBytes allocateBytes(uint64_t size) {
  uint64_t rounded = (size + 63) / 64 * 64;
  return AlignedBytes(
      static_cast<uint8_t *>(std::aligned_alloc(64, rounded ? rounded : 64)));
}

/// Calls a kernel's C interface with one descriptor pointer per operand.
bool callKernel(void *entry, std::vector<void *> &args) {
  using P = void *;
  switch (args.size()) {
  case 1:
    reinterpret_cast<void (*)(P)>(entry)(args[0]);
    return true;
  case 2:
    reinterpret_cast<void (*)(P, P)>(entry)(args[0], args[1]);
    return true;
  case 3:
    reinterpret_cast<void (*)(P, P, P)>(entry)(args[0], args[1], args[2]);
    return true;
  case 4:
    reinterpret_cast<void (*)(P, P, P, P)>(entry)(args[0], args[1], args[2],
                                                  args[3]);
    return true;
  case 5:
    reinterpret_cast<void (*)(P, P, P, P, P)>(entry)(args[0], args[1], args[2],
                                                     args[3], args[4]);
    return true;
  case 6:
    reinterpret_cast<void (*)(P, P, P, P, P, P)>(entry)(
        args[0], args[1], args[2], args[3], args[4], args[5]);
    return true;
  case 7:
    reinterpret_cast<void (*)(P, P, P, P, P, P, P)>(entry)(
        args[0], args[1], args[2], args[3], args[4], args[5], args[6]);
    return true;
  case 8:
    reinterpret_cast<void (*)(P, P, P, P, P, P, P, P)>(entry)(
        args[0], args[1], args[2], args[3], args[4], args[5], args[6],
        args[7]);
    return true;
  default:
    return false;
  }
}

/// BLAS is loaded when a CPU executor is made, not linked: a runtime that
/// only drives GPUs then starts on machines without OpenBLAS.
struct Blas {
  decltype(&cblas_sgemm) sgemm = nullptr;
  decltype(&openblas_set_num_threads) setNumThreads = nullptr;
};

const Blas *loadBlas(std::string &error) {
  static Blas blas;
  static std::string loadError;
  static bool loaded = [] {
    for (const char *name :
         {"libopenblas.so.0", "libopenblas.so", "libblas.so.3"}) {
      void *handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (!handle)
        continue;
      blas.sgemm = reinterpret_cast<decltype(blas.sgemm)>(
          dlsym(handle, "cblas_sgemm"));
      blas.setNumThreads = reinterpret_cast<decltype(blas.setNumThreads)>(
          dlsym(handle, "openblas_set_num_threads"));
      if (blas.sgemm)
        return true;
    }
    loadError = "no BLAS: cannot load libopenblas.so.0 or libblas.so.3 with "
                "cblas_sgemm (install libopenblas0)";
    return false;
  }();
  if (!loaded) {
    error = loadError;
    return nullptr;
  }
  return &blas;
}

class CpuExecutor : public ModelExecutor {
public:
  explicit CpuExecutor(const Artifact &artifact) : artifact(artifact) {}

  bool load(const ExecutorOptions &options, std::string &error);
  const ExecutorLimits &limits() const override { return lims; }
  bool step(const StepBatch &batch, float *logits,
            std::string &error) override;
  bool copyBlocks(const std::vector<BlockCopy> &copies,
                  std::string &error) override;
  DeviceCeilings measureCeilings() override;

private:
  bool decode(std::string &error);
  /// The f32 matrix of a quantized gemm's weight (dequantized once, shared
  /// by the commands that read it; random for a virtual weight).
  bool dequantizeWeight(const DecodedCommand &command, uint64_t seed,
                        std::string &error);
  /// Lays out and fills the weights of a --random-weights artifact in host
  /// memory (real weights are copied, virtual ones generated from `seed`).
  bool makeRandomWeights(uint64_t seed, std::string &error);
  /// Fills `words` with the memref descriptor of `operand`: allocated and
  /// aligned pointers, offset 0, sizes, strides.
  void describe(const Operand &operand, std::vector<int64_t> &words) const;
  uint8_t *bufferNamed(std::string_view name) const;

  const Artifact &artifact;
  const Blas *blas = nullptr;
  ExecutorLimits lims;
  std::unique_ptr<HostModule> kernels;
  std::vector<AlignedBytes> buffers;
  std::vector<uint64_t> bufferSizes;
  /// Where each weight's bytes are: in the mapping, or in randomWeights.
  std::vector<const uint8_t *> weightPointers;
  AlignedBytes randomWeights;
  /// Per layer: keys then values, each [numBlocks, B, Hkv, D] f32.
  std::vector<AlignedBytes> kvCache;
  uint64_t kvBlockBytes = 0;
  std::vector<DecodedCommand> commands;
  /// Per command: the kernel's C interface (null for gemms).
  std::vector<void *> entryPoints;
  /// Quantized weights as f32 [N, K], by the index of their values weight.
  std::map<int64_t, AlignedBytes> dequantized;
  /// Rows of A with their activations quantized (W8A8, fp8).
  std::vector<float> quantizedRows;
  uint64_t randomSeed = 0;
  std::function<void(std::string_view, const float *, int64_t, int64_t,
                     int64_t)>
      gemmInputObserver;
  int64_t scalars[pa::NumRuntimeScalars] = {};
  int64_t maxBlocksPerSeq = 0;
  uint8_t *inputIds = nullptr, *positions = nullptr, *slotMapping = nullptr,
          *queryStart = nullptr, *contextLen = nullptr,
          *blockTable = nullptr, *logitRows = nullptr, *logitsOut = nullptr;
};

uint8_t *CpuExecutor::bufferNamed(std::string_view name) const {
  const fb::Plan &plan = artifact.plan();
  for (size_t i = 0; i < buffers.size(); ++i)
    if (plan.buffers()->Get(i)->name()->string_view() == name)
      return buffers[i].get();
  return nullptr;
}

bool CpuExecutor::load(const ExecutorOptions &options, std::string &error) {
  const fb::ModelInfo &model = artifact.model();
  const fb::KVCacheLayout *kv = artifact.kvCache();
  const fb::Plan &plan = artifact.plan();
  if (!kv ||
      (kv->dtype() != fb::DType::F32 && kv->dtype() != fb::DType::F8E4M3 &&
       kv->dtype() != fb::DType::I8) ||
      model.activation_dtype() != fb::DType::F32)
    return error = "the artifact is not compiled for the CPU target "
                   "(f32 activations, an f32, fp8 e4m3 or int8 KV cache)",
           false;
  if (!plan.runtime_scalars() ||
      plan.runtime_scalars()->size() != pa::NumRuntimeScalars)
    return error = "the plan's runtime scalars are not the ones this runtime "
                   "knows",
           false;
  for (size_t i = 0; i < pa::NumRuntimeScalars; ++i)
    if (plan.runtime_scalars()->Get(i)->string_view() !=
        pa::kRuntimeScalarNames[i])
      return error = "the plan's runtime scalar " + std::to_string(i) +
                     " is '" + plan.runtime_scalars()->Get(i)->str() +
                     "', expected '" +
                     std::string(pa::kRuntimeScalarNames[i]) + "'",
             false;

  lims.vocabSize = model.vocab_size();
  lims.maxTokensPerStep = plan.max_tokens_per_step();
  lims.maxContextLength = model.max_position_embeddings();
  lims.blockSize = kv->block_size();
  maxBlocksPerSeq = (lims.maxContextLength + lims.blockSize - 1) /
                    lims.blockSize;
  kvBlockBytes = uint64_t(kv->block_size()) * kv->num_kv_heads() *
                 artifact::kvCacheRowBytes(kv->dtype(), kv->head_dim());
  uint64_t perBlock = kvBlockBytes * 2 * kv->num_layers();
  // ExecutorOptions::gpuMemoryUtilization is for GPUs: ignored here.
  uint64_t kvBytes =
      options.kvCacheBytes ? options.kvCacheBytes : kDefaultKvCacheBytes;
  lims.numBlocks = options.numBlocks > 0
                       ? options.numBlocks
                       : int32_t(std::min<uint64_t>(
                             kvBytes / std::max<uint64_t>(perBlock, 1),
                             INT32_MAX));
  if (lims.numBlocks < 1)
    return error = "the KV cache holds no block: give it more than " +
                   std::to_string(perBlock) + " bytes",
           false;
  for (uint32_t layer = 0; layer < 2 * kv->num_layers(); ++layer) {
    kvCache.push_back(allocateBytes(kvBlockBytes * lims.numBlocks));
    if (!kvCache.back())
      return error = "out of memory for the KV cache", false;
    if (options.touchKvCache)
      std::memset(kvCache.back().get(), 0, kvBlockBytes * lims.numBlocks);
  }

  for (const fb::Buffer *buffer : *plan.buffers()) {
    buffers.push_back(allocateBytes(buffer->size_bytes()));
    bufferSizes.push_back(buffer->size_bytes());
    if (!buffers.back())
      return error = "out of memory for buffer '" + buffer->name()->str() +
                     "'",
             false;
  }
  struct Named {
    std::string_view name;
    uint8_t **slot;
  } inputs[] = {{pa::kInputIds, &inputIds},     {pa::kPositions, &positions},
                {pa::kSlotMapping, &slotMapping}, {pa::kQueryStart, &queryStart},
                {pa::kContextLen, &contextLen}, {pa::kBlockTable, &blockTable},
                {pa::kLogitRows, &logitRows},   {pa::kLogits, &logitsOut}};
  for (Named &input : inputs)
    if (!(*input.slot = bufferNamed(input.name)))
      return error = "the plan has no '" + std::string(input.name) +
                     "' buffer",
             false;

  if (artifact.numKernels() == 0 ||
      artifact.kernel(0).format() != fb::KernelFormat::SharedObject)
    return error = "the artifact carries no host kernel library", false;
  const fb::Kernel &library = artifact.kernel(0);
  kernels = HostModule::load(library.data()->data(), library.data()->size(),
                             &error);
  if (!kernels)
    return false;
  if (!(blas = loadBlas(error)))
    return false;
  if (options.numThreads > 0 && blas->setNumThreads)
    blas->setNumThreads(options.numThreads);
  for (size_t i = 0; i < artifact.numWeights(); ++i)
    weightPointers.push_back(artifact.weightData(i));
  randomSeed = options.randomSeed;
  gemmInputObserver = options.gemmInputObserver;
  if (artifact.hasVirtualWeights() &&
      !makeRandomWeights(options.randomSeed, error))
    return false;
  return decode(error);
}

bool CpuExecutor::makeRandomWeights(uint64_t seed, std::string &error) {
  std::vector<uint64_t> offsets;
  uint64_t total = 0;
  for (size_t i = 0; i < artifact.numWeights(); ++i) {
    const fb::WeightEntry &w = artifact.weight(i);
    bool quantizedArray =
        w.dtype() == fb::DType::U4 || w.dtype() == fb::DType::I8 ||
        w.dtype() == fb::DType::U8 || w.dtype() == fb::DType::F8E4M3 ||
        w.dtype() == fb::DType::F16;
    if (w.no_data() && w.dtype() != fb::DType::F32 && !quantizedArray)
      return error = "virtual weight '" + w.name()->str() +
                     "' is not f32: the CPU executor fills only f32 weights",
             false;
    offsets.push_back(total);
    total += (w.size() + 63) / 64 * 64;
  }
  if (!(randomWeights = allocateBytes(total)))
    return error = "out of memory for the random weights (" +
                   std::to_string(total >> 20) + " MiB)",
           false;
  for (size_t i = 0; i < artifact.numWeights(); ++i) {
    const fb::WeightEntry &w = artifact.weight(i);
    uint8_t *dst = randomWeights.get() + offsets[i];
    weightPointers[i] = dst;
    if (!w.no_data()) {
      std::memcpy(dst, artifact.weightData(i), w.size());
      continue;
    }
    // Quantized arrays stay zero: their quantized gemm fills a random f32
    // matrix itself (dequantizeWeight), and every other reader is f32.
    if (w.dtype() != fb::DType::F32)
      continue;
    bool isNorm = isNormWeight(w.name()->string_view(),
                               w.shape() ? w.shape()->size() : 0);
    fillRandomWeight(seed, i, isNorm, 0, w.size() / sizeof(float),
                     reinterpret_cast<float *>(dst),
                     [](float value) { return value; });
  }
  return true;
}

/// The processor's name from /proc/cpuinfo ("" if none).
std::string cpuName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      size_t start = line.find_first_not_of(" \t", line.find(':') + 1);
      return start == std::string::npos ? "" : line.substr(start);
    }
  return "";
}

DeviceCeilings CpuExecutor::measureCeilings() {
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  DeviceCeilings ceilings;
  ceilings.deviceName = cpuName();
  // Copy: 256 MiB, far beyond the caches; best of a few (read + write).
  constexpr uint64_t kCopyBytes = 256ull << 20;
  AlignedBytes src = allocateBytes(kCopyBytes), dst = allocateBytes(kCopyBytes);
  if (src && dst) {
    std::memset(src.get(), 1, kCopyBytes);
    std::memset(dst.get(), 2, kCopyBytes);
    double best = 0;
    for (int r = 0; r < 5; ++r) {
      auto start = Clock::now();
      std::memcpy(dst.get(), src.get(), kCopyBytes);
      double s = seconds(start, Clock::now());
      if (s > 0)
        best = std::max(best, 2.0 * kCopyBytes / s);
    }
    ceilings.copyBytesPerSecond = best;
  }
  // Matmul: a square sgemm, random-ish data (zeros can run faster).
  constexpr int64_t kN = 2048;
  std::vector<float> a(kN * kN), b(kN * kN), c(kN * kN);
  for (int64_t i = 0; i < kN * kN; ++i) {
    a[i] = randomWeightValue(1, 0, i, false);
    b[i] = randomWeightValue(1, 1, i, false);
  }
  double best = 0;
  for (int r = 0; r < 4; ++r) {
    auto start = Clock::now();
    blas->sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, kN, kN, kN, 1.0f,
                a.data(), kN, b.data(), kN, 0.0f, c.data(), kN);
    double s = seconds(start, Clock::now());
    if (r > 0 && s > 0) // the first call warms up BLAS's threads
      best = std::max(best, 2.0 * kN * kN * kN / s);
  }
  ceilings.matmulFlopsPerSecond = best;
  return ceilings;
}

bool CpuExecutor::decode(std::string &error) {
  auto baseAddress = [&](const fb::Arg &base, std::string &error) -> uint64_t {
    switch (base.kind()) {
    case fb::ArgKind::Buffer:
      return uint64_t(buffers[base.index()].get() + base.offset());
    case fb::ArgKind::Weight:
      return uint64_t(weightPointers[base.index()] + base.offset());
    case fb::ArgKind::KVCache:
      if (base.offset() <= pa::Values)
        return uint64_t(kvCache[2 * base.index() + base.offset()].get());
      error = "a KV cache part other than keys and values";
      return 0;
    default:
      error = "not an array";
      return 0;
    }
  };
  if (!decodePlan(artifact.plan(), /*withLaunch=*/false, baseAddress,
                  commands, error))
    return false;
  const auto *entries = artifact.kernel(0).entry_points();
  entryPoints.clear();
  for (const DecodedCommand &command : commands) {
    if (command.kind == fb::CommandKind::QuantizedGemm &&
        !dequantizeWeight(command, randomSeed, error))
      return error = "command '" + command.name + "': " + error, false;
    if (command.kind == fb::CommandKind::Gemm && command.operands.size() > 3)
      return error = "command '" + command.name +
                     "' adds a bias in the gemm, which only GPU plans do "
                     "(host plans add biases with a kernel)",
             false;
    if (command.kind != fb::CommandKind::KernelCall) {
      entryPoints.push_back(nullptr);
      continue;
    }
    if (!entries || command.entry >= entries->size())
      return error = "command '" + command.name + "' names no entry point",
             false;
    void *entry = kernels->lookup(entries->Get(command.entry)->str());
    if (!entry)
      return error = "command '" + command.name + "': symbol '" +
                     entries->Get(command.entry)->str() +
                     "' is not in the kernel library",
             false;
    entryPoints.push_back(entry);
  }
  return true;
}

bool CpuExecutor::dequantizeWeight(const DecodedCommand &command, uint64_t seed,
                                   std::string &error) {
  const std::vector<Operand> &ops = command.operands;
  const int64_t valuesIndex = ops[1].weight;
  if (dequantized.count(valuesIndex))
    return true;
  auto entry = [&](const Operand &op) -> const fb::WeightEntry & {
    return artifact.weight(size_t(op.weight));
  };
  const fb::WeightEntry &values = entry(ops[1]), &scales = entry(ops[3]);
  auto shapeOf = [](const fb::WeightEntry &w) {
    std::vector<int64_t> shape;
    if (w.shape())
      for (uint64_t d : *w.shape())
        shape.push_back(int64_t(d));
    return shape;
  };
  std::vector<int64_t> valuesShape = shapeOf(values),
                       scalesShape = shapeOf(scales);
  if (valuesShape.size() != 2 || scalesShape.size() != 2)
    return error = "its quantized arrays are not 2-D", false;
  QuantizedMatrixView view;
  view.rows = valuesShape[0];
  view.cols = valuesShape[1];
  switch (values.dtype()) {
  case fb::DType::U4:
    view.codes = QuantizedCodes::Int4;
    if (scales.dtype() != fb::DType::F16 || scalesShape[1] <= 0)
      return error = "int4 values need f16 scales", false;
    view.groupSize = view.cols / scalesShape[1];
    break;
  case fb::DType::I8:
  case fb::DType::F8E4M3:
    view.codes = values.dtype() == fb::DType::I8 ? QuantizedCodes::Int8
                                                 : QuantizedCodes::F8E4M3;
    if (scales.dtype() != fb::DType::F32)
      return error = "int8 and fp8 values need f32 scales", false;
    view.groupSize = view.cols;
    view.perTensorScale = scalesShape[0] == 1 && view.rows != 1;
    break;
  default:
    return error = "its values are " +
                   std::string(artifact::dtypeName(values.dtype())) +
                   ", not u4, i8 or f8e4m3",
           false;
  }
  if (!view.perTensorScale && scalesShape[0] != view.rows)
    return error = "its scales have " + std::to_string(scalesShape[0]) +
                   " rows for a weight of " + std::to_string(view.rows),
           false;
  view.values = weightPointers[size_t(ops[1].weight)];
  view.scales = weightPointers[size_t(ops[3].weight)];
  if (ops.size() == 5) {
    const fb::WeightEntry &zeros = entry(ops[4]);
    if (zeros.dtype() != fb::DType::U8 || shapeOf(zeros) != scalesShape)
      return error = "its zero points are not u8 of the scales' shape", false;
    view.zeros = weightPointers[size_t(ops[4].weight)];
  }
  std::string problem = checkQuantizedMatrix(view);
  if (!problem.empty())
    return error = problem, false;
  uint64_t expectedBytes = uint64_t(view.valueBytes());
  if (values.size() != expectedBytes)
    return error = "its values hold " + std::to_string(values.size()) +
                   " bytes, not " + std::to_string(expectedBytes),
           false;
  AlignedBytes matrix =
      allocateBytes(uint64_t(view.rows) * view.cols * sizeof(float));
  if (!matrix)
    return error = "out of memory for a dequantized weight", false;
  float *out = reinterpret_cast<float *>(matrix.get());
  if (values.no_data())
    // Random weights: the matrix an unquantized model would have.
    fillRandomWeight(seed, uint64_t(valuesIndex), false, 0,
                     uint64_t(view.rows) * view.cols, out,
                     [](float value) { return value; });
  else
    dequantizeRows(view, 0, view.rows, out);
  dequantized[valuesIndex] = std::move(matrix);
  return true;
}

void CpuExecutor::describe(const Operand &operand,
                           std::vector<int64_t> &words) const {
  words.clear();
  int64_t pointer = static_cast<int64_t>(operand.address);
  words.push_back(pointer);
  words.push_back(pointer);
  words.push_back(0);
  for (const Extent &size : operand.sizes)
    words.push_back(size.resolve(scalars));
  for (const Extent &stride : operand.strides)
    words.push_back(stride.resolve(scalars));
}

bool CpuExecutor::step(const StepBatch &batch, float *logits,
                       std::string &error) {
  error = validateStepBatch(batch, lims);
  if (!error.empty())
    return false;
  fillStepInputs(batch, lims, maxBlocksPerSeq,
                 {reinterpret_cast<int32_t *>(inputIds),
                  reinterpret_cast<int32_t *>(positions),
                  reinterpret_cast<int32_t *>(slotMapping),
                  reinterpret_cast<int32_t *>(queryStart),
                  reinterpret_cast<int32_t *>(contextLen),
                  reinterpret_cast<int32_t *>(blockTable),
                  reinterpret_cast<int32_t *>(logitRows)},
                 scalars);
  int64_t numRows = batch.logitRows.size();

  std::vector<std::vector<int64_t>> words;
  std::vector<void *> args;
  for (size_t index = 0; index < commands.size(); ++index) {
    const DecodedCommand &command = commands[index];
    if (!command.runsAt(scalars[pa::NumTokens]))
      continue;
    words.resize(command.operands.size());
    args.clear();
    for (size_t i = 0; i < command.operands.size(); ++i) {
      describe(command.operands[i], words[i]);
      args.push_back(words[i].data());
    }
    if (command.kind == fb::CommandKind::KernelCall) {
      if (!callKernel(entryPoints[index], args))
        return error = "kernel '" + command.name + "' takes " +
                       std::to_string(args.size()) +
                       " operands, more than the executor passes",
               false;
      continue;
    }
    // C[M, N] = A[M, K] * B[N, K]^T; descriptor words: 3 + sizes + strides.
    const std::vector<int64_t> &a = words[0], &b = words[1], &c = words[2];
    int64_t m = a[3], k = a[4], n = b[3];
    if (m == 0)
      continue;
    const float *rowsA = reinterpret_cast<const float *>(a[1]);
    const float *weight = reinterpret_cast<const float *>(b[1]);
    int64_t lda = a[5], ldb = b[5];
    if (gemmInputObserver && command.operands[1].weight >= 0)
      gemmInputObserver(artifact.weight(size_t(command.operands[1].weight))
                            .name()
                            ->string_view(),
                        rowsA, m, k, lda);
    if (command.kind == fb::CommandKind::QuantizedGemm) {
      // The dequantized weight, and the rows quantized as the kernels of a
      // GPU would before multiplying (exact products: the same numbers).
      weight = reinterpret_cast<const float *>(
          dequantized.at(command.operands[1].weight).get());
      ldb = k;
      auto mode = ActivationQuant(command.activationQuant);
      if (mode != ActivationQuant::None) {
        quantizedRows.resize(size_t(m) * k);
        for (int64_t r = 0; r < m; ++r)
          std::memcpy(&quantizedRows[r * k], rowsA + r * lda,
                      k * sizeof(float));
        fakeQuantizeActivations(mode, quantizedRows.data(), m, k, k,
                                float(command.activationScale));
        rowsA = quantizedRows.data();
        lda = k;
      }
    }
    blas->sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, rowsA,
                lda, weight, ldb, 0.0f, reinterpret_cast<float *>(c[1]), c[5]);
  }
  std::memcpy(logits, logitsOut, numRows * lims.vocabSize * sizeof(float));
  return true;
}

bool CpuExecutor::copyBlocks(const std::vector<BlockCopy> &copies,
                             std::string &error) {
  error = validateBlockCopies(copies, lims);
  if (!error.empty())
    return false;
  for (const BlockCopy &copy : copies)
    for (AlignedBytes &part : kvCache)
      std::memcpy(part.get() + copy.dst * kvBlockBytes,
                  part.get() + copy.src * kvBlockBytes, kvBlockBytes);
  return true;
}
} // namespace

std::unique_ptr<ModelExecutor> createCpuExecutor(const Artifact &artifact,
                                                 const ExecutorOptions &options,
                                                 std::string &error) {
  auto executor = std::make_unique<CpuExecutor>(artifact);
  if (!executor->load(options, error))
    return nullptr;
  return executor;
}

} // namespace optrt
