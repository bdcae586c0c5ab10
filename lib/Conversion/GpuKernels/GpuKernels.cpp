//===- GpuKernels.cpp - Generators of the NVIDIA GPU kernels -------------===//
//
// Kernels are written with gpu (thread/block ids, shuffles, barriers,
// workgroup memrefs), scf and arith ops; global memory is reached through
// `!llvm.ptr<1>` kernel arguments with llvm.getelementptr/load/store, which
// gives the plain-pointer ABI of GpuKernels.h and lets every access carry
// its alignment (16 for the vectors: LLVM then emits ld.global.v4.b32).
// Index arithmetic is in `index` (64-bit after lowering) so that cache
// offsets never overflow. Transcendentals use the PTX approximate
// instructions (ex2, sin, cos) so that no libdevice is needed.
//
//===----------------------------------------------------------------------===//

#include "optmlir/Conversion/GpuKernels.h"
#include "KernelBuilder.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMTypes.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/Support/MathExtras.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

using namespace mlir;

namespace optmlir {
namespace gpukernels {
using namespace detail;
namespace {

/// Copies `width`-element rows: out[r] = src[index(r)] (embed, gather).
FailureOr<GpuKernel> buildRowCopy(ModuleOp module, StringRef name,
                                  int64_t width, ArrayRef<KernelArg> args) {
  int64_t w = vectorWidthFor(width);
  int64_t chunks = width / w;
  GpuKernel kernel{name.str(), perRow(blockFor(chunks, 256)), args.vec(), w};
  bool exists;
  FailureOr<gpu::GPUModuleOp> gpuModule = prepare(module, name, exists);
  if (failed(gpuModule))
    return failure();
  if (exists)
    return kernel;
  // args: (index array, source, out, count) for embed; gather_rows is
  // (source, index array, out, count).
  bool indexFirst = args[0].name == "ids";
  KernelBuilder k(*gpuModule, name, args, {}, kernel.launch.blockX);
  k.readOnly({0, 1});
  Value indices = k.arg(indexFirst ? 0 : 1), src = k.arg(indexFirst ? 1 : 0),
        out = k.arg(2);
  forRow(k, 3, [&](Value r) {
    Value srcRow = k.loadIndex(indices, r);
    Value srcBase = k.muli(srcRow, k.index(width));
    Value outBase = k.muli(r, k.index(width));
    k.forThreads(k.index(chunks), [&](Value c) {
      Value off = k.muli(c, k.index(w));
      k.storeRaw(k.loadRaw(src, k.addi(srcBase, off), w, /*readOnly=*/true),
                 out, k.addi(outBase, off));
    });
  });
  k.finish();
  return kernel;
}

/// rms_norm and add_rms_norm.
FailureOr<GpuKernel> buildNorm(ModuleOp module, int64_t hidden, double eps,
                               bool withResidual) {
  if (failed(checkPositive(module, "hidden size", hidden)))
    return failure();
  std::string name = std::string(withResidual ? "add_rms_norm" : "rms_norm") +
                     "_h" + std::to_string(hidden) + "_eps" +
                     numberForName(eps, 9);
  int64_t w = vectorWidthFor(hidden);
  int64_t chunks = hidden / w;
  std::vector<KernelArg> args;
  if (withResidual)
    args = {ptrArg("x"), ptrArg("residual"), ptrArg("weight"), ptrArg("out"),
            i32Arg("T")};
  else
    args = {ptrArg("x"), ptrArg("weight"), ptrArg("out"), i32Arg("T")};
  GpuKernel kernel{name, perRow(blockFor(chunks, 1024)), args, w};
  bool exists;
  FailureOr<gpu::GPUModuleOp> gpuModule = prepare(module, name, exists);
  if (failed(gpuModule))
    return failure();
  if (exists)
    return kernel;
  KernelBuilder k(*gpuModule, name, args, {kWarp}, kernel.launch.blockX);
  k.readOnly({withResidual ? 2u : 1u}); // the weight
  Value x = k.arg(0);
  Value residual = withResidual ? k.arg(1) : Value();
  Value weight = k.arg(withResidual ? 2 : 1);
  Value out = k.arg(withResidual ? 3 : 2);
  unsigned countArg = withResidual ? 4 : 3;
  // The normalized row is read from here: the residual after its update.
  Value src = withResidual ? residual : x;
  forRow(k, countArg, [&](Value t) {
    Value base = k.muli(t, k.index(hidden));
    Value partial = k.loopCarry(
        k.tid, k.index(chunks), k.index(k.blockX), {k.constF32(0.0)},
        [&](Value c, ValueRange acc) -> SmallVector<Value> {
          Value off = k.addi(base, k.muli(c, k.index(w)));
          SmallVector<Value> v = k.load(src, off, w);
          if (withResidual) {
            SmallVector<Value> xv = k.load(x, off, w);
            for (int64_t e = 0; e < w; ++e)
              // Square what is stored: out = rms_norm(residual).
              v[e] = k.extf(k.truncf(k.add(v[e], xv[e])));
            k.store(v, residual, off);
          }
          Value sum = acc[0];
          for (Value e : v)
            sum = k.fma(e, e, sum);
          return {sum};
        })[0];
    Value total = k.blockReduce(partial, /*isMax=*/false, k.shared(0));
    Value mean = k.div(total, k.constF32(double(hidden)));
    Value inv =
        k.div(k.constF32(1.0),
              k.intrinsic("llvm.sqrt.f32", k.add(mean, k.constF32(eps))));
    // Each thread reads back only the chunks it wrote above.
    k.forThreads(k.index(chunks), [&](Value c) {
      Value col = k.muli(c, k.index(w));
      Value off = k.addi(base, col);
      SmallVector<Value> v = k.load(src, off, w);
      SmallVector<Value> g = k.load(weight, col, w, /*readOnly=*/true);
      for (int64_t e = 0; e < w; ++e)
        v[e] = k.mul(k.mul(v[e], inv), g[e]);
      k.store(v, out, off);
    });
  });
  k.finish();
  return kernel;
}

} // namespace

//===----------------------------------------------------------------------===//
// Kernels
//===----------------------------------------------------------------------===//

FailureOr<GpuKernel> buildEmbed(ModuleOp module, int64_t vocabSize,
                                int64_t hidden) {
  if (failed(checkPositive(module, "vocab size", vocabSize)) ||
      failed(checkPositive(module, "hidden size", hidden)))
    return failure();
  std::string name =
      "embed_v" + std::to_string(vocabSize) + "_h" + std::to_string(hidden);
  return buildRowCopy(
      module, name, hidden,
      {ptrArg("ids"), ptrArg("table"), ptrArg("out"), i32Arg("T")});
}

FailureOr<GpuKernel> buildGatherRows(ModuleOp module, int64_t hidden) {
  if (failed(checkPositive(module, "hidden size", hidden)))
    return failure();
  std::string name = "gather_rows_h" + std::to_string(hidden);
  return buildRowCopy(
      module, name, hidden,
      {ptrArg("x"), ptrArg("rows"), ptrArg("out"), i32Arg("R")});
}

FailureOr<GpuKernel> buildRmsNorm(ModuleOp module, int64_t hidden, double eps) {
  return buildNorm(module, hidden, eps, /*withResidual=*/false);
}

FailureOr<GpuKernel> buildAddRmsNorm(ModuleOp module, int64_t hidden,
                                     double eps) {
  return buildNorm(module, hidden, eps, /*withResidual=*/true);
}

FailureOr<GpuKernel> buildAdd(ModuleOp module, int64_t hidden) {
  if (failed(checkPositive(module, "hidden size", hidden)))
    return failure();
  std::string name = "add_h" + std::to_string(hidden);
  int64_t w = vectorWidthFor(hidden);
  int64_t chunks = hidden / w;
  std::vector<KernelArg> args = {ptrArg("a"), ptrArg("b"), i32Arg("T")};
  GpuKernel kernel{name, perRow(blockFor(chunks, 256)), args, w};
  bool exists;
  FailureOr<gpu::GPUModuleOp> gpuModule = prepare(module, name, exists);
  if (failed(gpuModule))
    return failure();
  if (exists)
    return kernel;
  KernelBuilder k(*gpuModule, name, args, {}, kernel.launch.blockX);
  Value a = k.arg(0), bArg = k.arg(1);
  forRow(k, 2, [&](Value t) {
    Value base = k.muli(t, k.index(hidden));
    k.forThreads(k.index(chunks), [&](Value c) {
      Value off = k.addi(base, k.muli(c, k.index(w)));
      SmallVector<Value> x = k.load(a, off, w);
      SmallVector<Value> y = k.load(bArg, off, w, /*readOnly=*/true);
      for (int64_t e = 0; e < w; ++e)
        x[e] = k.add(x[e], y[e]);
      k.store(x, a, off);
    });
  });
  k.finish();
  return kernel;
}

FailureOr<GpuKernel> buildAddBias(ModuleOp module, int64_t features) {
  if (failed(checkPositive(module, "feature count", features)))
    return failure();
  std::string name = "add_bias_n" + std::to_string(features);
  int64_t w = vectorWidthFor(features);
  int64_t chunks = features / w;
  std::vector<KernelArg> args = {ptrArg("x"), ptrArg("bias"), i32Arg("T")};
  GpuKernel kernel{name, perRow(blockFor(chunks, 256)), args, w};
  bool exists;
  FailureOr<gpu::GPUModuleOp> gpuModule = prepare(module, name, exists);
  if (failed(gpuModule))
    return failure();
  if (exists)
    return kernel;
  KernelBuilder k(*gpuModule, name, args, {}, kernel.launch.blockX);
  k.readOnly({1});
  Value x = k.arg(0), bias = k.arg(1);
  forRow(k, 2, [&](Value t) {
    Value base = k.muli(t, k.index(features));
    k.forThreads(k.index(chunks), [&](Value c) {
      Value col = k.muli(c, k.index(w));
      Value off = k.addi(base, col);
      SmallVector<Value> v = k.load(x, off, w);
      SmallVector<Value> bv = k.load(bias, col, w, /*readOnly=*/true);
      for (int64_t e = 0; e < w; ++e)
        v[e] = k.add(v[e], bv[e]);
      k.store(v, x, off);
    });
  });
  k.finish();
  return kernel;
}

/// out = silu(gate) * up, e^-g = inf for very negative g giving -0.
static Value emitSiluMul(KernelBuilder &k, Value gate, Value up) {
  Value e = k.exp(arith::NegFOp::create(k.b, gate));
  return k.mul(k.div(gate, k.add(k.constF32(1.0), e)), up);
}

FailureOr<GpuKernel> buildSwiGLUSplit(ModuleOp module, int64_t intermediate) {
  if (failed(checkPositive(module, "intermediate size", intermediate)))
    return failure();
  std::string name = "swiglu_split_i" + std::to_string(intermediate);
  int64_t w = vectorWidthFor(intermediate);
  int64_t chunks = intermediate / w;
  std::vector<KernelArg> args = {ptrArg("gate"), ptrArg("up"), ptrArg("out"),
                                 i32Arg("T")};
  GpuKernel kernel{name, perRow(blockFor(chunks, 256)), args, w};
  bool exists;
  FailureOr<gpu::GPUModuleOp> gpuModule = prepare(module, name, exists);
  if (failed(gpuModule))
    return failure();
  if (exists)
    return kernel;
  KernelBuilder k(*gpuModule, name, args, {}, kernel.launch.blockX);
  Value gate = k.arg(0), up = k.arg(1), out = k.arg(2);
  forRow(k, 3, [&](Value t) {
    Value base = k.muli(t, k.index(intermediate));
    k.forThreads(k.index(chunks), [&](Value c) {
      Value off = k.addi(base, k.muli(c, k.index(w)));
      // `out` may alias `gate` or `up`: each element is read before it is
      // written, by the same thread.
      SmallVector<Value> g = k.load(gate, off, w);
      SmallVector<Value> u = k.load(up, off, w);
      for (int64_t e = 0; e < w; ++e)
        g[e] = emitSiluMul(k, g[e], u[e]);
      k.store(g, out, off);
    });
  });
  k.finish();
  return kernel;
}

FailureOr<GpuKernel> buildSwiGLU(ModuleOp module, int64_t intermediate) {
  if (failed(checkPositive(module, "intermediate size", intermediate)))
    return failure();
  std::string name = "swiglu_i" + std::to_string(intermediate);
  int64_t w = vectorWidthFor(intermediate);
  int64_t chunks = intermediate / w;
  std::vector<KernelArg> args = {ptrArg("gate_up"), ptrArg("out"), i32Arg("T")};
  GpuKernel kernel{name, perRow(blockFor(chunks, 256)), args, w};
  bool exists;
  FailureOr<gpu::GPUModuleOp> gpuModule = prepare(module, name, exists);
  if (failed(gpuModule))
    return failure();
  if (exists)
    return kernel;
  KernelBuilder k(*gpuModule, name, args, {}, kernel.launch.blockX);
  k.readOnly({0});
  Value gateUp = k.arg(0), out = k.arg(1);
  forRow(k, 2, [&](Value t) {
    Value inBase = k.muli(t, k.index(2 * intermediate));
    Value outBase = k.muli(t, k.index(intermediate));
    k.forThreads(k.index(chunks), [&](Value c) {
      Value col = k.muli(c, k.index(w));
      Value gateOff = k.addi(inBase, col);
      SmallVector<Value> g = k.load(gateUp, gateOff, w, /*readOnly=*/true);
      SmallVector<Value> u =
          k.load(gateUp, k.addi(gateOff, k.index(intermediate)), w,
                 /*readOnly=*/true);
      for (int64_t e = 0; e < w; ++e)
        g[e] = emitSiluMul(k, g[e], u[e]);
      k.store(g, out, k.addi(outBase, col));
    });
  });
  k.finish();
  return kernel;
}

FailureOr<GpuKernel> buildRope(ModuleOp module,
                               const hostkernels::RopeParams &params) {
  const int64_t headDim = params.headDim, half = headDim / 2;
  FailureOr<std::string> ropeName = hostkernels::ropeKernelName(module, params);
  if (failed(ropeName))
    return failure();
  std::string name = *ropeName;
  const int64_t numHeads = params.numHeads, numKvHeads = params.numKvHeads;
  int64_t w = vectorWidthFor(half);
  int64_t chunksPerHead = half / w;
  int64_t items = (numHeads + numKvHeads) * chunksPerHead;
  std::vector<KernelArg> args = {ptrArg("q"),
                                 ptrArg("k"),
                                 ptrArg("positions"),
                                 i32Arg("T"),
                                 i32Arg("q_row_stride"),
                                 i32Arg("k_row_stride")};
  GpuKernel kernel{name, perRow(blockFor(std::max(items, half), 256)), args, w};
  bool exists;
  FailureOr<gpu::GPUModuleOp> gpuModule = prepare(module, name, exists);
  if (failed(gpuModule))
    return failure();
  if (exists)
    return kernel;

  // The table as HF holds it (f32), in the constant bank.
  MLIRContext *context = module.getContext();
  std::vector<float> invFreq;
  for (double f :
       hostkernels::computeRopeInvFreq(headDim, params.theta, params.scaling))
    invFreq.push_back(float(f));
  std::string tableName = name + "_inv_freq";
  constexpr unsigned kConstantSpace = 4;
  {
    ImplicitLocOpBuilder builder(module.getLoc(), context);
    builder.setInsertionPointToStart(gpuModule->getBody());
    auto tensorType = RankedTensorType::get({half}, builder.getF32Type());
    LLVM::GlobalOp::create(
        builder, LLVM::LLVMArrayType::get(builder.getF32Type(), half),
        /*isConstant=*/true, LLVM::Linkage::Internal, tableName,
        DenseElementsAttr::get(tensorType, llvm::ArrayRef<float>(invFreq)),
        /*alignment=*/16, kConstantSpace);
  }

  KernelBuilder k(*gpuModule, name, args, {half, half}, kernel.launch.blockX);
  Value q = k.arg(0), key = k.arg(1), positions = k.arg(2);
  Value qStride = k.argIndex(4), kStride = k.argIndex(5);
  Value cosTable = k.shared(0), sinTable = k.shared(1);
  const double twoPi = 2 * llvm::numbers::pi;
  forRow(k, 3, [&](Value t) {
    Value pos = arith::SIToFPOp::create(k.b, k.f32, k.loadI32(positions, t));
    Value table = LLVM::AddressOfOp::create(
        k.b, LLVM::LLVMPointerType::get(context, kConstantSpace), tableName);
    k.forThreads(k.index(half), [&](Value i) {
      Value f = LLVM::LoadOp::create(k.b, k.f32, k.gep(table, k.f32, i), 4);
      // The angle is the f32 product HF forms; sin.approx/cos.approx see it
      // reduced to [-pi, pi] in double, exactly, whatever the position.
      Value wide = arith::ExtFOp::create(k.b, k.f64, k.mul(pos, f));
      Value turns = k.intrinsic(
          "llvm.roundeven.f64",
          arith::MulFOp::create(k.b, wide, k.constF64(1.0 / twoPi)));
      Value reduced =
          k.fma(arith::NegFOp::create(k.b, turns), k.constF64(twoPi), wide);
      Value narrow = arith::TruncFOp::create(k.b, k.f32, reduced);
      k.storeShared(k.intrinsic("llvm.nvvm.cos.approx.f", narrow), cosTable, i);
      k.storeShared(k.intrinsic("llvm.nvvm.sin.approx.f", narrow), sinTable, i);
    });
    k.barrier();
    k.forThreads(k.index(items), [&](Value item) {
      Value head = k.divui(item, k.index(chunksPerHead));
      Value i0 = k.muli(k.remui(item, k.index(chunksPerHead)), k.index(w));
      Value isQ = k.cmpi(arith::CmpIPredicate::ult, head, k.index(numHeads));
      Value base = k.select(
          isQ, k.addi(k.muli(t, qStride), k.muli(head, k.index(headDim))),
          k.addi(k.muli(t, kStride),
                 k.muli(k.subi(head, k.index(numHeads)), k.index(headDim))));
      Value x = k.select(isQ, q, key);
      Value lowOff = k.addi(base, i0);
      Value highOff = k.addi(lowOff, k.index(half));
      SmallVector<Value> x1 = k.load(x, lowOff, w);
      SmallVector<Value> x2 = k.load(x, highOff, w);
      SmallVector<Value> y1, y2;
      for (int64_t e = 0; e < w; ++e) {
        Value i = k.addi(i0, k.index(e));
        Value c = k.loadShared(cosTable, i), s = k.loadShared(sinTable, i);
        y1.push_back(k.sub(k.mul(x1[e], c), k.mul(x2[e], s)));
        y2.push_back(k.add(k.mul(x2[e], c), k.mul(x1[e], s)));
      }
      k.store(y1, x, lowOff);
      k.store(y2, x, highOff);
    });
  });
  k.finish();
  return kernel;
}

static LogicalResult checkCache(ModuleOp module,
                                const hostkernels::KvCacheShape &cache) {
  return success(
      succeeded(checkPositive(module, "kv head count", cache.numKvHeads)) &&
      succeeded(checkPositive(module, "head dim", cache.headDim)) &&
      succeeded(checkPositive(module, "block size", cache.blockSize)));
}

FailureOr<GpuKernel> buildKvWrite(ModuleOp module,
                                  const hostkernels::KvCacheShape &cache) {
  if (failed(checkCache(module, cache)))
    return failure();
  std::string name = "kv_write_kv" + std::to_string(cache.numKvHeads) + "_d" +
                     std::to_string(cache.headDim) + "_b" +
                     std::to_string(cache.blockSize);
  const int64_t headDim = cache.headDim;
  int64_t w = vectorWidthFor(headDim);
  int64_t chunksPerHead = headDim / w;
  int64_t items = cache.numKvHeads * chunksPerHead;
  std::vector<KernelArg> args = {ptrArg("k"),
                                 ptrArg("v"),
                                 ptrArg("key_cache"),
                                 ptrArg("value_cache"),
                                 ptrArg("slot_mapping"),
                                 i32Arg("T"),
                                 i32Arg("k_row_stride"),
                                 i32Arg("v_row_stride")};
  GpuKernel kernel{name, perRow(blockFor(items, 256)), args, w};
  bool exists;
  FailureOr<gpu::GPUModuleOp> gpuModule = prepare(module, name, exists);
  if (failed(gpuModule))
    return failure();
  if (exists)
    return kernel;
  KernelBuilder k(*gpuModule, name, args, {}, kernel.launch.blockX);
  k.readOnly({0, 1, 4});
  Value key = k.arg(0), value = k.arg(1), keyCache = k.arg(2),
        valueCache = k.arg(3), slots = k.arg(4);
  Value kStride = k.argIndex(6), vStride = k.argIndex(7);
  forRow(k, 5, [&](Value t) {
    Value slot = k.loadI32(slots, t);
    k.ifThen(k.cmpi(arith::CmpIPredicate::sge, slot, k.constI32(0)), [&] {
      // [numBlocks, B, Hkv, D] is dense: slot = block * B + offset is the
      // row of the [numBlocks * B, Hkv * D] view.
      Value cacheBase =
          k.muli(k.toIndex(slot), k.index(cache.numKvHeads * headDim));
      k.forThreads(k.index(items), [&](Value item) {
        Value head = k.divui(item, k.index(chunksPerHead));
        Value col =
            k.addi(k.muli(head, k.index(headDim)),
                   k.muli(k.remui(item, k.index(chunksPerHead)), k.index(w)));
        Value dst = k.addi(cacheBase, col);
        k.storeRaw(k.loadRaw(key, k.addi(k.muli(t, kStride), col), w, true),
                   keyCache, dst);
        k.storeRaw(k.loadRaw(value, k.addi(k.muli(t, vStride), col), w, true),
                   valueCache, dst);
      });
    });
  });
  k.finish();
  return kernel;
}

FailureOr<GpuKernel>
buildPagedAttention(ModuleOp module,
                    const hostkernels::PagedAttentionParams &params) {
  const hostkernels::KvCacheShape &cache = params.cache;
  if (failed(checkCache(module, cache)) ||
      failed(checkPositive(module, "head count", params.numHeads)))
    return failure();
  if (params.numHeads % cache.numKvHeads != 0)
    return module.emitError()
           << "gpu kernel: head count " << params.numHeads
           << " is not a multiple of the kv head count " << cache.numKvHeads;
  if (params.slidingWindow < 0)
    return module.emitError()
           << "gpu kernel: negative sliding window " << params.slidingWindow;
  if (cache.headDim > 1024)
    return module.emitError()
           << "gpu kernel: head dim " << cache.headDim << " above 1024";
  const int64_t numHeads = params.numHeads, numKvHeads = cache.numKvHeads;
  const int64_t group = numHeads / numKvHeads;
  const int64_t headDim = cache.headDim, blockSize = cache.blockSize;
  std::string name =
      "paged_attention_h" + std::to_string(numHeads) + "_kv" +
      std::to_string(numKvHeads) + "_d" + std::to_string(headDim) + "_b" +
      std::to_string(blockSize) + "_s" + numberForName(params.scale, 9) + "_w" +
      std::to_string(params.slidingWindow);
  // One thread per key of a tile when scoring, one per output element
  // when accumulating: the block covers both.
  const int64_t blockX = std::max<int64_t>(128, llvm::alignTo(headDim, kWarp));
  int64_t w = vectorWidthFor(headDim);
  std::vector<KernelArg> args = {ptrArg("q"),
                                 ptrArg("key_cache"),
                                 ptrArg("value_cache"),
                                 ptrArg("query_start"),
                                 ptrArg("context_len"),
                                 ptrArg("block_table"),
                                 ptrArg("out"),
                                 i32Arg("T"),
                                 i32Arg("S"),
                                 i32Arg("q_row_stride"),
                                 i32Arg("block_table_stride")};
  LaunchRule rule = perRow(blockX);
  rule.gridY = numHeads;
  GpuKernel kernel{name, rule, args, w};
  bool exists;
  FailureOr<gpu::GPUModuleOp> gpuModule = prepare(module, name, exists);
  if (failed(gpuModule))
    return failure();
  if (exists)
    return kernel;

  KernelBuilder k(*gpuModule, name, args, {headDim, blockX, kWarp}, blockX);
  k.readOnly({0, 1, 2, 3, 4, 5});
  Value q = k.arg(0), keyCache = k.arg(1), valueCache = k.arg(2),
        queryStart = k.arg(3), contextLen = k.arg(4), blockTable = k.arg(5),
        out = k.arg(6);
  Value numSeqs = k.argIndex(8), qStride = k.argIndex(9),
        tableStride = k.argIndex(10);
  Value qShared = k.shared(0), probs = k.shared(1), scratch = k.shared(2);
  using P = arith::CmpIPredicate;
  Value c0 = k.index(0), c1 = k.index(1), cBlock = k.index(blockSize);
  Value cD = k.index(headDim), cKv = k.index(numKvHeads);
  Value negInf = k.constF32(-INFINITY), zero = k.constF32(0.0);

  forRow(k, 7, [&](Value t) {
    Value h = k.blockId(gpu::Dimension::y);
    Value kvHead = k.divui(h, k.index(group));
    // The sequence of token t: the number of sequences ending at or before
    // it (empty ones included). Uniform across the block.
    Value s =
        k.loopCarry(c0, numSeqs, c1, {c0},
                    [&](Value i, ValueRange count) -> SmallVector<Value> {
                      Value end = k.loadIndex(queryStart, k.addi(i, c1));
                      Value ended = k.cmpi(P::sle, end, t);
                      return {k.select(ended, k.addi(count[0], c1), count[0])};
                    })[0];
    Value inSeq = k.cmpi(P::ult, s, numSeqs);
    k.ifThen(inSeq, [&] {
      Value first = k.loadIndex(queryStart, s);
      k.ifThen(k.cmpi(P::sle, first, t), [&] {
        Value last = k.loadIndex(queryStart, k.addi(s, c1));
        Value ctx = k.loadIndex(contextLen, s);
        // pos = ctx - n + (t - first) = t + (ctx - last).
        Value pos = k.addi(t, k.subi(ctx, last));
        Value lo = c0;
        if (params.slidingWindow > 0)
          lo = k.maxsi(k.subi(pos, k.index(params.slidingWindow - 1)), c0);
        Value posEnd = k.addi(pos, c1);
        Value tableBase = k.muli(s, tableStride);
        // Row of key j in the [numBlocks * B, Hkv, D] view, times Hkv * D,
        // plus this kv head.
        auto keyOffset = [&](Value j) {
          Value block =
              k.loadIndex(blockTable, k.addi(tableBase, k.divui(j, cBlock)));
          Value row = k.addi(k.muli(block, cBlock), k.remui(j, cBlock));
          return k.muli(k.addi(k.muli(row, cKv), kvHead), cD);
        };

        Value qBase = k.addi(k.muli(t, qStride), k.muli(h, cD));
        k.forThreads(cD, [&](Value d) {
          k.storeShared(k.load(q, k.addi(qBase, d), 1, true)[0], qShared, d);
        });
        k.barrier();

        // Online softmax over tiles of blockX keys. Carried: running max,
        // running sum, and this thread's output element (tid < D).
        Value scale = k.constF32(params.scale);
        SmallVector<Value> state = k.loopCarry(
            lo, posEnd, k.index(blockX), {negInf, zero, zero},
            [&](Value tileStart, ValueRange st) -> SmallVector<Value> {
              Value runMax = st[0], runSum = st[1], acc = st[2];
              Value j = k.addi(tileStart, k.tid);
              Value inRange = k.cmpi(P::slt, j, posEnd);
              Value score = k.ifElse(
                  inRange, {k.f32},
                  [&]() -> SmallVector<Value> {
                    Value kBase = keyOffset(j);
                    Value dot = k.loopCarry(
                        c0, cD, k.index(w), {zero},
                        [&](Value d, ValueRange a) -> SmallVector<Value> {
                          SmallVector<Value> kv =
                              k.load(keyCache, k.addi(kBase, d), w, true);
                          Value sum = a[0];
                          for (int64_t e = 0; e < w; ++e)
                            sum = k.fma(
                                k.loadShared(qShared, k.addi(d, k.index(e))),
                                kv[e], sum);
                          return {sum};
                        })[0];
                    return {k.mul(dot, scale)};
                  },
                  [&]() -> SmallVector<Value> { return {negInf}; })[0];
              Value tileMax = k.blockReduce(score, /*isMax=*/true, scratch);
              Value newMax = k.maxf(runMax, tileMax);
              // Keys out of range score -inf: exp gives 0.
              Value p = k.exp(k.sub(score, newMax));
              k.storeShared(p, probs, k.tid);
              Value tileSum = k.blockReduce(p, /*isMax=*/false, scratch);
              k.barrier(); // probs visible to all (blockReduce may not sync).
              // exp(-inf) = 0 on the first tile: nothing to rescale.
              Value correction = k.exp(k.sub(runMax, newMax));
              Value newSum = k.add(k.mul(runSum, correction), tileSum);
              Value count =
                  k.subi(k.minsi(posEnd, k.addi(tileStart, k.index(blockX))),
                         tileStart);
              Value newAcc = k.ifElse(
                  k.cmpi(P::ult, k.tid, cD), {k.f32},
                  [&]() -> SmallVector<Value> {
                    return k.loopCarry(
                        c0, count, c1, {k.mul(acc, correction)},
                        [&](Value jj, ValueRange a) -> SmallVector<Value> {
                          Value vOff =
                              k.addi(keyOffset(k.addi(tileStart, jj)), k.tid);
                          Value v = k.load(valueCache, vOff, 1, true)[0];
                          return {k.fma(k.loadShared(probs, jj), v, a[0])};
                        });
                  },
                  [&]() -> SmallVector<Value> { return {acc}; })[0];
              k.barrier(); // probs is rewritten by the next tile.
              return {newMax, newSum, newAcc};
            });
        k.ifThen(k.cmpi(P::ult, k.tid, cD), [&] {
          Value o = k.div(state[2], state[1]);
          Value outOff = k.addi(
              k.muli(k.addi(k.muli(t, k.index(numHeads)), h), cD), k.tid);
          k.store({o}, out, outOff);
        });
      });
    });
  });
  k.finish();
  return kernel;
}

FailureOr<GpuKernel> buildGemv(ModuleOp module, const GemvParams &params) {
  if (failed(checkPositive(module, "gemv N", params.n)) ||
      failed(checkPositive(module, "gemv K", params.k)) ||
      failed(checkPositive(module, "gemv max tokens", params.maxTokens)) ||
      failed(
          checkPositive(module, "gemv warps per block", params.warpsPerBlock)))
    return failure();
  if (params.maxTokens > 8)
    return module.emitError()
           << "gpu kernel: gemv serves at most 8 tokens, "
              "got "
           << params.maxTokens << " (larger batches go to cuBLASLt)";
  const int64_t warps = params.warpsPerBlock;
  if (warps > 32)
    return module.emitError() << "gpu kernel: gemv warps per block above 32";
  if (params.splitK < 0 || (params.splitK > 0 && warps % params.splitK != 0))
    return module.emitError()
           << "gpu kernel: gemv splitK " << params.splitK
           << " does not divide the warps per block " << warps;
  const int64_t n = params.n, kDim = params.k, maxT = params.maxTokens;
  // Rows per warp: with several tokens, each x vector a lane loads serves
  // that many weight rows (the x loads and FMAs, not HBM, bound T = 8 with
  // one row per warp).
  const int64_t rowsPerWarp = std::min<int64_t>(maxT, 4);
  // Measured on an H100 (7B shapes, T = 1 and 8): all warps of a block on
  // the same rows is as fast or faster than a block of independent warps
  // everywhere, by up to 30% for few long rows (4096 x 11008).
  const int64_t splitK = params.splitK == 0 ? warps : params.splitK;
  const int64_t rowsPerBlock = warps / splitK * rowsPerWarp;
  std::string name = "gemv_n" + std::to_string(n) + "_k" +
                     std::to_string(kDim) + "_t" + std::to_string(maxT) + "_w" +
                     std::to_string(warps) + "_s" + std::to_string(splitK);
  int64_t w = vectorWidthFor(kDim);
  int64_t chunks = kDim / w;
  std::vector<KernelArg> args = {ptrArg("x"), ptrArg("weight"), ptrArg("y"),
                                 i32Arg("T")};
  LaunchRule rule;
  rule.gridXPerRow = 0;
  rule.gridXFixed = llvm::divideCeil(n, rowsPerBlock);
  rule.blockX = kWarp * warps;
  GpuKernel kernel{name, rule, args, w};
  bool exists;
  FailureOr<gpu::GPUModuleOp> gpuModule = prepare(module, name, exists);
  if (failed(gpuModule))
    return failure();
  if (exists)
    return kernel;

  const int64_t perWarp = rowsPerWarp * maxT; // accumulators per lane
  KernelBuilder k(*gpuModule, name, args, {warps * perWarp}, rule.blockX);
  k.readOnly({0, 1});
  Value x = k.arg(0), weight = k.arg(1), y = k.arg(2);
  Value numTokens = k.argIndex(3);
  Value partials = k.shared(0);
  using P = arith::CmpIPredicate;
  Value lane = k.remui(k.tid, k.index(kWarp));
  Value warp = k.divui(k.tid, k.index(kWarp));
  Value slice = k.remui(warp, k.index(splitK));
  Value blockRow = k.muli(k.blockId(gpu::Dimension::x), k.index(rowsPerBlock));
  Value firstRow = k.addi(
      blockRow, k.muli(k.divui(warp, k.index(splitK)), k.index(rowsPerWarp)));
  // Rows past N read row N - 1 and tokens past T read token T - 1; neither
  // is stored. The loop body is straight-line code, its loads free to
  // issue early, and every thread reaches the barrier below.
  SmallVector<Value> wBase, xBase;
  for (int64_t r = 0; r < rowsPerWarp; ++r)
    wBase.push_back(k.muli(
        k.minsi(k.addi(firstRow, k.index(r)), k.index(n - 1)), k.index(kDim)));
  Value lastToken = k.subi(numTokens, k.index(1));
  for (int64_t t = 0; t < maxT; ++t)
    xBase.push_back(k.muli(k.minsi(k.index(t), lastToken), k.index(kDim)));

  // acc[r * maxT + t]. Slice s of K is chunks s*32 + lane + i*32*splitK:
  // the warps of a slice group read adjacent 512-byte runs.
  auto step = [&](Value c, int64_t unroll,
                  ValueRange acc) -> SmallVector<Value> {
    SmallVector<Value> cols;
    SmallVector<SmallVector<Value>> wv; // [u * rowsPerWarp + r]
    for (int64_t u = 0; u < unroll; ++u) {
      cols.push_back(
          k.muli(k.addi(c, k.index(u * kWarp * splitK)), k.index(w)));
      // The weight streams once: coalesced over the warp, through the
      // non-coherent path.
      for (int64_t r = 0; r < rowsPerWarp; ++r)
        wv.push_back(
            k.load(weight, k.addi(wBase[r], cols[u]), w, /*readOnly=*/true));
    }
    SmallVector<Value> next(acc.begin(), acc.end());
    for (int64_t u = 0; u < unroll; ++u)
      for (int64_t t = 0; t < maxT; ++t) {
        SmallVector<Value> xv =
            k.load(x, k.addi(xBase[t], cols[u]), w, /*readOnly=*/true);
        for (int64_t r = 0; r < rowsPerWarp; ++r)
          for (int64_t e = 0; e < w; ++e)
            next[r * maxT + t] =
                k.fma(xv[e], wv[u * rowsPerWarp + r][e], next[r * maxT + t]);
      }
    return next;
  };
  // rowsPerWarp * unroll 16-byte weight loads per lane in flight.
  int64_t unroll = std::max<int64_t>(1, 4 / rowsPerWarp);
  while (unroll > 1 && chunks < unroll * kWarp * splitK)
    unroll /= 2;
  const int64_t stride = kWarp * splitK;
  int64_t mainChunks = chunks / (unroll * stride) * (unroll * stride);
  Value start = k.addi(k.muli(slice, k.index(kWarp)), lane);
  SmallVector<Value> accs(perWarp, k.constF32(0.0));
  if (mainChunks > 0)
    accs = k.loopCarry(
        start, k.index(mainChunks), k.index(unroll * stride), accs,
        [&](Value c, ValueRange acc) { return step(c, unroll, acc); });
  if (mainChunks < chunks)
    accs = k.loopCarry(
        k.addi(k.index(mainChunks), start), k.index(chunks), k.index(stride),
        accs, [&](Value c, ValueRange acc) { return step(c, 1, acc); });
  for (Value &acc : accs)
    acc = k.warpReduce(acc, /*isMax=*/false);
  k.ifThen(k.cmpi(P::eq, lane, k.index(0)), [&] {
    Value base = k.muli(warp, k.index(perWarp));
    for (int64_t i = 0; i < perWarp; ++i)
      k.storeShared(accs[i], partials, k.addi(base, k.index(i)));
  });
  k.barrier();
  // One thread per (row, token) of the block sums the splitK slices.
  k.forThreads(k.index(warps / splitK * perWarp), [&](Value item) {
    Value group = k.divui(item, k.index(perWarp));
    Value within = k.remui(item, k.index(perWarp));
    Value r = k.divui(within, k.index(maxT));
    Value t = k.remui(within, k.index(maxT));
    Value row =
        k.addi(k.addi(blockRow, k.muli(group, k.index(rowsPerWarp))), r);
    Value valid = arith::AndIOp::create(k.b, k.cmpi(P::ult, row, k.index(n)),
                                        k.cmpi(P::ult, t, numTokens));
    k.ifThen(valid, [&] {
      Value first = k.muli(group, k.index(splitK * perWarp));
      Value sum = k.loadShared(partials, k.addi(first, within));
      for (int64_t s = 1; s < splitK; ++s)
        sum = k.add(sum, k.loadShared(partials, k.addi(k.addi(first, within),
                                                       k.index(s * perWarp))));
      k.store({sum}, y, k.addi(k.muli(t, k.index(n)), row));
    });
  });
  k.finish();
  return kernel;
}

} // namespace gpukernels
} // namespace optmlir
