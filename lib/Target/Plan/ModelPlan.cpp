//===- ModelPlan.cpp - a tfm module compiled for a target -----------------===//
//
// One walk over @forward in program order. Every value becomes a strided
// array in a buffer (activations), a weight, or a view of either (reshape,
// split, cast); every op becomes Gemm or KernelCall commands. Buffers are
// reused once the last view of them is dead; ops that can work in place
// (residual add, rope, swiglu) do so when nothing reads their input later.
//
//===----------------------------------------------------------------------===//

#include "optmlir/Target/ModelPlan.h"

#include "dialects/Tfm/IR/TfmOps.h"
#include "optmlir/Conversion/GpuKernels.h"
#include "optmlir/Conversion/HostKernels.h"
#include "optmlir/Target/NvptxCodegen.h"
#include "runtime/core/QuantizedWeights.h"
#include "runtime/exec/PlanAbi.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/StringMap.h"

#include <map>

using namespace mlir;
using namespace optmlir;
namespace art = optrt::artifact;
namespace pa = optrt::planabi;

namespace {
/// A size or stride of a PlanArray: >= 0 is static, negative is the runtime
/// scalar -(value + 1).
int64_t scalarDim(int64_t scalar) { return -(scalar + 1); }
bool isScalarDim(int64_t value) { return value < 0; }

art::Arg encodeDim(int64_t value) {
  return isScalarDim(value) ? art::Arg::runtimeScalar(-(value + 1))
                            : art::Arg::integer(value);
}

/// Where an array lives and its strided shape (strides in elements).
struct PlanArray {
  art::ArgKind kind = art::ArgKind::Buffer;
  int64_t index = -1;
  uint64_t byteOffset = 0;
  SmallVector<int64_t> shape;
  SmallVector<int64_t> strides;

  /// Row-major contiguous in every dim but possibly the first.
  bool rowsContiguous() const {
    int64_t expected = 1;
    for (size_t d = shape.size(); d-- > 1;) {
      if (strides[d] != expected)
        return false;
      expected *= shape[d];
    }
    return true;
  }
  bool dense() const {
    if (!rowsContiguous())
      return false;
    if (shape.size() < 2)
      return shape.empty() || strides[0] == 1;
    int64_t inner = 1;
    for (size_t d = 1; d < shape.size(); ++d)
      inner *= shape[d];
    return strides[0] == inner;
  }
};

/// Dense strides for `shape` whose first dim may be a runtime scalar.
SmallVector<int64_t> denseStrides(ArrayRef<int64_t> shape) {
  SmallVector<int64_t> strides(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;)
    strides[d - 1] = strides[d] * shape[d];
  return strides;
}

PlanArray denseArray(art::ArgKind kind, int64_t index,
                     ArrayRef<int64_t> shape) {
  PlanArray array;
  array.kind = kind;
  array.index = index;
  array.shape.assign(shape.begin(), shape.end());
  array.strides = denseStrides(shape);
  return array;
}

class Planner {
public:
  Planner(ModuleOp module, const ModelPlanOptions &options, std::string &error)
      : module(module), options(options), error(error),
        kernels(ModuleOp::create(UnknownLoc::get(module.getContext()))) {}

  FailureOr<ModelPlan> run();

private:
  bool onGpu() const { return options.target == PlanTarget::Nvptx; }
  /// Bytes per element of activations, weights and the KV cache.
  uint64_t elementBytes() const { return onGpu() ? 2 : 4; }
  art::DType elementType() const {
    return onGpu() ? art::DType::BF16 : art::DType::F32;
  }

  /// Calls the kernel `host` (host target) or `gpu` (GPU target) builds;
  /// a GPU kernel's grid follows the runtime scalar `rows`.
  template <typename HostBuild, typename GpuBuild>
  LogicalResult call(Operation *op, HostBuild host, GpuBuild gpu,
                     ArrayRef<PlanArray> operands,
                     int64_t rows = pa::NumTokens) {
    if (!onGpu())
      return kernelCall(op, host(), operands);
    return gpuKernelCall(op, gpu(), operands, rows);
  }
  LogicalResult gpuKernelCall(Operation *op,
                              FailureOr<gpukernels::GpuKernel> kernel,
                              ArrayRef<PlanArray> operands, int64_t rows);
  /// Appends `command`, limited to the token range being planned.
  void addCommand(art::Command command) {
    command.minTokens = rangeMin;
    command.maxTokens = rangeMax;
    hostPlan.spec.plan.commands.push_back(std::move(command));
  }
  /// Plans with every command limited to steps of minTokens..maxTokens
  /// tokens (0: no bound).
  template <typename PlanFn>
  LogicalResult inTokenRange(uint32_t minTokens, uint32_t maxTokens,
                             PlanFn plan) {
    auto saved = std::make_pair(rangeMin, rangeMax);
    rangeMin = minTokens;
    rangeMax = maxTokens;
    LogicalResult result = plan();
    std::tie(rangeMin, rangeMax) = saved;
    return result;
  }
  LogicalResult addEntry(const std::string &name, uint32_t &entry);
  LogicalResult fail(Operation *op, const Twine &message) {
    std::string text;
    llvm::raw_string_ostream os(text);
    os << "'" << op->getName() << "' at " << op->getLoc() << ": " << message;
    error = os.str();
    return failure();
  }

  LogicalResult readModelInfo(func::FuncOp forward);
  void declareInputs();
  LogicalResult planOp(Operation *op, size_t index);
  LogicalResult planLinear(tfm::LinearOp op);
  LogicalResult planQuantizedLinear(tfm::QuantizedLinearOp op);
  /// The A operand and the output of a product of `input` (rows of
  /// `features`) into `outFeatures`: for the product that makes the logits,
  /// the rows the step asks for, gathered, and the logits buffer.
  FailureOr<std::pair<PlanArray, PlanArray>>
  productOperands(Operation *op, const PlanArray &input, bool makesLogits,
                  int64_t outFeatures);
  /// Whether `result` (through casts) is the function's result.
  static bool isFunctionResult(Value result);
  LogicalResult planAttention(tfm::AttentionOp op);
  LogicalResult planSwiGLU(tfm::SwiGLUOp op, size_t index);
  FailureOr<PlanArray> viewOf(Operation *op, const PlanArray &input,
                              ArrayRef<int64_t> shape);
  FailureOr<int64_t> weightIndex(tfm::GetWeightOp op);

  int64_t addBuffer(std::string name, uint64_t bytes, art::BufferKind kind) {
    hostPlan.spec.plan.buffers.push_back(
        {std::move(name), bytes, 64, kind});
    return hostPlan.spec.plan.buffers.size() - 1;
  }
  /// A buffer for `rowElements` f32 per token, reusing a free one.
  int64_t allocate(int64_t rowElements);
  PlanArray allocateArray(ArrayRef<int64_t> innerShape) {
    SmallVector<int64_t> shape = {scalarDim(pa::NumTokens)};
    shape.append(innerShape.begin(), innerShape.end());
    int64_t rowElements = 1;
    for (int64_t size : innerShape)
      rowElements *= size;
    return denseArray(art::ArgKind::Buffer, allocate(rowElements), shape);
  }

  /// Whether `value`'s memory can be overwritten by the op at `index`: no
  /// op after it reads the value or anything it is a view of (split
  /// siblings are disjoint and do not count).
  bool writableAt(Value value, size_t index);

  void define(Value value, PlanArray array) {
    arrays[value] = array;
    if (array.kind == art::ArgKind::Buffer)
      ++liveViews[array.index];
    if (value.use_empty())
      release(value);
  }
  void release(Value value);

  void appendArray(art::Command &command, const PlanArray &array);
  LogicalResult kernelCall(Operation *op, FailureOr<std::string> kernel,
                           ArrayRef<PlanArray> operands);

  ModuleOp module;
  const ModelPlanOptions &options;
  std::string &error;
  OwningOpRef<ModuleOp> kernels;
  ModelPlan hostPlan;

  llvm::DenseMap<Value, PlanArray> arrays;
  llvm::DenseMap<Operation *, size_t> opIndex;
  /// Live values viewing each buffer; a buffer with none is free.
  llvm::DenseMap<int64_t, int64_t> liveViews;
  /// Free activation buffers by size.
  std::multimap<uint64_t, int64_t> freeBuffers;
  llvm::StringMap<int64_t> weightIndices;
  llvm::StringMap<uint32_t> entryIndices;
  /// Pending in-place rotations, done together at their attention op.
  llvm::DenseMap<Value, tfm::RopeOp> ropes;

  /// The KV cache's tokens per block and element type: the attention ops'
  /// kv_cache (tfm-kv-layout), else 16 tokens of the activation type.
  int64_t blockSize = 16;
  hostkernels::KvElementType kvElementType = hostkernels::KvElementType::Native;
  /// Norms whose output an add_rms_norm already computed, and where.
  llvm::DenseMap<Operation *, PlanArray> fusedNorms;
  /// The rms_norm of `add`'s result that add_rms_norm can compute with it:
  /// the first such user, over a dense [tokens, hidden] result, its weight
  /// read straight from a tfm.get_weight.
  tfm::RMSNormOp fusableNorm(tfm::AddOp add) {
    for (Operation *user : add.getResult().getUsers())
      if (auto norm = dyn_cast<tfm::RMSNormOp>(user))
        if (norm.getInput() == add.getResult() &&
            norm.getWeight().getDefiningOp<tfm::GetWeightOp>() &&
            !fusedNorms.count(norm))
          return norm;
    return nullptr;
  }
  /// The token range of the commands planned now (inTokenRange).
  uint32_t rangeMin = 0, rangeMax = 0;

  // GPU steps of up to kFusedGemvMaxTokens tokens (decode) run GEMV kernels
  // that fuse the rms_norm before a projection and the residual add or
  // swiglu after it; the norm, add and swiglu kernels and the cuBLASLt gemm
  // run only in larger steps (Command::minTokens/maxTokens).
  static constexpr uint32_t kFusedGemvMaxTokens = 4;
  /// Whether `op` computes the step's logits (through casts, the function's
  /// result): such a product covers only the rows the step asks for.
  static bool computesLogits(tfm::LinearOp op);
  /// Whether a GEMV kernel can compute `op` in decode steps.
  bool gemvCanTake(tfm::LinearOp op) const;
  /// Sets the tiling of a GEMV whose sizes, token count and fusions are
  /// set: the options' tiling, or the planner's rule.
  void tileGemv(gpukernels::GemvParams &params) const;
  /// Whether decode steps leave `norm` to the GEMV kernels of all its
  /// users (cached).
  bool normFusedIntoGemvs(tfm::RMSNormOp norm);
  llvm::DenseMap<Operation *, bool> normsFusedIntoGemvs;
  /// The operand an add overwrites with its result: one no later op reads.
  Value addDestination(tfm::AddOp add);
  /// Adds whose decode-step result a residual GEMV epilogue computes.
  llvm::DenseSet<Operation *> addsDoneByGemv;
  /// SwiGLUs whose decode-step result a GEMV epilogue computes, and where.
  llvm::DenseMap<Operation *, PlanArray> swiglusDoneByGemv;
  /// The scratch buffer of the GPU attention kernels, once planned.
  int64_t attentionWorkspace = -1;
  int64_t inputIds = -1, positions = -1, slotMapping = -1, queryStart = -1,
          contextLen = -1, blockTable = -1, logitRows = -1, logits = -1;
  /// The KV-cache layer of each attention op, in the order first asked
  /// for (the qkv GEMV that writes a layer's cache is planned before its
  /// attention).
  llvm::DenseMap<Operation *, int64_t> attentionLayers;
  int64_t layerOf(tfm::AttentionOp op) {
    return attentionLayers.try_emplace(op, int64_t(attentionLayers.size()))
        .first->second;
  }
  /// The paged cache's shape and the rotation of `op`'s query and key, or
  /// failure when one rope each, with the same positions and frequencies,
  /// does not make them.
  struct AttentionInputs {
    hostkernels::RopeParams rope;
    hostkernels::KvCacheShape cache;
    tfm::RopeOp queryRope;
  };
  FailureOr<AttentionInputs> attentionInputs(tfm::AttentionOp op);
  /// The attention op whose q, k and v are the three parts of `op`'s
  /// product, through reshapes and the ropes of q and k alone, if any: a
  /// decode-step GEMV of `op` can then rotate q and k and write the cache
  /// (GemvParams::Epilogue::RopeKvWrite).
  tfm::AttentionOp ropeAttentionOf(tfm::LinearOp op);
  /// Layer `layer`'s keys or values in the paged cache.
  PlanArray kvCacheArray(int64_t layer, pa::KVCachePart part,
                         const hostkernels::KvCacheShape &cache) {
    // An int8 cache's rows end with their scale (bytes, as the kernels see
    // them).
    int64_t row = cache.elementType == hostkernels::KvElementType::Int8
                      ? optrt::int8KvRowBytes(cache.headDim)
                      : cache.headDim;
    PlanArray array = denseArray(art::ArgKind::KVCache, layer,
                                 {scalarDim(pa::NumBlocks), cache.blockSize,
                                  cache.numKvHeads, row});
    array.byteOffset = part;
    return array;
  }
  PlanArray slotMappingArray() {
    return denseArray(art::ArgKind::Buffer, slotMapping,
                      {scalarDim(pa::NumTokens)});
  }
  /// Attention ops whose decode-step rope and cache write a GEMV did.
  llvm::DenseSet<Operation *> ropesDoneByGemv;
  int64_t maxBlocksPerSeq = 0;
};

int64_t Planner::allocate(int64_t rowElements) {
  uint64_t bytes =
      uint64_t(rowElements) * elementBytes() * options.maxTokensPerStep;
  auto it = freeBuffers.lower_bound(bytes);
  if (it != freeBuffers.end()) {
    int64_t id = it->second;
    freeBuffers.erase(it);
    return id;
  }
  return addBuffer("activation" + std::to_string(hostPlan.spec.plan.buffers.size()),
                   bytes, art::BufferKind::Activation);
}

void Planner::release(Value value) {
  auto it = arrays.find(value);
  if (it == arrays.end() || it->second.kind != art::ArgKind::Buffer)
    return;
  int64_t id = it->second.index;
  if (--liveViews[id] == 0 && hostPlan.spec.plan.buffers[id].kind ==
                                  art::BufferKind::Activation)
    freeBuffers.insert({hostPlan.spec.plan.buffers[id].sizeBytes, id});
}

bool Planner::writableAt(Value value, size_t index) {
  Operation *chainUser = nullptr;
  while (true) {
    for (Operation *user : value.getUsers())
      if (user != chainUser && opIndex.lookup(user) > index)
        return false;
    Operation *def = value.getDefiningOp();
    if (!def || !isa<tfm::ReshapeOp, tfm::SplitOp, tfm::CastOp>(def))
      return true;
    chainUser = def;
    value = def->getOperand(0);
  }
}

void Planner::appendArray(art::Command &command, const PlanArray &array) {
  art::Arg base;
  base.kind = array.kind;
  base.index = array.index;
  base.offset = array.byteOffset;
  command.args.push_back(base);
  command.args.push_back(art::Arg::integer(array.shape.size()));
  for (int64_t size : array.shape)
    command.args.push_back(encodeDim(size));
  for (int64_t stride : array.strides)
    command.args.push_back(encodeDim(stride));
}

LogicalResult Planner::kernelCall(Operation *op,
                                  FailureOr<std::string> kernel,
                                  ArrayRef<PlanArray> operands) {
  if (failed(kernel))
    return fail(op, "cannot generate its CPU kernel");
  art::Command command;
  command.kind = art::CommandKind::KernelCall;
  command.name = *kernel;
  command.kernel = 0;
  if (failed(addEntry("_mlir_ciface_" + *kernel, command.entry)))
    return failure();
  for (const PlanArray &array : operands)
    appendArray(command, array);
  addCommand(std::move(command));
  return success();
}

LogicalResult Planner::addEntry(const std::string &name, uint32_t &entry) {
  auto [it, inserted] = entryIndices.try_emplace(
      name, static_cast<uint32_t>(entryIndices.size()));
  if (inserted)
    hostPlan.spec.kernels.front().entryPoints.push_back(name);
  entry = it->second;
  return success();
}

LogicalResult Planner::gpuKernelCall(Operation *op,
                                     FailureOr<gpukernels::GpuKernel> kernel,
                                     ArrayRef<PlanArray> operands,
                                     int64_t rows) {
  if (failed(kernel))
    return fail(op, "cannot generate its GPU kernel");
  art::Command command;
  command.kind = art::CommandKind::KernelCall;
  command.name = kernel->name;
  command.kernel = 0;
  if (failed(addEntry(kernel->name, command.entry)))
    return failure();
  // The launch (PlanAbi.h): grid x = perRow * ceil(rows / rowsPerBlock) +
  // fixed, grid y, block x, dynamic shared bytes, rows per block.
  const gpukernels::LaunchRule &launch = kernel->launch;
  for (int64_t value : {launch.gridXPerRow, launch.gridXFixed, launch.gridY,
                        launch.blockX, launch.dynamicSharedBytes,
                        launch.rowsPerBlock})
    command.args.push_back(art::Arg::integer(value));
  command.args.push_back(art::Arg::runtimeScalar(rows));
  // Pointer parameters are the operands in order; scalars follow, by name.
  llvm::StringMap<const PlanArray *> byName;
  size_t next = 0;
  for (const gpukernels::KernelArg &arg : kernel->args) {
    if (arg.kind != gpukernels::KernelArg::Kind::Pointer)
      continue;
    if (next == operands.size())
      return fail(op, "kernel '" + kernel->name + "' takes more pointers "
                      "than the plan passes");
    byName[arg.name] = &operands[next];
    appendArray(command, operands[next++]);
  }
  if (next != operands.size())
    return fail(op, "kernel '" + kernel->name + "' takes fewer pointers "
                    "than the plan passes");
  for (const gpukernels::KernelArg &arg : kernel->args) {
    if (arg.kind != gpukernels::KernelArg::Kind::I32)
      continue;
    StringRef name = arg.name;
    if (name == "T")
      command.args.push_back(art::Arg::runtimeScalar(pa::NumTokens));
    else if (name == "R")
      command.args.push_back(art::Arg::runtimeScalar(pa::NumLogitRows));
    else if (name == "S")
      command.args.push_back(art::Arg::runtimeScalar(pa::NumSeqs));
    else if (name == "block_table_stride")
      command.args.push_back(art::Arg::runtimeScalar(pa::MaxBlocksPerSeq));
    else if (name.consume_back("_row_stride") && byName.count(name))
      command.args.push_back(art::Arg::integer(byName[name]->strides[0]));
    else
      return fail(op, "kernel '" + kernel->name + "' takes a scalar '" +
                      arg.name + "' the plan does not know");
  }
  addCommand(std::move(command));
  return success();
}

LogicalResult Planner::readModelInfo(func::FuncOp forward) {
  auto config = module->getAttrOfType<DictionaryAttr>("tfm.model_config");
  if (!config)
    return fail(module, "has no tfm.model_config attribute (import it with "
                        "optc import)");
  art::ModelInfo &info = hostPlan.spec.model;
  auto intOf = [&](StringRef key) -> int64_t {
    auto attr = config.getAs<IntegerAttr>(key);
    return attr ? attr.getInt() : 0;
  };
  if (auto arch = config.getAs<StringAttr>("architecture"))
    info.architecture = arch.str();
  info.vocabSize = intOf("vocab_size");
  info.hiddenSize = intOf("hidden_size");
  info.intermediateSize = intOf("intermediate_size");
  info.numLayers = intOf("num_hidden_layers");
  info.numHeads = intOf("num_attention_heads");
  info.numKVHeads = intOf("num_key_value_heads");
  info.headDim = intOf("head_dim");
  info.maxPositionEmbeddings = intOf("max_position_embeddings");
  if (auto tied = config.getAs<BoolAttr>("tie_word_embeddings"))
    info.tieWordEmbeddings = tied.getValue();
  info.bosId = config.contains("bos_token_id") ? intOf("bos_token_id") : -1;
  if (auto eos = config.getAs<ArrayAttr>("eos_token_ids"))
    for (Attribute id : eos)
      info.eosIds.push_back(cast<IntegerAttr>(id).getInt());
  // The host computes in f32, GPUs store bf16, whatever the checkpoint has.
  info.activationDType = elementType();
  forward.walk([&](tfm::RMSNormOp op) {
    info.rmsNormEps = op.getEps().convertToDouble();
  });
  forward.walk([&](tfm::RopeOp op) {
    info.ropeTheta = op.getTheta().convertToDouble();
    if (auto scaling = op.getScalingAttr()) {
      info.ropeScaling.kind = scaling.getKind() == tfm::RopeScalingKind::Linear
                                  ? art::RopeScalingKind::Linear
                                  : art::RopeScalingKind::Llama3;
      info.ropeScaling.factor = scaling.getFactor().convertToDouble();
      info.ropeScaling.lowFreqFactor =
          scaling.getLowFreqFactor().convertToDouble();
      info.ropeScaling.highFreqFactor =
          scaling.getHighFreqFactor().convertToDouble();
      info.ropeScaling.originalMaxPositionEmbeddings =
          scaling.getOriginalMaxPositionEmbeddings();
    }
  });
  int64_t numLayers = 0;
  std::optional<tfm::KVCacheType> cacheType;
  bool sameCache = true;
  forward.walk([&](tfm::AttentionOp op) {
    ++numLayers;
    if (auto window = op.getSlidingWindowAttr())
      info.slidingWindow = window.getInt();
    // One paged cache serves every layer (tfm-kv-layout gives all the same).
    std::optional<tfm::KVCacheType> type = op.getKvCache();
    if (numLayers > 1 && type != cacheType)
      sameCache = false;
    cacheType = type;
  });
  if (!sameCache)
    return fail(module, "its attention ops name different kv_cache types "
                        "(run --tfm-kv-layout)");
  // Without a kv_cache the target's own layout: 16-token blocks of the
  // activation type.
  if (cacheType) {
    blockSize = cacheType->getBlockSize();
    Type element = cacheType->getElementType();
    if (isa<Float8E4M3FNType>(element))
      kvElementType = hostkernels::KvElementType::F8E4M3;
    else if (element.isInteger(8))
      kvElementType = hostkernels::KvElementType::Int8;
    else if (!isa<Float32Type, BFloat16Type, Float16Type>(element))
      return fail(module, "has no lowering for a KV cache of elements other "
                          "than the activation type, f8E4M3FN or i8");
  }
  if (info.vocabSize == 0 || info.maxPositionEmbeddings == 0 ||
      info.numKVHeads == 0 || info.headDim == 0)
    return fail(module, "tfm.model_config lacks vocab_size, "
                        "max_position_embeddings, num_key_value_heads or "
                        "head_dim");
  maxBlocksPerSeq = (info.maxPositionEmbeddings + blockSize - 1) / blockSize;
  if (kvElementType != hostkernels::KvElementType::Native && onGpu())
    return fail(module, "an fp8 or int8 KV cache is not generated for GPUs "
                        "yet (--kv-cache-dtype=fp8e4m3 and int8 work for "
                        "--target=cpu)");
  art::KVCacheLayout kv;
  kv.blockSize = blockSize;
  kv.dtype = kvElementType == hostkernels::KvElementType::F8E4M3
                 ? art::DType::F8E4M3
             : kvElementType == hostkernels::KvElementType::Int8
                 ? art::DType::I8
                 : elementType();
  kv.order = art::KVLayoutOrder::BlockTokenHeadDim;
  kv.numLayers = numLayers;
  kv.numKVHeads = info.numKVHeads;
  kv.headDim = info.headDim;
  hostPlan.spec.kvCache = kv;
  return success();
}

void Planner::declareInputs() {
  uint64_t tokens = options.maxTokensPerStep;
  // A sequence has at least one token in a step: at most `tokens` of them.
  uint64_t seqs = tokens;
  auto input = [&](std::string_view name, uint64_t elements) {
    return addBuffer(std::string(name), elements * 4, art::BufferKind::Input);
  };
  inputIds = input(pa::kInputIds, tokens);
  positions = input(pa::kPositions, tokens);
  slotMapping = input(pa::kSlotMapping, tokens);
  queryStart = input(pa::kQueryStart, seqs + 1);
  contextLen = input(pa::kContextLen, seqs);
  blockTable = input(pa::kBlockTable, seqs * maxBlocksPerSeq);
  logitRows = input(pa::kLogitRows, tokens);
  logits = addBuffer(std::string(pa::kLogits),
                     tokens * hostPlan.spec.model.vocabSize * elementBytes(),
                     art::BufferKind::Output);
  for (int64_t id : {inputIds, positions, slotMapping, queryStart, contextLen,
                     blockTable, logitRows, logits})
    liveViews[id] = 1; // never reused
  art::Plan &plan = hostPlan.spec.plan;
  plan.maxTokensPerStep = tokens;
  for (std::string_view name : pa::kRuntimeScalarNames)
    plan.runtimeScalars.emplace_back(name);
}

FailureOr<int64_t> Planner::weightIndex(tfm::GetWeightOp op) {
  StringRef name = op.getName();
  auto found = weightIndices.find(name);
  if (found != weightIndices.end())
    return found->second;
  auto decl = SymbolTable::lookupNearestSymbolFrom<tfm::WeightOp>(
      op, op.getNameAttr());
  PlannedWeight weight;
  weight.name = name.str();
  RankedTensorType type = decl.getTensorType();
  weight.shape.assign(type.getShape().begin(), type.getShape().end());
  // Concatenations are flattened to checkpoint tensors along dim 0.
  SmallVector<tfm::WeightOp> worklist = {decl};
  while (!worklist.empty()) {
    tfm::WeightOp part = worklist.pop_back_val();
    if (!part.getConcat()) {
      weight.parts.insert(weight.parts.begin(), part.getSymName().str());
      continue;
    }
    if (part.getDimAttr().getInt() != 0)
      return fail(op, "weight @" + part.getSymName() +
                          " concatenates along a dim other than 0");
    ArrayAttr concat = *part.getConcat(); // not a temporary in the loop
    for (Attribute ref : concat)
      worklist.push_back(SymbolTable::lookupNearestSymbolFrom<tfm::WeightOp>(
          part, cast<FlatSymbolRefAttr>(ref)));
  }
  int64_t index = hostPlan.weights.size();
  hostPlan.weights.push_back(std::move(weight));
  weightIndices[name] = index;
  return index;
}

FailureOr<PlanArray> Planner::viewOf(Operation *op, const PlanArray &input,
                                     ArrayRef<int64_t> resultShape) {
  PlanArray view = input;
  view.shape.assign(resultShape.begin(), resultShape.end());
  // Regrouping the features of each token keeps the token dim and its row
  // stride (a view into a fused projection stays one).
  if (ShapedType::isDynamic(resultShape[0]) && !input.shape.empty() &&
      isScalarDim(input.shape[0])) {
    if (!input.rowsContiguous())
      return fail(op, "regroups a view whose rows are not contiguous");
    view.shape[0] = input.shape[0];
    view.strides = denseStrides(view.shape);
    view.strides[0] = input.strides[0];
    return view;
  }
  if (!input.dense())
    return fail(op, "reshapes a strided view across its token dim");
  view.strides = denseStrides(view.shape);
  return view;
}

bool Planner::isFunctionResult(Value result) {
  while (result.hasOneUse() && isa<tfm::CastOp>(*result.getUsers().begin()))
    result = result.getUsers().begin()->getResult(0);
  return result.hasOneUse() && isa<func::ReturnOp>(*result.getUsers().begin());
}

bool Planner::computesLogits(tfm::LinearOp op) {
  return isFunctionResult(op.getResult());
}

FailureOr<std::pair<PlanArray, PlanArray>>
Planner::productOperands(Operation *op, const PlanArray &input,
                         bool makesLogits, int64_t outFeatures) {
  if (!makesLogits)
    return std::make_pair(input, allocateArray({outFeatures}));
  if (!input.dense())
    return fail(op, "computes logits from a strided input");
  int64_t hidden = input.shape[1];
  PlanArray a = denseArray(art::ArgKind::Buffer, allocate(hidden),
                           {scalarDim(pa::NumLogitRows), hidden});
  PlanArray rows = denseArray(art::ArgKind::Buffer, logitRows,
                              {scalarDim(pa::NumLogitRows)});
  if (failed(call(
          op, [&] { return hostkernels::buildGatherRows(*kernels, hidden); },
          [&] { return gpukernels::buildGatherRows(*kernels, hidden); },
          {input, rows, a}, pa::NumLogitRows)))
    return failure();
  PlanArray out = denseArray(art::ArgKind::Buffer, logits,
                             {scalarDim(pa::NumLogitRows), outFeatures});
  return std::make_pair(a, out);
}

void Planner::tileGemv(gpukernels::GemvParams &params) const {
  if (options.gemvWarps > 0) {
    params.warpsPerBlock = options.gemvWarps;
    params.splitK = options.gemvSplitK;
    params.minRowsPerWarp = options.gemvMinRowsPerWarp;
    params.loadsInFlight = options.gemvLoadsInFlight;
    return;
  }
  // Measured on an H200 (2026-12-03, bench/results/2026-12-03-h200-gemv-
  // tiling.md), batch-1 decode: 4 warps sharing each row, 4 rows a warp and
  // 16 loads a lane in flight were the fastest tiling for rows of 2048
  // (Llama-3.2-1B, 63.6-63.9% of the roofline, 56.8% with 1 row and 4
  // loads) and of 4096 (Llama-2-7B, 87.2%, 79.0% with 1 and 4). A block's
  // weights go out before it waits for the previous kernel, and more of
  // them in flight per block hides the latency of its x and its reduction.
  params.warpsPerBlock = 4;
  params.splitK = 4;
  params.minRowsPerWarp = 4;
  params.loadsInFlight = 16;
  // With a norm, 4 tokens and rows of 4096, 16 loads spill at 255 registers
  // (ptxas); 8 do not.
  if (params.rmsNormInput && params.maxTokens > 2)
    params.loadsInFlight = 8;
}

bool Planner::gemvCanTake(tfm::LinearOp op) const {
  return onGpu() && !op.getBias() && !computesLogits(op) &&
         op.getWeight().getDefiningOp<tfm::GetWeightOp>() &&
         cast<RankedTensorType>(op.getInput().getType()).getRank() == 2;
}

bool Planner::normFusedIntoGemvs(tfm::RMSNormOp norm) {
  auto [it, inserted] = normsFusedIntoGemvs.try_emplace(norm, false);
  if (!inserted)
    return it->second;
  if (!onGpu() || norm.getResult().use_empty() ||
      !norm.getWeight().getDefiningOp<tfm::GetWeightOp>())
    return false;
  size_t lastLinear = 0;
  for (Operation *user : norm.getResult().getUsers()) {
    auto linear = dyn_cast<tfm::LinearOp>(user);
    if (!linear || linear.getInput() != norm.getResult() ||
        !gemvCanTake(linear))
      return false;
    lastLinear = std::max(lastLinear, opIndex.lookup(user));
  }
  // The GEMVs read the norm's input: it must outlive the last of them.
  bool readLater =
      llvm::any_of(norm.getInput().getUsers(), [&](Operation *user) {
        return opIndex.lookup(user) > lastLinear;
      });
  return it->second = readLater;
}

Value Planner::addDestination(tfm::AddOp add) {
  size_t index = opIndex.lookup(add);
  if (writableAt(add.getLhs(), index))
    return add.getLhs();
  if (writableAt(add.getRhs(), index))
    return add.getRhs();
  return nullptr;
}

LogicalResult Planner::planLinear(tfm::LinearOp op) {
  PlanArray input = arrays.lookup(op.getInput());
  PlanArray weight = arrays.lookup(op.getWeight());
  if (input.shape.size() != 2 || input.strides[1] != 1)
    return fail(op, "needs a 2-D input with unit column stride");
  int64_t outFeatures = op.getType().getShape().back();

  // The linear that makes the function's result (through casts) computes
  // only the rows whose logits the step asks for.
  bool makesLogits = computesLogits(op);

  FailureOr<std::pair<PlanArray, PlanArray>> operands =
      productOperands(op, input, makesLogits, outFeatures);
  if (failed(operands))
    return failure();
  auto [a, out] = *operands;
  art::Command gemm;
  gemm.kind = art::CommandKind::Gemm;
  gemm.name = "gemm";
  appendArray(gemm, a);
  appendArray(gemm, weight);
  appendArray(gemm, out);
  // On GPUs the bias is the gemm's fourth operand, added by cuBLASLt's
  // epilogue (PlanAbi.h), for every row count: the GEMV kernels have no
  // bias, and a separate add after them would need a second launch encoded
  // in the command. Biased projections (Qwen2's q/k/v, a small share of a
  // decode step's bytes) therefore skip the GEMV variants. The host adds it
  // with a kernel after the product.
  PlanArray bias;
  if (op.getBias())
    bias = arrays.lookup(op.getBias());
  bool biasInGemm = onGpu() && op.getBias() && bias.shape.size() == 1 &&
                    bias.strides[0] == 1;
  if (biasInGemm)
    appendArray(gemm, bias);
  bool gemv = onGpu() && !biasInGemm && a.dense() && out.dense() &&
              weight.dense();

  // Decode steps: the norm before the product, and the residual add or the
  // swiglu after it, fused into its GEMV (launched by its own commands, the
  // gemm then serves larger steps only).
  auto norm = op.getInput().getDefiningOp<tfm::RMSNormOp>();
  bool withNorm = gemv && gemvCanTake(op) && norm && normFusedIntoGemvs(norm);
  tfm::AddOp residualAdd;
  tfm::SwiGLUOp swiglu;
  if (gemv && gemvCanTake(op) && op.getResult().hasOneUse()) {
    Operation *user = *op.getResult().getUsers().begin();
    if (auto add = dyn_cast<tfm::AddOp>(user);
        add && add.getLhs().getType() == add.getRhs().getType() &&
        add.getLhs() != add.getRhs() && addDestination(add))
      residualAdd = add;
    // silu(gate) * up over the two halves of this product.
    if (auto split = dyn_cast<tfm::SplitOp>(user);
        split && split.getNumResults() == 2 &&
        split.getDimAttr().getInt() == 1 && outFeatures % 2 == 0 &&
        split.getResult(0).hasOneUse() && split.getResult(1).hasOneUse()) {
      auto consumer =
          dyn_cast<tfm::SwiGLUOp>(*split.getResult(0).getUsers().begin());
      if (consumer && consumer.getGate() == split.getResult(0) &&
          consumer.getUp() == split.getResult(1))
        swiglu = consumer;
    }
  }
  // A fused q/k/v projection whose parts only rope and attention read: its
  // GEMV rotates q and k and writes the cache (rope_kv_write then runs in
  // larger steps only), where every variant's tiling keeps rotated pairs in
  // one block.
  tfm::AttentionOp ropeAttention =
      gemv && gemvCanTake(op) ? ropeAttentionOf(op) : nullptr;
  FailureOr<AttentionInputs> ropeInputs = failure();
  if (ropeAttention) {
    ropeInputs = attentionInputs(ropeAttention);
    for (int64_t maxTokens : {1, 2, 4}) {
      gpukernels::GemvParams params;
      params.maxTokens = maxTokens;
      tileGemv(params);
      int64_t rows = gpukernels::gemvRowsPerBlock(params);
      if (rows % 2 != 0 || ropeInputs->rope.headDim % rows != 0 ||
          ropeInputs->cache.elementType != hostkernels::KvElementType::Native)
        ropeAttention = nullptr;
    }
  }
  if (withNorm || residualAdd || swiglu || ropeAttention) {
    gpukernels::GemvParams params;
    params.n = outFeatures;
    params.k = input.shape[1];
    SmallVector<PlanArray> operands;
    if (withNorm) {
      params.rmsNormInput = true;
      params.eps = norm.getEps().convertToDouble();
      operands = {arrays.lookup(norm.getInput()),
                  arrays.lookup(norm.getWeight())};
    } else {
      operands = {input};
    }
    operands.push_back(weight);
    PlanArray y = out;
    if (residualAdd) {
      params.epilogue = gpukernels::GemvParams::Epilogue::Residual;
      Value into = addDestination(residualAdd);
      Value other = into == residualAdd.getLhs() ? residualAdd.getRhs()
                                                 : residualAdd.getLhs();
      // The add writes `into`: this product's output or the residual.
      Value residual = other == op.getResult() ? into : other;
      operands.push_back(arrays.lookup(residual));
      if (into != op.getResult())
        y = arrays.lookup(into);
      addsDoneByGemv.insert(residualAdd);
    } else if (swiglu) {
      params.epilogue = gpukernels::GemvParams::Epilogue::SwiGLU;
      params.n = outFeatures / 2;
      y = allocateArray({params.n});
      swiglusDoneByGemv[swiglu] = y;
    }
    operands.push_back(y);
    if (ropeAttention) {
      params.epilogue = gpukernels::GemvParams::Epilogue::RopeKvWrite;
      params.rope = ropeInputs->rope;
      params.cache = ropeInputs->cache;
      int64_t layer = layerOf(ropeAttention);
      operands.append({arrays.lookup(ropeInputs->queryRope.getPositions()),
                       kvCacheArray(layer, pa::Keys, params.cache),
                       kvCacheArray(layer, pa::Values, params.cache),
                       slotMappingArray()});
      ropesDoneByGemv.insert(ropeAttention);
    }
    for (auto [maxTokens, minTokens] :
         {std::pair<uint32_t, uint32_t>{1, 1}, {2, 2}, {4, 3}}) {
      params.maxTokens = maxTokens;
      tileGemv(params);
      if (failed(inTokenRange(minTokens, maxTokens, [&] {
            return gpuKernelCall(op, gpukernels::buildGemv(*kernels, params),
                                 operands, pa::NumTokens);
          })))
        return failure();
    }
    return inTokenRange(kFusedGemvMaxTokens + 1, 0, [&] {
      addCommand(std::move(gemm));
      define(op.getResult(), out);
      return success();
    });
  }

  // On GPUs a few tokens (decode) read the weight faster through generated
  // GEMV kernels than through cuBLASLt: variants for up to 1, 2 and 4 rows
  // (PlanAbi.h), the executor launches the smallest that covers the step.
  if (gemv) {
    int64_t k = input.shape[1];
    for (int64_t maxTokens : {1, 2, 4}) {
      gpukernels::GemvParams params;
      params.n = outFeatures;
      params.k = k;
      params.maxTokens = maxTokens;
      tileGemv(params);
      FailureOr<gpukernels::GpuKernel> gemvKernel =
          gpukernels::buildGemv(*kernels, params);
      if (failed(gemvKernel))
        return fail(op, "cannot generate its GEMV kernel");
      uint32_t entry;
      if (failed(addEntry(gemvKernel->name, entry)))
        return failure();
      const gpukernels::LaunchRule &launch = gemvKernel->launch;
      for (int64_t value : {maxTokens, int64_t(entry), launch.gridXPerRow,
                            launch.gridXFixed, launch.gridY, launch.blockX,
                            launch.dynamicSharedBytes})
        gemm.args.push_back(art::Arg::integer(value));
    }
  }
  addCommand(std::move(gemm));
  if (op.getBias() && !biasInGemm &&
      failed(call(
          op, [&] { return hostkernels::buildAddBias(*kernels, outFeatures); },
          [&] { return gpukernels::buildAddBias(*kernels, outFeatures); },
          {out, bias},
          makesLogits ? pa::NumLogitRows : pa::NumTokens)))
    return failure();
  // The gathered rows are read by this product only.
  if (makesLogits)
    freeBuffers.insert(
        {hostPlan.spec.plan.buffers[a.index].sizeBytes, a.index});
  define(op.getResult(), out);
  return success();
}

FailureOr<Planner::AttentionInputs>
Planner::attentionInputs(tfm::AttentionOp op) {
  auto queryRope = op.getQuery().getDefiningOp<tfm::RopeOp>();
  auto keyRope = op.getKey().getDefiningOp<tfm::RopeOp>();
  if (!queryRope || !keyRope ||
      queryRope.getPositions() != keyRope.getPositions() ||
      queryRope.getTheta() != keyRope.getTheta() ||
      queryRope.getScalingAttr() != keyRope.getScalingAttr())
    return failure();
  auto queryType = cast<RankedTensorType>(op.getQuery().getType());
  auto keyType = cast<RankedTensorType>(op.getKey().getType());
  AttentionInputs inputs;
  inputs.queryRope = queryRope;
  hostkernels::RopeParams &rope = inputs.rope;
  rope.numHeads = queryType.getDimSize(1);
  rope.numKvHeads = keyType.getDimSize(1);
  rope.headDim = queryType.getDimSize(2);
  rope.theta = queryRope.getTheta().convertToDouble();
  if (auto scaling = queryRope.getScalingAttr()) {
    rope.scaling.kind = scaling.getKind() == tfm::RopeScalingKind::Linear
                            ? hostkernels::RopeScaling::Kind::Linear
                            : hostkernels::RopeScaling::Kind::Llama3;
    rope.scaling.factor = scaling.getFactor().convertToDouble();
    rope.scaling.lowFreqFactor = scaling.getLowFreqFactor().convertToDouble();
    rope.scaling.highFreqFactor =
        scaling.getHighFreqFactor().convertToDouble();
    rope.scaling.originalMaxPositionEmbeddings =
        scaling.getOriginalMaxPositionEmbeddings();
  }
  inputs.cache.numKvHeads = rope.numKvHeads;
  inputs.cache.headDim = rope.headDim;
  inputs.cache.blockSize = blockSize;
  inputs.cache.elementType = kvElementType;
  return inputs;
}

tfm::AttentionOp Planner::ropeAttentionOf(tfm::LinearOp op) {
  if (!op.getResult().hasOneUse())
    return nullptr;
  auto split = dyn_cast<tfm::SplitOp>(*op.getResult().getUsers().begin());
  if (!split || split.getNumResults() != 3 || split.getDimAttr().getInt() != 1)
    return nullptr;
  // The one user of `value` through a reshape, if it is of type OpTy.
  auto soleUser = [](Value value) -> Operation * {
    return value.hasOneUse() ? *value.getUsers().begin() : nullptr;
  };
  auto throughReshape = [&](Value part) -> Operation * {
    auto reshape = dyn_cast_or_null<tfm::ReshapeOp>(soleUser(part));
    return reshape ? soleUser(reshape.getResult()) : nullptr;
  };
  auto queryRope =
      dyn_cast_or_null<tfm::RopeOp>(throughReshape(split.getResult(0)));
  auto keyRope =
      dyn_cast_or_null<tfm::RopeOp>(throughReshape(split.getResult(1)));
  auto attention =
      dyn_cast_or_null<tfm::AttentionOp>(throughReshape(split.getResult(2)));
  if (!queryRope || !keyRope || !attention ||
      soleUser(queryRope.getResult()) != attention ||
      soleUser(keyRope.getResult()) != attention ||
      attention.getQuery() != queryRope.getResult() ||
      attention.getKey() != keyRope.getResult() ||
      attention.getValue().getDefiningOp<tfm::ReshapeOp>().getInput() !=
          split.getResult(2) ||
      failed(attentionInputs(attention)))
    return nullptr;
  return attention;
}

LogicalResult Planner::planQuantizedLinear(tfm::QuantizedLinearOp op) {
  if (onGpu())
    return fail(op, "quantized linears run on --target=cpu so far (their GPU "
                    "kernels are not generated yet)");
  PlanArray input = arrays.lookup(op.getInput());
  if (input.shape.size() != 2 || input.strides[1] != 1)
    return fail(op, "needs a 2-D input with unit column stride");
  int64_t outFeatures = op.getType().getShape().back();
  bool makesLogits = isFunctionResult(op.getResult());
  FailureOr<std::pair<PlanArray, PlanArray>> operands =
      productOperands(op, input, makesLogits, outFeatures);
  if (failed(operands))
    return failure();
  auto [a, out] = *operands;
  art::Command gemm;
  gemm.kind = art::CommandKind::QuantizedGemm;
  gemm.name = "quantized_gemm";
  appendArray(gemm, a);
  SmallVector<Value> stored = {op.getValues(), op.getScales()};
  if (op.getZeros())
    stored.push_back(op.getZeros());
  for (auto [i, value] : llvm::enumerate(stored)) {
    auto get = value.getDefiningOp<tfm::GetWeightOp>();
    if (!get)
      return fail(op, "reads quantized arrays that are not weights");
    PlanArray array = arrays.lookup(value);
    // The arrays keep their stored types (runtime/core/QuantizedWeights.h).
    Type element = cast<RankedTensorType>(value.getType()).getElementType();
    art::DType dtype = element.isInteger(4) ? art::DType::U4
                       : element.isInteger(8) && element.isUnsignedInteger()
                           ? art::DType::U8
                       : element.isInteger(8)           ? art::DType::I8
                       : isa<Float8E4M3FNType>(element) ? art::DType::F8E4M3
                       : element.isF16()                ? art::DType::F16
                                                        : art::DType::F32;
    hostPlan.weights[array.index].storedType = dtype;
    appendArray(gemm, array);
    if (i == 0)
      appendArray(gemm, out); // A, values, C, then scales and zeros
  }
  gemm.args.push_back(art::Arg::integer(int64_t(op.getActivations())));
  if (std::optional<APFloat> scale = op.getActivationScale())
    gemm.args.push_back(art::Arg::real(scale->convertToDouble()));
  addCommand(std::move(gemm));
  if (makesLogits)
    freeBuffers.insert(
        {hostPlan.spec.plan.buffers[a.index].sizeBytes, a.index});
  define(op.getResult(), out);
  return success();
}

LogicalResult Planner::planAttention(tfm::AttentionOp op) {
  if (!op.getCausal())
    return fail(op, "non-causal attention has no lowering over the KV cache");
  FailureOr<AttentionInputs> inputs = attentionInputs(op);
  if (failed(inputs) || !ropes.count(op.getQuery()) ||
      !ropes.count(op.getKey()))
    return fail(op, "query and key must be rotated by one rope each, with "
                    "the same positions and frequencies");
  const hostkernels::RopeParams &rope = inputs->rope;
  const hostkernels::KvCacheShape &cache = inputs->cache;
  int64_t heads = rope.numHeads;
  int64_t headDim = rope.headDim;
  int64_t layer = layerOf(op);
  tfm::RopeOp queryRope = inputs->queryRope;
  PlanArray q = arrays.lookup(op.getQuery());
  PlanArray k = arrays.lookup(op.getKey());
  PlanArray v = arrays.lookup(op.getValue());
  PlanArray positionsArray = arrays.lookup(queryRope.getPositions());

  PlanArray keys = kvCacheArray(layer, pa::Keys, cache),
            values = kvCacheArray(layer, pa::Values, cache);
  PlanArray slots = slotMappingArray();
  if (onGpu()) {
    // One launch rotates q and k and stores the keys and values; in decode
    // steps the qkv GEMV may have done it.
    bool byGemv = ropesDoneByGemv.count(op);
    if (failed(inTokenRange(byGemv ? kFusedGemvMaxTokens + 1 : 0, 0, [&] {
          return gpuKernelCall(
              op, gpukernels::buildRopeKvWrite(*kernels, rope, cache),
              {q, k, v, positionsArray, keys, values, slots}, pa::NumTokens);
        })))
      return failure();
  } else if (failed(kernelCall(op, hostkernels::buildRope(*kernels, rope),
                               {q, k, positionsArray})) ||
             failed(kernelCall(op, hostkernels::buildKvWrite(*kernels, cache),
                               {k, v, keys, values, slots}))) {
    return failure();
  }

  hostkernels::PagedAttentionParams attention;
  attention.numHeads = heads;
  attention.cache = cache;
  attention.scale = op.getScale().convertToDouble();
  if (auto window = op.getSlidingWindowAttr())
    attention.slidingWindow = window.getInt();
  PlanArray out = allocateArray({heads, headDim});
  PlanArray starts = denseArray(art::ArgKind::Buffer, queryStart,
                                {scalarDim(pa::NumSeqsPlusOne)});
  PlanArray lengths = denseArray(art::ArgKind::Buffer, contextLen,
                                 {scalarDim(pa::NumSeqs)});
  PlanArray table;
  table.kind = art::ArgKind::Buffer;
  table.index = blockTable;
  table.shape = {scalarDim(pa::NumSeqs), scalarDim(pa::MaxBlocksPerSeq)};
  table.strides = {scalarDim(pa::MaxBlocksPerSeq), 1};
  if (!onGpu()) {
    if (failed(kernelCall(
            op, hostkernels::buildPagedAttention(*kernels, attention),
            {q, keys, values, starts, lengths, table, out})))
      return failure();
    define(op.getResult(), out);
    return success();
  }
  // The GPU kernel splits long contexts over blocks and combines their
  // softmax states through one scratch buffer that every layer reuses (the
  // runtime zeroes buffers at load, as its counters need).
  uint64_t workspaceBytes = gpukernels::pagedAttentionWorkspaceBytes(attention);
  if (attentionWorkspace < 0)
    attentionWorkspace = addBuffer("attention_workspace", workspaceBytes,
                                   art::BufferKind::Activation);
  art::Buffer &scratch = hostPlan.spec.plan.buffers[attentionWorkspace];
  scratch.sizeBytes = std::max<uint64_t>(scratch.sizeBytes, workspaceBytes);
  PlanArray workspace = denseArray(art::ArgKind::Buffer, attentionWorkspace,
                                   {int64_t(workspaceBytes / 4)});
  // Sequences with many queries in the step (prefill, long chunks) go to
  // the tensor-core flash kernel, the others (decode) to the split kernel;
  // each leaves the other's rows alone. Head dims flash_attention does not
  // tile stay on the split kernel alone.
  const int64_t longQueryRows = 64;
  bool flash = gpukernels::flashAttentionTiles(attention);
  // A step of fewer tokens has no such sequence: it skips the launch.
  if (flash && failed(inTokenRange(longQueryRows, 0, [&] {
        return gpuKernelCall(op,
                             gpukernels::buildFlashAttention(
                                 *kernels, attention, longQueryRows),
                             {q, keys, values, starts, lengths, table, out},
                             pa::NumTokens);
      })))
    return failure();
  if (failed(gpuKernelCall(
          op,
          gpukernels::buildPagedAttention(*kernels, attention,
                                          flash ? longQueryRows : 0),
          {q, keys, values, starts, lengths, table, out, workspace},
          pa::NumTokens)))
    return failure();
  define(op.getResult(), out);
  return success();
}

LogicalResult Planner::planSwiGLU(tfm::SwiGLUOp op, size_t index) {
  int64_t inner = op.getType().getShape().back();
  auto gateSplit = op.getGate().getDefiningOp<tfm::SplitOp>();
  // silu(gate) * up over the two halves of one fused projection.
  if (gateSplit && gateSplit == op.getUp().getDefiningOp<tfm::SplitOp>() &&
      gateSplit.getNumResults() == 2 && gateSplit.getResult(0) == op.getGate() &&
      arrays.lookup(gateSplit.getInput()).dense()) {
    // In decode steps the gate/up GEMV's epilogue wrote `out`.
    auto doneByGemv = swiglusDoneByGemv.find(op);
    bool fused = doneByGemv != swiglusDoneByGemv.end();
    PlanArray out = fused ? doneByGemv->second : allocateArray({inner});
    define(op.getResult(), out);
    return inTokenRange(fused ? kFusedGemvMaxTokens + 1 : 0, 0, [&] {
      return call(op, [&] { return hostkernels::buildSwiGLU(*kernels, inner); },
                  [&] { return gpukernels::buildSwiGLU(*kernels, inner); },
                  {arrays.lookup(gateSplit.getInput()), out});
    });
  }
  PlanArray gate = arrays.lookup(op.getGate());
  PlanArray up = arrays.lookup(op.getUp());
  if (!gate.dense() || !up.dense())
    return fail(op, "needs dense gate and up operands");
  PlanArray out = writableAt(op.getGate(), index) ? gate
                                                  : allocateArray({inner});
  if (failed(call(
          op, [&] { return hostkernels::buildSwiGLUSplit(*kernels, inner); },
          [&] { return gpukernels::buildSwiGLUSplit(*kernels, inner); },
          {gate, up, out})))
    return failure();
  define(op.getResult(), out);
  return success();
}

LogicalResult Planner::planOp(Operation *op, size_t index) {
  if (auto get = dyn_cast<tfm::GetWeightOp>(op)) {
    FailureOr<int64_t> weight = weightIndex(get);
    if (failed(weight))
      return failure();
    define(get.getResult(),
           denseArray(art::ArgKind::Weight, *weight, get.getType().getShape()));
    return success();
  }
  if (auto embed = dyn_cast<tfm::EmbedOp>(op)) {
    auto table = cast<RankedTensorType>(embed.getTable().getType());
    PlanArray out = allocateArray({table.getDimSize(1)});
    int64_t vocab = table.getDimSize(0), hidden = table.getDimSize(1);
    if (failed(call(
            op, [&] { return hostkernels::buildEmbed(*kernels, vocab, hidden); },
            [&] { return gpukernels::buildEmbed(*kernels, vocab, hidden); },
            {arrays.lookup(embed.getIds()), arrays.lookup(embed.getTable()),
             out})))
      return failure();
    define(embed.getResult(), out);
    return success();
  }
  if (auto norm = dyn_cast<tfm::RMSNormOp>(op)) {
    if (auto fused = fusedNorms.find(norm); fused != fusedNorms.end()) {
      define(norm.getResult(), fused->second);
      return success();
    }
    PlanArray input = arrays.lookup(norm.getInput());
    if (input.shape.size() != 2 || !input.dense())
      return fail(op, "needs a dense [tokens, hidden] input");
    int64_t hidden = input.shape[1];
    PlanArray out = allocateArray({hidden});
    double eps = norm.getEps().convertToDouble();
    define(norm.getResult(), out);
    // In decode steps the GEMVs that read it normalize their input.
    return inTokenRange(
        normFusedIntoGemvs(norm) ? kFusedGemvMaxTokens + 1 : 0, 0, [&] {
          return call(
              op,
              [&] { return hostkernels::buildRmsNorm(*kernels, hidden, eps); },
              [&] { return gpukernels::buildRmsNorm(*kernels, hidden, eps); },
              {input, arrays.lookup(norm.getWeight()), out});
        });
  }
  if (auto linear = dyn_cast<tfm::LinearOp>(op))
    return planLinear(linear);
  if (auto linear = dyn_cast<tfm::QuantizedLinearOp>(op))
    return planQuantizedLinear(linear);
  if (auto reshape = dyn_cast<tfm::ReshapeOp>(op)) {
    FailureOr<PlanArray> view = viewOf(op, arrays.lookup(reshape.getInput()),
                                       reshape.getType().getShape());
    if (failed(view))
      return failure();
    define(reshape.getResult(), *view);
    return success();
  }
  if (auto split = dyn_cast<tfm::SplitOp>(op)) {
    PlanArray input = arrays.lookup(split.getInput());
    int64_t dim = split.getDimAttr().getInt();
    if (dim == 0)
      return fail(op, "splits the token dim");
    int64_t start = 0;
    for (Value piece : split.getResults()) {
      PlanArray view = input;
      int64_t size = cast<RankedTensorType>(piece.getType()).getDimSize(dim);
      view.shape[dim] = size;
      view.byteOffset += uint64_t(start) * input.strides[dim] * elementBytes();
      start += size;
      define(piece, view);
    }
    return success();
  }
  if (auto cast = dyn_cast<tfm::CastOp>(op)) {
    // Every float is f32 on the CPU target.
    define(cast.getResult(), arrays.lookup(cast.getInput()));
    return success();
  }
  if (auto rope = dyn_cast<tfm::RopeOp>(op)) {
    if (!writableAt(rope.getInput(), index))
      return fail(op, "its input is read again later: rope works in place");
    ropes[rope.getResult()] = rope;
    define(rope.getResult(), arrays.lookup(rope.getInput()));
    return success();
  }
  if (auto attention = dyn_cast<tfm::AttentionOp>(op))
    return planAttention(attention);
  if (auto add = dyn_cast<tfm::AddOp>(op)) {
    Value into = addDestination(add);
    if (!into)
      return fail(op, "both operands are read again later: add works in place");
    Value other = into == add.getLhs() ? add.getRhs() : add.getLhs();
    PlanArray a = arrays.lookup(into);
    PlanArray b = arrays.lookup(other);
    if (add.getLhs().getType() != add.getRhs().getType() ||
        a.shape.size() != 2 || !a.dense() || !b.dense())
      return fail(op, "only adds dense [tokens, hidden] arrays of one shape");
    define(add.getResult(), a);
    // In decode steps a GEMV epilogue did the add: the kernels below serve
    // larger steps, but for a norm of the sum that no GEMV computes.
    bool doneByGemv = addsDoneByGemv.count(add);
    uint32_t generalMin = doneByGemv ? kFusedGemvMaxTokens + 1 : 0;
    if (onGpu())
      if (tfm::RMSNormOp norm = fusableNorm(add)) {
        // The residual add and the norm that reads it in one launch: the
        // norm's output is ready when the planner reaches the norm.
        int64_t hidden = a.shape[1];
        double eps = norm.getEps().convertToDouble();
        auto get = norm.getWeight().getDefiningOp<tfm::GetWeightOp>();
        FailureOr<int64_t> weight = weightIndex(get);
        if (failed(weight))
          return failure();
        PlanArray normWeight = denseArray(art::ArgKind::Weight, *weight,
                                          get.getType().getShape());
        PlanArray out = allocateArray({hidden});
        fusedNorms[norm] = out;
        if (failed(inTokenRange(generalMin, 0, [&] {
              return gpuKernelCall(
                  op, gpukernels::buildAddRmsNorm(*kernels, hidden, eps),
                  {b, a, normWeight, out}, pa::NumTokens);
            })))
          return failure();
        if (!doneByGemv || normFusedIntoGemvs(norm))
          return success();
        return inTokenRange(1, kFusedGemvMaxTokens, [&] {
          return gpuKernelCall(op,
                               gpukernels::buildRmsNorm(*kernels, hidden, eps),
                               {a, normWeight, out}, pa::NumTokens);
        });
      }
    return inTokenRange(generalMin, 0, [&] {
      return call(op, [&] { return hostkernels::buildAdd(*kernels, a.shape[1]); },
                  [&] { return gpukernels::buildAdd(*kernels, a.shape[1]); },
                  {a, b});
    });
  }
  if (auto swiglu = dyn_cast<tfm::SwiGLUOp>(op))
    return planSwiGLU(swiglu, index);
  if (auto ret = dyn_cast<func::ReturnOp>(op)) {
    if (ret.getNumOperands() != 1 ||
        arrays.lookup(ret.getOperand(0)).index != logits ||
        arrays.lookup(ret.getOperand(0)).kind != art::ArgKind::Buffer)
      return fail(op, "must return the logits of the final linear layer");
    if (!onGpu())
      return success();
    // Greedy tokens picked on the device: a greedy step then reads back R
    // ids instead of R x V logits.
    int64_t vocab = hostPlan.spec.model.vocabSize;
    int64_t greedy = addBuffer(std::string(pa::kGreedyTokens),
                               uint64_t(options.maxTokensPerStep) * 4,
                               art::BufferKind::Output);
    return gpuKernelCall(
        op, gpukernels::buildArgmaxRows(*kernels, vocab),
        {denseArray(art::ArgKind::Buffer, logits,
                    {scalarDim(pa::NumLogitRows), vocab}),
         denseArray(art::ArgKind::Buffer, greedy,
                    {scalarDim(pa::NumLogitRows)})},
        pa::NumLogitRows);
  }
  return fail(op, "has no CPU lowering (run --tfm-fuse-attention and "
                  "--canonicalize on decomposed graphs)");
}

FailureOr<ModelPlan> Planner::run() {
  auto forward = module.lookupSymbol<func::FuncOp>("forward");
  if (!forward || forward.getNumArguments() != 2 ||
      forward.getNumResults() != 1) {
    (void)fail(module, "needs func.func @forward(input_ids, positions) -> "
                       "logits, as optc import writes it");
    return failure();
  }
  if (failed(readModelInfo(forward)))
    return failure();

  if (onGpu())
    hostPlan.spec.kernels.push_back(
        {"gpu_kernels", options.chip, art::KernelFormat::PTX, {}, {}});
  else
    hostPlan.spec.kernels.push_back(
        {"host_kernels", "x86_64", art::KernelFormat::SharedObject, {}, {}});
  hostPlan.weightType = elementType();
  declareInputs();
  Block &body = forward.getBody().front();
  arrays[body.getArgument(0)] = denseArray(art::ArgKind::Buffer, inputIds,
                                           {scalarDim(pa::NumTokens)});
  arrays[body.getArgument(1)] = denseArray(art::ArgKind::Buffer, positions,
                                           {scalarDim(pa::NumTokens)});
  size_t index = 0;
  for (Operation &op : body)
    opIndex[&op] = index++;
  index = 0;
  for (Operation &op : body) {
    if (failed(planOp(&op, index)))
      return failure();
    // Values whose last reader this op was are dead now.
    llvm::SmallPtrSet<Value, 8> seen;
    for (Value operand : op.getOperands()) {
      if (!seen.insert(operand).second)
        continue;
      bool laterUse = llvm::any_of(operand.getUsers(), [&](Operation *user) {
        return opIndex.lookup(user) > index;
      });
      if (!laterUse)
        release(operand);
    }
    ++index;
  }

  std::string compileError;
  if (!onGpu()) {
    FailureOr<HostBinary> binary =
        compileToBinary(*kernels, options.codegen, compileError);
    if (failed(binary)) {
      error = "compiling the CPU kernels: " + compileError;
      return failure();
    }
    art::Kernel &library = hostPlan.spec.kernels.front();
    library.data.assign(binary->sharedObject.begin(),
                        binary->sharedObject.end());
    // The relocatable object too, for inspection (optrun inspect
    // --extract-kernels writes it as host_kernels_object.o); the runtime
    // loads the shared object.
    art::Kernel object = library;
    object.name = "host_kernels_object";
    object.format = art::KernelFormat::Object;
    object.data.assign(binary->object.begin(), binary->object.end());
    hostPlan.spec.kernels.push_back(std::move(object));
    return std::move(hostPlan);
  }
  NvptxOptions nvptx;
  nvptx.chip = options.chip;
  FailureOr<std::string> ptx = compileToPtx(*kernels, nvptx, compileError);
  if (failed(ptx)) {
    error = "compiling the GPU kernels: " + compileError;
    return failure();
  }
  art::Kernel &ptxKernel = hostPlan.spec.kernels.front();
  ptxKernel.data.assign(ptx->begin(), ptx->end());
  // The cubin, where ptxas is present, saves the driver's JIT at load; the
  // PTX stays for other chips and for inspection.
  FailureOr<std::string> cubin =
      assembleCubin(*ptx, options.chip, compileError);
  if (succeeded(cubin)) {
    art::Kernel cubinKernel = ptxKernel;
    cubinKernel.name = "gpu_kernels_" + options.chip;
    cubinKernel.format = art::KernelFormat::Cubin;
    cubinKernel.data.assign(cubin->begin(), cubin->end());
    hostPlan.spec.kernels.push_back(std::move(cubinKernel));
  }
  return std::move(hostPlan);
}
} // namespace

FailureOr<ModelPlan> optmlir::planModel(ModuleOp module,
                                         const ModelPlanOptions &options,
                                         std::string &error) {
  Planner planner(module, options, error);
  return planner.run();
}
