//===- FlashAttention.cpp - Tensor-core flash attention for prefill ------===//
//
// flash_attention: paged_attention's semantics for the sequences of a step
// that bring many query rows (prefill, chunked prefill, prefix-cache hits),
// in the FlashAttention-2 shape:
//  - a block of 4 (or 8) warps owns a tile of warps * warpRows query rows
//    of one sequence and one query head; each warp owns warpRows rows
//    (default 32: two m16 tiles that share every K and V fragment), whose
//    Q fragments it re-reads from shared memory (or keeps in registers);
//  - the block walks the keys its rows can see keyTile at a time: K and V
//    tiles are gathered through the block table into shared memory with
//    16-byte cp.async (rows padded by 16 bytes so that ldmatrix reads are
//    free of bank conflicts); V's copy overlaps S = Q K^T and the next K's
//    copy overlaps O += P V (or, double-buffered, both a tile ahead);
//  - S and O come from mma.sync m16n8k16 (bf16 in, f32 accumulators); the
//    online softmax runs on the S accumulators in registers (row max over
//    the 4 lanes of a quad by shuffles, exp2 with the scale folded into
//    log2(e)), and the S accumulators of two adjacent 8-key tiles, rounded
//    to bf16, are exactly the A fragment of the next mma (no shared memory
//    round trip for P);
//  - only the key tiles that cross the causal diagonal or the window edge
//    are masked;
//  - on sm_90a, the wgmma tiling replaces ldmatrix + mma.sync by warpgroup
//    MMAs on core-matrix tiles (emitted as inline PTX). It is correct but
//    measured slower than mma.sync (FlashAttentionTiling in GpuKernels.h).
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with
// floating point type"; per lane g = lane / 4, c = lane % 4, each register
// two bf16 with the lower column in the low half):
//   A (16x16): a0 = A[g][2c..2c+1], a1 = A[g+8][2c..], a2 = A[g][2c+8..],
//              a3 = A[g+8][2c+8..];
//   B (16x8, k x n): b0 = B[2c..2c+1][g], b1 = B[2c+8..2c+9][g];
//   C (16x8 f32): c0, c1 = C[g][2c..2c+1], c2, c3 = C[g+8][2c..2c+1].
// ldmatrix.x4 hands lane l the pair at row l / 4, columns 2(l % 4).. of
// each of its four 8x8 matrices (.trans: the pair at rows 2(l % 4).. of
// column l / 4), the matrices' row addresses coming from lanes 0-7, 8-15,
// 16-23 and 24-31. So for S = Q K^T (B[k][n] = K[key n][dim k]) a plain
// ldmatrix of K rows gives B fragments, and for O = P V (B[k][n] =
// V[key k][dim n]) a .trans ldmatrix of V rows does.
//
//===----------------------------------------------------------------------===//

#include "KernelBuilder.h"
#include "optmlir/Conversion/GpuKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMTypes.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/ImplicitLocOpBuilder.h"

#include "llvm/Support/MathExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>

using namespace mlir;

namespace optmlir {
namespace gpukernels {
using namespace detail;
namespace {

/// The dynamic shared memory of every kernel of the module (`extern
/// __shared__`): one symbol, sized per launch.
constexpr const char *kDynamicShared = "optmlir_dynamic_smem";
constexpr unsigned kSharedSpace = 3;
using P = arith::CmpIPredicate;

/// The static shape of one flash_attention kernel.
struct Shape {
  int64_t numHeads, numKvHeads, group, headDim, blockSize, window;
  double scale;
  int64_t minQueryRows;
  FlashAttentionTiling tiling;

  int64_t mTiles() const { return tiling.warpRows / 16; }
  int64_t warps() const { return tiling.warps; }
  int64_t threads() const { return warps() * kWarp; }
  int64_t rows() const { return warps() * tiling.warpRows; }
  int64_t keys() const { return tiling.keyTile; }
  bool wgmma() const { return tiling.wgmma; }
  /// A shared-memory row of Q (and of K and V for mma.sync): D bf16 plus 16
  /// bytes of padding, which puts the 8 rows an ldmatrix reads in 8
  /// different 16-byte bank groups for every D that is a multiple of 16.
  int64_t rowBytes() const { return 2 * headDim + 16; }
  /// K and V tiles for wgmma are in the canonical no-swizzle layout: 8x8
  /// "core matrices" of 8 keys by 8 dims, 128 contiguous bytes each,
  /// ordered [key group][dim chunk] (see emitWgmma).
  int64_t kvTileBytes() const {
    return wgmma() ? keys() * headDim * 2 : keys() * rowBytes();
  }
  /// K then V of one tile: a stage. Double buffering has two, the second
  /// filled while the first is used.
  int64_t stages() const { return tiling.doubleBuffer ? 2 : 1; }
  int64_t stageBytes() const { return 2 * kvTileBytes(); }
  int64_t kOffset() const { return 0; }
  int64_t vOffset() const { return kvTileBytes(); }
  /// Q fragments held in registers are read once, before the first write
  /// to the last V buffer: Q may then share that space.
  int64_t qOffset() const {
    return tiling.qInRegisters ? stages() * stageBytes() - kvTileBytes()
                               : stages() * stageBytes();
  }
  /// Q in shared memory for wgmma's A operand is in the core-matrix layout
  /// (K-major, like K); otherwise padded rows, read with ldmatrix.
  bool qCore() const { return wgmma() && !tiling.qInRegisters; }
  int64_t qBytes() const {
    return qCore() ? rows() * headDim * 2 : rows() * rowBytes();
  }
  int64_t sharedBytes() const {
    int64_t kv = kvTileBytes(), q = qBytes();
    return tiling.qInRegisters ? qOffset() + std::max(kv, q) : qOffset() + q;
  }
  /// Tile row and column (16-byte chunk) of the `id`-th chunk of a copy,
  /// and its byte offset in the tile. Padded tiles go row by row; core-
  /// matrix tiles go 8 keys of one chunk at a time, so that the 8 lanes of
  /// a 16-byte store phase fill one 128-byte core matrix (no bank
  /// conflicts) and a warp reads 8 rows x 64 bytes of the cache.
  void chunkAt(int64_t id, bool core, int64_t &row, int64_t &col,
               int64_t &bytes) const {
    const int64_t perRow = headDim / 8;
    if (!core) {
      row = id / perRow;
      col = id % perRow;
      bytes = row * rowBytes() + col * 16;
      return;
    }
    row = id / (8 * perRow) * 8 + id % 8;
    col = id / 8 % perRow;
    bytes = id * 16;
  }
  /// The byte offset of (row, 16-byte column) in a tile: chunkAt's bytes.
  int64_t chunkBytes(int64_t row, int64_t col, bool core) const {
    if (!core)
      return row * rowBytes() + col * 16;
    return row / 8 * headDim * 16 + col * 128 + row % 8 * 16;
  }
};

/// Emits the kernel body: helpers over the kernel builder for the nvvm
/// operations, then the kernel itself in emit().
class FlashEmitter {
public:
  FlashEmitter(KernelBuilder &k, const Shape &shape)
      : k(k), b(k.b), shape(shape) {
    MLIRContext *context = b.getContext();
    i8 = b.getI8Type();
    ptr3 = LLVM::LLVMPointerType::get(context, kSharedSpace);
    accType =
        LLVM::LLVMStructType::getLiteral(context, {k.f32, k.f32, k.f32, k.f32});
    quadType =
        LLVM::LLVMStructType::getLiteral(context, {k.i32, k.i32, k.i32, k.i32});
  }

  void emit();

private:
  // i32 arithmetic (keys and positions fit; the loop body avoids 64-bit
  // integer math, which PTX emulates with two instructions).
  Value c32(int64_t v) { return k.constI32(v); }
  Value toI32(Value index) {
    return arith::IndexCastOp::create(b, k.i32, index);
  }
  Value andi(Value x, Value y) { return arith::AndIOp::create(b, x, y); }
  Value ori(Value x, Value y) { return arith::OrIOp::create(b, x, y); }

  /// `base` + `bytes` in shared memory.
  Value sharedAt(Value base, Value bytes) {
    return LLVM::GEPOp::create(b, ptr3, i8, base, ValueRange{bytes});
  }
  Value sharedAt(Value base, int64_t bytes) {
    if (bytes == 0)
      return base;
    return LLVM::GEPOp::create(b, ptr3, i8, base,
                               ArrayRef<LLVM::GEPArg>{int32_t(bytes)});
  }
  /// Four 8x8 b16 matrices (row addresses from lanes 0-7, 8-15, 16-23,
  /// 24-31), one register of each per lane.
  SmallVector<Value, 4> ldmatrix4(Value address, bool transpose) {
    Value quad = NVVM::LdMatrixOp::create(
        b, quadType, address, /*num=*/4,
        transpose ? NVVM::MMALayout::col : NVVM::MMALayout::row,
        NVVM::LdStMatrixShapeAttr::get(b.getContext(), 8, 8),
        NVVM::LdStMatrixEltType::B16);
    SmallVector<Value, 4> regs;
    for (int64_t i = 0; i < 4; ++i)
      regs.push_back(LLVM::ExtractValueOp::create(b, quad, i));
    return regs;
  }
  /// d = a * b + c, m16n8k16, bf16 x bf16 -> f32.
  SmallVector<Value, 4> mma(ArrayRef<Value> a, Value b0, Value b1,
                            ArrayRef<Value> c) {
    Value d = NVVM::MmaOp::create(
        b, accType, a, ValueRange{b0, b1}, c, ArrayRef<int64_t>{16, 8, 16},
        std::nullopt, std::nullopt,
        std::array<NVVM::MMATypes, 2>{NVVM::MMATypes::bf16,
                                      NVVM::MMATypes::bf16},
        std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                       NVVM::MMALayout::col});
    SmallVector<Value, 4> out;
    for (int64_t i = 0; i < 4; ++i)
      out.push_back(LLVM::ExtractValueOp::create(b, d, i));
    return out;
  }
  /// d += a * B, wgmma.mma_async m64nNk16 bf16 -> f32 with A in registers
  /// (4 x bf16x2 per thread, laid out per warp as mma.sync's A) and B in
  /// shared memory behind `desc`; `transposeB` reads B N-major. Emitted as
  /// inline PTX (the NVVM op takes A from shared memory only), in the form
  /// MLIR's own wgmma lowering emits. Volatile: LLVM must keep it between
  /// the wgmma fence, commit and wait.
  /// With a single value in `a`, A is read from shared memory through
  /// that descriptor (K-major).
  SmallVector<Value> wgmmaOp(ArrayRef<Value> acc, ArrayRef<Value> a, Value desc,
                             bool transposeB, bool accumulate = true) {
    const int64_t regs = acc.size(), n = 2 * regs;
    const bool aShared = a.size() == 1;
    // Operands: the accumulator (outputs, then tied inputs), A, B's
    // descriptor, then the immediates.
    const int64_t aAt = 2 * regs, descAt = aAt + (aShared ? 1 : 4);
    const int64_t immAt = descAt + 1;
    std::string text, constraints;
    llvm::raw_string_ostream os(text), cs(constraints);
    os << "{\n.reg .pred p;\nsetp.ne.b32 p, $" << immAt
       << ", 0;\nwgmma.mma_async.sync.aligned.m64n" << n
       << "k16.f32.bf16.bf16 {";
    for (int64_t i = 0; i < regs; ++i)
      os << (i ? ", " : "") << "$" << i;
    if (aShared)
      os << "}, $" << aAt;
    else
      os << "}, {$" << aAt << ", $" << aAt + 1 << ", $" << aAt + 2 << ", $"
         << aAt + 3 << "}";
    os << ", $" << descAt << ", p, $" << immAt + 1 << ", $" << immAt + 2;
    if (aShared)
      os << ", $" << immAt + 3; // trans-a: K-major
    os << ", $" << immAt + 4 << ";\n}\n";
    for (int64_t i = 0; i < regs; ++i)
      cs << "=f,";
    for (int64_t i = 0; i < regs; ++i)
      cs << i << ",";
    cs << (aShared ? "l," : "r,r,r,r,") << "l,n,n,n,n,n";
    SmallVector<Value> operands(acc.begin(), acc.end());
    operands.append(a.begin(), a.end());
    operands.push_back(desc);
    // scale-d (0: D = A B, the accumulator is not read), scale-a 1,
    // scale-b 1, trans-a (A K-major; only printed for A in shared memory),
    // trans-b.
    for (int64_t imm : {int64_t(accumulate ? 1 : 0), int64_t(1), int64_t(1),
                        int64_t(0), int64_t(transposeB ? 1 : 0)})
      operands.push_back(LLVM::ConstantOp::create(b, k.i32, imm));
    SmallVector<Type> types(regs, k.f32);
    auto resultType = LLVM::LLVMStructType::getLiteral(b.getContext(), types);
    Value result =
        LLVM::InlineAsmOp::create(b, resultType, operands, text, constraints,
                                  /*has_side_effects=*/true,
                                  /*is_align_stack=*/false,
                                  LLVM::tailcallkind::TailCallKind::None,
                                  LLVM::AsmDialectAttr(), ArrayAttr())
            .getResult(0);
    SmallVector<Value> out;
    for (int64_t i = 0; i < regs; ++i)
      out.push_back(LLVM::ExtractValueOp::create(b, result, i));
    return out;
  }
  /// `values` through an empty volatile asm. wgmma reads its A and
  /// accumulator registers asynchronously: every write to them must come
  /// before the wgmma.fence that precedes it (PTX ISA, wgmma.fence). LLVM
  /// would sink the conversions and the rescale past the fence intrinsic
  /// (it sees no dependence); the wgmma then reads these copies, made
  /// before the fence.
  SmallVector<Value> operandFence(ArrayRef<Value> values) {
    std::string constraints;
    llvm::raw_string_ostream cs(constraints);
    SmallVector<Type> types;
    for (Value v : values) {
      types.push_back(v.getType());
      cs << (v.getType() == k.f32 ? "=f," : "=r,");
    }
    for (size_t i = 0; i < values.size(); ++i)
      cs << i << (i + 1 < values.size() ? "," : "");
    auto resultType = LLVM::LLVMStructType::getLiteral(b.getContext(), types);
    Value result =
        LLVM::InlineAsmOp::create(b, resultType, values, "", constraints,
                                  /*has_side_effects=*/true,
                                  /*is_align_stack=*/false,
                                  LLVM::tailcallkind::TailCallKind::None,
                                  LLVM::AsmDialectAttr(), ArrayAttr())
            .getResult(0);
    SmallVector<Value> out;
    for (size_t i = 0; i < values.size(); ++i)
      out.push_back(LLVM::ExtractValueOp::create(b, result, i));
    return out;
  }

  /// The wgmma shared-memory descriptor of the no-swizzle matrix at
  /// `sharedBase` + `offset`: start address, leading and stride byte
  /// offsets, each >> 4 (PTX ISA, "Matrix Descriptor Format").
  Value descriptor(Value sharedBase, int64_t offset, int64_t leading,
                   int64_t stride) {
    Value address = LLVM::PtrToIntOp::create(b, k.i64, sharedBase);
    Value start = arith::ShRUIOp::create(
        b,
        arith::AndIOp::create(
            b, address,
            arith::ConstantOp::create(b, b.getI64IntegerAttr(0x3FFFF))),
        arith::ConstantOp::create(b, b.getI64IntegerAttr(4)));
    int64_t fields =
        (offset >> 4) + ((leading >> 4) << 16) + ((stride >> 4) << 32);
    return arith::AddIOp::create(
        b, start, arith::ConstantOp::create(b, b.getI64IntegerAttr(fields)));
  }

  /// Two f32 rounded to bf16, `lo` in the low half (cvt.rn.bf16x2.f32).
  Value packBf16(Value lo, Value hi) {
    auto f32x2 = VectorType::get({2}, k.f32);
    Value v = LLVM::PoisonOp::create(b, f32x2);
    v = LLVM::InsertElementOp::create(b, v, lo, c32(0));
    v = LLVM::InsertElementOp::create(b, v, hi, c32(1));
    return arith::TruncFOp::create(b, VectorType::get({2}, k.bf16), v);
  }
  Value packBf16AsI32(Value lo, Value hi) {
    return LLVM::BitcastOp::create(b, k.i32, packBf16(lo, hi));
  }
  /// 2^x (ex2.approx.ftz: -inf gives 0).
  Value ex2(Value x) {
    return LLVM::CallIntrinsicOp::create(
               b, k.f32, b.getStringAttr("llvm.nvvm.ex2.approx.ftz.f32"),
               ValueRange{x})
        .getResult(0);
  }
  Value shuffleXor(Value v, int32_t offset) {
    return gpu::ShuffleOp::create(b, v, offset, kWarp, gpu::ShuffleMode::XOR)
        .getShuffleResult();
  }
  /// Max over the 4 lanes of a quad (the lanes that share an mma row).
  Value quadMax(Value v) {
    v = k.maxf(v, shuffleXor(v, 1));
    return k.maxf(v, shuffleXor(v, 2));
  }
  Value quadSum(Value v) {
    v = k.add(v, shuffleXor(v, 1));
    return k.add(v, shuffleXor(v, 2));
  }

  /// One 16-byte chunk of a tile copy: which tile row and which 8 columns
  /// thread `tid` copies on its i-th turn (fixed per thread).
  struct Chunk {
    Value row, col;    // index
    Value sharedBytes; // i32 offset of the chunk in the tile
    bool guarded;      // the last turn may have no chunk for this thread
    Value present;     // i1, when guarded
    /// Offsets from chunk 0 of the same thread when they are the same for
    /// every thread (decided at generation time): the chunk's address is
    /// then chunk 0's plus a constant, an immediate in the instruction.
    std::optional<int64_t> sharedDelta, cacheDelta;
  };
  SmallVector<Chunk> chunksFor(int64_t rows, bool core);
  /// f(row, col) of the chunk of `turn` minus f of chunk 0, when it is the
  /// same for all the threads that have that chunk.
  std::optional<int64_t>
  uniformDelta(int64_t rows, bool core, int64_t turn,
               llvm::function_ref<int64_t(int64_t, int64_t)> f) {
    const int64_t total = rows * (shape.headDim / 8);
    const int64_t threads = shape.threads();
    std::optional<int64_t> delta;
    for (int64_t t = 0; t < threads; ++t) {
      int64_t id = t + turn * threads;
      if (id >= total)
        continue;
      int64_t row, col, row0, col0, bytes;
      shape.chunkAt(id, core, row, col, bytes);
      shape.chunkAt(t, core, row0, col0, bytes);
      int64_t d = f(row, col) - f(row0, col0);
      if (delta && *delta != d)
        return std::nullopt;
      delta = d;
    }
    return delta;
  }
  /// `ptr` through an empty asm that also names the loop counter `iter`:
  /// LLVM cannot hoist it, nor the constant offsets from it, out of the
  /// loop. Without this, every ldmatrix and cp.async address of the loop
  /// becomes its own 64-bit register computed before the loop (dozens of
  /// registers), where ptxas wants one base and immediate offsets.
  Value pinned(Value ptr, Value iter) {
    Value bits = LLVM::PtrToIntOp::create(b, k.i64, ptr);
    Value asmOut =
        LLVM::InlineAsmOp::create(
            b, k.i64, ValueRange{bits, toI32(iter)}, "mov.b64 $0, $1;",
            "=l,l,r", /*has_side_effects=*/false,
            /*is_align_stack=*/false, LLVM::tailcallkind::TailCallKind::None,
            LLVM::AsmDialectAttr(), ArrayAttr())
            .getResult(0);
    return LLVM::IntToPtrOp::create(b, ptr3, asmOut);
  }
  template <typename Body> void forChunk(const Chunk &chunk, Body body) {
    if (chunk.guarded)
      k.ifThen(chunk.present, body);
    else
      body();
  }

  /// How a K or V tile is gathered through the block table. The block ids
  /// of a tile are the same for K and V, so they are loaded once per tile,
  /// one tile ahead (their latency then hides behind a tile of mma).
  enum class Gather {
    /// B divides the key tile, and the chunks of every thread fall into
    /// blocks at the same offsets from the thread's first block: one id
    /// per such offset ("group").
    PerGroup,
    /// The key tile divides B: one block holds the whole tile.
    PerTile,
    /// Anything else: one id per chunk, looked up at copy time.
    PerKey,
  };
  void planGather();
  /// The block ids of tile `kt` (i32), empty for PerKey. Slots are clamped
  /// to the block of the last key the rows see: the table is read only
  /// where it holds blocks.
  SmallVector<Value> loadBlockIds(Value kt);
  /// Starts the copy of the K or V tile `kt` (i32) into shared memory at
  /// `region`. `guarded` zero-fills the keys outside [lo, last]: past the
  /// context, a block's rows hold whatever was there.
  void copyKeyTile(Value cache, int64_t region, Value kt, ValueRange ids,
                   bool guarded, Value sharedBase);
  /// Waits for this thread's copies, then for everyone's. wgmma reads
  /// shared memory through the async proxy: cp.async's writes (generic
  /// proxy) must be fenced towards it before the barrier.
  void waitCopies() {
    NVVM::CpAsyncWaitGroupOp::create(b, 0);
    if (shape.wgmma())
      NVVM::FenceProxyOp::create(
          b, NVVM::ProxyKind::async_shared,
          NVVM::SharedSpaceAttr::get(b.getContext(),
                                     NVVM::SharedSpace::shared_cta));
    k.barrier();
  }
  void cpAsync(Value dst, Value src, Value srcBytes) {
    NVVM::CpAsyncOp::create(b, dst, src, 16, NVVM::LoadCacheModifierKind::CG,
                            srcBytes);
  }

  KernelBuilder &k;
  ImplicitLocOpBuilder &b;
  const Shape &shape;
  Type i8, ptr3, accType, quadType;

  // Per-block values, set by emit().
  Value smem, lo32, last32, lastSlot32, tableBase, kvHead;
  SmallVector<Chunk> keyChunks;
  // The gather plan (planGather) and its per-thread constants.
  Gather gather = Gather::PerKey;
  SmallVector<int64_t> groupOf;    // chunk -> group (PerGroup)
  SmallVector<int64_t> groupDelta; // group -> slot offset (PerGroup)
  Value firstSlot32;               // the thread's first slot in a tile
  SmallVector<Value> keyOffset32;  // chunk -> key offset in the tile
  SmallVector<Value> chunkOffset;  // chunk -> element offset in its block
};

SmallVector<FlashEmitter::Chunk> FlashEmitter::chunksFor(int64_t rows,
                                                         bool core) {
  const int64_t perRow = shape.headDim / 8;
  const int64_t total = rows * perRow, threads = shape.threads();
  SmallVector<Chunk> chunks;
  for (int64_t turn = 0; turn * threads < total; ++turn) {
    Chunk chunk;
    Value id = k.addi(k.tid, k.index(turn * threads));
    if (core) {
      chunk.row = k.addi(k.muli(k.divui(id, k.index(8 * perRow)), k.index(8)),
                         k.remui(id, k.index(8)));
      chunk.col = k.remui(k.divui(id, k.index(8)), k.index(perRow));
      chunk.sharedBytes = toI32(k.muli(id, k.index(16)));
    } else {
      chunk.row = k.divui(id, k.index(perRow));
      chunk.col = k.remui(id, k.index(perRow));
      chunk.sharedBytes =
          toI32(k.addi(k.muli(chunk.row, k.index(shape.rowBytes())),
                       k.muli(chunk.col, k.index(16))));
    }
    chunk.guarded = (turn + 1) * threads > total;
    if (chunk.guarded)
      chunk.present = k.cmpi(P::ult, id, k.index(total));
    chunk.sharedDelta =
        uniformDelta(rows, core, turn, [&](int64_t row, int64_t col) {
          return shape.chunkBytes(row, col, core);
        });
    chunks.push_back(chunk);
  }
  return chunks;
}

void FlashEmitter::planGather() {
  const int64_t N = shape.keys(), B = shape.blockSize, D = shape.headDim;
  const int64_t perRow = D / 8, total = N * perRow;
  const int64_t threads = shape.threads();
  const int64_t turns = llvm::divideCeil(total, threads);
  const bool core = shape.wgmma();
  // Decided at generation time by enumerating the threads.
  gather = Gather::PerKey;
  if (B % N == 0) {
    gather = Gather::PerTile;
  } else if (N % B == 0) {
    gather = Gather::PerGroup;
    groupOf.assign(turns, -1);
    groupDelta.clear();
    for (int64_t turn = 0; turn < turns && gather == Gather::PerGroup; ++turn) {
      int64_t delta = -1;
      for (int64_t t = 0; t < threads; ++t) {
        int64_t id = t + turn * threads;
        if (id >= total)
          continue;
        int64_t row, col, row0, col0, bytes;
        shape.chunkAt(id, core, row, col, bytes);
        shape.chunkAt(t, core, row0, col0, bytes);
        int64_t d = row / B - row0 / B;
        if (delta >= 0 && d != delta) {
          gather = Gather::PerKey;
          break;
        }
        delta = d;
      }
      if (gather != Gather::PerGroup)
        break;
      auto it = llvm::find(groupDelta, delta);
      groupOf[turn] = it - groupDelta.begin();
      if (it == groupDelta.end())
        groupDelta.push_back(delta);
    }
  }

  Value hd = k.index(shape.numKvHeads * D);
  Value headOffset = k.muli(kvHead, k.index(D));
  firstSlot32 = toI32(k.divui(keyChunks[0].row, k.index(B)));
  keyOffset32.clear();
  chunkOffset.clear();
  const int64_t hdConst = shape.numKvHeads * D;
  for (auto [turn, chunk] : llvm::enumerate(keyChunks)) {
    if (gather == Gather::PerGroup)
      chunk.cacheDelta =
          uniformDelta(N, core, turn, [&](int64_t row, int64_t col) {
            return (row % B) * hdConst + col * 8;
          });
    else if (gather == Gather::PerTile)
      chunk.cacheDelta =
          uniformDelta(N, core, turn, [&](int64_t row, int64_t col) {
            return row * hdConst + col * 8;
          });
    keyOffset32.push_back(toI32(chunk.row));
    Value col = k.muli(chunk.col, k.index(8));
    // Row of the chunk's key in its block: the key's offset in the block
    // (PerGroup) or in the tile (PerTile; the tile's own offset in the
    // block is added per tile).
    Value offset = k.addi(headOffset, col);
    if (gather == Gather::PerGroup)
      offset = k.addi(offset, k.muli(k.remui(chunk.row, k.index(B)), hd));
    else if (gather == Gather::PerTile)
      offset = k.addi(offset, k.muli(chunk.row, hd));
    chunkOffset.push_back(offset);
  }
}

SmallVector<Value> FlashEmitter::loadBlockIds(Value kt) {
  const int64_t N = shape.keys(), B = shape.blockSize;
  SmallVector<Value> ids;
  auto load = [&](Value slot) {
    slot = k.minsi(slot, lastSlot32);
    ids.push_back(k.loadI32(k.arg(5), k.addi(tableBase, k.toIndex(slot))));
  };
  if (gather == Gather::PerTile)
    load(arith::DivUIOp::create(b, k.muli(kt, c32(N)), c32(B)));
  else if (gather == Gather::PerGroup)
    for (int64_t delta : groupDelta)
      load(k.addi(k.addi(k.muli(kt, c32(N / B)), firstSlot32), c32(delta)));
  return ids;
}

void FlashEmitter::copyKeyTile(Value cache, int64_t region, Value kt,
                               ValueRange ids, bool guarded, Value sharedBase) {
  const int64_t N = shape.keys(), B = shape.blockSize;
  const int64_t blockElems = B * shape.numKvHeads * shape.headDim;
  Value tileKey = k.muli(kt, c32(N));
  // Chunk 0's destination: the others with a uniform delta are at
  // constant offsets from it.
  Value firstDst =
      sharedAt(sharedAt(sharedBase, keyChunks[0].sharedBytes), region);
  Value tileBase;
  if (gather == Gather::PerTile) {
    Value block = k.muli(k.toIndex(ids[0]), k.index(blockElems));
    Value inBlock = arith::RemUIOp::create(b, tileKey, c32(B));
    tileBase =
        k.gep(cache, k.bf16,
              k.addi(block, k.muli(k.toIndex(inBlock),
                                   k.index(shape.numKvHeads * shape.headDim))));
  }
  SmallVector<Value> groupBase;
  if (gather == Gather::PerGroup)
    for (Value id : ids)
      groupBase.push_back(
          k.gep(cache, k.bf16, k.muli(k.toIndex(id), k.index(blockElems))));
  // Chunk 0's source in each group (or the tile's block).
  SmallVector<Value> firstSrc;
  for (Value base :
       gather == Gather::PerTile ? SmallVector<Value>{tileBase} : groupBase)
    firstSrc.push_back(k.gep(base, k.bf16, chunkOffset[0]));
  for (auto [i, chunk] : llvm::enumerate(keyChunks)) {
    forChunk(chunk, [&] {
      Value key = k.addi(tileKey, keyOffset32[i]);
      Value src;
      if (gather == Gather::PerKey) {
        // Keys past the last row's position are clamped so that the block
        // table is read only where it holds blocks.
        Value clamped = k.minsi(key, last32);
        Value slot = arith::DivUIOp::create(b, clamped, c32(B));
        Value within = arith::RemUIOp::create(b, clamped, c32(B));
        Value block = k.loadI32(k.arg(5), k.addi(tableBase, k.toIndex(slot)));
        Value row =
            k.addi(k.muli(k.toIndex(block), k.index(B)), k.toIndex(within));
        src =
            k.gep(cache, k.bf16,
                  k.addi(k.muli(row, k.index(shape.numKvHeads * shape.headDim)),
                         chunkOffset[i]));
      } else {
        int64_t group = gather == Gather::PerTile ? 0 : groupOf[i];
        if (chunk.cacheDelta)
          src = LLVM::GEPOp::create(
              b, k.ptr, k.bf16, firstSrc[group],
              ArrayRef<LLVM::GEPArg>{int32_t(*chunk.cacheDelta)});
        else
          src = k.gep(gather == Gather::PerTile ? tileBase : groupBase[group],
                      k.bf16, chunkOffset[i]);
      }
      Value bytes = Value();
      if (guarded) {
        Value inRange =
            andi(k.cmpi(P::sge, key, lo32), k.cmpi(P::sle, key, last32));
        bytes = k.select(inRange, c32(16), c32(0));
      }
      Value dst =
          chunk.sharedDelta
              ? sharedAt(firstDst, *chunk.sharedDelta)
              : sharedAt(sharedAt(sharedBase, chunk.sharedBytes), region);
      cpAsync(dst, src, bytes);
    });
  }
}

void FlashEmitter::emit() {
  const int64_t D = shape.headDim, N = shape.keys(), R = shape.rows();
  const int64_t mTiles = shape.mTiles(), warpRows = shape.tiling.warpRows;
  const int64_t dSteps = D / 16, nTiles = N / 8, dTiles = D / 8;
  const int64_t rowBytes = shape.rowBytes();
  const int64_t window = shape.window;
  Value q = k.arg(0), keyCache = k.arg(1), valueCache = k.arg(2),
        queryStart = k.arg(3), contextLen = k.arg(4), out = k.arg(6);
  Value numSeqs = k.argIndex(8), qStride = k.argIndex(9),
        tableStride = k.argIndex(10);
  Value c0 = k.index(0), c1 = k.index(1), cR = k.index(R);
  Value negInf = k.constF32(-INFINITY), zero = k.constF32(0.0);

  // Lane roles.
  Value lane = k.remui(k.tid, k.index(kWarp));
  Value warp = k.divui(k.tid, k.index(kWarp));
  Value g = k.divui(lane, k.index(4)), c = k.remui(lane, k.index(4));
  Value matrix = k.divui(lane, k.index(8)),
        matrixRow = k.remui(lane, k.index(8));
  Value warpRow0 = k.muli(warp, k.index(warpRows));

  // Which (sequence, tile) this block computes: tiles are numbered in
  // sequence order, counting only the sequences with at least
  // minQueryRows rows. Uniform across the block.
  Value blockX = k.blockId(gpu::Dimension::x);
  Value minRows = k.index(shape.minQueryRows);
  SmallVector<Value> found = k.loopCarry(
      c0, numSeqs, c1, {c0, numSeqs, c0, k.loadIndex(queryStart, c0)},
      [&](Value i, ValueRange st) -> SmallVector<Value> {
        Value before = st[0], seq = st[1], local = st[2], start = st[3];
        Value end = k.loadIndex(queryStart, k.addi(i, c1));
        Value n = k.subi(end, start);
        Value tiles = k.select(k.cmpi(P::sge, n, minRows),
                               k.divui(k.addi(n, k.index(R - 1)), cR), c0);
        Value after = k.addi(before, tiles);
        Value hit =
            andi(k.cmpi(P::uge, blockX, before), k.cmpi(P::ult, blockX, after));
        return {after, k.select(hit, i, seq),
                k.select(hit, k.subi(blockX, before), local), end};
      });
  Value seq = found[1], local = found[2];

  k.ifThen(k.cmpi(P::ult, seq, numSeqs), [&] {
    Value head = k.blockId(gpu::Dimension::y);
    kvHead = k.divui(head, k.index(shape.group));
    Value start = k.loadIndex(queryStart, seq);
    Value n = k.subi(k.loadIndex(queryStart, k.addi(seq, c1)), start);
    Value context = k.loadIndex(contextLen, seq);
    Value tiles = k.divui(k.addi(n, k.index(R - 1)), cR);
    // The last tile (the one with the most keys) first: the long blocks
    // start early and the short ones fill the tail of the grid.
    Value tile = k.subi(k.subi(tiles, c1), local);
    Value rowStart = k.muli(tile, cR);
    Value rowsValid = k.minsi(cR, k.subi(n, rowStart));
    // Position of the tile's first row; row r is at pos0 + r.
    Value pos0 = k.addi(k.subi(context, n), rowStart);
    Value last = k.subi(k.addi(pos0, rowsValid), c1);
    Value lo = c0;
    if (window > 0)
      lo = k.maxsi(k.subi(pos0, k.index(window - 1)), c0);
    Value firstTile = k.divui(lo, k.index(N));
    Value lastTile = k.divui(last, k.index(N));
    Value tokenBase = k.addi(start, rowStart);
    tableBase = k.muli(seq, tableStride);
    lo32 = toI32(lo);
    last32 = toI32(last);
    lastSlot32 = toI32(k.divui(last, k.index(shape.blockSize)));
    Value pos032 = toI32(pos0);

    // Key tiles in the order the loops visit them: first those that need
    // a mask (the diagonal's, then the window edge's), then the others,
    // each kind in its own loop so that the unmasked loop carries no mask
    // code at all. The online softmax does not care about the order.
    // A tile kt needs the causal mask iff kt >= diagStart, the window's
    // iff kt <= windowEnd.
    Value diagStart = k.divui(k.addi(pos0, c1), k.index(N));
    Value unmaskedFirst = firstTile;
    if (window > 0) {
      Value edge = k.subi(last, k.index(window));
      Value windowEnd = k.select(k.cmpi(P::sge, edge, c0),
                                 k.divui(edge, k.index(N)), k.index(-1));
      unmaskedFirst = k.maxsi(firstTile, k.addi(windowEnd, c1));
    }
    Value unmaskedLast = k.minsi(lastTile, k.subi(diagStart, c1));
    Value none = k.cmpi(P::sgt, unmaskedFirst, unmaskedLast);
    unmaskedFirst = k.select(none, k.addi(lastTile, c1), unmaskedFirst);
    unmaskedLast = k.select(none, lastTile, unmaskedLast);
    Value diagCount = k.subi(lastTile, unmaskedLast);
    Value maskedCount = k.addi(diagCount, k.subi(unmaskedFirst, firstTile));
    Value tileCount = k.addi(k.subi(lastTile, firstTile), c1);
    auto tileAt = [&](Value j) {
      Value diag = k.subi(lastTile, j);
      Value edge = k.addi(firstTile, k.subi(j, diagCount));
      Value plain = k.addi(unmaskedFirst, k.subi(j, maskedCount));
      return toI32(
          k.select(k.cmpi(P::slt, j, diagCount), diag,
                   k.select(k.cmpi(P::slt, j, maskedCount), edge, plain)));
    };

    smem = LLVM::AddressOfOp::create(b, ptr3, kDynamicShared);
    keyChunks = chunksFor(N, /*core=*/shape.wgmma());
    planGather();

    // Q rows (past the sequence's end: its last row, computed and not
    // stored) and the first K tile, in one group.
    {
      Value qHead = k.muli(head, k.index(D));
      Value qRegion = sharedAt(smem, shape.qOffset());
      for (const Chunk &chunk : chunksFor(R, /*core=*/shape.qCore()))
        forChunk(chunk, [&] {
          Value row = k.minsi(chunk.row, k.subi(rowsValid, c1));
          Value offset =
              k.addi(k.addi(k.muli(k.addi(tokenBase, row), qStride), qHead),
                     k.muli(chunk.col, k.index(8)));
          cpAsync(sharedAt(qRegion, chunk.sharedBytes),
                  k.gep(q, k.bf16, offset), c32(16));
        });
    }
    // Double buffering copies V with K (both a tile ahead) and carries the
    // ids of the tile after the one being copied; otherwise V's copy
    // overlaps S, K's the product with V, and the ids are a tile ahead.
    const bool doubleBuffer = shape.stages() == 2;
    Value firstKt = tileAt(c0);
    SmallVector<Value> firstIds = loadBlockIds(firstKt);
    copyKeyTile(keyCache, shape.kOffset(), firstKt, firstIds,
                /*guarded=*/true, smem);
    if (doubleBuffer) {
      copyKeyTile(valueCache, shape.vOffset(), firstKt, firstIds,
                  /*guarded=*/true, smem);
      firstIds = loadBlockIds(tileAt(c1));
    }
    NVVM::CpAsyncCommitGroupOp::create(b);
    waitCopies();

    // Per-lane shared-memory addresses of the ldmatrix rows.
    // Q (A operand, plain): matrices (rows 0-7 | 8-15) x (dims 0-7 | 8-15),
    // rows first: registers a0..a3.
    Value qLane = toI32(k.addi(
        k.muli(k.addi(warpRow0,
                      k.addi(k.muli(k.remui(matrix, k.index(2)), k.index(8)),
                             matrixRow)),
               k.index(rowBytes)),
        k.muli(k.divui(matrix, k.index(2)), k.index(16))));
    auto loadQ = [&](Value base, int64_t mt, int64_t ks) {
      return ldmatrix4(sharedAt(base, mt * 16 * rowBytes + ks * 32),
                       /*transpose=*/false);
    };
    // K (B operand of S, plain): matrices (keys 0-7, dims 0-7), (keys 0-7,
    // dims 8-15), (keys 8-15, dims 0-7), (keys 8-15, dims 8-15): b0, b1 of
    // two adjacent 8-key tiles.
    Value kLane = toI32(
        k.addi(k.muli(k.addi(k.muli(k.divui(matrix, k.index(2)), k.index(8)),
                             matrixRow),
                      k.index(rowBytes)),
               k.muli(k.remui(matrix, k.index(2)), k.index(16))));

    // V (B operand of O, transposed): matrices (keys 0-7, dims 0-7), (keys
    // 8-15, dims 0-7), (keys 0-7, dims 8-15), (keys 8-15, dims 8-15): b0,
    // b1 of two adjacent 8-dim tiles.
    Value vLane = toI32(
        k.addi(k.muli(k.addi(k.muli(k.remui(matrix, k.index(2)), k.index(8)),
                             matrixRow),
                      k.index(rowBytes)),
               k.muli(k.divui(matrix, k.index(2)), k.index(16))));

    // qFrag[mt * dSteps + ks]
    SmallVector<SmallVector<Value, 4>> qFrag;
    if (shape.tiling.qInRegisters) {
      Value qBase = sharedAt(sharedAt(smem, shape.qOffset()), qLane);
      for (int64_t mt = 0; mt < mTiles; ++mt)
        for (int64_t ks = 0; ks < dSteps; ++ks)
          qFrag.push_back(loadQ(qBase, mt, ks));
    }

    // Masks: key j is visible to row r iff j <= pos0 + r (and j > pos0 + r
    // - W). With d = j - r - pos0 = (kt N - pos0) + (2c - g - warpRow0) +
    // (a constant per register), that is d <= 0 (and d > -W).
    Value laneDiag = toI32(k.subi(k.muli(c, k.index(2)), k.addi(g, warpRow0)));
    const double log2e = 1.4426950408889634;
    Value scaleLog2 = k.constF32(shape.scale * log2e);

    // Loop state: O accumulators [mt][dTile][4], the row max and the lane's
    // partial row sum per (mt, half), then the block ids of the tile.
    const int64_t oCount = mTiles * dTiles * 4, rowCount = mTiles * 2;
    SmallVector<Value> state(oCount, zero);
    state.append(rowCount, negInf);
    state.append(rowCount, zero);
    state.append(firstIds);
    auto oAt = [&](int64_t mt, int64_t dt, int64_t e) {
      return (mt * dTiles + dt) * 4 + e;
    };

    auto tileStep = [&](Value j, ValueRange st,
                        bool masked) -> SmallVector<Value> {
      Value kt = tileAt(j);
      Value nextJ = k.addi(j, c1);
      Value nextKt = tileAt(nextJ);
      SmallVector<Value> acc(st.begin(), st.begin() + oCount);
      SmallVector<Value> rowMax(st.begin() + oCount,
                                st.begin() + oCount + rowCount);
      SmallVector<Value> rowSum(st.begin() + oCount + rowCount,
                                st.begin() + oCount + 2 * rowCount);
      SmallVector<Value> ids(st.begin() + oCount + 2 * rowCount, st.end());

      Value base = pinned(smem, j);
      Value qBase = sharedAt(sharedAt(base, qLane), shape.qOffset());
      // This tile's stage, and the other one (double buffering).
      Value cur = base, other = base;
      if (doubleBuffer) {
        Value stage =
            toI32(k.muli(k.remui(j, k.index(2)), k.index(shape.stageBytes())));
        cur = sharedAt(base, stage);
        other = sharedAt(base, k.subi(c32(shape.stageBytes()), stage));
      }
      Value kBase = sharedAt(sharedAt(cur, kLane), shape.kOffset());
      Value vBase = sharedAt(sharedAt(cur, vLane), shape.vOffset());

      SmallVector<Value> nextIds;
      if (doubleBuffer) {
        // K and V of this tile have landed, and every warp is done with
        // the other stage: the next tile goes there now, a whole tile of
        // work ahead of its use.
        waitCopies();
        k.ifThen(k.cmpi(P::slt, nextJ, tileCount), [&] {
          copyKeyTile(keyCache, shape.kOffset(), nextKt, ids, masked, other);
          copyKeyTile(valueCache, shape.vOffset(), nextKt, ids, masked, other);
        });
        NVVM::CpAsyncCommitGroupOp::create(b);
        nextIds = loadBlockIds(tileAt(k.addi(j, k.index(2))));
      } else {
        // K[kt] has landed, and every warp is done with V of the tile
        // before.
        waitCopies();
        copyKeyTile(valueCache, shape.vOffset(), kt, ids, masked, base);
        NVVM::CpAsyncCommitGroupOp::create(b);
        // The next tile's ids (clamped: always a valid table entry).
        nextIds = loadBlockIds(nextKt);
      }

      // S = Q K^T: s[(mt * nTiles + nt) * 4 + e]. wgmma's accumulator
      // layout per warp is mma.sync's, n-tile after n-tile.
      SmallVector<Value> s(mTiles * nTiles * 4, zero);
      if (shape.wgmma()) {
        // K is K-major: 8-key groups 16 D bytes apart (stride), 8-dim
        // chunks 128 bytes apart (leading).
        // The first step overwrites the accumulator (scale-d 0): no zeros
        // to write into it after the fence.
        NVVM::WgmmaFenceAlignedOp::create(b);
        SmallVector<Value> undef(s.size(), LLVM::UndefOp::create(b, k.f32));
        // Q from shared memory: this warpgroup's 64 rows, K-major like K.
        Value qDesc;
        if (shape.qCore())
          qDesc = arith::AddIOp::create(
              b, descriptor(base, shape.qOffset(), 128, 16 * D),
              arith::IndexCastOp::create(
                  b, k.i64,
                  k.muli(k.divui(warp, k.index(4)), k.index(64 * 2 * D / 16))));
        for (int64_t ks = 0; ks < dSteps; ++ks)
          s = wgmmaOp(ks == 0 ? undef : s,
                      shape.qCore()
                          ? SmallVector<Value, 4>{arith::AddIOp::create(
                                b, qDesc,
                                arith::ConstantOp::create(
                                    b, b.getI64IntegerAttr(ks * 256 / 16)))}
                          : qFrag[ks],
                      descriptor(cur, shape.kOffset() + ks * 256,
                                 /*leading=*/128, /*stride=*/16 * D),
                      /*transposeB=*/false, /*accumulate=*/ks > 0);
        NVVM::WgmmaGroupSyncAlignedOp::create(b);
        NVVM::WgmmaWaitGroupSyncOp::create(b, 0);
      }
      for (int64_t ks = 0; ks < dSteps && !shape.wgmma(); ++ks) {
        SmallVector<SmallVector<Value, 4>> a;
        for (int64_t mt = 0; mt < mTiles; ++mt)
          a.push_back(shape.tiling.qInRegisters ? qFrag[mt * dSteps + ks]
                                                : loadQ(qBase, mt, ks));
        for (int64_t np = 0; np < nTiles / 2; ++np) {
          SmallVector<Value, 4> kb =
              ldmatrix4(sharedAt(kBase, np * 16 * rowBytes + ks * 32), false);
          for (int64_t mt = 0; mt < mTiles; ++mt)
            for (int64_t half = 0; half < 2; ++half) {
              int64_t at = (mt * nTiles + 2 * np + half) * 4;
              SmallVector<Value, 4> d =
                  mma(a[mt], kb[2 * half], kb[2 * half + 1],
                      ArrayRef<Value>(s).slice(at, 4));
              std::copy(d.begin(), d.end(), s.begin() + at);
            }
        }
      }

      if (masked) {
        Value laneD = k.addi(k.subi(k.muli(kt, c32(N)), pos032), laneDiag);
        for (int64_t mt = 0; mt < mTiles; ++mt)
          for (int64_t nt = 0; nt < nTiles; ++nt)
            for (int64_t e = 0; e < 4; ++e) {
              int64_t offset = nt * 8 + (e & 1) - mt * 16 - (e / 2) * 8;
              Value d = k.addi(laneD, c32(offset));
              Value visible = k.cmpi(P::sle, d, c32(0));
              if (window > 0)
                visible = andi(visible, k.cmpi(P::sgt, d, c32(-window)));
              int64_t at = (mt * nTiles + nt) * 4 + e;
              s[at] = k.select(visible, s[at], negInf);
            }
      }

      // Online softmax per row (mt, half): the new max over the quad,
      // p = 2^(s * scale log2e - max * scale log2e), and the rescale of
      // what came before. A row with no visible key yet keeps max = -inf;
      // its p and rescale are then 2^-inf = 0, not NaN.
      for (int64_t mt = 0; mt < mTiles; ++mt)
        for (int64_t half = 0; half < 2; ++half) {
          int64_t row = mt * 2 + half;
          Value tileMax = negInf;
          for (int64_t nt = 0; nt < nTiles; ++nt)
            for (int64_t e = 0; e < 2; ++e)
              tileMax =
                  k.maxf(tileMax, s[(mt * nTiles + nt) * 4 + half * 2 + e]);
          Value newMax = k.maxf(rowMax[row], quadMax(tileMax));
          Value isEmpty = arith::CmpFOp::create(b, arith::CmpFPredicate::OEQ,
                                                newMax, negInf);
          Value safeMax = k.select(isEmpty, zero, newMax);
          Value negScaledMax =
              arith::NegFOp::create(b, k.mul(safeMax, scaleLog2));
          Value rescale = ex2(k.fma(rowMax[row], scaleLog2, negScaledMax));
          Value sum = k.mul(rowSum[row], rescale);
          for (int64_t nt = 0; nt < nTiles; ++nt)
            for (int64_t e = 0; e < 2; ++e) {
              int64_t at = (mt * nTiles + nt) * 4 + half * 2 + e;
              s[at] = ex2(k.fma(s[at], scaleLog2, negScaledMax));
              sum = k.add(sum, s[at]);
            }
          for (int64_t dt = 0; dt < dTiles; ++dt)
            for (int64_t e = 0; e < 2; ++e) {
              int64_t at = oAt(mt, dt, half * 2 + e);
              acc[at] = k.mul(acc[at], rescale);
            }
          rowMax[row] = newMax;
          rowSum[row] = sum;
        }

      // V[kt] has landed, and every warp is done with K[kt]: the next K
      // tile may overwrite it while O += P V runs. The unmasked loop runs
      // last, so its next tiles are unmasked too: no guard.
      if (!doubleBuffer) {
        waitCopies();
        k.ifThen(k.cmpi(P::slt, nextJ, tileCount), [&] {
          copyKeyTile(keyCache, shape.kOffset(), nextKt, nextIds, masked, base);
        });
        NVVM::CpAsyncCommitGroupOp::create(b);
      }

      // O += P V: the p of 8-key tiles 2kk and 2kk + 1 are the A fragment
      // of key step kk.
      SmallVector<Value> pFrags;
      if (shape.wgmma()) {
        for (int64_t t0 = 0; t0 < nTiles * 4; t0 += 8)
          for (int64_t at : {t0, t0 + 2, t0 + 4, t0 + 6})
            pFrags.push_back(packBf16AsI32(s[at], s[at + 1]));
        SmallVector<Value> operands(acc);
        operands.append(pFrags);
        operands = operandFence(operands);
        acc.assign(operands.begin(), operands.begin() + oCount);
        pFrags.assign(operands.begin() + oCount, operands.end());
        NVVM::WgmmaFenceAlignedOp::create(b);
      }
      for (int64_t kk = 0; kk < N / 16; ++kk) {
        SmallVector<SmallVector<Value, 4>> a;
        for (int64_t mt = 0; mt < mTiles; ++mt) {
          if (shape.wgmma()) {
            a.push_back(SmallVector<Value, 4>(
                ArrayRef<Value>(pFrags).slice(kk * 4, 4)));
            continue;
          }
          int64_t t0 = (mt * nTiles + 2 * kk) * 4, t1 = t0 + 4;
          a.push_back({packBf16AsI32(s[t0], s[t0 + 1]),
                       packBf16AsI32(s[t0 + 2], s[t0 + 3]),
                       packBf16AsI32(s[t1], s[t1 + 1]),
                       packBf16AsI32(s[t1 + 2], s[t1 + 3])});
        }
        if (shape.wgmma()) {
          // V is N-major (dims contiguous): 8-dim groups 128 bytes apart
          // (stride), 8-key groups 16 D bytes apart (leading).
          acc = wgmmaOp(acc, a[0],
                        descriptor(cur, shape.vOffset() + kk * 32 * D,
                                   /*leading=*/16 * D, /*stride=*/128),
                        /*transposeB=*/true);
          continue;
        }
        for (int64_t dp = 0; dp < dTiles / 2; ++dp) {
          SmallVector<Value, 4> vb =
              ldmatrix4(sharedAt(vBase, kk * 16 * rowBytes + dp * 32), true);
          for (int64_t mt = 0; mt < mTiles; ++mt)
            for (int64_t half = 0; half < 2; ++half) {
              int64_t at = oAt(mt, 2 * dp + half, 0);
              SmallVector<Value, 4> d =
                  mma(a[mt], vb[2 * half], vb[2 * half + 1],
                      ArrayRef<Value>(acc).slice(at, 4));
              std::copy(d.begin(), d.end(), acc.begin() + at);
            }
        }
      }

      if (shape.wgmma()) {
        // V is overwritten after the next barrier: the reads must be done.
        NVVM::WgmmaGroupSyncAlignedOp::create(b);
        NVVM::WgmmaWaitGroupSyncOp::create(b, 0);
      }
      SmallVector<Value> next(acc);
      next.append(rowMax);
      next.append(rowSum);
      next.append(nextIds);
      return next;
    };
    state =
        k.loopCarry(c0, maskedCount, c1, state, [&](Value j, ValueRange st) {
          return tileStep(j, st, /*masked=*/true);
        });
    state = k.loopCarry(maskedCount, tileCount, c1, state,
                        [&](Value j, ValueRange st) {
                          return tileStep(j, st, /*masked=*/false);
                        });

    // out = O / l, rows of this sequence only.
    Value outHead = k.muli(head, k.index(D));
    Value outStride = k.index(shape.numHeads * D);
    for (int64_t mt = 0; mt < mTiles; ++mt)
      for (int64_t half = 0; half < 2; ++half) {
        Value sum = quadSum(state[oCount + rowCount + mt * 2 + half]);
        Value inv = k.div(k.constF32(1.0), sum);
        Value row = k.addi(warpRow0, k.addi(g, k.index(mt * 16 + half * 8)));
        k.ifThen(k.cmpi(P::ult, row, rowsValid), [&] {
          Value base =
              k.addi(k.addi(k.muli(k.addi(tokenBase, row), outStride), outHead),
                     k.muli(c, k.index(2)));
          for (int64_t dt = 0; dt < dTiles; ++dt) {
            Value o0 = k.mul(state[oAt(mt, dt, half * 2)], inv);
            Value o1 = k.mul(state[oAt(mt, dt, half * 2 + 1)], inv);
            LLVM::StoreOp::create(
                b, packBf16(o0, o1),
                k.gep(out, k.bf16, k.addi(base, k.index(dt * 8))),
                /*alignment=*/4);
          }
        });
      }
  });
}

/// The extern shared array every flash kernel of the module addresses.
LogicalResult declareDynamicShared(ModuleOp module,
                                   gpu::GPUModuleOp gpuModule) {
  if (Operation *op = gpuModule.lookupSymbol(kDynamicShared)) {
    auto global = dyn_cast<LLVM::GlobalOp>(op);
    if (!global || global.getAddrSpace() != kSharedSpace)
      return module.emitError()
             << "gpu kernel: symbol '" << kDynamicShared
             << "' is taken by something other than the dynamic shared memory";
    return success();
  }
  OpBuilder builder(module.getContext());
  builder.setInsertionPointToStart(gpuModule.getBody());
  LLVM::GlobalOp::create(builder, module.getLoc(),
                         LLVM::LLVMArrayType::get(builder.getI8Type(), 0),
                         /*isConstant=*/false, LLVM::Linkage::External,
                         kDynamicShared, Attribute(), /*alignment=*/16,
                         kSharedSpace);
  return success();
}

} // namespace

FailureOr<GpuKernel>
buildFlashAttention(ModuleOp module,
                    const hostkernels::PagedAttentionParams &params,
                    int64_t minQueryRows) {
  return buildFlashAttention(module, params, minQueryRows,
                             FlashAttentionTiling());
}

bool flashAttentionTiles(const hostkernels::PagedAttentionParams &params) {
  return params.cache.headDim % 16 == 0 && params.cache.headDim <= 256 &&
         params.scale > 0.0 && std::isfinite(params.scale) &&
         params.cache.elementType == hostkernels::KvElementType::Native;
}

FailureOr<GpuKernel>
buildFlashAttention(ModuleOp module,
                    const hostkernels::PagedAttentionParams &params,
                    int64_t minQueryRows, const FlashAttentionTiling &tiling) {
  const hostkernels::KvCacheShape &cache = params.cache;
  if (failed(checkGpuCache(module, cache)) ||
      failed(hostkernels::checkPagedAttention(module, params, "gpu kernel")) ||
      failed(checkPositive(module, "flash attention min query rows",
                           minQueryRows)))
    return failure();
  if (cache.headDim % 16 != 0 || cache.headDim > 256)
    return module.emitError()
           << "gpu kernel: flash attention needs a head dim that is a "
              "multiple of 16 and at most 256, got "
           << cache.headDim;
  if (!(params.scale > 0.0) || !std::isfinite(params.scale)) {
    // The exponent is scaled before the row max is taken out: a negative
    // scale would flip which score is the max.
    std::ostringstream scale;
    scale << params.scale;
    return module.emitError()
           << "gpu kernel: flash attention needs a positive finite scale, got "
           << scale.str();
  }
  if (tiling.warps != 4 && tiling.warps != 8)
    return module.emitError()
           << "gpu kernel: flash attention warps per block must be 4 or 8, got "
           << tiling.warps;
  if (tiling.warpRows != 16 && tiling.warpRows != 32)
    return module.emitError()
           << "gpu kernel: flash attention warp rows must be 16 or 32, got "
           << tiling.warpRows;
  if (tiling.keyTile != 32 && tiling.keyTile != 64)
    return module.emitError()
           << "gpu kernel: flash attention key tile must be 32 or 64, got "
           << tiling.keyTile;
  if (tiling.wgmma && tiling.warpRows != 16)
    return module.emitError()
           << "gpu kernel: flash attention with wgmma needs 16 rows per warp";
  if (tiling.minBlocksPerSM < 0 || tiling.minBlocksPerSM > 32)
    return module.emitError()
           << "gpu kernel: flash attention min blocks per SM must be in "
              "[0, 32], got "
           << tiling.minBlocksPerSM;

  Shape shape{
      params.numHeads, cache.numKvHeads, params.numHeads / cache.numKvHeads,
      cache.headDim,   cache.blockSize,  params.slidingWindow,
      params.scale,    minQueryRows,     tiling};
  std::string name =
      "flash_attention_h" + std::to_string(shape.numHeads) + "_kv" +
      std::to_string(shape.numKvHeads) + "_d" + std::to_string(shape.headDim) +
      "_b" + std::to_string(shape.blockSize) + "_s" +
      numberForName(params.scale, 9) + "_w" + std::to_string(shape.window) +
      "_m" + std::to_string(minQueryRows);
  const FlashAttentionTiling defaults;
  if (tiling.warps != defaults.warps || tiling.warpRows != defaults.warpRows ||
      tiling.keyTile != defaults.keyTile ||
      tiling.qInRegisters != defaults.qInRegisters ||
      tiling.minBlocksPerSM != defaults.minBlocksPerSM ||
      tiling.wgmma != defaults.wgmma ||
      tiling.doubleBuffer != defaults.doubleBuffer)
    name +=
        "_r" + std::to_string(shape.rows()) + "_n" +
        std::to_string(tiling.keyTile) + (tiling.qInRegisters ? "_qr" : "_qs") +
        (tiling.warps != defaults.warps ? "_x" + std::to_string(tiling.warps)
                                        : std::string()) +
        (tiling.wgmma ? "_wg" : "") + (tiling.doubleBuffer ? "_db" : "") +
        (tiling.minBlocksPerSM ? "_o" + std::to_string(tiling.minBlocksPerSM)
                               : std::string());

  std::vector<KernelArg> args = attentionArgs(/*withWorkspace=*/false);
  LaunchRule rule;
  rule.blockX = shape.threads();
  rule.rowsPerBlock = shape.rows();
  // Tiles <= sum over long sequences of (n_s / R + 1) <= T / R + T /
  // minQueryRows <= (1 + ceil(R / minQueryRows)) * ceil(T / R).
  rule.gridXPerRow = 1 + llvm::divideCeil(shape.rows(), minQueryRows);
  rule.gridY = shape.numHeads;
  rule.dynamicSharedBytes = shape.sharedBytes();
  GpuKernel kernel{name, rule, args, /*vectorWidth=*/8};

  bool exists;
  FailureOr<gpu::GPUModuleOp> gpuModule = prepare(module, name, exists);
  if (failed(gpuModule))
    return failure();
  if (exists)
    return kernel;
  module.getContext()->loadDialect<NVVM::NVVMDialect>();
  if (failed(declareDynamicShared(module, *gpuModule)))
    return failure();

  KernelBuilder k(*gpuModule, name, args, {}, shape.threads());
  k.readOnly({0, 1, 2, 3, 4, 5});
  if (tiling.minBlocksPerSM > 0)
    k.func->setAttr(NVVM::NVVMDialect::getMinctasmAttrName(),
                    k.b.getI32IntegerAttr(int32_t(tiling.minBlocksPerSM)));
  FlashEmitter(k, shape).emit();
  k.finish();
  return kernel;
}

} // namespace gpukernels
} // namespace optmlir
