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

/// 1 / sqrt(mean(x^2) + eps) from the row's sum of squares: one formula for
/// rms_norm and the GEMVs that fuse it, so that both normalize alike.
Value inverseRms(KernelBuilder &k, Value sumOfSquares, int64_t width,
                 double eps) {
  Value mean = k.div(sumOfSquares, k.constF32(double(width)));
  return k.div(k.constF32(1.0),
               k.intrinsic("llvm.sqrt.f32", k.add(mean, k.constF32(eps))));
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
    Value inv = inverseRms(
        k, k.blockReduce(partial, /*isMax=*/false, k.shared(0)), hidden, eps);
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

/// Chunks each thread of argmax_rows loads before comparing them.
constexpr int64_t kArgmaxUnroll = 8;

FailureOr<GpuKernel> buildArgmaxRows(ModuleOp module, int64_t vocabSize) {
  if (failed(checkPositive(module, "vocabulary size", vocabSize)))
    return failure();
  if (vocabSize >= (int64_t(1) << 24))
    return module.emitError() << "gpu kernel: argmax over " << vocabSize
                              << " entries (ids must be exact in f32)";
  std::string name = "argmax_rows_v" + std::to_string(vocabSize);
  const int64_t w = vectorWidthFor(vocabSize), chunks = vocabSize / w;
  const int64_t blockX = blockFor(chunks, 512);
  std::vector<KernelArg> args = {ptrArg("logits"), ptrArg("out"), i32Arg("R")};
  GpuKernel kernel{name, perRow(blockX), args, w};
  bool exists;
  FailureOr<gpu::GPUModuleOp> gpuModule = prepare(module, name, exists);
  if (failed(gpuModule))
    return failure();
  if (exists)
    return kernel;
  const int64_t warps = blockX / kWarp;
  // Each warp's best (value, id); ids below 2^24 are exact as f32.
  KernelBuilder k(*gpuModule, name, args, {warps, warps}, blockX);
  k.readOnly({0});
  Value logits = k.arg(0), out = k.arg(1);
  Value bestValues = k.shared(0), bestIds = k.shared(1);
  using P = arith::CmpIPredicate;
  Value none = k.constF32(double(int64_t(1) << 24));
  // (v2, i2) wins over (v, i) when larger, or equal with a lower id: the
  // host sampler's argmax (the first maximum; NaN never wins).
  auto better = [&](Value v, Value i, Value v2, Value i2) {
    Value larger =
        arith::CmpFOp::create(k.b, arith::CmpFPredicate::OGT, v2, v);
    Value tie = arith::AndIOp::create(
        k.b, arith::CmpFOp::create(k.b, arith::CmpFPredicate::OEQ, v2, v),
        arith::CmpFOp::create(k.b, arith::CmpFPredicate::OLT, i2, i));
    return arith::OrIOp::create(k.b, larger, tie);
  };
  forRow(k, 2, [&](Value r) {
    Value rowBase = k.muli(r, k.index(vocabSize));
    // A thread's chunks come in increasing order: strictly larger wins.
    // `unroll` chunks per iteration, loaded before any comparison: one
    // dependent L2 round trip per chunk made a 128k-entry row take 17 us
    // on an H200.
    auto scan = [&](Value c, int64_t unroll,
                    ValueRange st) -> SmallVector<Value> {
      SmallVector<Value> firsts;
      SmallVector<SmallVector<Value>> vs;
      for (int64_t u = 0; u < unroll; ++u) {
        firsts.push_back(k.muli(k.addi(c, k.index(u * blockX)), k.index(w)));
        vs.push_back(k.load(logits, k.addi(rowBase, firsts.back()), w, true));
      }
      Value value = st[0], id = st[1];
      for (int64_t u = 0; u < unroll; ++u)
        for (int64_t e = 0; e < w; ++e) {
          Value eId = arith::UIToFPOp::create(
              k.b, k.f32,
              arith::IndexCastOp::create(k.b, k.i32,
                                         k.addi(firsts[u], k.index(e))));
          Value take = arith::CmpFOp::create(k.b, arith::CmpFPredicate::OGT,
                                             vs[u][e], value);
          value = k.select(take, vs[u][e], value);
          id = k.select(take, eId, id);
        }
      return {value, id};
    };
    const int64_t unroll = kArgmaxUnroll;
    const int64_t mainChunks = chunks / (unroll * blockX) * (unroll * blockX);
    SmallVector<Value> best = {k.constF32(-INFINITY), none};
    if (mainChunks > 0)
      best = k.loopCarry(
          k.tid, k.index(mainChunks), k.index(unroll * blockX), best,
          [&](Value c, ValueRange st) { return scan(c, unroll, st); });
    if (mainChunks < chunks)
      best = k.loopCarry(
          k.addi(k.index(mainChunks), k.tid), k.index(chunks), k.index(blockX),
          best, [&](Value c, ValueRange st) { return scan(c, 1, st); });
    auto warpBest = [&](Value &value, Value &id) {
      for (int32_t offset = kWarp / 2; offset > 0; offset /= 2) {
        Value v2 = gpu::ShuffleOp::create(k.b, value, offset, kWarp,
                                          gpu::ShuffleMode::XOR)
                       .getShuffleResult();
        Value i2 = gpu::ShuffleOp::create(k.b, id, offset, kWarp,
                                          gpu::ShuffleMode::XOR)
                       .getShuffleResult();
        Value take = better(value, id, v2, i2);
        value = k.select(take, v2, value);
        id = k.select(take, i2, id);
      }
    };
    Value value = best[0], id = best[1];
    warpBest(value, id);
    Value lane = k.remui(k.tid, k.index(kWarp));
    Value warp = k.divui(k.tid, k.index(kWarp));
    k.ifThen(k.cmpi(P::eq, lane, k.index(0)), [&] {
      k.storeShared(value, bestValues, warp);
      k.storeShared(id, bestIds, warp);
    });
    k.barrier();
    k.ifThen(k.cmpi(P::eq, k.tid, k.index(0)), [&] {
      Value v = k.loadShared(bestValues, k.index(0));
      Value i = k.loadShared(bestIds, k.index(0));
      for (int64_t wi = 1; wi < warps; ++wi) {
        Value v2 = k.loadShared(bestValues, k.index(wi));
        Value i2 = k.loadShared(bestIds, k.index(wi));
        Value take = better(v, i, v2, i2);
        v = k.select(take, v2, v);
        i = k.select(take, i2, i);
      }
      // Nothing above -inf (or all NaN): id 0, as on the host.
      Value found = arith::CmpFOp::create(k.b, arith::CmpFPredicate::OLT, i,
                                          none);
      Value token = arith::FPToUIOp::create(k.b, k.i32,
                                            k.select(found, i, k.constF32(0)));
      LLVM::StoreOp::create(k.b, token, k.gep(out, k.i32, r), 4);
    });
  });
  k.finish();
  return kernel;
}

FailureOr<GpuKernel> buildRmsNorm(ModuleOp module, int64_t hidden, double eps) {
  return buildNorm(module, hidden, eps, /*withResidual=*/false);
}

FailureOr<GpuKernel> buildAddRmsNorm(ModuleOp module, int64_t hidden,
                                     double eps) {
  return buildNorm(module, hidden, eps, /*withResidual=*/true);
}

/// A kernel with one block per row (the last argument counts the rows)
/// whose threads take the row's `width` elements one vector of
/// vectorWidthFor(width) at a time: body(k, row, col, w) for each, col the
/// vector's first element in the row. `readOnly`: as KernelBuilder::readOnly.
static FailureOr<GpuKernel> buildRowChunks(
    ModuleOp module, StringRef what, int64_t width, const std::string &name,
    const std::vector<KernelArg> &args, ArrayRef<unsigned> readOnly,
    llvm::function_ref<void(KernelBuilder &, Value, Value, int64_t)> body) {
  if (failed(checkPositive(module, what, width)))
    return failure();
  const int64_t w = vectorWidthFor(width), chunks = width / w;
  GpuKernel kernel{name, perRow(blockFor(chunks, 256)), args, w};
  bool exists;
  FailureOr<gpu::GPUModuleOp> gpuModule = prepare(module, name, exists);
  if (failed(gpuModule))
    return failure();
  if (exists)
    return kernel;
  KernelBuilder k(*gpuModule, name, args, {}, kernel.launch.blockX);
  if (!readOnly.empty())
    k.readOnly(readOnly);
  forRow(k, args.size() - 1, [&](Value row) {
    k.forThreads(k.index(chunks), [&](Value c) {
      body(k, row, k.muli(c, k.index(w)), w);
    });
  });
  k.finish();
  return kernel;
}

FailureOr<GpuKernel> buildAdd(ModuleOp module, int64_t hidden) {
  return buildRowChunks(
      module, "hidden size", hidden, "add_h" + std::to_string(hidden),
      {ptrArg("a"), ptrArg("b"), i32Arg("T")}, {},
      [&](KernelBuilder &k, Value t, Value col, int64_t w) {
        Value off = k.addi(k.muli(t, k.index(hidden)), col);
        SmallVector<Value> x = k.load(k.arg(0), off, w);
        SmallVector<Value> y = k.load(k.arg(1), off, w, /*readOnly=*/true);
        for (int64_t e = 0; e < w; ++e)
          x[e] = k.add(x[e], y[e]);
        k.store(x, k.arg(0), off);
      });
}

FailureOr<GpuKernel> buildAddBias(ModuleOp module, int64_t features) {
  return buildRowChunks(
      module, "feature count", features,
      "add_bias_n" + std::to_string(features),
      {ptrArg("x"), ptrArg("bias"), i32Arg("T")}, {1},
      [&](KernelBuilder &k, Value t, Value col, int64_t w) {
        Value off = k.addi(k.muli(t, k.index(features)), col);
        SmallVector<Value> v = k.load(k.arg(0), off, w);
        SmallVector<Value> bias = k.load(k.arg(1), col, w, /*readOnly=*/true);
        for (int64_t e = 0; e < w; ++e)
          v[e] = k.add(v[e], bias[e]);
        k.store(v, k.arg(0), off);
      });
}

/// out = silu(gate) * up, e^-g = inf for very negative g giving -0.
static Value emitSiluMul(KernelBuilder &k, Value gate, Value up) {
  Value e = k.exp(arith::NegFOp::create(k.b, gate));
  return k.mul(k.div(gate, k.add(k.constF32(1.0), e)), up);
}

FailureOr<GpuKernel> buildSwiGLUSplit(ModuleOp module, int64_t intermediate) {
  return buildRowChunks(
      module, "intermediate size", intermediate,
      "swiglu_split_i" + std::to_string(intermediate),
      {ptrArg("gate"), ptrArg("up"), ptrArg("out"), i32Arg("T")}, {},
      [&](KernelBuilder &k, Value t, Value col, int64_t w) {
        Value off = k.addi(k.muli(t, k.index(intermediate)), col);
        // `out` may alias `gate` or `up`: each element is read before it is
        // written, by the same thread.
        SmallVector<Value> g = k.load(k.arg(0), off, w);
        SmallVector<Value> u = k.load(k.arg(1), off, w);
        for (int64_t e = 0; e < w; ++e)
          g[e] = emitSiluMul(k, g[e], u[e]);
        k.store(g, k.arg(2), off);
      });
}

FailureOr<GpuKernel> buildSwiGLU(ModuleOp module, int64_t intermediate) {
  return buildRowChunks(
      module, "intermediate size", intermediate,
      "swiglu_i" + std::to_string(intermediate),
      {ptrArg("gate_up"), ptrArg("out"), i32Arg("T")}, {0},
      [&](KernelBuilder &k, Value t, Value col, int64_t w) {
        Value gateOff = k.addi(k.muli(t, k.index(2 * intermediate)), col);
        SmallVector<Value> g = k.load(k.arg(0), gateOff, w, /*readOnly=*/true);
        SmallVector<Value> u =
            k.load(k.arg(0), k.addi(gateOff, k.index(intermediate)), w,
                   /*readOnly=*/true);
        for (int64_t e = 0; e < w; ++e)
          g[e] = emitSiluMul(k, g[e], u[e]);
        k.store(g, k.arg(1),
                k.addi(k.muli(t, k.index(intermediate)), col));
      });
}

/// Where rope's angles come from: the inverse frequencies as HF holds them
/// (f32), a table in the constant bank of the kernel module.
constexpr unsigned kConstantSpace = 4;
static void declareRopeTable(gpu::GPUModuleOp gpuModule, StringRef tableName,
                             const hostkernels::RopeParams &params) {
  const int64_t half = params.headDim / 2;
  std::vector<float> invFreq;
  for (double f : hostkernels::computeRopeInvFreq(params.headDim, params.theta,
                                                  params.scaling))
    invFreq.push_back(float(f));
  ImplicitLocOpBuilder builder(gpuModule.getLoc(), gpuModule.getContext());
  builder.setInsertionPointToStart(gpuModule.getBody());
  auto tensorType = RankedTensorType::get({half}, builder.getF32Type());
  LLVM::GlobalOp::create(
      builder, LLVM::LLVMArrayType::get(builder.getF32Type(), half),
      /*isConstant=*/true, LLVM::Linkage::Internal, tableName,
      DenseElementsAttr::get(tensorType, llvm::ArrayRef<float>(invFreq)),
      /*alignment=*/16, kConstantSpace);
}

/// cos and sin of the angle `pos` (f32) * inv_freq[i], i < D/2, from the
/// table declareRopeTable made.
static std::pair<Value, Value> ropeCosSin(KernelBuilder &k, StringRef tableName,
                                          Value pos, Value i) {
  Value table = LLVM::AddressOfOp::create(
      k.b, LLVM::LLVMPointerType::get(k.b.getContext(), kConstantSpace),
      tableName);
  Value f = LLVM::LoadOp::create(k.b, k.f32, k.gep(table, k.f32, i), 4);
  // The angle is the f32 product HF forms; sin.approx/cos.approx see it
  // reduced to [-pi, pi] in double, exactly, whatever the position.
  const double twoPi = 2 * llvm::numbers::pi;
  Value wide = arith::ExtFOp::create(k.b, k.f64, k.mul(pos, f));
  Value turns =
      k.intrinsic("llvm.roundeven.f64",
                  arith::MulFOp::create(k.b, wide, k.constF64(1.0 / twoPi)));
  Value reduced =
      k.fma(arith::NegFOp::create(k.b, turns), k.constF64(twoPi), wide);
  Value narrow = arith::TruncFOp::create(k.b, k.f32, reduced);
  return {k.intrinsic("llvm.nvvm.cos.approx.f", narrow),
          k.intrinsic("llvm.nvvm.sin.approx.f", narrow)};
}

/// rope, and with `cache` rope_kv_write: the rotated keys and the values go
/// to the cache instead of back to k.
static FailureOr<GpuKernel>
buildRopeImpl(ModuleOp module, const hostkernels::RopeParams &params,
              const hostkernels::KvCacheShape *cache) {
  const int64_t headDim = params.headDim, half = headDim / 2;
  FailureOr<std::string> ropeName = hostkernels::ropeKernelName(module, params);
  if (failed(ropeName))
    return failure();
  std::string name = *ropeName;
  const int64_t numHeads = params.numHeads, numKvHeads = params.numKvHeads;
  int64_t w = vectorWidthFor(half);
  int64_t chunksPerHead = half / w;
  int64_t items = (numHeads + numKvHeads) * chunksPerHead;
  // Values copied to the cache, one 16-byte chunk per item where possible.
  const int64_t valueWidth = vectorWidthFor(headDim);
  const int64_t valueItems = numKvHeads * headDim / valueWidth;
  std::vector<KernelArg> args = {ptrArg("q"), ptrArg("k"), ptrArg("positions"),
                                 i32Arg("T"), i32Arg("q_row_stride"),
                                 i32Arg("k_row_stride")};
  if (cache) {
    if (failed(checkGpuCache(module, *cache)))
      return failure();
    if (cache->numKvHeads != numKvHeads || cache->headDim != headDim)
      return module.emitError()
             << "gpu kernel: rope_kv_write cache of " << cache->numKvHeads
             << " kv heads of dim " << cache->headDim << " for keys of "
             << numKvHeads << " heads of dim " << headDim;
    name += "_kvw_b" + std::to_string(cache->blockSize);
    args = {ptrArg("q"),         ptrArg("k"),           ptrArg("v"),
            ptrArg("positions"), ptrArg("key_cache"),   ptrArg("value_cache"),
            ptrArg("slot_mapping"), i32Arg("T"),        i32Arg("q_row_stride"),
            i32Arg("k_row_stride"), i32Arg("v_row_stride")};
  }
  GpuKernel kernel{
      name,
      perRow(blockFor(std::max({items, half, cache ? valueItems : 0}), 256)),
      args, w};
  bool exists;
  FailureOr<gpu::GPUModuleOp> gpuModule = prepare(module, name, exists);
  if (failed(gpuModule))
    return failure();
  if (exists)
    return kernel;

  std::string tableName = name + "_inv_freq";
  declareRopeTable(*gpuModule, tableName, params);

  // The positions, the slots and the angles' table come from step inputs
  // only: they are done before the kernel waits for its predecessor
  // (programmatic dependent launch), which then leaves the loads of q, k
  // and v alone on the critical path.
  KernelBuilder k(*gpuModule, name, args, {half, half}, kernel.launch.blockX,
                  /*waitAtEntry=*/false);
  // Argument positions of the two signatures.
  const unsigned positionsArg = cache ? 3 : 2, rowsArg = cache ? 7 : 3;
  Value q = k.arg(0), key = k.arg(1), positions = k.arg(positionsArg);
  Value qStride = k.argIndex(rowsArg + 1), kStride = k.argIndex(rowsArg + 2);
  if (cache)
    k.readOnly({2, 3, 6});
  Value cosTable = k.shared(0), sinTable = k.shared(1);
  // Runs `body` with the first element of token t's cache row, unless its
  // slot is negative (a token whose keys are not kept).
  Value slot;
  auto writeToCache = [&](Value t, llvm::function_ref<void(Value)> body) {
    k.ifThen(k.cmpi(arith::CmpIPredicate::sge, slot, k.constI32(0)), [&] {
      body(k.muli(k.toIndex(slot),
                  k.index(cache->numKvHeads * cache->headDim)));
    });
  };
  forRow(k, rowsArg, [&](Value t) {
    Value pos = arith::SIToFPOp::create(k.b, k.f32, k.loadI32(positions, t));
    k.forThreads(k.index(half), [&](Value i) {
      auto [c, s] = ropeCosSin(k, tableName, pos, i);
      k.storeShared(c, cosTable, i);
      k.storeShared(s, sinTable, i);
    });
    if (cache)
      slot = k.loadI32(k.arg(6), t);
    k.barrier();
    k.waitForPredecessor();
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
      if (!cache) {
        k.store(y1, x, lowOff);
        k.store(y2, x, highOff);
        return;
      }
      k.ifThen(isQ, [&] {
        k.store(y1, x, lowOff);
        k.store(y2, x, highOff);
      });
      k.ifThen(k.cmpi(arith::CmpIPredicate::uge, head, k.index(numHeads)),
               [&] {
                 writeToCache(t, [&](Value slotBase) {
                   Value dst = k.addi(
                       slotBase,
                       k.addi(k.muli(k.subi(head, k.index(numHeads)),
                                     k.index(headDim)),
                              i0));
                   k.store(y1, k.arg(4), dst);
                   k.store(y2, k.arg(4), k.addi(dst, k.index(half)));
                 });
               });
    });
    if (cache)
      writeToCache(t, [&](Value slotBase) {
        Value vStride = k.argIndex(rowsArg + 3);
        k.forThreads(k.index(valueItems), [&](Value item) {
          Value col = k.muli(item, k.index(valueWidth));
          k.storeRaw(k.loadRaw(k.arg(2), k.addi(k.muli(t, vStride), col),
                               valueWidth, true),
                     k.arg(5), k.addi(slotBase, col));
        });
      });
  });
  k.finish();
  return kernel;
}

FailureOr<GpuKernel> buildRope(ModuleOp module,
                               const hostkernels::RopeParams &params) {
  return buildRopeImpl(module, params, nullptr);
}

FailureOr<GpuKernel> buildRopeKvWrite(ModuleOp module,
                                      const hostkernels::RopeParams &params,
                                      const hostkernels::KvCacheShape &cache) {
  return buildRopeImpl(module, params, &cache);
}

FailureOr<GpuKernel> buildKvWrite(ModuleOp module,
                                  const hostkernels::KvCacheShape &cache) {
  if (failed(checkGpuCache(module, cache)))
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

namespace {
/// The shape of the split-KV paged attention (buildPagedAttention): how a
/// block's lanes cover the keys and how many splits a step uses.
struct AttentionLayout {
  int64_t headDim, w, chunks, lanesPerKey, keysPerWarp;
  int64_t group, headsPerBlock, headGroups;
  /// Keys one block iteration covers (all warps, kAttentionUnroll keys each
  /// lane slot).
  int64_t keysPerIteration;
};

constexpr int64_t kAttentionWarps = 4;
constexpr int64_t kAttentionUnroll = 2;
/// Splits along the context are chosen so that a step launches about this
/// many working blocks (a few per SM on an H100's 132), at most
/// kMaxAttentionSplits per (token, head group).
constexpr int64_t kAttentionTargetBlocks = 512;
constexpr int64_t kMaxAttentionSplits = 32;
/// Steps of this many tokens or more use one split: they fill the GPU
/// without, and a sequence with this many queries may be flash_attention's
/// (whose rows the reduction must not touch).
constexpr int64_t kUnsplitTokens = 64;
/// The workspace starts with one i32 counter per (token, head group) of a
/// split step (T * headGroups * 2 <= target blocks), then the f32 states.
constexpr int64_t kAttentionCounters = kAttentionTargetBlocks / 2;

FailureOr<AttentionLayout>
attentionLayout(ModuleOp module,
                const hostkernels::PagedAttentionParams &params) {
  const hostkernels::KvCacheShape &cache = params.cache;
  if (failed(checkGpuCache(module, cache)) ||
      failed(hostkernels::checkPagedAttention(module, params, "gpu kernel")))
    return failure();
  AttentionLayout l;
  l.headDim = cache.headDim;
  l.w = vectorWidthFor(l.headDim);
  l.chunks = l.headDim / l.w;
  l.lanesPerKey = int64_t(llvm::PowerOf2Ceil(l.chunks));
  if (l.lanesPerKey > kWarp)
    return module.emitError()
           << "gpu kernel: head dim " << l.headDim
           << " needs more than a warp of 16-byte lanes per key";
  l.keysPerWarp = kWarp / l.lanesPerKey;
  l.group = params.numHeads / cache.numKvHeads;
  // The query heads of one kv head share every key and value a block loads;
  // at most 8 of them, for the registers (q and the output per head).
  l.headsPerBlock = 1;
  for (int64_t hp = std::min<int64_t>(l.group, 8); hp >= 1; --hp)
    if (l.group % hp == 0) {
      l.headsPerBlock = hp;
      break;
    }
  l.headGroups = params.numHeads / l.headsPerBlock;
  l.keysPerIteration = kAttentionWarps * l.keysPerWarp * kAttentionUnroll;
  return l;
}

/// The number of context splits of a step with T tokens: the same formula
/// in the attention kernel and in its reduction.
Value attentionSplits(KernelBuilder &k, const AttentionLayout &l, Value t) {
  Value perToken = k.divui(k.index(kAttentionTargetBlocks),
                           k.muli(k.maxsi(t, k.index(1)), k.index(l.headGroups)));
  Value splits =
      k.maxsi(k.minsi(perToken, k.index(kMaxAttentionSplits)), k.index(1));
  return k.select(k.cmpi(arith::CmpIPredicate::sge, t, k.index(kUnsplitTokens)),
                  k.index(1), splits);
}

std::string attentionSplitSuffix(const AttentionLayout &l) {
  return "_g" + std::to_string(l.headGroups) + "_z" +
         std::to_string(kMaxAttentionSplits) + "_n" +
         std::to_string(kAttentionTargetBlocks) + "_u" +
         std::to_string(kUnsplitTokens);
}

/// Merges the softmax state (m, l, acc) of `other` into `into`; scores are
/// in log2 units. Empty states have m = -inf and l = acc = 0.
void mergeSoftmaxState(KernelBuilder &k, Value &m, Value &l,
                       MutableArrayRef<Value> acc, Value otherM, Value otherL,
                       ArrayRef<Value> otherAcc) {
  Value negInf = k.constF32(-INFINITY);
  Value newM = k.maxf(m, otherM);
  Value empty = arith::CmpFOp::create(k.b, arith::CmpFPredicate::OEQ, newM,
                                      negInf);
  Value zero = k.constF32(0.0);
  Value a = k.select(empty, zero, k.exp2(k.sub(m, newM)));
  Value b = k.select(empty, zero, k.exp2(k.sub(otherM, newM)));
  l = k.add(k.mul(l, a), k.mul(otherL, b));
  for (auto [mine, theirs] : llvm::zip(acc, otherAcc))
    mine = k.add(k.mul(mine, a), k.mul(theirs, b));
  m = newM;
}
} // namespace

int64_t pagedAttentionWorkspaceBytes(
    const hostkernels::PagedAttentionParams &params) {
  const int64_t groups =
      params.numHeads / std::max<int64_t>(1, params.cache.numKvHeads);
  int64_t headsPerBlock = 1;
  for (int64_t hp = std::min<int64_t>(groups, 8); hp >= 1; --hp)
    if (groups > 0 && groups % hp == 0) {
      headsPerBlock = hp;
      break;
    }
  const int64_t headGroups = std::max<int64_t>(1, params.numHeads / headsPerBlock);
  // Splits are > 1 only while T * headGroups * 2 <= target blocks, so
  // T * splits <= target / headGroups partial states per query head.
  const int64_t states =
      std::max<int64_t>(1, kAttentionTargetBlocks / headGroups) *
      params.numHeads;
  return (kAttentionCounters + states * (params.cache.headDim + 2)) * 4;
}

FailureOr<GpuKernel>
buildPagedAttention(ModuleOp module,
                    const hostkernels::PagedAttentionParams &params,
                    int64_t longQueryRows) {
  FailureOr<AttentionLayout> layout = attentionLayout(module, params);
  if (failed(layout))
    return failure();
  if (longQueryRows < 0 || (longQueryRows > 0 && longQueryRows < kUnsplitTokens))
    return module.emitError()
           << "gpu kernel: paged attention leaves sequences of "
           << longQueryRows << " queries to another kernel; at least "
           << kUnsplitTokens << " are needed";
  const AttentionLayout &l = *layout;
  const hostkernels::KvCacheShape &cache = params.cache;
  const int64_t numHeads = params.numHeads, numKvHeads = cache.numKvHeads;
  const int64_t headDim = cache.headDim, blockSize = cache.blockSize;
  const int64_t w = l.w, hp = l.headsPerBlock;
  std::string name =
      "paged_attention_h" + std::to_string(numHeads) + "_kv" +
      std::to_string(numKvHeads) + "_d" + std::to_string(headDim) + "_b" +
      std::to_string(blockSize) + "_s" + numberForName(params.scale, 9) + "_w" +
      std::to_string(params.slidingWindow) + attentionSplitSuffix(l) +
      (longQueryRows ? "_q" + std::to_string(longQueryRows) : "");
  const int64_t blockX = kAttentionWarps * kWarp;
  std::vector<KernelArg> args = attentionArgs(/*withWorkspace=*/true);
  LaunchRule rule = perRow(blockX);
  // grid x covers (token, split) pairs: T of them with one split, at most
  // target / headGroups with several (a grid with a y per split would
  // launch millions of idle blocks for a long prefill).
  rule.gridXFixed = std::max<int64_t>(1, kAttentionTargetBlocks / l.headGroups);
  rule.gridY = l.headGroups;
  GpuKernel kernel{name, rule, args, w};
  bool exists;
  FailureOr<gpu::GPUModuleOp> gpuModule = prepare(module, name, exists);
  if (failed(gpuModule))
    return failure();
  if (exists)
    return kernel;

  // Shared: each warp's merged state per head, m, l, then D accumulators.
  const int64_t stateSize = headDim + 2;
  // Shared: the warps' states, then the flag that tells the block whether it
  // was its token's last split to finish.
  const int64_t lastFlag = kAttentionWarps * hp * stateSize;
  KernelBuilder k(*gpuModule, name, args, {lastFlag + 1}, blockX,
                  /*waitAtEntry=*/false);
  k.readOnly({0, 1, 2, 3, 4, 5});
  Value q = k.arg(0), keyCache = k.arg(1), valueCache = k.arg(2),
        queryStart = k.arg(3), contextLen = k.arg(4), blockTable = k.arg(5),
        out = k.arg(6), workspace = k.arg(7);
  Value numTokens = k.argIndex(8), numSeqs = k.argIndex(9),
        qStride = k.argIndex(10), tableStride = k.argIndex(11);
  Value states = k.shared(0);
  using P = arith::CmpIPredicate;
  Value c0 = k.index(0), c1 = k.index(1), cBlock = k.index(blockSize);
  Value cD = k.index(headDim), cKv = k.index(numKvHeads);
  Value negInf = k.constF32(-INFINITY), zero = k.constF32(0.0);

  // Lane roles: a key slot of lanesPerKey lanes holds one key, each lane w
  // of its dims (lanes past the head dim idle on a clamped chunk).
  Value lane = k.remui(k.tid, k.index(kWarp));
  Value warp = k.divui(k.tid, k.index(kWarp));
  Value slot = k.divui(lane, k.index(l.lanesPerKey));
  Value chunk = k.remui(lane, k.index(l.lanesPerKey));
  Value chunkValid = k.cmpi(P::ult, chunk, k.index(l.chunks));
  Value dOff = k.muli(k.minsi(chunk, k.index(l.chunks - 1)), k.index(w));

  Value splits = attentionSplits(k, l, numTokens);
  Value x = k.blockId(gpu::Dimension::x);
  Value t = k.divui(x, splits), z = k.remui(x, splits);
  Value headGroup = k.blockId(gpu::Dimension::y);
  {
    k.ifThen(k.cmpi(P::ult, t, numTokens), [&] {
      // The sequence of token t: the number of sequences ending at or
      // before it (empty ones included). Uniform across the block.
      Value s = k.loopCarry(
          c0, numSeqs, c1, {c0},
          [&](Value i, ValueRange count) -> SmallVector<Value> {
            Value end = k.loadIndex(queryStart, k.addi(i, c1));
            Value ended = k.cmpi(P::sle, end, t);
            return {k.select(ended, k.addi(count[0], c1), count[0])};
          })[0];
      k.ifThen(k.cmpi(P::ult, s, numSeqs), [&] {
        Value first = k.loadIndex(queryStart, s);
        Value last = k.loadIndex(queryStart, k.addi(s, c1));
        Value mine = k.cmpi(P::sle, first, t);
        if (longQueryRows > 0) // long query runs are flash_attention's
          mine = arith::AndIOp::create(
              k.b, mine,
              k.cmpi(P::slt, k.subi(last, first), k.index(longQueryRows)));
        k.ifThen(mine, [&] {
          Value ctx = k.loadIndex(contextLen, s);
          // pos = ctx - n + (t - first) = t + (ctx - last).
          Value pos = k.addi(t, k.subi(ctx, last));
          Value lo = c0;
          if (params.slidingWindow > 0)
            lo = k.maxsi(k.subi(pos, k.index(params.slidingWindow - 1)), c0);
          Value posEnd = k.addi(pos, c1);
          // This split's keys: a whole number of block iterations each.
          Value span = k.subi(posEnd, lo);
          Value perSplit = k.divui(k.addi(span, k.subi(splits, c1)), splits);
          Value iter = k.index(l.keysPerIteration);
          perSplit = k.muli(k.divui(k.addi(perSplit, k.subi(iter, c1)), iter),
                            iter);
          Value kStart = k.minsi(k.addi(lo, k.muli(z, perSplit)), posEnd);
          Value kEnd = k.minsi(k.addi(kStart, perSplit), posEnd);
          // The splits that hold keys: a short context uses fewer than the
          // step allows (the others return at once), one needs no merge,
          // and the merge reads only theirs.
          Value used = k.divui(k.addi(span, k.subi(perSplit, c1)), perSplit);
          k.ifThen(k.cmpi(P::ult, z, used), [&] {
            Value slotKey = k.addi(k.muli(warp, k.index(l.keysPerWarp)), slot);
            Value tableBase = k.muli(s, tableStride);
            // The block-table entries of this lane's first keys (a step
            // input) go to L1 while the previous kernel finishes: the key
            // loads after the wait then make one round trip, not two.
            for (int64_t u = 0; u < kAttentionUnroll; ++u) {
              Value j =
                  k.minsi(k.addi(k.addi(kStart, k.index(u * kAttentionWarps *
                                                        l.keysPerWarp)),
                                 slotKey),
                          k.subi(kEnd, c1));
              k.prefetchL1(blockTable, k.i32,
                           k.addi(tableBase, k.divui(j, cBlock)));
            }
            // Everything above read step inputs only; q and the cache come
            // from the kernels before.
            k.waitForPredecessor();
            Value firstHead = k.muli(headGroup, k.index(hp));
            Value kvHead = k.divui(firstHead, k.index(l.group));
            // Where split z's state of query head `head` lives (f32 index).
            auto stateOffset = [&](Value zi, Value head) {
              Value part = k.addi(
                  k.muli(k.addi(k.muli(t, splits), zi), k.index(numHeads)),
                  head);
              return k.addi(k.index(kAttentionCounters),
                            k.muli(part, k.index(stateSize)));
            };
            auto keyOffset = [&](Value j) {
              Value block = k.loadIndex(blockTable,
                                        k.addi(tableBase, k.divui(j, cBlock)));
              Value row = k.addi(k.muli(block, cBlock), k.remui(j, cBlock));
              return k.addi(k.muli(k.addi(k.muli(row, cKv), kvHead), cD), dOff);
            };

            // q in log2 units: scores then go through ex2 directly.
            Value qScale = k.constF32(params.scale * 1.4426950408889634);
            SmallVector<Value> qv; // [h * w + e]
            for (int64_t h = 0; h < hp; ++h) {
              Value head = k.addi(firstHead, k.index(h));
              SmallVector<Value> v = k.load(
                  q, k.addi(k.addi(k.muli(t, qStride), k.muli(head, cD)), dOff),
                  w, /*readOnly=*/true);
              for (Value e : v)
                qv.push_back(k.select(chunkValid, k.mul(e, qScale), zero));
            }

            // Carried per head: m, l, then w accumulators.
            const int64_t perHead = 2 + w;
            SmallVector<Value> init;
            for (int64_t h = 0; h < hp; ++h) {
              init.push_back(negInf);
              init.push_back(zero);
              init.append(w, zero);
            }
            SmallVector<Value> state = k.loopCarry(
                kStart, kEnd, iter, init,
                [&](Value base, ValueRange st) -> SmallVector<Value> {
                  // Every load of the iteration first, then the math.
                  SmallVector<Value> valid, keys, values;
                  SmallVector<SmallVector<Value>> kv, vv;
                  for (int64_t u = 0; u < kAttentionUnroll; ++u) {
                    Value j = k.addi(k.addi(base, k.index(u * kAttentionWarps *
                                                          l.keysPerWarp)),
                                     slotKey);
                    valid.push_back(k.cmpi(P::slt, j, kEnd));
                    Value off = keyOffset(k.minsi(j, k.subi(kEnd, c1)));
                    kv.push_back(k.load(keyCache, off, w, true));
                    vv.push_back(k.load(valueCache, off, w, true));
                  }
                  SmallVector<Value> next;
                  for (int64_t h = 0; h < hp; ++h) {
                    Value m = st[h * perHead], sum = st[h * perHead + 1];
                    SmallVector<Value> scores;
                    Value newM = m;
                    for (int64_t u = 0; u < kAttentionUnroll; ++u) {
                      Value dot = zero;
                      for (int64_t e = 0; e < w; ++e)
                        dot = k.fma(qv[h * w + e], kv[u][e], dot);
                      for (int64_t o = l.lanesPerKey / 2; o > 0; o /= 2)
                        dot =
                            k.add(dot, gpu::ShuffleOp::create(
                                           k.b, dot, int32_t(o), int32_t(kWarp),
                                           gpu::ShuffleMode::XOR)
                                           .getShuffleResult());
                      scores.push_back(k.select(valid[u], dot, negInf));
                      newM = k.maxf(newM, scores.back());
                    }
                    // newM = -inf only when every key so far was out of range:
                    // nothing to rescale then.
                    Value empty = arith::CmpFOp::create(
                        k.b, arith::CmpFPredicate::OEQ, newM, negInf);
                    Value correction = k.select(empty, k.constF32(1.0),
                                                k.exp2(k.sub(m, newM)));
                    SmallVector<Value> p;
                    for (int64_t u = 0; u < kAttentionUnroll; ++u)
                      p.push_back(k.select(
                          valid[u], k.exp2(k.sub(scores[u], newM)), zero));
                    Value newSum = k.mul(sum, correction);
                    for (Value pu : p)
                      newSum = k.add(newSum, pu);
                    next.push_back(newM);
                    next.push_back(newSum);
                    for (int64_t e = 0; e < w; ++e) {
                      Value acc = k.mul(st[h * perHead + 2 + e], correction);
                      for (int64_t u = 0; u < kAttentionUnroll; ++u)
                        acc = k.fma(p[u], vv[u][e], acc);
                      next.push_back(acc);
                    }
                  }
                  return next;
                });

            // Merge the key slots of each warp (lanes of one chunk), then the
            // warps through shared memory.
            auto shuffle = [&](Value v, int64_t offset) {
              return gpu::ShuffleOp::create(k.b, v, int32_t(offset),
                                            int32_t(kWarp),
                                            gpu::ShuffleMode::XOR)
                  .getShuffleResult();
            };
            for (int64_t o = l.lanesPerKey; o < kWarp; o *= 2)
              for (int64_t h = 0; h < hp; ++h) {
                MutableArrayRef<Value> st(state.data() + h * perHead, perHead);
                SmallVector<Value> otherAcc;
                for (int64_t e = 0; e < w; ++e)
                  otherAcc.push_back(shuffle(st[2 + e], o));
                Value otherM = shuffle(st[0], o), otherL = shuffle(st[1], o);
                mergeSoftmaxState(k, st[0], st[1], st.drop_front(2), otherM,
                                  otherL, otherAcc);
              }
            Value writer =
                arith::AndIOp::create(k.b, k.cmpi(P::eq, slot, c0), chunkValid);
            k.ifThen(writer, [&] {
              for (int64_t h = 0; h < hp; ++h) {
                Value base =
                    k.muli(k.addi(k.muli(warp, k.index(hp)), k.index(h)),
                           k.index(stateSize));
                k.storeShared(state[h * perHead], states, base);
                k.storeShared(state[h * perHead + 1], states, k.addi(base, c1));
                for (int64_t e = 0; e < w; ++e)
                  k.storeShared(state[h * perHead + 2 + e], states,
                                k.addi(base, k.addi(k.index(2 + e), dOff)));
              }
            });
            k.barrier();
            Value finisher =
                arith::AndIOp::create(k.b, k.cmpi(P::eq, warp, c0), writer);
            k.ifThen(finisher, [&] {
              for (int64_t h = 0; h < hp; ++h) {
                Value m = negInf, sum = zero;
                SmallVector<Value> acc(w, zero);
                for (int64_t wi = 0; wi < kAttentionWarps; ++wi) {
                  Value base = k.index((wi * hp + h) * stateSize);
                  SmallVector<Value> other;
                  for (int64_t e = 0; e < w; ++e)
                    other.push_back(k.loadShared(
                        states, k.addi(base, k.addi(k.index(2 + e), dOff))));
                  mergeSoftmaxState(k, m, sum, acc, k.loadShared(states, base),
                                    k.loadShared(states, k.addi(base, c1)),
                                    other);
                }
                Value head = k.addi(firstHead, k.index(h));
                Value rowHead = k.addi(k.muli(t, k.index(numHeads)), head);
                k.ifThen(k.cmpi(P::eq, used, c1), [&] {
                  Value inv = k.div(k.constF32(1.0), sum);
                  SmallVector<Value> o;
                  for (Value a : acc)
                    o.push_back(k.mul(a, inv));
                  k.store(o, out, k.addi(k.muli(rowHead, cD), dOff));
                });
                k.ifThen(k.cmpi(P::ne, used, c1), [&] {
                  // This split's state (t, z, head) for the last split.
                  Value base = stateOffset(z, head);
                  k.ifThen(k.cmpi(P::eq, chunk, c0), [&] {
                    k.storeF32(m, workspace, base);
                    k.storeF32(sum, workspace, k.addi(base, c1));
                  });
                  for (int64_t e = 0; e < w; ++e)
                    k.storeF32(acc[e], workspace,
                               k.addi(base, k.addi(k.index(2 + e), dOff)));
                });
              }
            });
            // The last split of (token, head group) to finish combines them
            // all: a fence orders each block's states before its count.
            k.ifThen(k.cmpi(P::ne, used, c1), [&] {
              k.fence();
              k.barrier();
              Value counter =
                  k.addi(k.muli(t, k.index(l.headGroups)), headGroup);
              k.ifThen(k.cmpi(P::eq, k.tid, c0), [&] {
                Value before =
                    k.atomicAddI32(workspace, counter, k.constI32(1));
                Value last = k.cmpi(P::eq, k.toIndex(before), k.subi(used, c1));
                k.storeShared(k.select(last, k.constF32(1.0), zero), states,
                              k.index(lastFlag));
              });
              k.barrier();
              Value isLast = arith::CmpFOp::create(
                  k.b, arith::CmpFPredicate::OEQ,
                  k.loadShared(states, k.index(lastFlag)), k.constF32(1.0));
              k.ifThen(isLast, [&] {
                k.fence();
                // One thread per (head, dim) of the group. The split states
                // are read 8 splits at a time, every load of a group before
                // its math (one online-softmax merge per group), as many
                // groups as splits were used: a loop of dependent L2 round
                // trips over 32 splits was most of a batch-1 decode's
                // attention time (13.5 us of ~16 on an H200), and all 32 at
                // once doubled the kernel's registers. Lanes past `used`
                // re-read the last split and weigh 0.
                k.forThreads(k.index(hp * headDim), [&](Value item) {
                  Value head = k.addi(firstHead, k.divui(item, cD));
                  Value d = k.remui(item, cD);
                  Value lastSplit = k.subi(used, c1);
                  constexpr int64_t kGroup = 8;
                  static_assert(kMaxAttentionSplits % kGroup == 0);
                  Value groups = k.divui(k.addi(used, k.index(kGroup - 1)),
                                         k.index(kGroup));
                  SmallVector<Value> merged = k.loopCarry(
                      c0, groups, c1, {negInf, zero, zero},
                      [&](Value g, ValueRange st) -> SmallVector<Value> {
                        Value maxM = st[0], sum = st[1], acc = st[2];
                        Value groupFirst = k.muli(g, k.index(kGroup));
                        SmallVector<Value> ms, sums, accs, zs;
                        for (int64_t i = 0; i < kGroup; ++i) {
                          zs.push_back(k.addi(groupFirst, k.index(i)));
                          Value base =
                              stateOffset(k.minsi(zs.back(), lastSplit), head);
                          ms.push_back(k.loadF32Volatile(workspace, base));
                          sums.push_back(
                              k.loadF32Volatile(workspace, k.addi(base, c1)));
                          accs.push_back(k.loadF32Volatile(
                              workspace, k.addi(base, k.addi(k.index(2), d))));
                        }
                        Value newM = maxM;
                        for (int64_t i = 0; i < kGroup; ++i) {
                          ms[i] = k.select(k.cmpi(P::ult, zs[i], used), ms[i],
                                           negInf);
                          newM = k.maxf(newM, ms[i]);
                        }
                        Value empty = arith::CmpFOp::create(
                            k.b, arith::CmpFPredicate::OEQ, newM, negInf);
                        Value rescale =
                            k.select(empty, zero, k.exp2(k.sub(maxM, newM)));
                        sum = k.mul(sum, rescale);
                        acc = k.mul(acc, rescale);
                        for (int64_t i = 0; i < kGroup; ++i) {
                          Value weight =
                              k.select(empty, zero, k.exp2(k.sub(ms[i], newM)));
                          sum = k.fma(weight, sums[i], sum);
                          acc = k.fma(weight, accs[i], acc);
                        }
                        return {newM, sum, acc};
                      });
                  Value sum = merged[1], acc = merged[2];
                  Value rowHead = k.addi(k.muli(t, k.index(numHeads)), head);
                  k.store({k.div(acc, sum)}, out,
                          k.addi(k.muli(rowHead, cD), d));
                });
                // Ready for the next step's splits.
                k.ifThen(k.cmpi(P::eq, k.tid, c0), [&] {
                  LLVM::StoreOp::create(k.b, k.constI32(0),
                                        k.gep(workspace, k.i32, counter), 4);
                });
              });
            });
          });
        });
      });
    });
  }
  k.finish();
  return kernel;
}

namespace {
/// Output features per warp of a GEMV: with several tokens, each x vector a
/// lane loads serves that many weight rows (the x loads and FMAs, not HBM,
/// bound T = 8 with one row per warp).
int64_t gemvRowsPerWarp(const GemvParams &params) {
  const int64_t rowsPerFeature =
      params.epilogue == GemvParams::Epilogue::SwiGLU ? 2 : 1;
  return std::max<int64_t>(1, std::max(params.minRowsPerWarp,
                                       std::min<int64_t>(params.maxTokens, 4)) /
                                  rowsPerFeature);
}
/// Warps of a block that share its rows (GemvParams::splitK).
int64_t gemvSplitK(const GemvParams &params) {
  return params.splitK == 0 ? params.warpsPerBlock : params.splitK;
}
} // namespace

int64_t gemvRowsPerBlock(const GemvParams &params) {
  return params.warpsPerBlock / std::max<int64_t>(1, gemvSplitK(params)) *
         gemvRowsPerWarp(params);
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
  if (params.minRowsPerWarp < 1 || params.minRowsPerWarp > 8 ||
      params.loadsInFlight < 1 || params.loadsInFlight > 32)
    return module.emitError()
           << "gpu kernel: gemv rows per warp " << params.minRowsPerWarp
           << " (1 to 8) or loads in flight " << params.loadsInFlight
           << " (1 to 32) out of range";
  if (params.rmsNormInput && !(params.eps > 0))
    return module.emitError() << "gpu kernel: gemv with an rms_norm input "
                                 "needs a positive epsilon";
  using Epilogue = GemvParams::Epilogue;
  const bool norm = params.rmsNormInput;
  const bool swiglu = params.epilogue == Epilogue::SwiGLU;
  const bool residual = params.epilogue == Epilogue::Residual;
  const bool ropeKvWrite = params.epilogue == Epilogue::RopeKvWrite;
  const int64_t n = params.n, kDim = params.k, maxT = params.maxTokens;
  // Weight rows per output feature: a swiglu output reads a gate and an up
  // row, N apart.
  const int64_t rowsPerFeature = swiglu ? 2 : 1;
  const int64_t rowsPerWarp = gemvRowsPerWarp(params);
  const int64_t weightRows = rowsPerWarp * rowsPerFeature; // per warp
  // Measured on an H100 (7B shapes, T = 1 and 8): all warps of a block on
  // the same rows is as fast or faster than a block of independent warps
  // everywhere, by up to 30% for few long rows (4096 x 11008).
  const int64_t splitK = gemvSplitK(params);
  const int64_t rowsPerBlock = gemvRowsPerBlock(params);
  // The rope epilogue: a block's rows are pairs (i, i + D/2) of one head
  // (rotatedRow below), so each thread of the epilogue finds the other row
  // of its pair in the block's shared sums.
  const hostkernels::RopeParams &rope = params.rope;
  const int64_t headDim = rope.headDim, half = headDim / 2;
  if (ropeKvWrite) {
    if (failed(checkGpuCache(module, params.cache)) ||
        failed(hostkernels::ropeKernelName(module, rope)))
      return failure();
    if (params.cache.numKvHeads != rope.numKvHeads ||
        params.cache.headDim != headDim)
      return module.emitError()
             << "gpu kernel: gemv rope epilogue with a cache of "
             << params.cache.numKvHeads << " kv heads of dim "
             << params.cache.headDim << " for keys of " << rope.numKvHeads
             << " heads of dim " << headDim;
    if (n != (rope.numHeads + 2 * rope.numKvHeads) * headDim)
      return module.emitError()
             << "gpu kernel: gemv rope epilogue over " << n
             << " features, not the q, k and v rows of " << rope.numHeads
             << " + 2 x " << rope.numKvHeads << " heads of dim " << headDim;
    if (rowsPerBlock % 2 != 0 || headDim % rowsPerBlock != 0)
      return module.emitError()
             << "gpu kernel: gemv rope epilogue with " << rowsPerBlock
             << " rows a block, which must be even and divide the head dim "
             << headDim;
  }
  std::string name = "gemv_n" + std::to_string(n) + "_k" +
                     std::to_string(kDim) + "_t" + std::to_string(maxT) + "_w" +
                     std::to_string(warps) + "_s" + std::to_string(splitK);
  if (norm)
    name += "_rmsnorm_eps" + numberForName(params.eps, 9);
  if (residual)
    name += "_residual";
  if (swiglu)
    name += "_swiglu";
  if (ropeKvWrite)
    name += "_" + *hostkernels::ropeKernelName(module, rope) + "_kvw_b" +
            std::to_string(params.cache.blockSize);
  // Tilings other than the default say so (names stay those of the
  // default kernels).
  if (params.minRowsPerWarp != 1)
    name += "_r" + std::to_string(params.minRowsPerWarp);
  if (params.loadsInFlight != 4)
    name += "_l" + std::to_string(params.loadsInFlight);
  int64_t w = vectorWidthFor(kDim);
  int64_t chunks = kDim / w;
  std::vector<KernelArg> args = {ptrArg("x")};
  if (norm)
    args.push_back(ptrArg("norm_weight"));
  args.push_back(ptrArg("weight"));
  if (residual)
    args.push_back(ptrArg("residual"));
  args.push_back(ptrArg("y"));
  if (ropeKvWrite)
    for (const char *operand :
         {"positions", "key_cache", "value_cache", "slot_mapping"})
      args.push_back(ptrArg(operand));
  args.push_back(i32Arg("T"));
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

  std::string tableName = name + "_inv_freq";
  if (ropeKvWrite)
    declareRopeTable(*gpuModule, tableName, rope);

  const int64_t perWarp = weightRows * maxT; // accumulators per lane
  // Each warp's shared slots: its sums (first its sums of x^2, with a norm).
  const int64_t sharedPerWarp = perWarp;
  KernelBuilder k(*gpuModule, name, args, {warps * sharedPerWarp},
                  rule.blockX, /*waitAtEntry=*/false);
  unsigned argIndex = 0;
  Value x = k.arg(argIndex++);
  Value normWeight = norm ? k.arg(argIndex++) : Value();
  Value weight = k.arg(argIndex++);
  Value residualIn = residual ? k.arg(argIndex++) : Value();
  Value y = k.arg(argIndex++);
  Value positions, keyCache, valueCache, slotMapping;
  if (ropeKvWrite) {
    positions = k.arg(argIndex++);
    keyCache = k.arg(argIndex++);
    valueCache = k.arg(argIndex++);
    slotMapping = k.arg(argIndex++);
  }
  Value numTokens = k.argIndex(argIndex);
  SmallVector<unsigned> readOnly = {0, 1};
  if (norm)
    readOnly.push_back(2);
  k.readOnly(readOnly);
  // Logical row L of a rope GEMV is row rotatedRow(L) of the weight: in
  // each head, rows 2p and 2p + 1 are the pair p and p + D/2.
  auto rotatedRow = [&](Value row) {
    if (!ropeKvWrite)
      return row;
    Value within = k.remui(row, k.index(headDim));
    return k.addi(k.subi(row, within),
                  k.addi(k.divui(within, k.index(2)),
                         k.muli(k.remui(within, k.index(2)), k.index(half))));
  };
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
  SmallVector<Value> wBase, xBase; // wBase[r * rowsPerFeature + p]
  for (int64_t r = 0; r < rowsPerWarp; ++r) {
    Value row =
        rotatedRow(k.minsi(k.addi(firstRow, k.index(r)), k.index(n - 1)));
    for (int64_t p = 0; p < rowsPerFeature; ++p)
      wBase.push_back(
          k.muli(k.addi(row, k.index(p * n)), k.index(kDim)));
  }
  Value lastToken = k.subi(numTokens, k.index(1));
  for (int64_t t = 0; t < maxT; ++t)
    xBase.push_back(k.muli(k.minsi(k.index(t), lastToken), k.index(kDim)));

  // acc[j * maxT + t] for weight row j of the warp. Slice s of K is chunks
  // s*32 + lane + i*32*splitK: the warps of a slice group read adjacent
  // 512-byte runs.
  struct WeightLoads {
    SmallVector<Value> cols;
    SmallVector<SmallVector<Value>> wv; // [u * weightRows + j]
  };
  auto loadWeights = [&](Value c, int64_t unroll) {
    WeightLoads loads;
    for (int64_t u = 0; u < unroll; ++u) {
      loads.cols.push_back(
          k.muli(k.addi(c, k.index(u * kWarp * splitK)), k.index(w)));
      // The weight streams once: coalesced over the warp, through the
      // non-coherent path.
      for (int64_t j = 0; j < weightRows; ++j)
        loads.wv.push_back(k.load(weight, k.addi(wBase[j], loads.cols[u]), w,
                                  /*readOnly=*/true));
    }
    return loads;
  };
  SmallVector<Value> invs; // per token, with a norm (normalizeTokens)
  auto compute = [&](const WeightLoads &loads, int64_t unroll,
                     ValueRange acc) -> SmallVector<Value> {
    const SmallVector<Value> &cols = loads.cols;
    const SmallVector<SmallVector<Value>> &wv = loads.wv;
    SmallVector<Value> next(acc.begin(), acc.end());
    for (int64_t u = 0; u < unroll; ++u) {
      SmallVector<Value> gv;
      if (norm)
        gv = k.load(normWeight, cols[u], w, /*readOnly=*/true);
      for (int64_t t = 0; t < maxT; ++t) {
        SmallVector<Value> xv =
            k.load(x, k.addi(xBase[t], cols[u]), w, /*readOnly=*/true);
        // The normalized x rounded as rms_norm stores it, so that a
        // decode step multiplies what a larger step's GEMM would (greedy
        // tokens alone and batched agree; HF rounds there too).
        if (norm)
          for (int64_t e = 0; e < w; ++e)
            xv[e] = k.extf(k.truncf(k.mul(k.mul(xv[e], invs[t]), gv[e])));
        for (int64_t j = 0; j < weightRows; ++j)
          for (int64_t e = 0; e < w; ++e)
            next[j * maxT + t] =
                k.fma(xv[e], wv[u * weightRows + j][e], next[j * maxT + t]);
      }
    }
    return next;
  };
  // With a norm: each token's 1 / rms over all of x (which every block
  // reads anyway, so the main loop's x loads hit L1), after the wait: x is
  // the previous kernel's output. Summed per warp, then across the block.
  Value lane0 = k.cmpi(P::eq, lane, k.index(0));
  auto normalizeTokens = [&] {
    if (!norm)
      return;
    // Straight-line code for the whole rounds, every load issued before
    // the first use (a loop over the loads would make each wait for the
    // one before), then a loop for the chunks left over if blockX does not
    // divide them.
    SmallVector<Value> squares(maxT, k.constF32(0.0));
    auto addSquares = [&](ArrayRef<Value> chunkIds,
                          MutableArrayRef<Value> acc) {
      SmallVector<SmallVector<Value>> xs;
      for (Value c : chunkIds)
        for (int64_t t = 0; t < maxT; ++t)
          xs.push_back(k.load(x, k.addi(xBase[t], k.muli(c, k.index(w))), w,
                              /*readOnly=*/true));
      for (size_t i = 0; i < xs.size(); ++i)
        for (Value e : xs[i])
          acc[i % maxT] = k.fma(e, e, acc[i % maxT]);
    };
    const int64_t wholeRounds = chunks / rule.blockX;
    SmallVector<Value> wholeRoundChunks;
    for (int64_t i = 0; i < wholeRounds; ++i)
      wholeRoundChunks.push_back(k.addi(k.tid, k.index(i * rule.blockX)));
    addSquares(wholeRoundChunks, squares);
    if (chunks % rule.blockX != 0)
      squares = k.loopCarry(k.addi(k.tid, k.index(wholeRounds * rule.blockX)),
                            k.index(chunks), k.index(rule.blockX), squares,
                            [&](Value c, ValueRange acc) -> SmallVector<Value> {
                              SmallVector<Value> next(acc.begin(), acc.end());
                              addSquares({c}, next);
                              return next;
                            });
    for (Value &sq : squares)
      sq = k.warpReduce(sq, /*isMax=*/false);
    k.ifThen(lane0, [&] {
      for (int64_t t = 0; t < maxT; ++t)
        k.storeShared(squares[t], partials,
                      k.addi(k.muli(warp, k.index(maxT)), k.index(t)));
    });
    k.barrier();
    for (int64_t t = 0; t < maxT; ++t) {
      Value total = k.loadShared(partials, k.index(t));
      for (int64_t wi = 1; wi < warps; ++wi)
        total = k.add(total, k.loadShared(partials, k.index(wi * maxT + t)));
      invs.push_back(inverseRms(k, total, kDim, params.eps));
    }
    // The partial sums below reuse the slots.
    k.barrier();
  };
  auto step = [&](Value c, int64_t unroll,
                  ValueRange acc) -> SmallVector<Value> {
    return compute(loadWeights(c, unroll), unroll, acc);
  };
  // weightRows * unroll 16-byte weight loads per lane in flight.
  int64_t unroll = std::max<int64_t>(1, params.loadsInFlight / weightRows);
  while (unroll > 1 && chunks < unroll * kWarp * splitK)
    unroll /= 2;
  const int64_t stride = kWarp * splitK;
  int64_t mainChunks = chunks / (unroll * stride) * (unroll * stride);
  Value start = k.addi(k.muli(slice, k.index(kWarp)), lane);
  SmallVector<Value> accs(sharedPerWarp, k.constF32(0.0));
  if (mainChunks > 0) {
    // The first iteration's weights (which no kernel writes) stream while
    // the previous kernel finishes; x is its output.
    WeightLoads first = loadWeights(start, unroll);
    k.waitForPredecessor();
    normalizeTokens();
    accs = compute(first, unroll, accs);
    accs = k.loopCarry(
        k.addi(start, k.index(unroll * stride)), k.index(mainChunks),
        k.index(unroll * stride), accs,
        [&](Value c, ValueRange acc) { return step(c, unroll, acc); });
  } else {
    k.waitForPredecessor();
    normalizeTokens();
  }
  if (mainChunks < chunks)
    accs = k.loopCarry(
        k.addi(k.index(mainChunks), start), k.index(chunks), k.index(stride),
        accs, [&](Value c, ValueRange acc) { return step(c, 1, acc); });
  for (Value &acc : accs)
    acc = k.warpReduce(acc, /*isMax=*/false);
  k.ifThen(lane0, [&] {
    Value base = k.muli(warp, k.index(sharedPerWarp));
    for (int64_t i = 0; i < sharedPerWarp; ++i)
      k.storeShared(accs[i], partials, k.addi(base, k.index(i)));
  });
  k.barrier();
  // The rope epilogue of logical row `row` and token t, whose product
  // (rounded) is `self`: q rotated into y, k rotated and v as it is into
  // the cache at the token's slot, as rope_kv_write does.
  auto emitRopeKvWrite = [&](Value self, llvm::function_ref<Value()> other,
                             Value row, Value t) {
    Value physical = rotatedRow(row);
    Value head = k.divui(physical, k.index(headDim));
    Value i = k.remui(physical, k.index(headDim));
    Value low = k.cmpi(P::ult, i, k.index(half));
    Value pos = arith::SIToFPOp::create(k.b, k.f32, k.loadI32(positions, t));
    auto [c, sn] = ropeCosSin(k, tableName, pos, k.remui(i, k.index(half)));
    Value x2 = other();
    // As rope: x1 c - x2 s for the first half, x2 c + x1 s for the second.
    Value rotated = k.select(low, k.sub(k.mul(self, c), k.mul(x2, sn)),
                             k.add(k.mul(self, c), k.mul(x2, sn)));
    const int64_t numHeads = rope.numHeads, numKvHeads = rope.numKvHeads;
    k.ifThen(k.cmpi(P::ult, head, k.index(numHeads)), [&] {
      k.store({rotated}, y, k.addi(k.muli(t, k.index(n)), physical));
    });
    Value slot = k.loadI32(slotMapping, t);
    Value kept = k.cmpi(P::sge, slot, k.constI32(0));
    Value isKey = arith::AndIOp::create(
        k.b, k.cmpi(P::uge, head, k.index(numHeads)),
        k.cmpi(P::ult, head, k.index(numHeads + numKvHeads)));
    Value isValue = k.cmpi(P::uge, head, k.index(numHeads + numKvHeads));
    auto cacheOffset = [&](int64_t firstHead) {
      return k.addi(
          k.muli(k.toIndex(slot), k.index(numKvHeads * headDim)),
          k.addi(k.muli(k.subi(head, k.index(firstHead)), k.index(headDim)),
                 i));
    };
    k.ifThen(arith::AndIOp::create(k.b, kept, isKey),
             [&] { k.store({rotated}, keyCache, cacheOffset(numHeads)); });
    k.ifThen(arith::AndIOp::create(k.b, kept, isValue), [&] {
      k.store({self}, valueCache, cacheOffset(numHeads + numKvHeads));
    });
  };
  // One thread per (output feature, token) of the block sums the splitK
  // slices and applies the epilogue.
  const int64_t perGroup = rowsPerWarp * maxT;
  k.forThreads(k.index(warps / splitK * perGroup), [&](Value item) {
    Value group = k.divui(item, k.index(perGroup));
    Value within = k.remui(item, k.index(perGroup));
    Value r = k.divui(within, k.index(maxT));
    Value t = k.remui(within, k.index(maxT));
    Value row =
        k.addi(k.addi(blockRow, k.muli(group, k.index(rowsPerWarp))), r);
    Value valid = arith::AndIOp::create(k.b, k.cmpi(P::ult, row, k.index(n)),
                                        k.cmpi(P::ult, t, numTokens));
    k.ifThen(valid, [&] {
      // The sum of the splitK slices of slot `slot` of warp group `g`.
      auto sumSlices = [&](Value g, Value slot) {
        Value at = k.addi(k.muli(g, k.index(splitK * sharedPerWarp)), slot);
        Value sum = k.loadShared(partials, at);
        for (int64_t s = 1; s < splitK; ++s)
          sum = k.add(sum, k.loadShared(partials,
                                        k.addi(at, k.index(s * sharedPerWarp))));
        return sum;
      };
      // Weight row j = r * rowsPerFeature + p of the warp.
      SmallVector<Value> sums;
      for (int64_t p = 0; p < rowsPerFeature; ++p)
        sums.push_back(sumSlices(
            group, k.addi(k.muli(k.addi(k.muli(r, k.index(rowsPerFeature)),
                                        k.index(p)),
                                 k.index(maxT)),
                          t)));
      // Rounded to bf16 where the kernels of larger steps store their
      // products (gate and up, the projection before the add, q, k and v
      // before rope), so that a sequence's numerics depend little on the
      // step's size.
      auto rounded = [&](Value v) { return k.extf(k.truncf(v)); };
      if (ropeKvWrite) {
        emitRopeKvWrite(
            rounded(sums[0]),
            [&] {
              // The other row of the pair: logical row ^ 1, in this block.
              Value other = k.subi(
                  arith::XOrIOp::create(k.b, row, k.index(1)).getResult(),
                  blockRow);
              return rounded(
                  sumSlices(k.divui(other, k.index(rowsPerWarp)),
                            k.addi(k.muli(k.remui(other, k.index(rowsPerWarp)),
                                          k.index(maxT)),
                                   t)));
            },
            row, t);
        return;
      }
      Value out = sums[0];
      Value offset = k.addi(k.muli(t, k.index(n)), row);
      if (swiglu)
        out = emitSiluMul(k, rounded(sums[0]), rounded(sums[1]));
      if (residual)
        out = k.add(k.load(residualIn, offset, 1)[0], rounded(out));
      k.store({out}, y, offset);
    });
  });
  k.finish();
  return kernel;
}

} // namespace gpukernels
} // namespace optmlir
