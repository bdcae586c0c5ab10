//===- HostCodegenTest.cpp - MLIR kernels compiled and run on the host ----===//
//
// Builds kernels from MLIR text, compiles them with the host code generator,
// loads the shared object with the runtime's HostModule and checks them
// against plain C++ references.
//
//===----------------------------------------------------------------------===//

#include "optmlir/Target/HostCodegen.h"
#include "runtime/host/HostModule.h"
#include "runtime/host/MemRef.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "test/unit/Numerics.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

using namespace optmlir;
using optrt::HostModule;
using optrt::makeMemRef;
using optrt::MemRefDescriptor;

namespace {

// Elementwise add: an 8-wide vector body and a scalar tail.
constexpr const char *kAddKernel = R"mlir(
func.func @add(%a: memref<?xf32>, %b: memref<?xf32>, %c: memref<?xf32>)
    attributes {llvm.emit_c_interface} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %n = memref.dim %a, %c0 : memref<?xf32>
  %rem = arith.remui %n, %c8 : index
  %nv = arith.subi %n, %rem : index
  scf.for %i = %c0 to %nv step %c8 {
    %va = vector.load %a[%i] : memref<?xf32>, vector<8xf32>
    %vb = vector.load %b[%i] : memref<?xf32>, vector<8xf32>
    %s = arith.addf %va, %vb : vector<8xf32>
    vector.store %s, %c[%i] : memref<?xf32>, vector<8xf32>
  }
  scf.for %i = %nv to %n step %c1 {
    %x = memref.load %a[%i] : memref<?xf32>
    %y = memref.load %b[%i] : memref<?xf32>
    %s = arith.addf %x, %y : f32
    memref.store %s, %c[%i] : memref<?xf32>
  }
  return
}
)mlir";

// Row-wise RMS norm, scalar loops: y = x * rsqrt(mean(x^2) + eps) * w.
constexpr const char *kRmsNormKernel = R"mlir(
func.func @rms_norm(%x: memref<?x?xf32>, %w: memref<?xf32>,
                    %y: memref<?x?xf32>, %eps: f32)
    attributes {llvm.emit_c_interface} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  %rows = memref.dim %x, %c0 : memref<?x?xf32>
  %cols = memref.dim %x, %c1 : memref<?x?xf32>
  %colsI = arith.index_cast %cols : index to i64
  %colsF = arith.uitofp %colsI : i64 to f32
  scf.for %r = %c0 to %rows step %c1 {
    %ss = scf.for %j = %c0 to %cols step %c1 iter_args(%acc = %zero) -> (f32) {
      %v = memref.load %x[%r, %j] : memref<?x?xf32>
      %sq = arith.mulf %v, %v : f32
      %n = arith.addf %acc, %sq : f32
      scf.yield %n : f32
    }
    %mean = arith.divf %ss, %colsF : f32
    %me = arith.addf %mean, %eps : f32
    %inv = math.rsqrt %me : f32
    scf.for %j = %c0 to %cols step %c1 {
      %v = memref.load %x[%r, %j] : memref<?x?xf32>
      %g = memref.load %w[%j] : memref<?xf32>
      %t = arith.mulf %v, %inv : f32
      %o = arith.mulf %t, %g : f32
      memref.store %o, %y[%r, %j] : memref<?x?xf32>
    }
  }
  return
}
)mlir";

// Row-wise softmax over 8-wide masked transfers; the padding is -inf, so
// exp of it must be exactly 0 for the sums to be right.
constexpr const char *kSoftmaxKernel = R"mlir(
func.func @softmax(%x: memref<?x?xf32>, %y: memref<?x?xf32>)
    attributes {llvm.emit_c_interface} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %ninf = arith.constant 0xFF800000 : f32
  %zero = arith.constant 0.0 : f32
  %one = arith.constant 1.0 : f32
  %vninf = vector.broadcast %ninf : f32 to vector<8xf32>
  %vzero = arith.constant dense<0.0> : vector<8xf32>
  %rows = memref.dim %x, %c0 : memref<?x?xf32>
  %cols = memref.dim %x, %c1 : memref<?x?xf32>
  scf.for %r = %c0 to %rows step %c1 {
    %vmax = scf.for %j = %c0 to %cols step %c8
        iter_args(%acc = %vninf) -> (vector<8xf32>) {
      %v = vector.transfer_read %x[%r, %j], %ninf {in_bounds = [false]}
          : memref<?x?xf32>, vector<8xf32>
      %m = arith.maximumf %acc, %v : vector<8xf32>
      scf.yield %m : vector<8xf32>
    }
    %max = vector.reduction <maximumf>, %vmax : vector<8xf32> into f32
    %vmaxb = vector.broadcast %max : f32 to vector<8xf32>
    %vsum = scf.for %j = %c0 to %cols step %c8
        iter_args(%acc = %vzero) -> (vector<8xf32>) {
      %v = vector.transfer_read %x[%r, %j], %ninf {in_bounds = [false]}
          : memref<?x?xf32>, vector<8xf32>
      %d = arith.subf %v, %vmaxb : vector<8xf32>
      %e = math.exp %d : vector<8xf32>
      vector.transfer_write %e, %y[%r, %j] {in_bounds = [false]}
          : vector<8xf32>, memref<?x?xf32>
      %s = arith.addf %acc, %e : vector<8xf32>
      scf.yield %s : vector<8xf32>
    }
    %sum = vector.reduction <add>, %vsum : vector<8xf32> into f32
    %inv = arith.divf %one, %sum : f32
    %vinv = vector.broadcast %inv : f32 to vector<8xf32>
    scf.for %j = %c0 to %cols step %c8 {
      %v = vector.transfer_read %y[%r, %j], %zero {in_bounds = [false]}
          : memref<?x?xf32>, vector<8xf32>
      %o = arith.mulf %v, %vinv : vector<8xf32>
      vector.transfer_write %o, %y[%r, %j] {in_bounds = [false]}
          : vector<8xf32>, memref<?x?xf32>
    }
  }
  return
}
)mlir";

// Elementwise scale over arbitrary strided views.
constexpr const char *kScaleStridedKernel = R"mlir(
func.func @scale_strided(%x: memref<?x?xf32, strided<[?, ?], offset: ?>>,
                         %y: memref<?x?xf32, strided<[?, ?], offset: ?>>,
                         %s: f32) attributes {llvm.emit_c_interface} {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %rows = memref.dim %x, %c0 : memref<?x?xf32, strided<[?, ?], offset: ?>>
  %cols = memref.dim %x, %c1 : memref<?x?xf32, strided<[?, ?], offset: ?>>
  scf.for %r = %c0 to %rows step %c1 {
    scf.for %j = %c0 to %cols step %c1 {
      %v = memref.load %x[%r, %j] : memref<?x?xf32, strided<[?, ?], offset: ?>>
      %o = arith.mulf %v, %s : f32
      memref.store %o, %y[%r, %j] : memref<?x?xf32, strided<[?, ?], offset: ?>>
    }
  }
  return
}
)mlir";

using Memref1 = MemRefDescriptor<float, 1>;
using Memref2 = MemRefDescriptor<float, 2>;
using AddFn = void(Memref1 *, Memref1 *, Memref1 *);
using RmsNormFn = void(Memref2 *, Memref1 *, Memref2 *, float);
using SoftmaxFn = void(Memref2 *, Memref2 *);
using ScaleStridedFn = void(Memref2 *, Memref2 *, float);

class HostCodegenTest : public ::testing::Test {
protected:
  HostCodegenTest() {
    context.loadDialect<mlir::arith::ArithDialect, mlir::func::FuncDialect,
                        mlir::math::MathDialect, mlir::memref::MemRefDialect,
                        mlir::scf::SCFDialect, mlir::vector::VectorDialect>();
  }

  mlir::OwningOpRef<mlir::ModuleOp> parse(llvm::StringRef text) {
    return mlir::parseSourceString<mlir::ModuleOp>(text, &context);
  }

  /// Compiles `text`, loads it, returns the module (asserting success).
  std::unique_ptr<HostModule> compileAndLoad(llvm::StringRef text,
                                             const char *label) {
    mlir::OwningOpRef<mlir::ModuleOp> module = parse(text);
    EXPECT_TRUE(module);
    if (!module)
      return nullptr;
    std::string error;
    auto start = std::chrono::steady_clock::now();
    mlir::FailureOr<std::string> shared =
        compileToSharedObject(*module, HostCodegenOptions(), error);
    double ms = std::chrono::duration<double, std::milli>(
                    std::chrono::steady_clock::now() - start)
                    .count();
    EXPECT_TRUE(mlir::succeeded(shared)) << error;
    if (mlir::failed(shared))
      return nullptr;
    std::printf("[ timing ] %s: compiled to a %zu-byte shared object in "
                "%.1f ms\n",
                label, shared->size(), ms);
    std::unique_ptr<HostModule> loaded =
        HostModule::load(reinterpret_cast<const uint8_t *>(shared->data()),
                         shared->size(), &error);
    EXPECT_TRUE(loaded) << error;
    return loaded;
  }

  std::vector<float> random(size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float &x : v)
      x = dist(rng);
    return v;
  }

  mlir::MLIRContext context;
  std::mt19937 rng{1234};
};

using optmlir::test::relativeL2;

TEST_F(HostCodegenTest, ElementwiseAdd) {
  auto module = compileAndLoad(kAddKernel, "add");
  ASSERT_TRUE(module);
  auto *add = module->lookupFunction<AddFn>("_mlir_ciface_add");
  ASSERT_NE(add, nullptr);
  for (int64_t n : {0, 1, 7, 8, 13, 1000, 4099}) {
    std::vector<float> a = random(n, -4, 4), b = random(n, -4, 4);
    std::vector<float> c(n, NAN);
    Memref1 da = makeMemRef(a.data(), {n}), db = makeMemRef(b.data(), {n}),
            dc = makeMemRef(c.data(), {n});
    add(&da, &db, &dc);
    std::vector<double> want(n);
    for (int64_t i = 0; i < n; ++i)
      want[i] = double(a[i]) + double(b[i]);
    EXPECT_LT(relativeL2(c, want), 1e-5) << "n=" << n;
  }
}

TEST_F(HostCodegenTest, RmsNorm) {
  auto module = compileAndLoad(kRmsNormKernel, "rms_norm");
  ASSERT_TRUE(module);
  auto *rmsNorm = module->lookupFunction<RmsNormFn>("_mlir_ciface_rms_norm");
  ASSERT_NE(rmsNorm, nullptr);
  const float eps = 1e-5f;
  for (auto [rows, cols] :
       {std::pair<int64_t, int64_t>{1, 1}, {3, 17}, {5, 257}, {7, 2049}}) {
    std::vector<float> x = random(rows * cols, -3, 3);
    std::vector<float> w = random(cols, 0.5, 1.5);
    std::vector<float> y(rows * cols, NAN);
    Memref2 dx = makeMemRef(x.data(), {rows, cols});
    Memref1 dw = makeMemRef(w.data(), {cols});
    Memref2 dy = makeMemRef(y.data(), {rows, cols});
    rmsNorm(&dx, &dw, &dy, eps);
    std::vector<double> want(rows * cols);
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t j = 0; j < cols; ++j)
        ss += double(x[r * cols + j]) * x[r * cols + j];
      double inv = 1.0 / std::sqrt(ss / cols + eps);
      for (int64_t j = 0; j < cols; ++j)
        want[r * cols + j] = x[r * cols + j] * inv * w[j];
    }
    EXPECT_LT(relativeL2(y, want), 1e-5) << rows << "x" << cols;
  }
}

TEST_F(HostCodegenTest, Softmax) {
  auto module = compileAndLoad(kSoftmaxKernel, "softmax");
  ASSERT_TRUE(module);
  auto *softmax = module->lookupFunction<SoftmaxFn>("_mlir_ciface_softmax");
  ASSERT_NE(softmax, nullptr);
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1},
                            {2, 7},
                            {3, 9},
                            {5, 333},
                            {4, 32001}}) {
    std::vector<float> x = random(rows * cols, -20, 20);
    // A masked (-inf) position, as attention masks produce.
    if (cols > 1)
      x[cols / 2] = -INFINITY;
    std::vector<float> y(rows * cols, NAN);
    Memref2 dx = makeMemRef(x.data(), {rows, cols});
    Memref2 dy = makeMemRef(y.data(), {rows, cols});
    softmax(&dx, &dy);
    std::vector<double> want(rows * cols);
    for (int64_t r = 0; r < rows; ++r) {
      double max = -INFINITY, sum = 0;
      for (int64_t j = 0; j < cols; ++j)
        max = std::max(max, double(x[r * cols + j]));
      for (int64_t j = 0; j < cols; ++j)
        sum += want[r * cols + j] = std::exp(x[r * cols + j] - max);
      for (int64_t j = 0; j < cols; ++j)
        want[r * cols + j] /= sum;
    }
    EXPECT_LT(relativeL2(y, want), 1e-5) << rows << "x" << cols;
    if (cols > 1) {
      EXPECT_EQ(y[cols / 2], 0.0f);
    }
  }
}

TEST_F(HostCodegenTest, Bf16Conversions) {
  // bf16 weights and activations: truncf rounds to nearest even and extf is
  // exact, with no compiler-rt helper needed at link or load time.
  auto module = compileAndLoad(R"mlir(
    func.func @bf16_round_trip(%x: memref<?xf32>, %h: memref<?xbf16>,
                               %y: memref<?xf32>)
        attributes {llvm.emit_c_interface} {
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %n = memref.dim %x, %c0 : memref<?xf32>
      scf.for %i = %c0 to %n step %c1 {
        %v = memref.load %x[%i] : memref<?xf32>
        %t = arith.truncf %v : f32 to bf16
        memref.store %t, %h[%i] : memref<?xbf16>
        %e = arith.extf %t : bf16 to f32
        memref.store %e, %y[%i] : memref<?xf32>
      }
      return
    }
  )mlir",
                               "bf16_round_trip");
  ASSERT_TRUE(module);
  using Fn = void(Memref1 *, MemRefDescriptor<uint16_t, 1> *, Memref1 *);
  auto *roundTrip = module->lookupFunction<Fn>("_mlir_ciface_bf16_round_trip");
  ASSERT_NE(roundTrip, nullptr);
  const int64_t n = 1001;
  std::vector<float> x = random(n, -100, 100), y(n);
  x[0] = 1.0f + 1.0f / 256; // a tie: rounds to even (1.0)
  x[1] = 1.0f + 3.0f / 256; // a tie: rounds to even (1.0 + 1/64)
  std::vector<uint16_t> h(n);
  Memref1 dx = makeMemRef(x.data(), {n}), dy = makeMemRef(y.data(), {n});
  auto dh = makeMemRef(h.data(), {n});
  roundTrip(&dx, &dh, &dy);
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &x[i], 4);
    uint16_t want = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16;
    ASSERT_EQ(h[i], want) << "x=" << x[i];
    uint32_t back = uint32_t(want) << 16;
    float wantY;
    std::memcpy(&wantY, &back, 4);
    ASSERT_EQ(y[i], wantY);
  }
}

TEST_F(HostCodegenTest, StridedArguments) {
  // With a fully dynamic strided layout the kernel follows the descriptor's
  // offset and strides (identity-layout memrefs assume offset 0, unit inner
  // stride).
  auto module = compileAndLoad(kScaleStridedKernel, "scale_strided");
  ASSERT_TRUE(module);
  auto *scale =
      module->lookupFunction<ScaleStridedFn>("_mlir_ciface_scale_strided");
  ASSERT_NE(scale, nullptr);
  // x: a 3 x 5 window at column 2 of a 3 x 11 buffer. y: 3 x 5, stored
  // transposed (column-major) after 4 leading elements.
  const int64_t rows = 3, cols = 5, pitch = 11, start = 2, yStart = 4;
  std::vector<float> x = random(rows * pitch, -2, 2);
  std::vector<float> y(yStart + rows * cols, 42.0f);
  Memref2 dx = makeMemRef(x.data(), {rows, cols});
  dx.offset = start;
  dx.strides[0] = pitch;
  Memref2 dy = makeMemRef(y.data(), {rows, cols});
  dy.offset = yStart;
  dy.strides[0] = 1;
  dy.strides[1] = rows;
  scale(&dx, &dy, 3.0f);
  for (int64_t i = 0; i < yStart; ++i)
    EXPECT_EQ(y[i], 42.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      EXPECT_EQ(y[yStart + c * rows + r], 3.0f * x[r * pitch + start + c])
          << r << "," << c;
}

TEST_F(HostCodegenTest, AllKernelsInOneModuleAndObject) {
  std::string text = std::string(kAddKernel) + kRmsNormKernel + kSoftmaxKernel;
  mlir::OwningOpRef<mlir::ModuleOp> module = parse(text);
  ASSERT_TRUE(module);
  std::string before;
  {
    llvm::raw_string_ostream os(before);
    module->print(os);
  }
  std::string error;
  using Clock = std::chrono::steady_clock;
  auto msSince = [](Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  };
  auto start = Clock::now();
  mlir::FailureOr<std::string> object =
      compileToObject(*module, HostCodegenOptions(), error);
  double objectMs = msSince(start);
  ASSERT_TRUE(mlir::succeeded(object)) << error;
  start = Clock::now();
  mlir::FailureOr<std::string> shared =
      linkSharedObject(*object, HostCodegenOptions(), error);
  double linkMs = msSince(start);
  ASSERT_TRUE(mlir::succeeded(shared)) << error;
  std::printf("[ timing ] add+rms_norm+softmax: MLIR->object %.1f ms "
              "(%zu bytes), link %.1f ms (%zu bytes)\n",
              objectMs, object->size(), linkMs, shared->size());
  mlir::FailureOr<HostBinary> binary =
      compileToBinary(*module, HostCodegenOptions(), error);
  ASSERT_TRUE(mlir::succeeded(binary)) << error;
  EXPECT_EQ(binary->object, *object);

  // The caller's module is not lowered in place.
  std::string after;
  {
    llvm::raw_string_ostream os(after);
    module->print(os);
  }
  EXPECT_EQ(before, after);

  // A relocatable ELF object for --extract-kernels.
  ASSERT_GT(binary->object.size(), 64u);
  EXPECT_EQ(binary->object.substr(0, 4), "\x7f"
                                         "ELF");
  EXPECT_EQ(binary->object[16], 1); // ET_REL

  auto loaded = HostModule::load(
      reinterpret_cast<const uint8_t *>(binary->sharedObject.data()),
      binary->sharedObject.size(), &error);
  ASSERT_TRUE(loaded) << error;
  for (const char *name : {"add", "rms_norm", "softmax"}) {
    EXPECT_NE(loaded->lookup(std::string("_mlir_ciface_") + name), nullptr)
        << name;
    EXPECT_NE(loaded->lookup(name), nullptr) << name;
  }

  // Same input, same bytes: artifacts are reproducible.
  mlir::FailureOr<HostBinary> again =
      compileToBinary(*module, HostCodegenOptions(), error);
  ASSERT_TRUE(mlir::succeeded(again)) << error;
  EXPECT_EQ(again->object, binary->object);
  EXPECT_EQ(again->sharedObject, binary->sharedObject);
}

TEST_F(HostCodegenTest, UsesTheTargetCpu) {
  mlir::OwningOpRef<mlir::ModuleOp> module = parse(kAddKernel);
  ASSERT_TRUE(module);
  std::string ir, error;
  HostCodegenOptions options;
  options.llvmIROut = &ir;
  ASSERT_TRUE(mlir::succeeded(compileToObject(*module, options, error)))
      << error;
  // The 8-wide body stays one 256-bit add (AVX2), not two SSE halves.
  EXPECT_NE(ir.find("fadd <8 x float>"), std::string::npos) << ir;
  EXPECT_NE(ir.find("_mlir_ciface_add"), std::string::npos);
}

TEST_F(HostCodegenTest, MalformedModuleIsAnError) {
  // Parses, but cannot be lowered: tensors are not bufferized here.
  mlir::OwningOpRef<mlir::ModuleOp> module = parse(R"mlir(
    func.func @bad(%t: tensor<4xf32>) -> tensor<4xf32> {
      %0 = arith.addf %t, %t : tensor<4xf32>
      return %0 : tensor<4xf32>
    }
  )mlir");
  ASSERT_TRUE(module);
  std::string error;
  EXPECT_TRUE(mlir::failed(
      compileToSharedObject(*module, HostCodegenOptions(), error)));
  EXPECT_NE(error.find("'arith.addf' at"), std::string::npos) << error;
  EXPECT_NE(error.find("cannot be lowered to LLVM"), std::string::npos)
      << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;

  // A verifier failure (op built without the parser) is reported too.
  mlir::OpBuilder builder(&context);
  mlir::OwningOpRef<mlir::ModuleOp> invalid =
      mlir::ModuleOp::create(builder.getUnknownLoc());
  builder.setInsertionPointToEnd(invalid->getBody());
  auto func = mlir::func::FuncOp::create(builder, builder.getUnknownLoc(),
                                         "no_terminator",
                                         builder.getFunctionType({}, {}));
  func.addEntryBlock();
  error.clear();
  EXPECT_TRUE(mlir::failed(
      compileToSharedObject(*invalid, HostCodegenOptions(), error)));
  EXPECT_NE(error.find("invalid kernel module"), std::string::npos) << error;
}

TEST_F(HostCodegenTest, BadOptionsAreErrors) {
  mlir::OwningOpRef<mlir::ModuleOp> module = parse(kAddKernel);
  ASSERT_TRUE(module);
  std::string error;
  HostCodegenOptions options;
  options.cpu = "not-a-cpu";
  EXPECT_TRUE(mlir::failed(compileToObject(*module, options, error)));
  EXPECT_NE(error.find("unknown CPU 'not-a-cpu'"), std::string::npos) << error;

  options = HostCodegenOptions();
  options.features = "avx512f";
  EXPECT_TRUE(mlir::failed(compileToObject(*module, options, error)));
  EXPECT_NE(error.find("bad target feature"), std::string::npos) << error;

  options = HostCodegenOptions();
  options.optLevel = 7;
  EXPECT_TRUE(mlir::failed(compileToObject(*module, options, error)));

  options = HostCodegenOptions();
  options.linker = "/nonexistent/cc";
  EXPECT_TRUE(mlir::failed(compileToSharedObject(*module, options, error)));
  EXPECT_NE(error.find("not found"), std::string::npos) << error;
}

TEST_F(HostCodegenTest, LinkFailureIsAnErrorAndTempFilesGo) {
  // Point the temporary directory at a fresh one to see what is left there.
  llvm::SmallString<128> tmp;
  ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("hostcg-test", tmp));
  const char *oldTmp = std::getenv("TMPDIR");
  std::string savedTmp = oldTmp ? oldTmp : "";
  setenv("TMPDIR", tmp.c_str(), 1);
  auto countEntries = [&] {
    std::error_code ec;
    int n = 0;
    for (llvm::sys::fs::directory_iterator it(tmp, ec), end; !ec && it != end;
         it.increment(ec))
      ++n;
    return n;
  };

  std::string error;
  EXPECT_TRUE(mlir::failed(linkSharedObject("definitely not an object",
                                            HostCodegenOptions(), error)));
  EXPECT_NE(error.find("linking with"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  EXPECT_EQ(countEntries(), 0);

  // A symbol that libc/libm lack fails at link time, with a hint.
  mlir::OwningOpRef<mlir::ModuleOp> module = parse(R"mlir(
    func.func @copy(%x: memref<?x?xf32, strided<[?, ?], offset: ?>>,
                    %y: memref<?x?xf32>) attributes {llvm.emit_c_interface} {
      memref.copy %x, %y
          : memref<?x?xf32, strided<[?, ?], offset: ?>> to memref<?x?xf32>
      return
    }
  )mlir");
  ASSERT_TRUE(module);
  EXPECT_TRUE(mlir::failed(
      compileToSharedObject(*module, HostCodegenOptions(), error)));
  EXPECT_NE(error.find("memrefCopy"), std::string::npos) << error;
  EXPECT_EQ(countEntries(), 0);

  module = parse(kAddKernel);
  EXPECT_TRUE(mlir::succeeded(
      compileToSharedObject(*module, HostCodegenOptions(), error)))
      << error;
  EXPECT_EQ(countEntries(), 0);

  if (oldTmp)
    setenv("TMPDIR", savedTmp.c_str(), 1);
  else
    unsetenv("TMPDIR");
  llvm::sys::fs::remove_directories(tmp);
}

TEST_F(HostCodegenTest, HostModuleRejectsGarbage) {
  std::string garbage(1000, '\x5a');
  std::string error;
  EXPECT_FALSE(
      HostModule::load(reinterpret_cast<const uint8_t *>(garbage.data()),
                       garbage.size(), &error));
  EXPECT_NE(error.find("not an ELF file"), std::string::npos) << error;
}

} // namespace
