//===- HostKernels.cpp - Generators of the CPU kernels -------------------===//
//
// Every kernel is a plain loop nest over memrefs. The innermost, static
// dimension (hidden, head_dim, intermediate) is walked 8 lanes at a time
// (one AVX2 register) with a scalar-width tail, so odd model sizes work and
// the common ones vectorize without masks.
//
//===----------------------------------------------------------------------===//

#include "optmlir/Conversion/HostKernels.h"
#include "runtime/core/QuantizedWeights.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/Support/MathExtras.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>

using namespace mlir;

namespace optmlir {
namespace hostkernels {
namespace {

constexpr int64_t kVectorWidth = 8;
constexpr int64_t kDynamic = ShapedType::kDynamic;

/// Builds one kernel function: argument types, then a body written with the
/// helpers below, all through one ImplicitLocOpBuilder.
class KernelBuilder {
public:
  KernelBuilder(ModuleOp module, StringRef name, ArrayRef<Type> argTypes)
      : b(NameLoc::get(StringAttr::get(module.getContext(), name)),
          module.getContext()) {
    f32 = b.getF32Type();
    f64 = b.getF64Type();
    indexType = b.getIndexType();
    b.setInsertionPointToEnd(module.getBody());
    func = func::FuncOp::create(b, name, b.getFunctionType(argTypes, {}));
    func->setAttr("llvm.emit_c_interface", b.getUnitAttr());
    b.setInsertionPointToStart(func.addEntryBlock());
  }

  void finish() { func::ReturnOp::create(b); }

  Value arg(unsigned i) { return func.getArgument(i); }

  // Constants and types.
  Value index(int64_t v) { return arith::ConstantIndexOp::create(b, v); }
  Value constF32(double v) {
    return arith::ConstantOp::create(b, b.getF32FloatAttr(v));
  }
  Value constF64(double v) {
    return arith::ConstantOp::create(b, b.getF64FloatAttr(v));
  }
  VectorType vec(int64_t width, Type element = nullptr) {
    return VectorType::get({width}, element ? element : f32);
  }
  Value splat(Value scalar, int64_t width) {
    return vector::BroadcastOp::create(b, vec(width, scalar.getType()), scalar);
  }

  // Memory.
  Value dim(Value memref, int64_t d) {
    return memref::DimOp::create(b, memref, d);
  }
  Value load(Value memref, ValueRange indices) {
    return memref::LoadOp::create(b, memref, indices);
  }
  void store(Value value, Value memref, ValueRange indices) {
    memref::StoreOp::create(b, value, memref, indices);
  }
  Value vload(int64_t width, Value memref, ValueRange indices) {
    return vector::LoadOp::create(b, vec(width), memref, indices);
  }
  void vstore(Value value, Value memref, ValueRange indices) {
    vector::StoreOp::create(b, value, memref, indices);
  }
  /// An i32 constant in every lane of a `width` vector.
  Value splatI32(int64_t value, int64_t width) {
    return splat(arith::ConstantOp::create(b, b.getI32IntegerAttr(value)),
                 width);
  }
  /// `width` cache elements as f32, decoded as `cache` stores them: fp8
  /// e4m3 bytes, or int8 codes times their row's scale (the f32 after the
  /// head's D codes; indices are block, slot, head, offset).
  Value vloadCache(const KvCacheShape &cache, int64_t width, Value memref,
                   ValueRange indices) {
    if (cache.elementType == KvElementType::Native)
      return vload(width, memref, indices);
    Value bytes = vector::LoadOp::create(
        b, vec(width, b.getI8Type()), memref, indices);
    if (cache.elementType == KvElementType::F8E4M3)
      return decodeE4M3(bytes);
    Value codes = arith::SIToFPOp::create(b, vec(width), bytes);
    return mul(codes, splat(loadRowScale(cache, memref, indices), width));
  }
  /// The f32 scale of an int8 cache row.
  Value loadRowScale(const KvCacheShape &cache, Value memref,
                     ValueRange indices) {
    Value bytes = vector::LoadOp::create(
        b, vec(4, b.getI8Type()), memref,
        ValueRange{indices[0], indices[1], indices[2], index(cache.headDim)});
    Value word = vector::BitCastOp::create(b, vec(1), bytes);
    return vector::ExtractOp::create(b, word, ArrayRef<int64_t>{0});
  }
  /// Stores f32 `value` into a native or fp8 cache (int8 rows are written
  /// whole: storeInt8Row).
  void vstoreCache(const KvCacheShape &cache, Value value, Value memref,
                   ValueRange indices) {
    vstore(cache.elementType == KvElementType::F8E4M3 ? encodeE4M3(value)
                                                      : value,
           memref, indices);
  }
  /// Writes row x[t, h, :] (D values) into an int8 cache at (block, slot,
  /// h): codes round(x / s) clamped to +-127 and s = max|x| / 127 after
  /// them (encodeInt8KvRow is the reference).
  void storeInt8Row(const KvCacheShape &cache, Value x, ValueRange from,
                    Value memref, ValueRange to) {
    const int64_t d = cache.headDim;
    Value absMax = reduceChunks(
        d, 1, vector::CombiningKind::MAXIMUMF,
        [&](Value off, int64_t w, ValueRange accs) {
          Value v = math::AbsFOp::create(
              b, vload(w, x, {from[0], from[1], off}));
          return SmallVector<Value>{
              arith::MaximumFOp::create(b, accs[0], v)};
        })[0];
    Value scale = div(absMax, constF32(127.0));
    Value positive = arith::CmpFOp::create(b, arith::CmpFPredicate::OGT,
                                           absMax, constF32(0.0));
    Value divisor = arith::SelectOp::create(b, positive, scale, constF32(1.0));
    chunks(d, [&](Value off, int64_t w) {
      Value q = math::RoundEvenOp::create(
          b, div(vload(w, x, {from[0], from[1], off}), splat(divisor, w)));
      q = arith::MinimumFOp::create(
          b, arith::MaximumFOp::create(b, q, splat(constF32(-127.0), w)),
          splat(constF32(127.0), w));
      Value codes = arith::FPToSIOp::create(b, vec(w, b.getI8Type()), q);
      vstore(codes, memref, {to[0], to[1], to[2], off});
    });
    Value word = vector::BroadcastOp::create(b, vec(1), scale);
    vstore(vector::BitCastOp::create(b, vec(4, b.getI8Type()), word), memref,
           {to[0], to[1], to[2], index(d)});
  }
  /// vector<w x f32> to fp8 e4m3 bytes: round to nearest even on the f32
  /// bits, saturate at 448 (NaN too), subnormals below 2^-6 in steps of
  /// 2^-9 (encodeF8E4M3 is the reference).
  Value encodeE4M3(Value value) {
    int64_t w = cast<VectorType>(value.getType()).getNumElements();
    auto i32s = [&](int64_t c) { return splatI32(c, w); };
    VectorType intType = vec(w, b.getI32Type());
    Value bits = arith::BitcastOp::create(b, intType, value);
    Value sign = arith::AndIOp::create(
        b, arith::ShRUIOp::create(b, bits, i32s(24)), i32s(0x80));
    Value magnitude = arith::BitcastOp::create(
        b, vec(w), arith::AndIOp::create(b, bits, i32s(0x7fffffff)));
    // minnumf: NaN gives 448 too.
    magnitude = arith::MinNumFOp::create(b, magnitude, splat(constF32(448.0), w));
    Value magBits = arith::BitcastOp::create(b, intType, magnitude);
    Value lsb = arith::AndIOp::create(
        b, arith::ShRUIOp::create(b, magBits, i32s(20)), i32s(1));
    Value rounded = arith::ShRUIOp::create(
        b,
        arith::AddIOp::create(
            b, magBits, arith::AddIOp::create(b, lsb, i32s(0x7ffff))),
        i32s(20));
    // f32 exponent e and 3 mantissa bits -> e4m3 exponent e - 127 + 7.
    Value normal = arith::SubIOp::create(b, rounded, i32s(120 << 3));
    Value subnormal = arith::FPToSIOp::create(
        b, intType,
        math::RoundEvenOp::create(b, mul(magnitude, splat(constF32(512.0), w))));
    Value isSubnormal = arith::CmpFOp::create(
        b, arith::CmpFPredicate::OLT, magnitude,
        splat(constF32(1.0 / 64.0), w));
    Value code = arith::SelectOp::create(b, isSubnormal, subnormal, normal);
    return arith::TruncIOp::create(b, vec(w, b.getI8Type()),
                                   arith::OrIOp::create(b, code, sign));
  }
  /// fp8 e4m3 bytes to vector<w x f32> (decodeF8E4M3 is the reference).
  Value decodeE4M3(Value bytes) {
    int64_t w = cast<VectorType>(bytes.getType()).getNumElements();
    auto i32s = [&](int64_t c) { return splatI32(c, w); };
    VectorType intType = vec(w, b.getI32Type());
    Value v = arith::ExtUIOp::create(b, intType, bytes);
    Value sign = arith::ShLIOp::create(
        b, arith::AndIOp::create(b, v, i32s(0x80)), i32s(24));
    Value exponent = arith::AndIOp::create(
        b, arith::ShRUIOp::create(b, v, i32s(3)), i32s(0xf));
    Value mantissa = arith::AndIOp::create(b, v, i32s(7));
    Value normalBits = arith::OrIOp::create(
        b,
        arith::ShLIOp::create(b, arith::AddIOp::create(b, exponent, i32s(120)),
                              i32s(23)),
        arith::ShLIOp::create(b, mantissa, i32s(20)));
    Value subnormal = mul(arith::SIToFPOp::create(b, vec(w), mantissa),
                          splat(constF32(1.0 / 512.0), w));
    Value isSubnormal = arith::CmpIOp::create(b, arith::CmpIPredicate::eq,
                                              exponent, i32s(0));
    Value magnitude = arith::SelectOp::create(
        b, isSubnormal, subnormal,
        arith::BitcastOp::create(b, vec(w), normalBits));
    return arith::BitcastOp::create(
        b, vec(w),
        arith::OrIOp::create(
            b, arith::BitcastOp::create(b, intType, magnitude), sign));
  }
  /// An i32 index argument (ids, positions, slots) as an index.
  Value loadIndex(Value memref, ValueRange indices) {
    return arith::IndexCastOp::create(b, indexType, load(memref, indices));
  }

  // Arithmetic (scalars or vectors alike).
  Value add(Value x, Value y) { return arith::AddFOp::create(b, x, y); }
  Value sub(Value x, Value y) { return arith::SubFOp::create(b, x, y); }
  Value mul(Value x, Value y) { return arith::MulFOp::create(b, x, y); }
  Value div(Value x, Value y) { return arith::DivFOp::create(b, x, y); }
  Value fma(Value x, Value y, Value acc) {
    return vector::FMAOp::create(b, x, y, acc);
  }
  Value addi(Value x, Value y) { return arith::AddIOp::create(b, x, y); }
  Value subi(Value x, Value y) { return arith::SubIOp::create(b, x, y); }
  Value muli(Value x, Value y) { return arith::MulIOp::create(b, x, y); }

  // Control flow.
  void loop(Value lb, Value ub, Value step,
            llvm::function_ref<void(Value)> body) {
    auto forOp = scf::ForOp::create(b, lb, ub, step);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(forOp.getBody()->getTerminator());
    body(forOp.getInductionVar());
  }
  void loop(Value lb, Value ub, llvm::function_ref<void(Value)> body) {
    loop(lb, ub, index(1), body);
  }
  /// A loop carrying `init`; the body returns the next values.
  SmallVector<Value>
  loopCarry(Value lb, Value ub, Value step, ValueRange init,
            llvm::function_ref<SmallVector<Value>(Value, ValueRange)> body) {
    auto forOp = scf::ForOp::create(b, lb, ub, step, init);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToEnd(forOp.getBody());
      SmallVector<Value> next =
          body(forOp.getInductionVar(), forOp.getRegionIterArgs());
      scf::YieldOp::create(b, next);
    }
    return SmallVector<Value>(forOp.getResults());
  }
  Value loopCarry1(Value lb, Value ub, Value init,
                   llvm::function_ref<Value(Value, Value)> body) {
    return loopCarry(lb, ub, index(1), init,
                     [&](Value iv, ValueRange args) -> SmallVector<Value> {
                       return {body(iv, args[0])};
                     })[0];
  }
  void ifThen(Value cond, llvm::function_ref<void()> body) {
    auto ifOp = scf::IfOp::create(b, cond, /*withElseRegion=*/false);
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPoint(ifOp.thenBlock()->getTerminator());
    body();
  }

  /// Walks [0, n) of a static dimension: body(offset, width) with width 8
  /// over the largest multiple of 8, then width 1 over the rest.
  void chunks(int64_t n, llvm::function_ref<void(Value, int64_t)> body) {
    int64_t main = n / kVectorWidth * kVectorWidth;
    if (main > 0)
      loop(index(0), index(main), index(kVectorWidth),
           [&](Value off) { body(off, kVectorWidth); });
    if (main < n)
      loop(index(main), index(n), [&](Value off) { body(off, 1); });
  }

  /// Reduces over [0, n) of a static dimension `count` values at once (one
  /// accumulator each, independent chains for the out-of-order core):
  /// body(offset, width, accs) returns the accumulators (vector<width>) with
  /// its terms folded in; the lanes are combined at the end with `kind`
  /// (ADD or MAXIMUMF).
  SmallVector<Value> reduceChunks(
      int64_t n, unsigned count, vector::CombiningKind kind,
      llvm::function_ref<SmallVector<Value>(Value, int64_t, ValueRange)> body) {
    bool isMax = kind == vector::CombiningKind::MAXIMUMF;
    Value identity = constF32(isMax ? -INFINITY : 0.0);
    SmallVector<Value> totals(count, identity);
    int64_t main = n / kVectorWidth * kVectorWidth;
    auto part = [&](int64_t lb, int64_t ub, int64_t width) {
      SmallVector<Value> init(count, splat(identity, width));
      SmallVector<Value> accs = loopCarry(
          index(lb), index(ub), index(width), init,
          [&](Value off, ValueRange args) { return body(off, width, args); });
      for (unsigned i = 0; i < count; ++i) {
        Value lanes = vector::ReductionOp::create(b, kind, accs[i]);
        totals[i] = isMax ? arith::MaximumFOp::create(b, totals[i], lanes)
                          : add(totals[i], lanes);
      }
    };
    if (main > 0)
      part(0, main, kVectorWidth);
    if (main < n)
      part(main, n, 1);
    return totals;
  }

  /// Sum over [0, n): body(offset, width, acc) returns acc plus its terms.
  Value sumChunks(int64_t n,
                  llvm::function_ref<Value(Value, int64_t, Value)> body) {
    return reduceChunks(n, 1, vector::CombiningKind::ADD,
                        [&](Value off, int64_t w, ValueRange accs) {
                          return SmallVector<Value>{body(off, w, accs[0])};
                        })[0];
  }

  ImplicitLocOpBuilder b;
  func::FuncOp func;
  Type f32, f64, indexType;
};

MemRefType rowsType(Type f32, int64_t cols) {
  return MemRefType::get({kDynamic, cols}, f32);
}

/// [T, heads, D] with any row stride and offset, unit inner strides.
MemRefType headsType(Type f32, int64_t heads, int64_t headDim) {
  auto layout = StridedLayoutAttr::get(f32.getContext(), kDynamic,
                                       {kDynamic, headDim, 1});
  return MemRefType::get({kDynamic, heads, headDim}, f32, layout);
}

MemRefType cacheType(Type f32, const KvCacheShape &cache) {
  if (cache.elementType == KvElementType::Native)
    return MemRefType::get(
        {kDynamic, cache.blockSize, cache.numKvHeads, cache.headDim}, f32);
  // Bytes; an int8 row ends with its 4-byte scale.
  int64_t row = cache.elementType == KvElementType::Int8
                    ? optrt::int8KvRowBytes(cache.headDim)
                    : cache.headDim;
  return MemRefType::get({kDynamic, cache.blockSize, cache.numKvHeads, row},
                         IntegerType::get(f32.getContext(), 8));
}

/// The kernel name suffix of a cache's element type.
std::string cacheSuffix(const KvCacheShape &cache) {
  switch (cache.elementType) {
  case KvElementType::Native:
    return "";
  case KvElementType::F8E4M3:
    return "_f8e4m3";
  case KvElementType::Int8:
    return "_i8";
  }
  return "";
}

MemRefType indexVectorType(MLIRContext *context) {
  return MemRefType::get({kDynamic}, IntegerType::get(context, 32));
}

/// Loads the dialects the generators use; returns failure (with a
/// diagnostic) when `name` is taken by something other than a function.
/// Sets `exists` when the kernel is already there.
LogicalResult prepare(ModuleOp module, StringRef name, bool &exists) {
  MLIRContext *context = module.getContext();
  context->loadDialect<arith::ArithDialect, func::FuncDialect,
                       math::MathDialect, memref::MemRefDialect,
                       scf::SCFDialect, vector::VectorDialect>();
  exists = false;
  if (Operation *op = module.lookupSymbol(name)) {
    if (!isa<func::FuncOp>(op))
      return module.emitError() << "host kernel name '" << name
                                << "' is taken by a '" << op->getName() << "'";
    exists = true;
  }
  return success();
}

LogicalResult checkPositive(ModuleOp module, StringRef what, int64_t value) {
  if (value > 0)
    return success();
  return module.emitError()
         << "host kernel: " << what << " must be positive, got " << value;
}

/// One row of rms_norm: `out[t] = src[t] * rsqrt(mean(src[t]^2) + eps) * w`,
/// given the row's sum of squares.
void emitNormalizeRow(KernelBuilder &k, Value src, Value weight, Value out,
                      Value t, Value sumSquares, int64_t hidden, double eps) {
  Value mean = k.div(sumSquares, k.constF32(double(hidden)));
  Value shifted = k.add(mean, k.constF32(eps));
  Value inv = k.div(k.constF32(1.0), math::SqrtOp::create(k.b, shifted));
  k.chunks(hidden, [&](Value off, int64_t w) {
    Value x = k.vload(w, src, {t, off});
    Value g = k.vload(w, weight, {off});
    k.vstore(k.mul(k.mul(x, k.splat(inv, w)), g), out, {t, off});
  });
}

/// silu(g) * u = g / (1 + exp(-g)) * u.
Value emitSwiGLU(KernelBuilder &k, Value gate, Value up, int64_t width) {
  Value one = k.splat(k.constF32(1.0), width);
  Value e = math::ExpOp::create(k.b, arith::NegFOp::create(k.b, gate));
  return k.mul(k.div(gate, k.add(one, e)), up);
}

} // namespace

//===----------------------------------------------------------------------===//
// RoPE frequencies
//===----------------------------------------------------------------------===//

std::vector<double> computeRopeInvFreq(int64_t headDim, double theta,
                                       const RopeScaling &scaling) {
  std::vector<double> invFreq(headDim / 2);
  for (int64_t i = 0; i < headDim / 2; ++i)
    invFreq[i] = 1.0 / std::pow(theta, double(2 * i) / double(headDim));
  switch (scaling.kind) {
  case RopeScaling::Kind::None:
    break;
  case RopeScaling::Kind::Linear:
    for (double &f : invFreq)
      f /= scaling.factor;
    break;
  case RopeScaling::Kind::Llama3: {
    // transformers' _compute_llama3_parameters: keep high frequencies,
    // divide low ones by `factor`, blend the band between.
    double oldContext = double(scaling.originalMaxPositionEmbeddings);
    double lowFreqWavelen = oldContext / scaling.lowFreqFactor;
    double highFreqWavelen = oldContext / scaling.highFreqFactor;
    for (double &f : invFreq) {
      double wavelen = 2 * llvm::numbers::pi / f;
      if (wavelen < highFreqWavelen)
        continue;
      if (wavelen > lowFreqWavelen) {
        f /= scaling.factor;
        continue;
      }
      double smooth = (oldContext / wavelen - scaling.lowFreqFactor) /
                      (scaling.highFreqFactor - scaling.lowFreqFactor);
      f = (1 - smooth) * f / scaling.factor + smooth * f;
    }
    break;
  }
  }
  return invFreq;
}

//===----------------------------------------------------------------------===//
// Kernels
//===----------------------------------------------------------------------===//

FailureOr<std::string> buildEmbed(ModuleOp module, int64_t vocabSize,
                                  int64_t hidden) {
  if (failed(checkPositive(module, "vocab size", vocabSize)) ||
      failed(checkPositive(module, "hidden size", hidden)))
    return failure();
  std::string name =
      "embed_v" + std::to_string(vocabSize) + "_h" + std::to_string(hidden);
  bool exists;
  if (failed(prepare(module, name, exists)))
    return failure();
  if (exists)
    return name;
  MLIRContext *context = module.getContext();
  Type f32 = Float32Type::get(context);
  KernelBuilder k(module, name,
                  {indexVectorType(context),
                   MemRefType::get({vocabSize, hidden}, f32),
                   rowsType(f32, hidden)});
  Value ids = k.arg(0), table = k.arg(1), out = k.arg(2);
  k.loop(k.index(0), k.dim(ids, 0), [&](Value t) {
    Value id = k.loadIndex(ids, {t});
    k.chunks(hidden, [&](Value off, int64_t w) {
      k.vstore(k.vload(w, table, {id, off}), out, {t, off});
    });
  });
  k.finish();
  return name;
}

FailureOr<std::string> buildGatherRows(ModuleOp module, int64_t hidden) {
  if (failed(checkPositive(module, "hidden size", hidden)))
    return failure();
  std::string name = "gather_rows_h" + std::to_string(hidden);
  bool exists;
  if (failed(prepare(module, name, exists)))
    return failure();
  if (exists)
    return name;
  Type f32 = Float32Type::get(module.getContext());
  KernelBuilder k(module, name,
                  {rowsType(f32, hidden), indexVectorType(module.getContext()),
                   rowsType(f32, hidden)});
  Value x = k.arg(0), rows = k.arg(1), out = k.arg(2);
  k.loop(k.index(0), k.dim(rows, 0), [&](Value r) {
    Value row = k.loadIndex(rows, {r});
    k.chunks(hidden, [&](Value off, int64_t w) {
      k.vstore(k.vload(w, x, {row, off}), out, {r, off});
    });
  });
  k.finish();
  return name;
}

FailureOr<std::string> buildRmsNorm(ModuleOp module, int64_t hidden,
                                    double eps) {
  if (failed(checkPositive(module, "hidden size", hidden)))
    return failure();
  std::string name =
      "rms_norm_h" + std::to_string(hidden) + "_eps" + numberForName(eps, 9);
  bool exists;
  if (failed(prepare(module, name, exists)))
    return failure();
  if (exists)
    return name;
  Type f32 = Float32Type::get(module.getContext());
  KernelBuilder k(module, name,
                  {rowsType(f32, hidden), MemRefType::get({hidden}, f32),
                   rowsType(f32, hidden)});
  Value x = k.arg(0), weight = k.arg(1), out = k.arg(2);
  k.loop(k.index(0), k.dim(x, 0), [&](Value t) {
    Value ss = k.sumChunks(hidden, [&](Value off, int64_t w, Value acc) {
      Value v = k.vload(w, x, {t, off});
      return k.fma(v, v, acc);
    });
    emitNormalizeRow(k, x, weight, out, t, ss, hidden, eps);
  });
  k.finish();
  return name;
}

FailureOr<std::string> buildAddRmsNorm(ModuleOp module, int64_t hidden,
                                       double eps) {
  if (failed(checkPositive(module, "hidden size", hidden)))
    return failure();
  std::string name = "add_rms_norm_h" + std::to_string(hidden) + "_eps" +
                     numberForName(eps, 9);
  bool exists;
  if (failed(prepare(module, name, exists)))
    return failure();
  if (exists)
    return name;
  Type f32 = Float32Type::get(module.getContext());
  KernelBuilder k(module, name,
                  {rowsType(f32, hidden), rowsType(f32, hidden),
                   MemRefType::get({hidden}, f32), rowsType(f32, hidden)});
  Value x = k.arg(0), residual = k.arg(1), weight = k.arg(2), out = k.arg(3);
  k.loop(k.index(0), k.dim(x, 0), [&](Value t) {
    // The sum of squares comes with the residual update, in one pass.
    Value ss = k.sumChunks(hidden, [&](Value off, int64_t w, Value acc) {
      Value r = k.add(k.vload(w, residual, {t, off}), k.vload(w, x, {t, off}));
      k.vstore(r, residual, {t, off});
      return k.fma(r, r, acc);
    });
    emitNormalizeRow(k, residual, weight, out, t, ss, hidden, eps);
  });
  k.finish();
  return name;
}

std::string numberForName(double value, int digits) {
  char buffer[40];
  std::snprintf(buffer, sizeof(buffer), "%.*g", digits, value);
  std::string result;
  for (char c : std::string(buffer)) {
    if (c == '.')
      result += 'p';
    else if (c == '-')
      result += 'm';
    else if (c != '+')
      result += c;
  }
  return result;
}

FailureOr<std::string> ropeKernelName(ModuleOp module,
                                      const RopeParams &params) {
  const int64_t headDim = params.headDim;
  if (failed(checkPositive(module, "rope head count", params.numHeads)) ||
      failed(checkPositive(module, "rope kv head count", params.numKvHeads)) ||
      failed(checkPositive(module, "rope head dim", headDim)))
    return failure();
  if (headDim % 2 != 0)
    return module.emitError()
           << "kernel: rope needs an even head dim, got " << headDim;
  const RopeScaling &scaling = params.scaling;
  std::string name = "rope_h" + std::to_string(params.numHeads) + "_kv" +
                     std::to_string(params.numKvHeads) + "_d" +
                     std::to_string(headDim) + "_theta" +
                     numberForName(params.theta, 17);
  switch (scaling.kind) {
  case RopeScaling::Kind::None:
    break;
  case RopeScaling::Kind::Linear:
    name += "_linear" + numberForName(scaling.factor, 17);
    break;
  case RopeScaling::Kind::Llama3:
    if (!(scaling.highFreqFactor > scaling.lowFreqFactor) ||
        scaling.originalMaxPositionEmbeddings <= 0)
      return module.emitError() << "kernel: llama3 rope scaling needs "
                                   "high_freq_factor > low_freq_factor and "
                                   "original_max_position_embeddings > 0";
    name += "_llama3_" + numberForName(scaling.factor, 17) + "_" +
            numberForName(scaling.lowFreqFactor, 17) + "_" +
            numberForName(scaling.highFreqFactor, 17) + "_" +
            std::to_string(scaling.originalMaxPositionEmbeddings);
    break;
  }
  return name;
}

FailureOr<std::string> buildRope(ModuleOp module, const RopeParams &params) {
  const int64_t headDim = params.headDim, half = headDim / 2;
  FailureOr<std::string> ropeName = ropeKernelName(module, params);
  if (failed(ropeName))
    return failure();
  std::string name = *ropeName;
  bool exists;
  if (failed(prepare(module, name, exists)))
    return failure();
  if (exists)
    return name;

  MLIRContext *context = module.getContext();
  Type f32 = Float32Type::get(context);
  // The table as HF holds it: f32.
  std::vector<float> invFreq;
  for (double f : computeRopeInvFreq(headDim, params.theta, params.scaling))
    invFreq.push_back(float(f));
  auto tableType = MemRefType::get({half}, f32);
  std::string tableName = name + "_inv_freq";
  {
    OpBuilder builder(context);
    builder.setInsertionPointToEnd(module.getBody());
    auto tensorType = RankedTensorType::get({half}, f32);
    memref::GlobalOp::create(
        builder, module.getLoc(), tableName, builder.getStringAttr("private"),
        tableType,
        DenseElementsAttr::get(tensorType, llvm::ArrayRef<float>(invFreq)),
        /*constant=*/true, /*alignment=*/builder.getI64IntegerAttr(32));
  }

  KernelBuilder k(module, name,
                  {headsType(f32, params.numHeads, headDim),
                   headsType(f32, params.numKvHeads, headDim),
                   indexVectorType(context)});
  Value q = k.arg(0), key = k.arg(1), positions = k.arg(2);
  Value table = memref::GetGlobalOp::create(k.b, tableType, tableName);
  Value cosBuffer = memref::AllocaOp::create(k.b, tableType);
  Value sinBuffer = memref::AllocaOp::create(k.b, tableType);
  const double twoPi = 2 * llvm::numbers::pi;
  k.loop(k.index(0), k.dim(positions, 0), [&](Value t) {
    Value pos = arith::SIToFPOp::create(k.b, k.f32, k.load(positions, {t}));
    // The angle is the f32 product HF forms; cos and sin see it reduced
    // to [-pi, pi] in double, exactly, whatever the position.
    k.chunks(half, [&](Value off, int64_t w) {
      Value angle = k.mul(k.splat(pos, w), k.vload(w, table, {off}));
      Value wide = arith::ExtFOp::create(k.b, k.vec(w, k.f64), angle);
      Value turns = math::RoundEvenOp::create(
          k.b, k.mul(wide, k.splat(k.constF64(1.0 / twoPi), w)));
      Value reduced = k.fma(arith::NegFOp::create(k.b, turns),
                            k.splat(k.constF64(twoPi), w), wide);
      Value narrow = arith::TruncFOp::create(k.b, k.vec(w), reduced);
      k.vstore(math::CosOp::create(k.b, narrow), cosBuffer, {off});
      k.vstore(math::SinOp::create(k.b, narrow), sinBuffer, {off});
    });
    auto rotate = [&](Value x, int64_t heads) {
      k.loop(k.index(0), k.index(heads), [&](Value h) {
        k.chunks(half, [&](Value off, int64_t w) {
          Value c = k.vload(w, cosBuffer, {off});
          Value s = k.vload(w, sinBuffer, {off});
          Value offHigh = k.addi(off, k.index(half));
          Value x1 = k.vload(w, x, {t, h, off});
          Value x2 = k.vload(w, x, {t, h, offHigh});
          k.vstore(k.sub(k.mul(x1, c), k.mul(x2, s)), x, {t, h, off});
          k.vstore(k.add(k.mul(x2, c), k.mul(x1, s)), x, {t, h, offHigh});
        });
      });
    };
    rotate(q, params.numHeads);
    rotate(key, params.numKvHeads);
  });
  k.finish();
  return name;
}

FailureOr<std::string> buildSwiGLU(ModuleOp module, int64_t intermediate) {
  if (failed(checkPositive(module, "intermediate size", intermediate)))
    return failure();
  std::string name = "swiglu_i" + std::to_string(intermediate);
  bool exists;
  if (failed(prepare(module, name, exists)))
    return failure();
  if (exists)
    return name;
  Type f32 = Float32Type::get(module.getContext());
  KernelBuilder k(
      module, name,
      {rowsType(f32, 2 * intermediate), rowsType(f32, intermediate)});
  Value gateUp = k.arg(0), out = k.arg(1);
  k.loop(k.index(0), k.dim(gateUp, 0), [&](Value t) {
    k.chunks(intermediate, [&](Value off, int64_t w) {
      Value gate = k.vload(w, gateUp, {t, off});
      Value up = k.vload(w, gateUp, {t, k.addi(off, k.index(intermediate))});
      k.vstore(emitSwiGLU(k, gate, up, w), out, {t, off});
    });
  });
  k.finish();
  return name;
}

FailureOr<std::string> buildSwiGLUSplit(ModuleOp module, int64_t intermediate) {
  if (failed(checkPositive(module, "intermediate size", intermediate)))
    return failure();
  std::string name = "swiglu_split_i" + std::to_string(intermediate);
  bool exists;
  if (failed(prepare(module, name, exists)))
    return failure();
  if (exists)
    return name;
  Type f32 = Float32Type::get(module.getContext());
  MemRefType rows = rowsType(f32, intermediate);
  KernelBuilder k(module, name, {rows, rows, rows});
  Value gate = k.arg(0), up = k.arg(1), out = k.arg(2);
  k.loop(k.index(0), k.dim(gate, 0), [&](Value t) {
    k.chunks(intermediate, [&](Value off, int64_t w) {
      Value g = k.vload(w, gate, {t, off});
      Value u = k.vload(w, up, {t, off});
      k.vstore(emitSwiGLU(k, g, u, w), out, {t, off});
    });
  });
  k.finish();
  return name;
}

FailureOr<std::string> buildAdd(ModuleOp module, int64_t hidden) {
  if (failed(checkPositive(module, "hidden size", hidden)))
    return failure();
  std::string name = "add_h" + std::to_string(hidden);
  bool exists;
  if (failed(prepare(module, name, exists)))
    return failure();
  if (exists)
    return name;
  Type f32 = Float32Type::get(module.getContext());
  KernelBuilder k(module, name, {rowsType(f32, hidden), rowsType(f32, hidden)});
  Value a = k.arg(0), bArg = k.arg(1);
  k.loop(k.index(0), k.dim(a, 0), [&](Value t) {
    k.chunks(hidden, [&](Value off, int64_t w) {
      Value sum = k.add(k.vload(w, a, {t, off}), k.vload(w, bArg, {t, off}));
      k.vstore(sum, a, {t, off});
    });
  });
  k.finish();
  return name;
}

FailureOr<std::string> buildAddBias(ModuleOp module, int64_t features) {
  if (failed(checkPositive(module, "feature count", features)))
    return failure();
  std::string name = "add_bias_n" + std::to_string(features);
  bool exists;
  if (failed(prepare(module, name, exists)))
    return failure();
  if (exists)
    return name;
  Type f32 = Float32Type::get(module.getContext());
  KernelBuilder k(module, name,
                  {rowsType(f32, features), MemRefType::get({features}, f32)});
  Value x = k.arg(0), bias = k.arg(1);
  k.loop(k.index(0), k.dim(x, 0), [&](Value t) {
    k.chunks(features, [&](Value off, int64_t w) {
      Value sum = k.add(k.vload(w, x, {t, off}), k.vload(w, bias, {off}));
      k.vstore(sum, x, {t, off});
    });
  });
  k.finish();
  return name;
}

LogicalResult checkKvCacheShape(ModuleOp module, const KvCacheShape &cache,
                                StringRef who) {
  for (auto [what, value] : {std::pair<const char *, int64_t>{
                                 "kv head count", cache.numKvHeads},
                             {"head dim", cache.headDim},
                             {"block size", cache.blockSize}})
    if (value <= 0)
      return module.emitError()
             << who << ": " << what << " must be positive, got " << value;
  return success();
}

LogicalResult checkPagedAttention(ModuleOp module,
                                  const PagedAttentionParams &params,
                                  StringRef who) {
  const KvCacheShape &cache = params.cache;
  if (failed(checkKvCacheShape(module, cache, who)))
    return failure();
  if (params.numHeads <= 0)
    return module.emitError() << who << ": head count must be positive, got "
                              << params.numHeads;
  if (params.numHeads % cache.numKvHeads != 0)
    return module.emitError()
           << who << ": head count " << params.numHeads
           << " is not a multiple of the kv head count " << cache.numKvHeads;
  if (params.slidingWindow < 0)
    return module.emitError()
           << who << ": negative sliding window " << params.slidingWindow;
  return success();
}

FailureOr<std::string> buildKvWrite(ModuleOp module,
                                    const KvCacheShape &cache) {
  if (failed(checkKvCacheShape(module, cache, "host kernel")))
    return failure();
  std::string name = "kv_write_kv" + std::to_string(cache.numKvHeads) + "_d" +
                     std::to_string(cache.headDim) + "_b" +
                     std::to_string(cache.blockSize) + cacheSuffix(cache);
  bool exists;
  if (failed(prepare(module, name, exists)))
    return failure();
  if (exists)
    return name;
  MLIRContext *context = module.getContext();
  Type f32 = Float32Type::get(context);
  MemRefType heads = headsType(f32, cache.numKvHeads, cache.headDim);
  MemRefType caches = cacheType(f32, cache);
  KernelBuilder k(module, name,
                  {heads, heads, caches, caches, indexVectorType(context)});
  Value key = k.arg(0), value = k.arg(1), keyCache = k.arg(2),
        valueCache = k.arg(3), slots = k.arg(4);
  k.loop(k.index(0), k.dim(slots, 0), [&](Value t) {
    Value slot = k.load(slots, {t});
    Value valid = arith::CmpIOp::create(
        k.b, arith::CmpIPredicate::sge, slot,
        arith::ConstantOp::create(k.b, k.b.getI32IntegerAttr(0)));
    k.ifThen(valid, [&] {
      Value slotIndex = arith::IndexCastOp::create(k.b, k.indexType, slot);
      Value block =
          arith::DivUIOp::create(k.b, slotIndex, k.index(cache.blockSize));
      Value offset =
          arith::RemUIOp::create(k.b, slotIndex, k.index(cache.blockSize));
      k.loop(k.index(0), k.index(cache.numKvHeads), [&](Value h) {
        if (cache.elementType == KvElementType::Int8) {
          k.storeInt8Row(cache, key, {t, h}, keyCache, {block, offset, h});
          k.storeInt8Row(cache, value, {t, h}, valueCache,
                         {block, offset, h});
          return;
        }
        k.chunks(cache.headDim, [&](Value off, int64_t w) {
          k.vstoreCache(cache, k.vload(w, key, {t, h, off}), keyCache,
                        {block, offset, h, off});
          k.vstoreCache(cache, k.vload(w, value, {t, h, off}), valueCache,
                        {block, offset, h, off});
        });
      });
    });
  });
  k.finish();
  return name;
}

FailureOr<std::string> buildPagedAttention(ModuleOp module,
                                           const PagedAttentionParams &params) {
  const KvCacheShape &cache = params.cache;
  if (failed(checkPagedAttention(module, params, "host kernel")))
    return failure();
  const int64_t group = params.numHeads / cache.numKvHeads;
  const int64_t headDim = cache.headDim, blockSize = cache.blockSize;
  std::string name =
      "paged_attention_h" + std::to_string(params.numHeads) + "_kv" +
      std::to_string(cache.numKvHeads) + "_d" + std::to_string(headDim) + "_b" +
      std::to_string(blockSize) + "_s" + numberForName(params.scale, 9) + "_w" +
      std::to_string(params.slidingWindow) + cacheSuffix(cache);
  bool exists;
  if (failed(prepare(module, name, exists)))
    return failure();
  if (exists)
    return name;

  MLIRContext *context = module.getContext();
  Type f32 = Float32Type::get(context);
  MemRefType caches = cacheType(f32, cache);
  KernelBuilder k(
      module, name,
      {headsType(f32, params.numHeads, headDim), caches, caches,
       indexVectorType(context), indexVectorType(context),
       MemRefType::get({kDynamic, kDynamic}, IntegerType::get(context, 32)),
       MemRefType::get({kDynamic, params.numHeads, headDim}, f32)});
  Value q = k.arg(0), keyCache = k.arg(1), valueCache = k.arg(2),
        queryStart = k.arg(3), contextLen = k.arg(4), blockTable = k.arg(5),
        out = k.arg(6);

  // The query heads of a group read the same keys: a tile of them (at most
  // 8, a divisor of the group) is unrolled so that each key and value
  // vector is loaded once for the tile, into independent FMA chains.
  int64_t tile = 1;
  for (int64_t d = std::min<int64_t>(group, 8); d >= 1; --d)
    if (group % d == 0) {
      tile = d;
      break;
    }
  // Per query head: running max, running sum, output accumulator; per head
  // of a tile: one block's scores (then probabilities). Blocks are the
  // outer loop so that each cache block is read once, front to back, for
  // all heads.
  const int64_t numHeads = params.numHeads;
  Value runMax =
      memref::AllocaOp::create(k.b, MemRefType::get({numHeads}, f32));
  Value runSum =
      memref::AllocaOp::create(k.b, MemRefType::get({numHeads}, f32));
  Value acc =
      memref::AllocaOp::create(k.b, MemRefType::get({numHeads, headDim}, f32));
  Value scores =
      memref::AllocaOp::create(k.b, MemRefType::get({tile, blockSize}, f32));
  Value c0 = k.index(0), c1 = k.index(1), cBlock = k.index(blockSize);
  Value negInf = k.constF32(-INFINITY), zero = k.constF32(0.0);
  Value scale = k.constF32(params.scale);
  SmallVector<Value> slot; // the tile's rows in `scores`
  for (int64_t u = 0; u < tile; ++u)
    slot.push_back(k.index(u));

  k.loop(c0, k.dim(contextLen, 0), [&](Value s) {
    Value first = k.loadIndex(queryStart, {s});
    Value last = k.loadIndex(queryStart, {k.addi(s, c1)});
    Value ctx = k.loadIndex(contextLen, {s});
    // pos(t) = ctx - n + (t - first) = t + (ctx - last).
    Value posShift = k.subi(ctx, last);
    k.loop(first, last, [&](Value t) {
      Value pos = k.addi(t, posShift);
      Value lo = c0;
      if (params.slidingWindow > 0)
        lo = arith::MaxSIOp::create(
            k.b, k.subi(pos, k.index(params.slidingWindow - 1)), c0);
      Value firstBlock = arith::DivUIOp::create(k.b, lo, cBlock);
      Value endBlock = k.addi(arith::DivUIOp::create(k.b, pos, cBlock), c1);
      Value posEnd = k.addi(pos, c1);
      k.loop(c0, k.index(numHeads), [&](Value h) {
        k.store(negInf, runMax, {h});
        k.store(zero, runSum, {h});
        k.chunks(headDim, [&](Value off, int64_t w) {
          k.vstore(k.splat(zero, w), acc, {h, off});
        });
      });
      k.loop(firstBlock, endBlock, [&](Value bi) {
        Value block = k.loadIndex(blockTable, {s, bi});
        Value start = k.muli(bi, cBlock);
        // The keys of this block in [lo, pos], as offsets in the block; the
        // others score -inf, so the softmax runs over whole blocks of
        // vectors while only the slots in range are read.
        Value j0 = k.subi(arith::MaxSIOp::create(k.b, lo, start), start);
        Value j1 = k.subi(
            arith::MinSIOp::create(k.b, posEnd, k.addi(start, cBlock)), start);
        k.loop(c0, k.index(cache.numKvHeads), [&](Value g) {
          k.loop(c0, k.index(group / tile), [&](Value tileIndex) {
            Value headBase = k.addi(k.muli(g, k.index(group)),
                                    k.muli(tileIndex, k.index(tile)));
            SmallVector<Value> heads;
            for (int64_t u = 0; u < tile; ++u) {
              heads.push_back(k.addi(headBase, slot[u]));
              k.chunks(blockSize, [&](Value off, int64_t w) {
                k.vstore(k.splat(negInf, w), scores, {slot[u], off});
              });
            }
            k.loop(j0, j1, [&](Value j) {
              SmallVector<Value> dots = k.reduceChunks(
                  headDim, tile, vector::CombiningKind::ADD,
                  [&](Value off, int64_t w, ValueRange accs) {
                    Value key =
                        k.vloadCache(cache, w, keyCache, {block, j, g, off});
                    SmallVector<Value> next;
                    for (int64_t u = 0; u < tile; ++u)
                      next.push_back(k.fma(k.vload(w, q, {t, heads[u], off}),
                                           key, accs[u]));
                    return next;
                  });
              for (int64_t u = 0; u < tile; ++u)
                k.store(k.mul(dots[u], scale), scores, {slot[u], j});
            });
            SmallVector<Value> corrections;
            for (int64_t u = 0; u < tile; ++u) {
              Value blockMax = k.reduceChunks(
                  blockSize, 1, vector::CombiningKind::MAXIMUMF,
                  [&](Value off, int64_t w, ValueRange accs) {
                    Value v = k.vload(w, scores, {slot[u], off});
                    return SmallVector<Value>{
                        arith::MaximumFOp::create(k.b, accs[0], v)};
                  })[0];
              Value oldMax = k.load(runMax, {heads[u]});
              Value newMax = arith::MaximumFOp::create(k.b, oldMax, blockMax);
              // exp(-inf) = 0 on the first block: nothing to rescale.
              Value correction =
                  math::ExpOp::create(k.b, k.sub(oldMax, newMax));
              Value blockSum =
                  k.sumChunks(blockSize, [&](Value off, int64_t w, Value sum) {
                    Value sc = k.vload(w, scores, {slot[u], off});
                    Value p =
                        math::ExpOp::create(k.b, k.sub(sc, k.splat(newMax, w)));
                    k.vstore(p, scores, {slot[u], off});
                    return k.add(sum, p);
                  });
              k.store(k.add(k.mul(k.load(runSum, {heads[u]}), correction),
                            blockSum),
                      runSum, {heads[u]});
              k.store(newMax, runMax, {heads[u]});
              corrections.push_back(correction);
            }
            k.chunks(headDim, [&](Value off, int64_t w) {
              SmallVector<Value> init;
              for (int64_t u = 0; u < tile; ++u)
                init.push_back(k.mul(k.vload(w, acc, {heads[u], off}),
                                     k.splat(corrections[u], w)));
              SmallVector<Value> sums =
                  k.loopCarry(j0, j1, c1, init, [&](Value j, ValueRange accs) {
                    Value value =
                        k.vloadCache(cache, w, valueCache, {block, j, g, off});
                    SmallVector<Value> next;
                    for (int64_t u = 0; u < tile; ++u)
                      next.push_back(
                          k.fma(k.splat(k.load(scores, {slot[u], j}), w), value,
                                accs[u]));
                    return next;
                  });
              for (int64_t u = 0; u < tile; ++u)
                k.vstore(sums[u], acc, {heads[u], off});
            });
          });
        });
      });
      k.loop(c0, k.index(numHeads), [&](Value h) {
        Value inv = k.div(k.constF32(1.0), k.load(runSum, {h}));
        k.chunks(headDim, [&](Value off, int64_t w) {
          k.vstore(k.mul(k.vload(w, acc, {h, off}), k.splat(inv, w)), out,
                   {t, h, off});
        });
      });
    });
  });
  k.finish();
  return name;
}

} // namespace hostkernels
} // namespace optmlir
