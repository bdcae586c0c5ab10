//===- KernelBuilder.h - Builds the GPU kernels' gpu.func bodies -*- C++ -*-===//
//
// Private to the GPU kernel generators (GpuKernels.cpp, FlashAttention.cpp):
// the builder that writes a kernel with gpu, scf, arith and llvm ops, and the
// small helpers every generator uses.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_LIB_CONVERSION_GPUKERNELS_KERNELBUILDER_H
#define OPTMLIR_LIB_CONVERSION_GPUKERNELS_KERNELBUILDER_H

#include "optmlir/Conversion/GpuKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMTypes.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/Support/MathExtras.h"

#include <algorithm>
#include <cmath>

namespace optmlir {
namespace gpukernels {
namespace detail {
using namespace mlir;
using hostkernels::numberForName;

constexpr int64_t kWarp = 32;

using hostkernels::numberForName;

/// The widest vector (8, 4, 2 or 1 bf16 elements) that divides `n`.
inline int64_t vectorWidthFor(int64_t n) {
  for (int64_t w : {8, 4, 2})
    if (n % w == 0)
      return w;
  return 1;
}

/// A block of whole warps covering `items` work items, at most `cap`.
inline int64_t blockFor(int64_t items, int64_t cap) {
  return std::clamp<int64_t>(llvm::alignTo(items, kWarp), kWarp, cap);
}

/// Finds or creates the gpu.module, loads the dialects, and checks the
/// name: `exists` is set when the kernel is already there.
inline FailureOr<gpu::GPUModuleOp> prepare(ModuleOp module, StringRef name,
                                    bool &exists) {
  MLIRContext *context = module.getContext();
  context->loadDialect<arith::ArithDialect, gpu::GPUDialect, LLVM::LLVMDialect,
                       memref::MemRefDialect, NVVM::NVVMDialect,
                       scf::SCFDialect>();
  module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                  UnitAttr::get(context));
  auto gpuModule = module.lookupSymbol<gpu::GPUModuleOp>(kGpuModuleName);
  if (!gpuModule) {
    if (module.lookupSymbol(kGpuModuleName))
      return module.emitError()
             << "gpu kernel: symbol '" << kGpuModuleName
             << "' is taken by something other than a gpu.module";
    OpBuilder builder(context);
    builder.setInsertionPointToEnd(module.getBody());
    gpuModule =
        gpu::GPUModuleOp::create(builder, module.getLoc(), kGpuModuleName);
  }
  exists = false;
  if (Operation *op = gpuModule.lookupSymbol(name)) {
    if (!isa<gpu::GPUFuncOp>(op))
      return module.emitError() << "gpu kernel name '" << name
                                << "' is taken by a '" << op->getName() << "'";
    exists = true;
  }
  return gpuModule;
}

inline LogicalResult checkPositive(ModuleOp module, StringRef what, int64_t value) {
  if (value > 0)
    return success();
  return module.emitError()
         << "gpu kernel: " << what << " must be positive, got " << value;
}

inline KernelArg ptrArg(StringRef name) {
  return {name.str(), KernelArg::Kind::Pointer};
}
inline KernelArg i32Arg(StringRef name) { return {name.str(), KernelArg::Kind::I32}; }

/// Builds one kernel: the signature follows `args` (pointers are
/// `!llvm.ptr<1>`, scalars i32), `workgroup` lists the shared-memory
/// buffers (f32 each, sizes in elements).
class KernelBuilder {
public:
  /// `waitAtEntry` false: the generator calls waitForPredecessor() itself,
  /// after the loads that read only step inputs and weights (which no
  /// kernel writes), so that they overlap the previous kernel.
  KernelBuilder(gpu::GPUModuleOp gpuModule, StringRef name,
                ArrayRef<KernelArg> args, ArrayRef<int64_t> workgroup,
                int64_t blockX, bool waitAtEntry = true)
      : b(NameLoc::get(StringAttr::get(gpuModule.getContext(), name)),
          gpuModule.getContext()),
        blockX(blockX) {
    MLIRContext *context = gpuModule.getContext();
    f32 = b.getF32Type();
    f64 = b.getF64Type();
    bf16 = b.getBF16Type();
    i32 = b.getI32Type();
    i64 = b.getI64Type();
    ptr = LLVM::LLVMPointerType::get(context, /*addressSpace=*/1);
    SmallVector<Type> argTypes;
    for (const KernelArg &a : args)
      argTypes.push_back(a.kind == KernelArg::Kind::Pointer ? ptr : i32);
    auto shared =
        gpu::AddressSpaceAttr::get(context, gpu::AddressSpace::Workgroup);
    SmallVector<Type> workgroupTypes;
    for (int64_t n : workgroup)
      workgroupTypes.push_back(
          MemRefType::get({n}, f32, MemRefLayoutAttrInterface(), shared));
    b.setInsertionPointToEnd(gpuModule.getBody());
    func = gpu::GPUFuncOp::create(b, name, b.getFunctionType(argTypes, {}),
                                  workgroupTypes);
    func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
    // nvvm.reqntid becomes .reqntid: ptxas sizes registers for it, and a
    // launch with another block size fails instead of computing garbage
    // (the reductions count on blockX threads). Not known_block_size: it
    // becomes .maxntid, which ptxas refuses next to .reqntid; the thread
    // id's upper_bound gives LLVM the same range.
    func->setAttr("nvvm.reqntid",
                  b.getDenseI32ArrayAttr({int32_t(blockX), 1, 1}));
    b.setInsertionPointToStart(&func.getBody().front());
    // Programmatic dependent launch (sm_90+; PlanAbi.h): the runtime may
    // start this kernel while the previous one in the stream finishes, so
    // nothing may touch memory before the wait, which returns once that
    // grid has completed and its writes are visible. The next kernel may
    // then be scheduled as soon as every block of this one has started.
    // Without such a launch both are no-ops; for chips before sm_90 the PTX
    // codegen drops them.
    if (waitAtEntry)
      waitForPredecessor();
    NVVM::GriddepcontrolOp::create(b,
                                   NVVM::GridDepActionKind::launch_dependents);
    tid = gpu::ThreadIdOp::create(b, gpu::Dimension::x, b.getIndexAttr(blockX));
  }

  void finish() { gpu::ReturnOp::create(b); }

  /// Returns once the previous kernel of the stream has completed and its
  /// writes are visible (see the constructor).
  void waitForPredecessor() {
    NVVM::GriddepcontrolOp::create(b, NVVM::GridDepActionKind::wait);
  }
  /// Orders this thread's global accesses before and after it for every
  /// thread of the GPU (fence.acq_rel.gpu): release for the split
  /// attention's writers before their count, acquire for the block that
  /// reads what they wrote. Sequential consistency (fence.sc.gpu, CUDA's
  /// __threadfence) is more than that pattern needs, and the system scope
  /// costs far more.
  void fence() {
    LLVM::FenceOp::create(b, LLVM::AtomicOrdering::acq_rel, "device");
  }
  /// Brings the line of element `offset` of `base` (elements of `type`)
  /// into L1, so that a later load of it hits there: for step inputs a
  /// kernel may read before it waits for its predecessor.
  void prefetchL1(Value base, Type type, Value offset) {
    NVVM::PrefetchOp::create(b,
                             NVVM::PrefetchCacheLevelAttr::get(
                                 b.getContext(), NVVM::PrefetchCacheLevel::L1),
                             /*evictPriority=*/nullptr, gep(base, type, offset),
                             /*predicate=*/Value(), /*tensormap=*/false,
                             /*uniform=*/false,
                             /*in_param_space=*/false);
  }
  /// atomicAdd on an i32 in global memory; returns the old value.
  Value atomicAddI32(Value base, Value offset, Value value) {
    return LLVM::AtomicRMWOp::create(b, LLVM::AtomicBinOp::add,
                                     gep(base, i32, offset), value,
                                     LLVM::AtomicOrdering::monotonic, "device");
  }
  /// One f32 that other blocks of this grid wrote (not from a stale L1).
  Value loadF32Volatile(Value base, Value offset) {
    return LLVM::LoadOp::create(b, f32, gep(base, f32, offset), 4,
                                /*isVolatile=*/true);
  }

  /// Marks pointer arguments that the kernel only reads and that no other
  /// argument writes through: `noalias readonly` lets the NVPTX backend use
  /// the non-coherent path (ld.global.nc) for every load from them, where
  /// the per-load invariant marks do not survive all of LLVM's rewrites.
  void readOnly(ArrayRef<unsigned> args) {
    for (unsigned i : args) {
      func.setArgAttr(i, LLVM::LLVMDialect::getNoAliasAttrName(),
                      b.getUnitAttr());
      func.setArgAttr(i, LLVM::LLVMDialect::getReadonlyAttrName(),
                      b.getUnitAttr());
    }
  }

  Value arg(unsigned i) { return func.getArgument(i); }
  Value shared(unsigned i) { return func.getWorkgroupAttributions()[i]; }
  /// An i32 scalar argument as an index.
  Value argIndex(unsigned i) { return toIndex(arg(i)); }
  Value blockId(gpu::Dimension d) { return gpu::BlockIdOp::create(b, d); }

  // Constants and casts.
  Value index(int64_t v) { return arith::ConstantIndexOp::create(b, v); }
  Value constF32(double v) {
    return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
  }
  Value constF64(double v) {
    return arith::ConstantOp::create(b, b.getF64FloatAttr(v));
  }
  Value constI32(int64_t v) {
    return arith::ConstantOp::create(b, b.getI32IntegerAttr(v));
  }
  Value toIndex(Value i32Value) {
    return arith::IndexCastOp::create(b, b.getIndexType(), i32Value);
  }

  // Index arithmetic.
  Value addi(Value x, Value y) { return arith::AddIOp::create(b, x, y); }
  Value subi(Value x, Value y) { return arith::SubIOp::create(b, x, y); }
  Value muli(Value x, Value y) { return arith::MulIOp::create(b, x, y); }
  Value divui(Value x, Value y) { return arith::DivUIOp::create(b, x, y); }
  Value remui(Value x, Value y) { return arith::RemUIOp::create(b, x, y); }
  Value minsi(Value x, Value y) { return arith::MinSIOp::create(b, x, y); }
  Value maxsi(Value x, Value y) { return arith::MaxSIOp::create(b, x, y); }
  Value cmpi(arith::CmpIPredicate p, Value x, Value y) {
    return arith::CmpIOp::create(b, p, x, y);
  }
  Value select(Value c, Value x, Value y) {
    return arith::SelectOp::create(b, c, x, y);
  }

  // f32 arithmetic.
  Value add(Value x, Value y) { return arith::AddFOp::create(b, x, y); }
  Value sub(Value x, Value y) { return arith::SubFOp::create(b, x, y); }
  Value mul(Value x, Value y) { return arith::MulFOp::create(b, x, y); }
  Value div(Value x, Value y) { return arith::DivFOp::create(b, x, y); }
  Value fma(Value x, Value y, Value acc) {
    // llvm.intr.fma: math.fma would become a libdevice call.
    return LLVM::FMAOp::create(b, x, y, acc);
  }
  Value maxf(Value x, Value y) { return arith::MaximumFOp::create(b, x, y); }
  /// e^x as 2^(x log2 e) with ex2.approx (relative error ~2^-22; -inf -> 0).
  Value exp(Value x) { return exp2(mul(x, constF32(1.4426950408889634))); }
  /// 2^x with ex2.approx (-inf -> 0, NaN -> NaN).
  Value exp2(Value x) {
    return LLVM::CallIntrinsicOp::create(
               b, f32, b.getStringAttr("llvm.nvvm.ex2.approx.ftz.f32"),
               ValueRange{x})
        .getResult(0);
  }
  /// An LLVM intrinsic by name. The GPU-to-NVVM conversion turns the
  /// llvm.intr.* ops for sqrt, roundeven, exp2... into libdevice calls;
  /// llvm.call_intrinsic passes through to the NVPTX backend, which has
  /// instructions for these (sqrt.rn.f32, cvt.rni.f64.f64).
  Value intrinsic(StringRef name, Value x) {
    return LLVM::CallIntrinsicOp::create(b, x.getType(), b.getStringAttr(name),
                                         ValueRange{x})
        .getResult(0);
  }
  Value extf(Value bf) { return arith::ExtFOp::create(b, f32, bf); }
  Value truncf(Value f) { return arith::TruncFOp::create(b, bf16, f); }

  // Global memory through pointers; offsets are in elements of `element`.
  Value gep(Value base, Type element, Value offset) {
    Value off = arith::IndexCastOp::create(b, i64, offset);
    return LLVM::GEPOp::create(b, base.getType(), element, base,
                               ValueRange{off}, LLVM::GEPNoWrapFlags::inbounds);
  }
  Value loadI32(Value base, Value offset) {
    return LLVM::LoadOp::create(b, i32, gep(base, i32, offset), 4,
                                /*isVolatile=*/false, /*isNonTemporal=*/false,
                                /*isInvariant=*/true);
  }
  Value loadIndex(Value base, Value offset) {
    return toIndex(loadI32(base, offset));
  }
  /// `w` bf16 elements as one access (16 bytes for w = 8), not converted.
  /// `readOnly` marks data no kernel writes while this one runs (weights,
  /// other operands): LLVM then uses the non-coherent path (ld.global.nc).
  Value loadRaw(Value base, Value offset, int64_t w, bool readOnly) {
    return LLVM::LoadOp::create(b, VectorType::get({w}, bf16),
                                gep(base, bf16, offset), 2 * w,
                                /*isVolatile=*/false, /*isNonTemporal=*/false,
                                /*isInvariant=*/readOnly);
  }
  /// One f32 (scratch buffers the kernels write and read themselves).
  Value loadF32(Value base, Value offset) {
    return LLVM::LoadOp::create(b, f32, gep(base, f32, offset), 4);
  }
  void storeF32(Value value, Value base, Value offset) {
    LLVM::StoreOp::create(b, value, gep(base, f32, offset), 4);
  }
  void storeRaw(Value vector, Value base, Value offset) {
    int64_t w = cast<VectorType>(vector.getType()).getNumElements();
    LLVM::StoreOp::create(b, vector, gep(base, bf16, offset), 2 * w);
  }
  /// `w` bf16 elements loaded as one access and extended to f32 scalars.
  SmallVector<Value> load(Value base, Value offset, int64_t w,
                          bool readOnly = false) {
    Value vector = loadRaw(base, offset, w, readOnly);
    SmallVector<Value> values;
    for (int64_t e = 0; e < w; ++e)
      values.push_back(
          extf(LLVM::ExtractElementOp::create(b, vector, constI32(e))));
    return values;
  }
  /// Rounds f32 scalars to bf16 and stores them as one access.
  void store(ArrayRef<Value> values, Value base, Value offset) {
    auto type = VectorType::get({int64_t(values.size())}, bf16);
    Value vector = LLVM::PoisonOp::create(b, type);
    for (auto [e, v] : llvm::enumerate(values))
      vector = LLVM::InsertElementOp::create(b, vector, truncf(v),
                                             constI32(int64_t(e)));
    storeRaw(vector, base, offset);
  }

  // Shared memory.
  Value loadShared(Value memref, Value i) {
    return memref::LoadOp::create(b, memref, ValueRange{i});
  }
  void storeShared(Value v, Value memref, Value i) {
    memref::StoreOp::create(b, v, memref, ValueRange{i});
  }
  void barrier() { gpu::BarrierOp::create(b); }

  // Control flow.
  void loop(Value lb, Value ub, Value step,
            llvm::function_ref<void(Value)> body) {
    auto forOp = scf::ForOp::create(b, lb, ub, step);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(forOp.getBody()->getTerminator());
    body(forOp.getInductionVar());
  }
  SmallVector<Value>
  loopCarry(Value lb, Value ub, Value step, ValueRange init,
            llvm::function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    auto forOp = scf::ForOp::create(b, lb, ub, step, init);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToEnd(forOp.getBody());
      scf::YieldOp::create(
          b, body(forOp.getInductionVar(), forOp.getRegionIterArgs()));
    }
    return SmallVector<Value>(forOp.getResults());
  }
  /// Items [0, n) strided over the block's threads.
  void forThreads(Value n, llvm::function_ref<void(Value)> body) {
    loop(tid, n, index(blockX), body);
  }
  void ifThen(Value cond, llvm::function_ref<void()> body) {
    auto ifOp = scf::IfOp::create(b, cond, /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(ifOp.thenBlock()->getTerminator());
    body();
  }
  /// if cond then thenBody() else elseValues, yielding values.
  SmallVector<Value> ifElse(Value cond, TypeRange types,
                            llvm::function_ref<SmallVector<Value>()> thenBody,
                            llvm::function_ref<SmallVector<Value>()> elseBody) {
    auto ifOp = scf::IfOp::create(b, types, cond, /*withElseRegion=*/true);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(ifOp.thenBlock());
      scf::YieldOp::create(b, thenBody());
      b.setInsertionPointToStart(ifOp.elseBlock());
      scf::YieldOp::create(b, elseBody());
    }
    return SmallVector<Value>(ifOp.getResults());
  }

  // Reductions.
  Value combine(Value x, Value y, bool isMax) {
    return isMax ? maxf(x, y) : add(x, y);
  }
  /// Butterfly over the warp: every lane gets the total.
  Value warpReduce(Value v, bool isMax) {
    for (int32_t offset = kWarp / 2; offset > 0; offset /= 2) {
      auto shuffle =
          gpu::ShuffleOp::create(b, v, offset, kWarp, gpu::ShuffleMode::XOR);
      v = combine(v, shuffle.getShuffleResult(), isMax);
    }
    return v;
  }
  /// Every thread of the block gets the total; `scratch` holds one f32 per
  /// warp. Must be reached by all threads (it has barriers).
  Value blockReduce(Value v, bool isMax, Value scratch) {
    v = warpReduce(v, isMax);
    int64_t warps = blockX / kWarp;
    if (warps == 1)
      return v;
    Value lane = remui(tid, index(kWarp));
    Value warp = divui(tid, index(kWarp));
    ifThen(cmpi(arith::CmpIPredicate::eq, lane, index(0)),
           [&] { storeShared(v, scratch, warp); });
    barrier();
    Value total = loadShared(scratch, index(0));
    for (int64_t w = 1; w < warps; ++w)
      total = combine(total, loadShared(scratch, index(w)), isMax);
    // The scratch is free again only when every thread has read it.
    barrier();
    return total;
  }

  ImplicitLocOpBuilder b;
  gpu::GPUFuncOp func;
  int64_t blockX;
  Value tid;
  Type f32, f64, bf16, i32, i64, ptr;
};

/// What the GPU generators require of a KV cache: positive sizes and the
/// bf16 element type (the only one generated for GPUs so far).
inline LogicalResult checkGpuCache(ModuleOp module,
                                   const hostkernels::KvCacheShape &cache) {
  if (cache.elementType != hostkernels::KvElementType::Native)
    return module.emitError()
           << "gpu kernel: only a bf16 KV cache is generated for GPUs so far";
  return hostkernels::checkKvCacheShape(module, cache, "gpu kernel");
}

/// The parameters of the attention kernels over the paged cache
/// (paged_attention's ABI, GpuKernels.h), with the split kernel's scratch.
inline std::vector<KernelArg> attentionArgs(bool withWorkspace) {
  std::vector<KernelArg> args = {
      ptrArg("q"),           ptrArg("key_cache"),   ptrArg("value_cache"),
      ptrArg("query_start"), ptrArg("context_len"), ptrArg("block_table"),
      ptrArg("out")};
  if (withWorkspace)
    args.push_back(ptrArg("workspace"));
  for (const char *scalar : {"T", "S", "q_row_stride", "block_table_stride"})
    args.push_back(i32Arg(scalar));
  return args;
}

/// Guards the body of a kernel whose grid.x counts rows: blocks past the
/// row count argument return.
inline void forRow(KernelBuilder &k, unsigned rowCountArg,
            llvm::function_ref<void(Value)> body) {
  Value row = k.blockId(gpu::Dimension::x);
  k.ifThen(k.cmpi(arith::CmpIPredicate::ult, row, k.argIndex(rowCountArg)),
           [&] { body(row); });
}

/// The launch rule of a kernel with one block per row.
inline LaunchRule perRow(int64_t blockX) {
  LaunchRule rule;
  rule.blockX = blockX;
  return rule;
}

} // namespace detail
} // namespace gpukernels
} // namespace optmlir

#endif // OPTMLIR_LIB_CONVERSION_GPUKERNELS_KERNELBUILDER_H
