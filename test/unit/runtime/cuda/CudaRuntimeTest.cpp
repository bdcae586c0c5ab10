//===- CudaRuntimeTest.cpp - the CUDA runtime layer on a real GPU ---------===//
//
// Needs a GPU for everything but the error formatting; without one each test
// skips with the reason (no driver, or cuInit's error). The PTX kernels below
// are tiny hand-written references for testing the loader, not product code.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/CublasLtGemm.h"
#include "runtime/cuda/CudaCheck.h"
#include "runtime/cuda/CudaDevice.h"
#include "runtime/cuda/CudaGraph.h"
#include "runtime/cuda/CudaModule.h"
#include "test/unit/Numerics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

using namespace optrt::cuda;

namespace {

// vadd(a, b, c, n): c = a + b. affine(x, n, s, t): x = x * s + t.
const char *kTestPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry vadd(
  .param .u64 vadd_param_0, .param .u64 vadd_param_1,
  .param .u64 vadd_param_2, .param .u32 vadd_param_3)
{
  .reg .pred %p<2>;
  .reg .f32 %f<4>;
  .reg .b32 %r<6>;
  .reg .b64 %rd<11>;
  ld.param.u64 %rd1, [vadd_param_0];
  ld.param.u64 %rd2, [vadd_param_1];
  ld.param.u64 %rd3, [vadd_param_2];
  ld.param.u32 %r2, [vadd_param_3];
  mov.u32 %r3, %ctaid.x;
  mov.u32 %r4, %ntid.x;
  mov.u32 %r5, %tid.x;
  mad.lo.s32 %r1, %r3, %r4, %r5;
  setp.ge.s32 %p1, %r1, %r2;
  @%p1 bra DONE;
  cvta.to.global.u64 %rd4, %rd1;
  mul.wide.s32 %rd5, %r1, 4;
  add.s64 %rd6, %rd4, %rd5;
  cvta.to.global.u64 %rd7, %rd2;
  add.s64 %rd8, %rd7, %rd5;
  ld.global.f32 %f1, [%rd8];
  ld.global.f32 %f2, [%rd6];
  add.f32 %f3, %f2, %f1;
  cvta.to.global.u64 %rd9, %rd3;
  add.s64 %rd10, %rd9, %rd5;
  st.global.f32 [%rd10], %f3;
DONE:
  ret;
}

.visible .entry affine(
  .param .u64 affine_param_0, .param .u32 affine_param_1,
  .param .f32 affine_param_2, .param .f32 affine_param_3)
{
  .reg .pred %p<2>;
  .reg .f32 %f<5>;
  .reg .b32 %r<6>;
  .reg .b64 %rd<5>;
  ld.param.u64 %rd1, [affine_param_0];
  ld.param.u32 %r2, [affine_param_1];
  ld.param.f32 %f1, [affine_param_2];
  ld.param.f32 %f2, [affine_param_3];
  mov.u32 %r3, %ctaid.x;
  mov.u32 %r4, %ntid.x;
  mov.u32 %r5, %tid.x;
  mad.lo.s32 %r1, %r3, %r4, %r5;
  setp.ge.s32 %p1, %r1, %r2;
  @%p1 bra DONE;
  cvta.to.global.u64 %rd2, %rd1;
  mul.wide.s32 %rd3, %r1, 4;
  add.s64 %rd4, %rd2, %rd3;
  ld.global.f32 %f3, [%rd4];
  fma.rn.f32 %f4, %f3, %f1, %f2;
  st.global.f32 [%rd4], %f4;
DONE:
  ret;
}
)";

/// One device for the whole binary (the primary context is per process).
CudaDevice *sharedDevice(std::string &why) {
  static std::string error;
  static std::unique_ptr<CudaDevice> device = CudaDevice::create(0, error);
  why = error;
  return device.get();
}

#define ASSERT_OK(expr)                                                        \
  do {                                                                         \
    std::string okError_;                                                      \
    bool okResult_ = [&](std::string &error) { return (expr); }(okError_);     \
    ASSERT_TRUE(okResult_) << okError_;                                        \
  } while (0)

/// Skips without a GPU; otherwise makes the context current and gives the
/// test a stream.
class CudaTest : public ::testing::Test {
protected:
  void SetUp() override {
    std::string why;
    device = sharedDevice(why);
    if (!device)
      GTEST_SKIP() << "no usable CUDA device: " << why;
    ASSERT_OK(device->makeCurrent(error));
    ASSERT_OK(stream.create(error));
  }

  template <typename T>
  DeviceBuffer upload(const std::vector<T> &host) {
    DeviceBuffer buffer;
    std::string error;
    EXPECT_TRUE(buffer.create(host.size() * sizeof(T), error)) << error;
    EXPECT_TRUE(stream.copyToDevice(buffer.ptr(), host.data(),
                                    host.size() * sizeof(T), error))
        << error;
    return buffer;
  }
  template <typename T>
  std::vector<T> download(CUdeviceptr ptr, size_t count) {
    std::vector<T> host(count);
    std::string error;
    EXPECT_TRUE(stream.copyToHost(host.data(), ptr, count * sizeof(T), error))
        << error;
    EXPECT_TRUE(stream.synchronize(error)) << error;
    return host;
  }

  CudaDevice *device = nullptr;
  CudaStream stream;
};

//===----------------------------------------------------------------------===//
// Without a GPU
//===----------------------------------------------------------------------===//

TEST(CudaCheck, ErrorLinesNameTheCallAndStatus) {
  EXPECT_EQ(formatCublasError("cublasLtMatmul", CUBLAS_STATUS_NOT_SUPPORTED),
            "cublasLtMatmul: CUBLAS_STATUS_NOT_SUPPORTED");
  EXPECT_EQ(oneLine("line 1\nline 2\r\n\nline 3\n"),
            "line 1; line 2; line 3");
  std::string error;
  // Either there is no driver/device (the reason is one line) or device 9999
  // does not exist.
  EXPECT_EQ(CudaDevice::create(9999, error), nullptr);
  EXPECT_FALSE(error.empty());
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  std::string why;
  if (!sharedDevice(why))
    std::printf("(no GPU here: %s)\n", why.c_str());
}

//===----------------------------------------------------------------------===//
// Device and memory
//===----------------------------------------------------------------------===//

using CudaDeviceTest = CudaTest;

TEST_F(CudaDeviceTest, Info) {
  const DeviceInfo &info = device->info();
  EXPECT_FALSE(info.name.empty());
  EXPECT_GT(info.smCount, 0);
  EXPECT_GE(info.computeMajor, 5);
  EXPECT_GT(info.totalMemory, 1ull << 30);
  EXPECT_GE(info.driverVersion, 12000);
  uint64_t freeBytes = 0, totalBytes = 0;
  ASSERT_OK(device->memoryInfo(freeBytes, totalBytes, error));
  EXPECT_LE(freeBytes, totalBytes);
  std::printf("%s: sm_%d%d, %d SMs, %.1f GiB (%.1f free), L2 %d KiB, "
              "driver %d\n",
              info.name.c_str(), info.computeMajor, info.computeMinor,
              info.smCount, totalBytes / double(1 << 30),
              freeBytes / double(1 << 30), info.l2CacheBytes / 1024,
              info.driverVersion);
}

TEST_F(CudaDeviceTest, MemoryRoundTripThroughArenaAndPinnedStaging) {
  constexpr size_t kCount = 1 << 20;
  DeviceArena arena;
  ASSERT_OK(arena.create(3 * kCount * sizeof(float) + 1024, error));
  std::string error;
  CUdeviceptr first = arena.allocate(kCount * sizeof(float) - 3, error);
  CUdeviceptr second = arena.allocate(kCount * sizeof(float), error);
  ASSERT_NE(first, 0u) << error;
  ASSERT_NE(second, 0u) << error;
  EXPECT_EQ(second % DeviceArena::kAlignment, 0u);
  EXPECT_GE(second, first + kCount * sizeof(float) - 3);
  EXPECT_EQ(arena.allocate(2 * kCount * sizeof(float), error), 0u);
  EXPECT_NE(error.find("arena full"), std::string::npos) << error;

  PinnedBuffer staging, back;
  ASSERT_OK(staging.create(kCount * sizeof(float), error));
  ASSERT_OK(back.create(kCount * sizeof(float), error));
  for (size_t i = 0; i < kCount; ++i)
    staging.as<float>()[i] = float(i) * 0.5f - 7.0f;

  CudaEvent start, end;
  ASSERT_OK(start.create(true, error));
  ASSERT_OK(end.create(true, error));
  ASSERT_OK(start.record(stream, error));
  ASSERT_OK(stream.copyToDevice(first, staging.data(), staging.size(), error));
  ASSERT_OK(stream.copyOnDevice(second, first, staging.size(), error));
  ASSERT_OK(stream.memset(first, 0, staging.size(), error));
  ASSERT_OK(stream.copyToHost(back.data(), second, back.size(), error));
  ASSERT_OK(end.record(stream, error));
  ASSERT_OK(end.synchronize(error));
  float ms = -1;
  ASSERT_OK(CudaEvent::elapsedMs(start, end, ms, error));
  EXPECT_GE(ms, 0.0f);
  EXPECT_EQ(std::memcmp(back.data(), staging.data(), staging.size()), 0);

  std::vector<float> zeros = download<float>(first, 16);
  for (float z : zeros)
    EXPECT_EQ(z, 0.0f);
}

//===----------------------------------------------------------------------===//
// Modules and launches
//===----------------------------------------------------------------------===//

using CudaModuleTest = CudaTest;

TEST_F(CudaModuleTest, LoadsPtxAndRunsVectorAdd) {
  std::unique_ptr<CudaModule> module;
  ASSERT_OK((module = CudaModule::load(kTestPtx, error)) != nullptr);
  CudaKernel vadd;
  ASSERT_OK(module->getKernel("vadd", vadd, error));
  if (vadd.numParams >= 0)
    EXPECT_EQ(vadd.numParams, 4);

  int n = 100003;
  std::vector<float> a(n), b(n);
  for (int i = 0; i < n; ++i) {
    a[i] = float(i % 1000) * 0.25f;
    b[i] = float(i / 7) - 3.0f;
  }
  DeviceBuffer da = upload(a), db = upload(b), dc;
  ASSERT_OK(dc.create(n * sizeof(float), error));
  CUdeviceptr pa = da.ptr(), pb = db.ptr(), pc = dc.ptr();
  LaunchConfig config;
  config.block[0] = 256;
  config.grid[0] = (n + 255) / 256;
  ASSERT_OK(launchKernel(vadd, config, stream.handle(), {&pa, &pb, &pc, &n},
                         error));
  std::vector<float> c = download<float>(pc, n);
  for (int i = 0; i < n; ++i)
    ASSERT_EQ(c[i], a[i] + b[i]) << "at " << i;

  // Wrong argument count is refused before it reaches the driver.
  if (vadd.numParams >= 0) {
    std::string error;
    EXPECT_FALSE(
        launchKernel(vadd, config, stream.handle(), {&pa, &pb, &pc}, error));
    EXPECT_NE(error.find("3 arguments given"), std::string::npos) << error;
  }
}

TEST_F(CudaModuleTest, BadPtxReportsTheJitLog) {
  std::string bad = ".version 7.0\n.target sm_80\n.address_size 64\n"
                    ".visible .entry broken() {\n  bogus.instruction %r1;\n"
                    "  ret;\n}\n";
  std::string error;
  EXPECT_EQ(CudaModule::load(bad, error), nullptr);
  EXPECT_NE(error.find("cuModuleLoadDataEx"), std::string::npos) << error;
  EXPECT_NE(error.find("CUDA_ERROR_INVALID_PTX"), std::string::npos) << error;
  EXPECT_NE(error.find("JIT log"), std::string::npos) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  std::printf("bad PTX -> %s\n", error.c_str());

  error.clear();
  EXPECT_EQ(CudaModule::load("", error), nullptr);
  EXPECT_FALSE(error.empty());
}

TEST_F(CudaModuleTest, MissingKernelIsAClearError) {
  std::unique_ptr<CudaModule> module;
  ASSERT_OK((module = CudaModule::load(kTestPtx, error)) != nullptr);
  CudaKernel kernel;
  std::string error;
  EXPECT_FALSE(module->getKernel("no_such_kernel", kernel, error));
  EXPECT_NE(error.find("no_such_kernel"), std::string::npos) << error;
  EXPECT_NE(error.find("CUDA_ERROR_NOT_FOUND"), std::string::npos) << error;

  // Launching a kernel that was never found fails without touching CUDA.
  kernel.name = "no_such_kernel";
  error.clear();
  EXPECT_FALSE(
      launchKernel(kernel, LaunchConfig(), stream.handle(), {}, error));
  EXPECT_NE(error.find("no_such_kernel"), std::string::npos) << error;
}

//===----------------------------------------------------------------------===//
// cuBLASLt GEMM
//===----------------------------------------------------------------------===//

uint16_t toBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1); // round to nearest even
  return uint16_t(u >> 16);
}
float fromBf16(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t toF16(float f) {
  _Float16 h = _Float16(f);
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}
float fromF16(uint16_t u) {
  _Float16 h;
  std::memcpy(&h, &u, 2);
  return float(h);
}

/// A random [rows, cols] matrix in `type` (bf16/f16 bits), and its exact f32
/// values.
void randomMatrix(std::mt19937 &rng, int64_t count, GemmType type,
                  std::vector<uint16_t> &bits, std::vector<float> &values) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  bits.resize(count);
  values.resize(count);
  for (int64_t i = 0; i < count; ++i) {
    float v = dist(rng);
    bits[i] = type == GemmType::BF16 ? toBf16(v) : toF16(v);
    values[i] = type == GemmType::BF16 ? fromBf16(bits[i]) : fromF16(bits[i]);
  }
}

using optmlir::test::relativeL2;

class CudaCublasLtTest : public CudaTest {
protected:
  void SetUp() override {
    CudaTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    ASSERT_OK((gemm = CublasLtGemm::create(stream.handle(), error)) !=
              nullptr);
  }

  /// Random operands of C = A * B^T (+ bias) on the device and the f64 CPU
  /// reference on the same (rounded) inputs.
  struct Case {
    DeviceBuffer a, b, c, bias;
    GemmProblem problem;
    std::vector<double> want;
  };
  Case makeCase(int64_t m, int64_t n, int64_t k, GemmType in, GemmType out,
                bool withBias, int64_t lda = 0) {
    Case t;
    std::mt19937 rng(uint32_t(m * 131 + n * 7 + k));
    int64_t rowA = lda ? lda : k;
    std::vector<uint16_t> aBits, bBits, biasBits;
    std::vector<float> a, b, bias;
    randomMatrix(rng, m * rowA, in, aBits, a);
    randomMatrix(rng, n * k, in, bBits, b);
    if (withBias)
      randomMatrix(rng, n, out == GemmType::F32 ? GemmType::BF16 : out,
                   biasBits, bias);
    t.want.resize(m * n);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = withBias ? bias[j] : 0.0;
        const float *ar = &a[i * rowA], *br = &b[j * k];
        for (int64_t p = 0; p < k; ++p)
          acc += double(ar[p]) * double(br[p]);
        t.want[i * n + j] = acc;
      }

    t.a = upload(aBits);
    t.b = upload(bBits);
    std::string error;
    int64_t outBytes = out == GemmType::F32 ? 4 : 2;
    EXPECT_TRUE(t.c.create(m * n * outBytes, error)) << error;
    // The bias has the output type.
    if (withBias)
      t.bias = out == GemmType::F32 ? upload(bias) : upload(biasBits);
    GemmProblem &p = t.problem;
    p.m = m;
    p.n = n;
    p.k = k;
    p.inputType = in;
    p.outputType = out;
    p.lda = lda;
    p.a = t.a.ptr();
    p.b = t.b.ptr();
    p.c = t.c.ptr();
    p.bias = withBias ? t.bias.ptr() : 0;
    return t;
  }

  /// Runs the case on the GPU and returns its rel. L2 error.
  double runCase(Case &t) {
    const GemmProblem &p = t.problem;
    std::string error;
    if (!gemm->run(p, error)) {
      ADD_FAILURE() << error;
      return 1.0;
    }
    int64_t count = p.m * p.n;
    std::vector<float> got(count);
    if (p.outputType == GemmType::F32) {
      got = download<float>(p.c, count);
    } else {
      std::vector<uint16_t> raw = download<uint16_t>(p.c, count);
      for (int64_t i = 0; i < count; ++i)
        got[i] = p.outputType == GemmType::BF16 ? fromBf16(raw[i])
                                                : fromF16(raw[i]);
    }
    return relativeL2(got, t.want);
  }

  /// Runs C = A * B^T (+ bias) on the GPU and returns its rel. L2 error
  /// against a CPU reference on the same (rounded) inputs.
  double check(int64_t m, int64_t n, int64_t k, GemmType in, GemmType out,
               bool withBias, int64_t lda = 0) {
    Case t = makeCase(m, n, k, in, out, withBias, lda);
    return runCase(t);
  }

  std::unique_ptr<CublasLtGemm> gemm;
};

TEST_F(CudaCublasLtTest, Bf16MatchesCpuReference) {
  const int64_t shapes[][3] = {
      {1, 4096, 4096}, {8, 11008, 4096}, {512, 384, 384}, {7, 8192, 384}};
  for (auto &s : shapes) {
    SCOPED_TRACE(testing::Message() << "M=" << s[0] << " N=" << s[1]
                                    << " K=" << s[2]);
    double err = check(s[0], s[1], s[2], GemmType::BF16, GemmType::BF16,
                       false);
    EXPECT_LT(err, 1e-2);
    std::printf("bf16 %ldx%ldx%ld -> bf16: rel L2 %.2e\n", long(s[0]),
                long(s[1]), long(s[2]), err);
  }
}

TEST_F(CudaCublasLtTest, OutputTypesAndF16) {
  EXPECT_LT(check(8, 1024, 512, GemmType::BF16, GemmType::F32, false), 1e-4);
  EXPECT_LT(check(8, 1024, 512, GemmType::F16, GemmType::F16, false), 1e-2);
  EXPECT_LT(check(33, 768, 256, GemmType::F16, GemmType::F32, false), 1e-4);
}

TEST_F(CudaCublasLtTest, BiasEpilogue) {
  EXPECT_LT(check(8, 384, 256, GemmType::BF16, GemmType::BF16, true), 1e-2);
  EXPECT_LT(check(5, 640, 128, GemmType::BF16, GemmType::F32, true), 1e-4);
  EXPECT_LT(check(16, 512, 256, GemmType::F16, GemmType::F16, true), 1e-2);
}

TEST_F(CudaCublasLtTest, StridedRowsAndAlgorithmCachePerBucket) {
  // A with a padded row stride, as a view into a wider plan buffer.
  EXPECT_LT(check(6, 256, 128, GemmType::BF16, GemmType::BF16, false, 192),
            1e-2);
  size_t before = gemm->numCachedAlgorithms();
  // M = 5, 6, 7, 8 share the bucket of 8 (same strides, fresh 256-aligned
  // buffers): one more cached algorithm at most.
  for (int64_t m : {5, 6, 7, 8})
    EXPECT_LT(check(m, 256, 128, GemmType::BF16, GemmType::BF16, false),
              1e-2);
  EXPECT_LE(gemm->numCachedAlgorithms(), before + 1);

  // prepare() at load picks the bucket's algorithm; runs in that bucket
  // (256-aligned operands, as the arena gives) then reuse it.
  GemmProblem p;
  p.m = 16;
  p.n = 256;
  p.k = 128;
  std::string error;
  ASSERT_TRUE(gemm->prepare(p, error)) << error;
  size_t prepared = gemm->numCachedAlgorithms();
  for (int64_t m : {9, 13, 16})
    EXPECT_LT(check(m, 256, 128, GemmType::BF16, GemmType::BF16, false),
              1e-2);
  EXPECT_EQ(gemm->numCachedAlgorithms(), prepared);
  EXPECT_EQ(CublasLtGemm::mBucket(1), 1);
  EXPECT_EQ(CublasLtGemm::mBucket(7), 8);
  EXPECT_EQ(CublasLtGemm::mBucket(512), 512);
  EXPECT_EQ(CublasLtGemm::mBucket(513), 1024);
}

// prepare() times the heuristic's candidates on the given operands and
// keeps the fastest; runs in the bucket then use it and stay correct, for
// bf16 and f16 inputs, with and without the bias epilogue.
TEST_F(CudaCublasLtTest, PrepareTimesCandidatesAndKeepsTheFastest) {
  struct Shape {
    int64_t m, n, k;
    GemmType in, out;
    bool bias;
    double tolerance;
  } shapes[] = {
      {64, 2048, 1024, GemmType::BF16, GemmType::BF16, false, 1e-2},
      {512, 1152, 896, GemmType::BF16, GemmType::BF16, true, 1e-2},
      {128, 1024, 512, GemmType::F16, GemmType::F16, false, 1e-2},
      {256, 768, 256, GemmType::F16, GemmType::F16, true, 1e-2},
      {32, 1024, 512, GemmType::BF16, GemmType::F32, true, 1e-4},
      {16, 512, 256, GemmType::F16, GemmType::F32, false, 1e-4},
  };
  for (const Shape &s : shapes) {
    SCOPED_TRACE(testing::Message()
                 << "M=" << s.m << " N=" << s.n << " K=" << s.k << " "
                 << gemmTypeName(s.in) << "->" << gemmTypeName(s.out)
                 << (s.bias ? " +bias" : ""));
    Case t = makeCase(s.m, s.n, s.k, s.in, s.out, s.bias);
    size_t timedBefore = gemm->numTimedChoices();
    ASSERT_OK(gemm->prepare(t.problem, error));
    CublasLtGemm::Choice choice;
    ASSERT_TRUE(gemm->choiceFor(t.problem, choice));
    EXPECT_GE(choice.candidates, 1);
    EXPECT_LE(choice.candidates, gemm->tuning().maxCandidates);
    EXPECT_GE(choice.chosen, 0);
    EXPECT_LT(choice.chosen, choice.candidates);
    EXPECT_LT(choice.failed, choice.candidates);
    if (choice.candidates > 1) {
      EXPECT_TRUE(choice.timed);
      EXPECT_EQ(gemm->numTimedChoices(), timedBefore + 1);
      EXPECT_GT(choice.chosenMs, 0.0f);
      if (choice.firstMs > 0)
        EXPECT_LE(choice.chosenMs, choice.firstMs);
    }
    std::printf("%s: %d candidates, %d failed, chose #%d (%.4f ms) over the "
                "heuristic's first (%.4f ms)\n",
                testing::UnitTest::GetInstance()
                    ->current_test_info()
                    ->name(),
                choice.candidates, choice.failed, choice.chosen,
                choice.chosenMs, choice.firstMs);
    // The run reuses the prepared plan, and prepare() again changes nothing.
    size_t cached = gemm->numCachedAlgorithms();
    EXPECT_LT(runCase(t), s.tolerance);
    ASSERT_OK(gemm->prepare(t.problem, error));
    EXPECT_EQ(gemm->numCachedAlgorithms(), cached);
    // Other row counts of the bucket use it too.
    t.problem.m = s.m / 2 + 1;
    t.want.resize(t.problem.m * s.n);
    EXPECT_LT(runCase(t), s.tolerance);
    EXPECT_EQ(gemm->numCachedAlgorithms(), cached);
  }
  std::printf("%zu of %zu timed choices differ from the heuristic's first\n",
              gemm->numChoicesOtherThanFirst(), gemm->numTimedChoices());
}

// Without pointers prepare() times on scratch (256-byte aligned, like the
// arena's buffers); with tuning off it keeps the heuristic's first untimed.
TEST_F(CudaCublasLtTest, PrepareOnScratchAndWithTuningOff) {
  GemmProblem p;
  p.m = 256;
  p.n = 1024;
  p.k = 512;
  ASSERT_OK(gemm->prepare(p, error));
  CublasLtGemm::Choice choice;
  ASSERT_TRUE(gemm->choiceFor(p, choice));
  EXPECT_EQ(choice.timed, choice.candidates > 1);
  EXPECT_LT(check(256, 1024, 512, GemmType::BF16, GemmType::BF16, false),
            1e-2);
  EXPECT_EQ(gemm->numCachedAlgorithms(), 1u);

  gemm->setTuning({/*maxCandidates=*/1, /*repetitions=*/0});
  p.inputType = p.outputType = GemmType::F16;
  size_t timed = gemm->numTimedChoices();
  ASSERT_OK(gemm->prepare(p, error));
  ASSERT_TRUE(gemm->choiceFor(p, choice));
  EXPECT_FALSE(choice.timed);
  EXPECT_EQ(choice.candidates, 1);
  EXPECT_EQ(choice.chosen, 0);
  EXPECT_EQ(gemm->numTimedChoices(), timed);
  EXPECT_LT(check(256, 1024, 512, GemmType::F16, GemmType::F16, false), 1e-2);

  // A bucket met first by run() gets the heuristic's first, untimed.
  gemm->setTuning({});
  EXPECT_LT(check(40, 1024, 512, GemmType::BF16, GemmType::BF16, false),
            1e-2);
  p.m = 40;
  p.inputType = p.outputType = GemmType::BF16;
  ASSERT_TRUE(gemm->choiceFor(p, choice));
  EXPECT_FALSE(choice.timed);
  EXPECT_EQ(choice.chosen, 0);
}

// Timing synchronizes the stream: refused inside a CUDA graph capture (a
// step's recorder), with the reason; the stream stays usable.
TEST_F(CudaCublasLtTest, PrepareIsRefusedDuringCapture) {
  GemmProblem p;
  p.m = 64;
  p.n = 512;
  p.k = 256;
  CudaGraphCache cache;
  std::string error;
  EXPECT_FALSE(cache.run(
      64, 0, stream.handle(),
      [&](CUstream, std::string &error) { return gemm->prepare(p, error); },
      error));
  EXPECT_NE(error.find("being captured"), std::string::npos) << error;
  EXPECT_EQ(gemm->numCachedAlgorithms(), 0u);
  EXPECT_LT(check(64, 512, 256, GemmType::BF16, GemmType::BF16, false), 1e-2);
}

// The bias epilogue for every row count a step may have, decode sizes (1 to
// 4 rows: GPU plans send biased gemms to cuBLASLt rather than to the GEMV
// kernels) included, prepared as the executor does, against the CPU.
TEST_F(CudaCublasLtTest, BiasEpilogueForEveryRowCount) {
  for (GemmType type : {GemmType::BF16, GemmType::F16})
    for (int64_t m : {1, 2, 3, 4, 5, 8, 17, 64, 300}) {
      SCOPED_TRACE(testing::Message() << gemmTypeName(type) << " M=" << m);
      // Qwen2-0.5B's fused q/k/v: N = (14 + 2 * 2) * 64, K = 896.
      Case t = makeCase(m, 1152, 896, type, type, true);
      ASSERT_OK(gemm->prepare(t.problem, error));
      double err = runCase(t);
      EXPECT_LT(err, 1e-2);
      if (m == 1)
        std::printf("%s bias M=1: rel L2 %.2e\n", gemmTypeName(type), err);
    }
}

TEST_F(CudaCublasLtTest, RejectsBadProblems) {
  GemmProblem p;
  p.m = 4;
  p.n = 8;
  p.k = 8;
  p.a = p.b = p.c = 256; // never dereferenced: validation fails first
  p.inputType = GemmType::BF16;
  p.outputType = GemmType::F16;
  std::string error;
  EXPECT_FALSE(gemm->run(p, error));
  EXPECT_NE(error.find("output must have the input type"), std::string::npos)
      << error;
  p.outputType = GemmType::BF16;
  p.lda = 4;
  EXPECT_FALSE(gemm->run(p, error));
  EXPECT_NE(error.find("row stride"), std::string::npos) << error;
  p.lda = 0;
  p.a = 0;
  EXPECT_FALSE(gemm->run(p, error));
  EXPECT_NE(error.find("null operand"), std::string::npos) << error;
}

//===----------------------------------------------------------------------===//
// CUDA graphs
//===----------------------------------------------------------------------===//

class CudaGraphTest : public CudaTest {
protected:
  void SetUp() override {
    CudaTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    ASSERT_OK((module = CudaModule::load(kTestPtx, error)) != nullptr);
    ASSERT_OK(module->getKernel("affine", affine, error));
    ASSERT_OK(module->getKernel("vadd", vadd, error));
    ASSERT_OK((gemm = CublasLtGemm::create(stream.handle(), error)) !=
              nullptr);
  }

  /// A small "step": three affine launches on x, y = x + x, then a bf16 GEMM
  /// into an f32 output.
  GraphRecorder step(CUdeviceptr x, CUdeviceptr y, int n, CUdeviceptr ga,
                     CUdeviceptr gb, CUdeviceptr gc) {
    return [=](CUstream s, std::string &error) {
      LaunchConfig config;
      config.block[0] = 128;
      config.grid[0] = (n + 127) / 128;
      CUdeviceptr px = x, py = y;
      int count = n;
      const float scales[3][2] = {{1.5f, 0.25f}, {-0.5f, 3.0f}, {2.0f, -1.0f}};
      for (auto &st : scales) {
        float sc = st[0], sh = st[1];
        if (!launchKernel(affine, config, s, {&px, &count, &sc, &sh}, error))
          return false;
      }
      if (!launchKernel(vadd, config, s, {&px, &px, &py, &count}, error))
        return false;
      GemmProblem p;
      p.m = 8;
      p.n = 256;
      p.k = 128;
      p.outputType = GemmType::F32;
      p.a = ga;
      p.b = gb;
      p.c = gc;
      return gemm->run(p, error);
    };
  }

  std::unique_ptr<CudaModule> module;
  CudaKernel affine, vadd;
  std::unique_ptr<CublasLtGemm> gemm;
};

TEST_F(CudaGraphTest, ReplayGivesTheSameResultsAsDirectLaunches) {
  const int n = 4096;
  std::vector<float> x0(n);
  for (int i = 0; i < n; ++i)
    x0[i] = float(i % 97) * 0.125f - 5.0f;
  std::mt19937 rng(7);
  std::vector<uint16_t> aBits, bBits;
  std::vector<float> unused;
  randomMatrix(rng, 8 * 128, GemmType::BF16, aBits, unused);
  randomMatrix(rng, 256 * 128, GemmType::BF16, bBits, unused);
  DeviceBuffer x = upload(x0), y, ga = upload(aBits), gb = upload(bBits), gc;
  ASSERT_OK(y.create(n * sizeof(float), error));
  ASSERT_OK(gc.create(8 * 256 * sizeof(float), error));
  GraphRecorder record = step(x.ptr(), y.ptr(), n, ga.ptr(), gb.ptr(),
                              gc.ptr());

  // Direct.
  ASSERT_OK(record(stream.handle(), error));
  std::vector<float> directY = download<float>(y.ptr(), n);
  std::vector<float> directC = download<float>(gc.ptr(), 8 * 256);

  // Captured, then replayed twice from the same inputs.
  CudaGraphCache cache;
  for (int replay = 0; replay < 3; ++replay) {
    SCOPED_TRACE(replay);
    ASSERT_OK(stream.copyToDevice(x.ptr(), x0.data(), n * sizeof(float),
                                  error));
    ASSERT_OK(stream.memset(y.ptr(), 0, n * sizeof(float), error));
    ASSERT_OK(stream.memset(gc.ptr(), 0, 8 * 256 * sizeof(float), error));
    ASSERT_OK(cache.run(/*bucket=*/8, /*signature=*/x.ptr(), stream.handle(),
                        record, error));
    EXPECT_EQ(download<float>(y.ptr(), n), directY);
    EXPECT_EQ(download<float>(gc.ptr(), 8 * 256), directC);
  }
  EXPECT_EQ(cache.stats().captures, 1u);
  EXPECT_EQ(cache.stats().instantiations, 1u);
  EXPECT_EQ(cache.stats().replays, 3u);
  EXPECT_TRUE(cache.contains(8));
}

TEST_F(CudaGraphTest, NewPointersUpdateTheGraphInPlace) {
  const int n = 1000;
  std::vector<float> x0(n, 1.0f), x1(n, 2.0f);
  std::vector<uint16_t> aBits(8 * 128, toBf16(1.0f)),
      bBits(256 * 128, toBf16(0.5f));
  DeviceBuffer xa = upload(x0), xb = upload(x1), y, ga = upload(aBits),
               gb = upload(bBits), gc;
  ASSERT_OK(y.create(n * sizeof(float), error));
  ASSERT_OK(gc.create(8 * 256 * sizeof(float), error));

  CudaGraphCache cache;
  ASSERT_OK(cache.run(1, xa.ptr(), stream.handle(),
                      step(xa.ptr(), y.ptr(), n, ga.ptr(), gb.ptr(), gc.ptr()),
                      error));
  // affine chain: ((x*1.5+0.25)*-0.5+3)*2-1, then doubled.
  auto expect = [](float x) {
    float v = std::fma(x, 1.5f, 0.25f);
    v = std::fma(v, -0.5f, 3.0f);
    v = std::fma(v, 2.0f, -1.0f);
    return v + v;
  };
  EXPECT_EQ(download<float>(y.ptr(), n)[n - 1], expect(1.0f));
  ASSERT_OK(cache.run(1, xb.ptr(), stream.handle(),
                      step(xb.ptr(), y.ptr(), n, ga.ptr(), gb.ptr(), gc.ptr()),
                      error));
  EXPECT_EQ(download<float>(y.ptr(), n)[0], expect(2.0f));
  EXPECT_EQ(download<float>(gc.ptr(), 8 * 256)[5], 64.0f); // 128 * 1 * 0.5
  EXPECT_EQ(cache.stats().captures, 2u);
  EXPECT_EQ(cache.stats().updates, 1u);
  EXPECT_EQ(cache.stats().instantiations, 1u);
}

TEST_F(CudaGraphTest, FailedCaptureIsReportedAndTheStreamStaysUsable) {
  CudaGraphCache cache;
  std::string error;
  EXPECT_FALSE(cache.run(
      4, 0, stream.handle(),
      [](CUstream, std::string &error) {
        error = "plan command 3 is malformed";
        return false;
      },
      error));
  EXPECT_NE(error.find("plan command 3 is malformed"), std::string::npos)
      << error;
  EXPECT_FALSE(cache.contains(4));

  // Synchronizing inside a capture is illegal: the driver's refusal comes
  // back named.
  error.clear();
  EXPECT_FALSE(cache.run(
      4, 0, stream.handle(),
      [](CUstream s, std::string &error) {
        OPTRT_CU_CHECK(error, cuStreamSynchronize, s);
        return true;
      },
      error));
  EXPECT_NE(error.find("cuStreamSynchronize"), std::string::npos) << error;
  std::printf("sync in capture -> %s\n", error.c_str());

  // The stream still works outside capture.
  std::vector<float> ones(256, 1.0f);
  DeviceBuffer x = upload(ones);
  CUdeviceptr px = x.ptr();
  int n = 256;
  float s = 3.0f, t = 1.0f;
  LaunchConfig config;
  config.block[0] = 256;
  ASSERT_OK(launchKernel(affine, config, stream.handle(), {&px, &n, &s, &t},
                         error));
  EXPECT_EQ(download<float>(px, n)[255], 4.0f);

  CudaGraph empty;
  EXPECT_FALSE(empty.launch(stream.handle(), error));
  EXPECT_NE(error.find("nothing captured"), std::string::npos);
}

} // namespace
