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

#include "runtime/artifact/Artifact.h"
#include "runtime/exec/PlanAbi.h"
#include "runtime/host/HostModule.h"

#include <cblas.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace optrt {
namespace {
namespace pa = planabi;


/// A size or stride of an operand: static, or a runtime scalar.
struct Extent {
  bool isScalar = false;
  int64_t value = 0; // the size, or the scalar's index
};

/// An operand of a command, decoded from the plan (see PlanAbi.h).
struct Operand {
  uint8_t *base = nullptr; // with the byte offset applied
  std::vector<Extent> sizes, strides;
};

struct DecodedCommand {
  fb::CommandKind kind;
  std::string name;
  void *entry = nullptr; // KernelCall: the C interface
  std::vector<Operand> operands;
};

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

class CpuExecutor : public ModelExecutor {
public:
  explicit CpuExecutor(const Artifact &artifact) : artifact(artifact) {}

  bool load(const ExecutorOptions &options, std::string &error);
  const ExecutorLimits &limits() const override { return lims; }
  bool step(const StepBatch &batch, float *logits,
            std::string &error) override;
  void copyBlocks(const std::vector<BlockCopy> &copies) override;

private:
  bool decode(std::string &error);
  int64_t resolve(const Extent &extent) const {
    return extent.isScalar ? scalars[extent.value] : extent.value;
  }
  /// Fills `words` with the memref descriptor of `operand`: allocated and
  /// aligned pointers, offset 0, sizes, strides.
  void describe(const Operand &operand, std::vector<int64_t> &words) const;
  uint8_t *bufferNamed(std::string_view name) const;

  const Artifact &artifact;
  ExecutorLimits lims;
  std::unique_ptr<HostModule> kernels;
  std::vector<AlignedBytes> buffers;
  std::vector<uint64_t> bufferSizes;
  /// Per layer: keys then values, each [numBlocks, B, Hkv, D] f32.
  std::vector<AlignedBytes> kvCache;
  uint64_t kvBlockBytes = 0;
  std::vector<DecodedCommand> commands;
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
  if (!kv || kv->dtype() != fb::DType::F32 ||
      model.activation_dtype() != fb::DType::F32)
    return error = "the artifact is not compiled for the CPU target "
                   "(f32 activations and KV cache)",
           false;
  if (artifact.hasVirtualWeights())
    return error = "the artifact has no weight data (--random-weights): the "
                   "CPU executor needs real weights",
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
                 kv->head_dim() * sizeof(float);
  uint64_t perBlock = kvBlockBytes * 2 * kv->num_layers();
  lims.numBlocks = options.numBlocks > 0
                       ? options.numBlocks
                       : int32_t(std::min<uint64_t>(
                             options.kvCacheBytes / std::max<uint64_t>(perBlock, 1),
                             INT32_MAX));
  if (lims.numBlocks < 1)
    return error = "the KV cache holds no block: give it more than " +
                   std::to_string(perBlock) + " bytes",
           false;
  for (uint32_t layer = 0; layer < 2 * kv->num_layers(); ++layer) {
    kvCache.push_back(allocateBytes(kvBlockBytes * lims.numBlocks));
    if (!kvCache.back())
      return error = "out of memory for the KV cache", false;
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

  if (artifact.numKernels() != 1 ||
      artifact.kernel(0).format() != fb::KernelFormat::SharedObject)
    return error = "the artifact carries no host kernel library", false;
  const fb::Kernel &library = artifact.kernel(0);
  kernels = HostModule::load(library.data()->data(), library.data()->size(),
                             &error);
  if (!kernels)
    return false;
  if (options.numThreads > 0)
    openblas_set_num_threads(options.numThreads);
  return decode(error);
}

bool CpuExecutor::decode(std::string &error) {
  const fb::Plan &plan = artifact.plan();
  const fb::Kernel &library = artifact.kernel(0);
  for (const fb::Command *command : *plan.commands()) {
    DecodedCommand decoded;
    decoded.kind = command->kind();
    decoded.name = command->name() ? command->name()->str() : "";
    std::string where = "command '" + decoded.name + "'";
    if (decoded.kind == fb::CommandKind::KernelCall) {
      const auto *entries = library.entry_points();
      if (!entries || command->entry() >= entries->size())
        return error = where + " names no entry point", false;
      decoded.entry = kernels->lookup(entries->Get(command->entry())->str());
      if (!decoded.entry)
        return error = where + ": symbol '" +
                       entries->Get(command->entry())->str() +
                       "' is not in the kernel library",
               false;
    } else if (decoded.kind != fb::CommandKind::Gemm) {
      return error = where + " has kind '" +
                     artifact::commandKindName(decoded.kind) +
                     "', which the CPU executor does not run",
             false;
    }

    const auto &args = *command->args();
    for (size_t i = 0; i < args.size();) {
      const fb::Arg *base = args.Get(i++);
      Operand operand;
      switch (base->kind()) {
      case fb::ArgKind::Buffer:
        operand.base = buffers[base->index()].get() + base->offset();
        break;
      case fb::ArgKind::Weight:
        operand.base = const_cast<uint8_t *>(artifact.weightData(base->index())) +
                       base->offset();
        break;
      case fb::ArgKind::KVCache:
        if (base->offset() > pa::Values)
          return error = where + " names a KV cache part other than keys "
                                 "and values",
                 false;
        operand.base = kvCache[2 * base->index() + base->offset()].get();
        break;
      default:
        return error = where + ": operand " +
                       std::to_string(decoded.operands.size()) +
                       " does not start with an array",
               false;
      }
      if (i >= args.size() || args.Get(i)->kind() != fb::ArgKind::Int)
        return error = where + ": operand has no rank", false;
      int64_t rank = args.Get(i++)->index();
      if (rank < 0 || rank > 8 || i + 2 * rank > args.size())
        return error = where + ": operand rank " + std::to_string(rank) +
                       " is invalid or its extents are missing",
               false;
      for (int64_t e = 0; e < 2 * rank; ++e) {
        const fb::Arg *extent = args.Get(i++);
        Extent decodedExtent;
        if (extent->kind() == fb::ArgKind::RuntimeScalar)
          decodedExtent = {true, extent->index()};
        else if (extent->kind() == fb::ArgKind::Int && extent->index() >= 0)
          decodedExtent = {false, extent->index()};
        else
          return error = where + ": an operand extent is neither a size nor "
                                 "a runtime scalar",
                 false;
        (e < rank ? operand.sizes : operand.strides).push_back(decodedExtent);
      }
      decoded.operands.push_back(std::move(operand));
    }
    auto matrix = [](const Operand &operand) {
      return operand.sizes.size() == 2 && !operand.strides[1].isScalar &&
             operand.strides[1].value == 1;
    };
    if (decoded.kind == fb::CommandKind::Gemm &&
        (decoded.operands.size() != 3 ||
         !std::all_of(decoded.operands.begin(), decoded.operands.end(), matrix)))
      return error = where + ": a gemm takes three 2-D operands with unit "
                             "column stride",
             false;
    commands.push_back(std::move(decoded));
  }
  return true;
}

void CpuExecutor::describe(const Operand &operand,
                           std::vector<int64_t> &words) const {
  words.clear();
  int64_t pointer = reinterpret_cast<int64_t>(operand.base);
  words.push_back(pointer);
  words.push_back(pointer);
  words.push_back(0);
  for (const Extent &size : operand.sizes)
    words.push_back(resolve(size));
  for (const Extent &stride : operand.strides)
    words.push_back(resolve(stride));
}

bool CpuExecutor::step(const StepBatch &batch, float *logits,
                       std::string &error) {
  error = validateStepBatch(batch, lims);
  if (!error.empty())
    return false;
  int64_t numTokens = batch.tokens.size();
  int64_t numSeqs = batch.sequences.size();
  int64_t numRows = batch.logitRows.size();
  scalars[pa::NumTokens] = numTokens;
  scalars[pa::NumLogitRows] = numRows;
  scalars[pa::NumSeqs] = numSeqs;
  scalars[pa::NumSeqsPlusOne] = numSeqs + 1;
  scalars[pa::MaxBlocksPerSeq] = maxBlocksPerSeq;
  scalars[pa::NumBlocks] = lims.numBlocks;

  std::memcpy(inputIds, batch.tokens.data(), numTokens * 4);
  std::memcpy(positions, batch.positions.data(), numTokens * 4);
  std::memcpy(logitRows, batch.logitRows.data(), numRows * 4);
  auto *slots = reinterpret_cast<int32_t *>(slotMapping);
  auto *starts = reinterpret_cast<int32_t *>(queryStart);
  auto *lengths = reinterpret_cast<int32_t *>(contextLen);
  auto *table = reinterpret_cast<int32_t *>(blockTable);
  int32_t next = 0;
  for (int64_t s = 0; s < numSeqs; ++s) {
    const SequenceSlice &seq = batch.sequences[s];
    starts[s] = next;
    lengths[s] = seq.contextLength;
    int64_t numBlocks =
        std::min<int64_t>(seq.blockTable->size(), maxBlocksPerSeq);
    std::memcpy(table + s * maxBlocksPerSeq, seq.blockTable->data(),
                numBlocks * 4);
    for (int32_t j = 0; j < seq.numQueryTokens; ++j) {
      int32_t position = seq.contextLength - seq.numQueryTokens + j;
      slots[next + j] = (*seq.blockTable)[position / lims.blockSize] *
                            lims.blockSize +
                        position % lims.blockSize;
    }
    next += seq.numQueryTokens;
  }
  starts[numSeqs] = next;

  std::vector<std::vector<int64_t>> words;
  std::vector<void *> args;
  for (const DecodedCommand &command : commands) {
    words.resize(command.operands.size());
    args.clear();
    for (size_t i = 0; i < command.operands.size(); ++i) {
      describe(command.operands[i], words[i]);
      args.push_back(words[i].data());
    }
    if (command.kind == fb::CommandKind::KernelCall) {
      if (!callKernel(command.entry, args))
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
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f,
                reinterpret_cast<const float *>(a[1]), a[5],
                reinterpret_cast<const float *>(b[1]), b[5], 0.0f,
                reinterpret_cast<float *>(c[1]), c[5]);
  }
  std::memcpy(logits, logitsOut, numRows * lims.vocabSize * sizeof(float));
  return true;
}

void CpuExecutor::copyBlocks(const std::vector<BlockCopy> &copies) {
  for (const BlockCopy &copy : copies)
    for (AlignedBytes &part : kvCache)
      std::memcpy(part.get() + copy.dst * kvBlockBytes,
                  part.get() + copy.src * kvBlockBytes, kvBlockBytes);
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
