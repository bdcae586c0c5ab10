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
#include "runtime/cuda/CudaModule.h"
#include "runtime/exec/PlanAbi.h"
#include "runtime/exec/PlanDecode.h"

#include <cstring>

namespace optrt {
namespace {
namespace pa = planabi;
using namespace cuda;

class CudaExecutor : public ModelExecutor {
public:
  explicit CudaExecutor(const Artifact &artifact) : artifact(artifact) {}

  bool load(const ExecutorOptions &options, std::string &error);
  const ExecutorLimits &limits() const override { return lims; }
  bool step(const StepBatch &batch, float *logits,
            std::string &error) override;
  void copyBlocks(const std::vector<BlockCopy> &copies) override;

private:
  /// The kernel image for this device: its chip's cubin, else the PTX.
  const fb::Kernel *chooseImage(std::string &error) const;

  const Artifact &artifact;
  ExecutorLimits lims;
  std::unique_ptr<CudaDevice> device;
  CudaStream stream;
  std::unique_ptr<CublasLtGemm> gemm;
  std::unique_ptr<CudaModule> module;
  std::vector<CudaKernel> kernels; // per command; unused for gemms
  DeviceBuffer weights;
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
};

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
  if (artifact.hasVirtualWeights())
    return error = "random weights are not generated on the device yet",
           false;
  if (!(device = CudaDevice::create(0, error)) || !stream.create(error) ||
      !(gemm = CublasLtGemm::create(stream.handle(), error)))
    return false;
  const fb::Kernel *image = chooseImage(error);
  if (!image)
    return false;
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
  kvBlockBytes =
      uint64_t(kv->block_size()) * kv->num_kv_heads() * kv->head_dim() * 2;
  uint64_t perBlock = kvBlockBytes * 2 * kv->num_layers();
  lims.numBlocks = options.numBlocks > 0
                       ? options.numBlocks
                       : int32_t(std::min<uint64_t>(
                             options.kvCacheBytes / std::max<uint64_t>(perBlock, 1),
                             INT32_MAX));
  if (lims.numBlocks < 1)
    return error = "the KV cache holds no block", false;
  for (uint32_t part = 0; part < 2 * kv->num_layers(); ++part) {
    kvCache.emplace_back();
    if (!kvCache.back().create(kvBlockBytes * lims.numBlocks, error))
      return false;
  }

  if (!weights.create(std::max<uint64_t>(artifact.blobSize(), 1), error) ||
      !stream.copyToDevice(weights.ptr(), artifact.blobData(),
                           artifact.blobSize(), error))
    return false;
  for (const fb::Buffer *buffer : *plan.buffers()) {
    buffers.emplace_back();
    if (!buffers.back().create(std::max<uint64_t>(buffer->size_bytes(), 1),
                               error))
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

  auto baseAddress = [&](const fb::Arg &base, std::string &error) -> uint64_t {
    switch (base.kind()) {
    case fb::ArgKind::Buffer:
      return buffers[base.index()].ptr() + base.offset();
    case fb::ArgKind::Weight:
      return weights.ptr() + artifact.weight(base.index()).offset() +
             base.offset();
    case fb::ArgKind::KVCache:
      if (base.offset() <= pa::Values)
        return kvCache[2 * base.index() + base.offset()].ptr();
      error = "a KV cache part other than keys and values";
      return 0;
    default:
      error = "not an array";
      return 0;
    }
  };
  if (!decodePlan(plan, /*withLaunch=*/true, baseAddress, commands, error))
    return false;
  const auto *entries = image->entry_points();
  for (const DecodedCommand &command : commands) {
    kernels.emplace_back();
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

bool CudaExecutor::step(const StepBatch &batch, float *logits,
                        std::string &error) {
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

  std::vector<uint64_t> pointers;
  std::vector<int32_t> values;
  std::vector<void *> args;
  for (size_t index = 0; index < commands.size(); ++index) {
    const DecodedCommand &command = commands[index];
    if (command.kind == fb::CommandKind::Gemm) {
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
      if (problem.m && !gemm->run(problem, error))
        return error = "command '" + command.name + "': " + error, false;
      continue;
    }
    const Launch &launch = command.launch;
    int64_t rows = launch.rows.resolve(scalars);
    int64_t gridX = launch.gridXPerRow * rows + launch.gridXFixed;
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
    if (!launchKernel(kernels[index], config, stream.handle(), args, error))
      return error = "command '" + command.name + "': " + error, false;
  }
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

void CudaExecutor::copyBlocks(const std::vector<BlockCopy> &copies) {
  std::string error;
  for (const BlockCopy &copy : copies)
    for (DeviceBuffer &part : kvCache)
      stream.copyOnDevice(part.ptr() + copy.dst * kvBlockBytes,
                          part.ptr() + copy.src * kvBlockBytes, kvBlockBytes,
                          error);
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
