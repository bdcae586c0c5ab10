//===- HostKernelsTest.cpp - Generated CPU kernels against references -----===//
//
// Generates every host kernel into one module, compiles it once with the host
// code generator, loads it with the runtime's HostModule, and checks each
// kernel on random inputs of odd sizes against straightforward C++ in double.
//
//===----------------------------------------------------------------------===//

#include "optmlir/Conversion/HostKernels.h"
#include "optmlir/Target/HostCodegen.h"
#include "runtime/core/NumberFormats.h"
#include "runtime/core/QuantizedWeights.h"
#include "runtime/host/HostModule.h"
#include "runtime/host/MemRef.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "test/unit/Numerics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

using namespace optmlir;
using namespace optmlir::hostkernels;
using optrt::decodeF8E4M3;
using optrt::encodeF8E4M3;
using optrt::HostModule;
using optrt::makeMemRef;
using optrt::MemRefDescriptor;

namespace {

using M1f = MemRefDescriptor<float, 1>;
using M2f = MemRefDescriptor<float, 2>;
using M3f = MemRefDescriptor<float, 3>;
using M4f = MemRefDescriptor<float, 4>;
using M1i = MemRefDescriptor<int32_t, 1>;
using M2i = MemRefDescriptor<int32_t, 2>;

using EmbedFn = void(M1i *, M2f *, M2f *);
using RmsNormFn = void(M2f *, M1f *, M2f *);
using AddRmsNormFn = void(M2f *, M2f *, M1f *, M2f *);
using RopeFn = void(M3f *, M3f *, M1i *);
using SwiGLUFn = void(M2f *, M2f *);
using SwiGLUSplitFn = void(M2f *, M2f *, M2f *);
using AddFn = void(M2f *, M2f *);
using KvWriteFn = void(M3f *, M3f *, M4f *, M4f *, M1i *);
using PagedAttentionFn = void(M3f *, M4f *, M4f *, M1i *, M1i *, M2i *, M3f *);
using M4b = optrt::MemRefDescriptor<uint8_t, 4>;
using KvWriteF8Fn = void(M3f *, M3f *, M4b *, M4b *, M1i *);
using PagedAttentionF8Fn = void(M3f *, M4b *, M4b *, M1i *, M1i *, M2i *,
                                M3f *);

/// The fp8 e4m3 cache configuration the kernels are tested with.
PagedAttentionParams fp8AttentionConfig() {
  PagedAttentionParams p;
  p.numHeads = 6;
  p.cache = {2, 64, 16, KvElementType::F8E4M3};
  p.scale = 0.125;
  return p;
}

/// The int8 cache configuration: a head dim that is not a multiple of the
/// vector width, so that rows run a vector body and a scalar tail.
PagedAttentionParams int8AttentionConfig() {
  PagedAttentionParams p;
  p.numHeads = 4;
  p.cache = {2, 36, 16, KvElementType::Int8};
  p.scale = 1.0 / 6.0;
  return p;
}

// Odd sizes: every kernel runs its 8-wide body and its scalar tail.
constexpr int64_t kVocab = 101, kHidden = 67, kIntermediate = 75;
constexpr double kEps = 1e-5;
constexpr int64_t kBlockSize = 16;
constexpr int64_t kAttnKvHeads = 2;
constexpr int64_t kWindow = 20;

RopeScaling linearScaling() {
  RopeScaling s;
  s.kind = RopeScaling::Kind::Linear;
  s.factor = 4.0;
  return s;
}

RopeScaling llama3Scaling() {
  RopeScaling s;
  s.kind = RopeScaling::Kind::Llama3;
  s.factor = 32.0;
  s.lowFreqFactor = 1.0;
  s.highFreqFactor = 4.0;
  s.originalMaxPositionEmbeddings = 8192;
  return s;
}

std::vector<RopeParams> ropeConfigs() {
  return {
      {6, 2, 64, 10000.0, RopeScaling()},
      {6, 2, 64, 10000.0, linearScaling()},
      {6, 2, 64, 500000.0, llama3Scaling()},
      {4, 2, 128, 500000.0, llama3Scaling()},
      // D/2 = 18: the scalar tail of the rotation.
      {3, 1, 36, 10000.0, RopeScaling()},
  };
}

std::vector<PagedAttentionParams> attentionConfigs() {
  std::vector<PagedAttentionParams> configs;
  for (int64_t group : {1, 3})
    for (int64_t headDim : {64, 128})
      for (int64_t window : {int64_t(0), kWindow}) {
        PagedAttentionParams p;
        p.numHeads = group * kAttnKvHeads;
        p.cache = {kAttnKvHeads, headDim, kBlockSize};
        p.scale = 1.0 / std::sqrt(double(headDim));
        p.slidingWindow = window;
        configs.push_back(p);
      }
  return configs;
}

using optmlir::test::relativeL2;

/// HF's inverse frequencies, transcribed from transformers'
/// _compute_default_rope_parameters and _compute_llama3_parameters.
std::vector<double> hfInvFreq(int64_t dim, double base, const RopeScaling &s) {
  std::vector<double> inv;
  for (int64_t i = 0; i < dim; i += 2)
    inv.push_back(1.0 / std::pow(base, double(i) / double(dim)));
  if (s.kind == RopeScaling::Kind::Linear)
    for (double &f : inv)
      f /= s.factor;
  if (s.kind == RopeScaling::Kind::Llama3) {
    double oldContextLen = double(s.originalMaxPositionEmbeddings);
    double lowFreqWavelen = oldContextLen / s.lowFreqFactor;
    double highFreqWavelen = oldContextLen / s.highFreqFactor;
    for (double &f : inv) {
      double wavelen = 2 * M_PI / f;
      double llama = wavelen > lowFreqWavelen ? f / s.factor : f;
      double smooth = (oldContextLen / wavelen - s.lowFreqFactor) /
                      (s.highFreqFactor - s.lowFreqFactor);
      double smoothed = (1 - smooth) * llama / s.factor + smooth * llama;
      bool medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
      f = medium ? smoothed : llama;
    }
  }
  return inv;
}

class HostKernelsTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    context = new mlir::MLIRContext();
    module = new mlir::OwningOpRef<mlir::ModuleOp>(
        mlir::ModuleOp::create(mlir::UnknownLoc::get(context)));
    mlir::ModuleOp m = module->get();
    auto add = [&](const std::string &key, mlir::FailureOr<std::string> name) {
      ASSERT_TRUE(mlir::succeeded(name)) << key;
      (*names)[key] = *name;
    };
    names = new std::map<std::string, std::string>();
    add("embed", buildEmbed(m, kVocab, kHidden));
    add("rms_norm", buildRmsNorm(m, kHidden, kEps));
    add("add_rms_norm", buildAddRmsNorm(m, kHidden, kEps));
    add("swiglu", buildSwiGLU(m, kIntermediate));
    add("swiglu_split", buildSwiGLUSplit(m, kIntermediate));
    add("add", buildAdd(m, kHidden));
    add("add_bias", buildAddBias(m, kIntermediate));
    add("gather_rows", buildGatherRows(m, kHidden));
    std::vector<RopeParams> ropes = ropeConfigs();
    for (size_t i = 0; i < ropes.size(); ++i)
      add("rope" + std::to_string(i), buildRope(m, ropes[i]));
    std::vector<PagedAttentionParams> attns = attentionConfigs();
    for (size_t i = 0; i < attns.size(); ++i) {
      add("attn" + std::to_string(i), buildPagedAttention(m, attns[i]));
      add("kv_write" + std::to_string(i), buildKvWrite(m, attns[i].cache));
    }
    add("attn_f8", buildPagedAttention(m, fp8AttentionConfig()));
    add("kv_write_f8", buildKvWrite(m, fp8AttentionConfig().cache));
    add("attn_i8", buildPagedAttention(m, int8AttentionConfig()));
    add("kv_write_i8", buildKvWrite(m, int8AttentionConfig().cache));
    ASSERT_TRUE(mlir::succeeded(mlir::verify(m)));

    std::string error;
    auto start = std::chrono::steady_clock::now();
    mlir::FailureOr<std::string> shared =
        compileToSharedObject(m, HostCodegenOptions(), error);
    double ms = std::chrono::duration<double, std::milli>(
                    std::chrono::steady_clock::now() - start)
                    .count();
    ASSERT_TRUE(mlir::succeeded(shared)) << error;
    int functions = 0;
    for (auto &op : m.getBody()->getOperations())
      functions += llvm::isa<mlir::func::FuncOp>(op) ? 1 : 0;
    std::printf("[ timing ] %d host kernels: compiled to a %zu-byte shared "
                "object in %.1f ms\n",
                functions, shared->size(), ms);
    loaded = HostModule::load(reinterpret_cast<const uint8_t *>(shared->data()),
                              shared->size(), &error)
                 .release();
    ASSERT_NE(loaded, nullptr) << error;
  }

  static void TearDownTestSuite() {
    delete loaded;
    delete module;
    delete names;
    delete context;
    loaded = nullptr;
  }

  void SetUp() override { ASSERT_NE(loaded, nullptr); }

  template <typename F> static F *kernel(const std::string &key) {
    auto it = names->find(key);
    if (it == names->end())
      return nullptr;
    return loaded->lookupFunction<F>("_mlir_ciface_" + it->second);
  }

  std::vector<float> random(size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (float &x : v)
      x = dist(rng);
    return v;
  }

  static mlir::MLIRContext *context;
  static mlir::OwningOpRef<mlir::ModuleOp> *module;
  static std::map<std::string, std::string> *names;
  static HostModule *loaded;
  std::mt19937 rng{20261123};
};

mlir::MLIRContext *HostKernelsTest::context = nullptr;
mlir::OwningOpRef<mlir::ModuleOp> *HostKernelsTest::module = nullptr;
std::map<std::string, std::string> *HostKernelsTest::names = nullptr;
HostModule *HostKernelsTest::loaded = nullptr;

TEST_F(HostKernelsTest, Embed) {
  auto *embed = kernel<EmbedFn>("embed");
  ASSERT_NE(embed, nullptr);
  std::vector<float> table = random(kVocab * kHidden, -1, 1);
  for (int64_t tokens : {0, 1, 13}) {
    std::vector<int32_t> ids(tokens);
    std::uniform_int_distribution<int32_t> dist(0, kVocab - 1);
    for (int32_t &id : ids)
      id = dist(rng);
    if (tokens > 1) {
      ids[0] = 0;
      ids[1] = kVocab - 1;
    }
    std::vector<float> out(tokens * kHidden, NAN);
    M1i dIds = makeMemRef(ids.data(), {tokens});
    M2f dTable = makeMemRef(table.data(), {kVocab, kHidden});
    M2f dOut = makeMemRef(out.data(), {tokens, kHidden});
    embed(&dIds, &dTable, &dOut);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t j = 0; j < kHidden; ++j)
        ASSERT_EQ(out[t * kHidden + j], table[ids[t] * kHidden + j])
            << t << "," << j;
  }
}

std::vector<double> referenceRmsNorm(const std::vector<float> &x,
                                     const std::vector<float> &w,
                                     int64_t rows) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t j = 0; j < kHidden; ++j)
      ss += double(x[r * kHidden + j]) * x[r * kHidden + j];
    double inv = 1.0 / std::sqrt(ss / kHidden + kEps);
    for (int64_t j = 0; j < kHidden; ++j)
      y[r * kHidden + j] = x[r * kHidden + j] * inv * w[j];
  }
  return y;
}

TEST_F(HostKernelsTest, RmsNorm) {
  auto *rmsNorm = kernel<RmsNormFn>("rms_norm");
  ASSERT_NE(rmsNorm, nullptr);
  for (int64_t rows : {1, 5, 31}) {
    std::vector<float> x = random(rows * kHidden, -3, 3);
    std::vector<float> w = random(kHidden, 0.5, 1.5);
    std::vector<float> y(rows * kHidden, NAN);
    M2f dx = makeMemRef(x.data(), {rows, kHidden});
    M1f dw = makeMemRef(w.data(), {kHidden});
    M2f dy = makeMemRef(y.data(), {rows, kHidden});
    rmsNorm(&dx, &dw, &dy);
    std::vector<double> want = referenceRmsNorm(x, w, rows);
    EXPECT_LT(relativeL2(y, want), 1e-5) << rows;
    // In place.
    rmsNorm(&dx, &dw, &dx);
    EXPECT_LT(relativeL2(x, want), 1e-5) << rows;
  }
}

TEST_F(HostKernelsTest, AddRmsNorm) {
  auto *addRmsNorm = kernel<AddRmsNormFn>("add_rms_norm");
  ASSERT_NE(addRmsNorm, nullptr);
  for (int64_t rows : {1, 9}) {
    std::vector<float> x = random(rows * kHidden, -3, 3);
    std::vector<float> residual = random(rows * kHidden, -3, 3);
    std::vector<float> w = random(kHidden, 0.5, 1.5);
    std::vector<float> sum(rows * kHidden);
    std::vector<double> wantSum(rows * kHidden);
    for (size_t i = 0; i < sum.size(); ++i) {
      sum[i] = x[i] + residual[i];
      wantSum[i] = double(x[i]) + residual[i];
    }
    std::vector<double> want = referenceRmsNorm(sum, w, rows);
    M2f dx = makeMemRef(x.data(), {rows, kHidden});
    M2f dr = makeMemRef(residual.data(), {rows, kHidden});
    M1f dw = makeMemRef(w.data(), {kHidden});
    // `out` may be `x`.
    addRmsNorm(&dx, &dr, &dw, &dx);
    EXPECT_LT(relativeL2(residual, wantSum), 1e-6);
    EXPECT_LT(relativeL2(x, want), 1e-5);
  }
}

TEST_F(HostKernelsTest, RopeInvFreqFollowsHuggingFace) {
  for (const RopeParams &p : ropeConfigs()) {
    std::vector<double> got = computeRopeInvFreq(p.headDim, p.theta, p.scaling);
    std::vector<double> want = hfInvFreq(p.headDim, p.theta, p.scaling);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_NEAR(got[i], want[i], 1e-15 * want[i]) << i;
  }
  // llama3 (factor 32, low 1, high 4, original 8192, theta 500000, D 64):
  // short wavelengths kept, long ones divided by 32, the band blended.
  std::vector<double> plain = computeRopeInvFreq(64, 500000, RopeScaling());
  std::vector<double> llama = computeRopeInvFreq(64, 500000, llama3Scaling());
  EXPECT_EQ(llama[0], 1.0);
  EXPECT_EQ(llama[1], plain[1]);
  EXPECT_DOUBLE_EQ(llama[31], plain[31] / 32);
  int blended = 0;
  for (size_t i = 0; i < llama.size(); ++i) {
    double ratio = llama[i] / plain[i];
    EXPECT_LE(ratio, 1.0);
    EXPECT_GE(ratio, 1.0 / 32);
    if (ratio < 1.0 && ratio > 1.0 / 32)
      ++blended;
  }
  EXPECT_GT(blended, 0);
  std::vector<double> linear = computeRopeInvFreq(64, 10000, linearScaling());
  std::vector<double> base = computeRopeInvFreq(64, 10000, RopeScaling());
  for (size_t i = 0; i < linear.size(); ++i)
    EXPECT_DOUBLE_EQ(linear[i], base[i] / 4);
}

TEST_F(HostKernelsTest, Rope) {
  std::vector<RopeParams> configs = ropeConfigs();
  for (size_t c = 0; c < configs.size(); ++c) {
    const RopeParams &p = configs[c];
    SCOPED_TRACE("rope config " + std::to_string(c));
    auto *rope = kernel<RopeFn>("rope" + std::to_string(c));
    ASSERT_NE(rope, nullptr);
    const int64_t d = p.headDim, half = d / 2, hq = p.numHeads,
                  hkv = p.numKvHeads;
    const int64_t tokens = 37, width = (hq + 2 * hkv) * d;
    std::vector<int32_t> positions(tokens);
    std::uniform_int_distribution<int32_t> far(0, 300000);
    for (int64_t t = 0; t < tokens; ++t)
      positions[t] =
          t < 8 ? int32_t(t) : (t < 16 ? 8180 + int32_t(t) : far(rng));
    // q and k are views into the fused QKV projection's output; v must not
    // change.
    std::vector<float> qkv = random(tokens * width, -2, 2);
    std::vector<float> before = qkv;
    M3f dq = makeMemRef(qkv.data(), {tokens, hq, d});
    dq.strides[0] = width;
    M3f dk = makeMemRef(qkv.data(), {tokens, hkv, d});
    dk.strides[0] = width;
    dk.offset = hq * d;
    M1i dpos = makeMemRef(positions.data(), {tokens});
    rope(&dq, &dk, &dpos);

    std::vector<double> inv = hfInvFreq(d, p.theta, p.scaling);
    std::vector<float> got;
    std::vector<double> want;
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t h = 0; h < hq + hkv; ++h) {
        const float *x = &before[t * width + h * d];
        const float *y = &qkv[t * width + h * d];
        for (int64_t i = 0; i < half; ++i) {
          // HF: freqs = inv_freq (f32) @ positions (f32), cos/sin of that.
          float angle = float(positions[t]) * float(inv[i]);
          double cs = std::cos(double(angle)), sn = std::sin(double(angle));
          want.push_back(x[i] * cs - x[i + half] * sn);
          want.push_back(x[i + half] * cs + x[i] * sn);
          got.push_back(y[i]);
          got.push_back(y[i + half]);
        }
      }
      for (int64_t j = (hq + hkv) * d; j < width; ++j)
        ASSERT_EQ(qkv[t * width + j], before[t * width + j]);
    }
    EXPECT_LT(relativeL2(got, want), 1e-5);
  }
}

TEST_F(HostKernelsTest, RopeContiguous) {
  // Plain [T, H, D] buffers (offset 0, dense strides) work as well.
  const RopeParams p = ropeConfigs()[2];
  auto *rope = kernel<RopeFn>("rope2");
  ASSERT_NE(rope, nullptr);
  const int64_t tokens = 5, d = p.headDim, half = d / 2;
  std::vector<float> q = random(tokens * p.numHeads * d, -1, 1);
  std::vector<float> k = random(tokens * p.numKvHeads * d, -1, 1);
  std::vector<float> q0 = q, k0 = k;
  std::vector<int32_t> positions = {0, 3, 4095, 8191, 131071};
  M3f dq = makeMemRef(q.data(), {tokens, p.numHeads, d});
  M3f dk = makeMemRef(k.data(), {tokens, p.numKvHeads, d});
  M1i dpos = makeMemRef(positions.data(), {tokens});
  rope(&dq, &dk, &dpos);
  std::vector<double> inv = hfInvFreq(d, p.theta, p.scaling);
  auto check = [&](const std::vector<float> &x0, const std::vector<float> &x,
                   int64_t heads) {
    std::vector<double> want(x.size());
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < half; ++i) {
          int64_t base = (t * heads + h) * d;
          float angle = float(positions[t]) * float(inv[i]);
          double cs = std::cos(double(angle)), sn = std::sin(double(angle));
          want[base + i] = x0[base + i] * cs - x0[base + i + half] * sn;
          want[base + i + half] = x0[base + i + half] * cs + x0[base + i] * sn;
        }
    EXPECT_LT(relativeL2(x, want), 1e-5);
  };
  check(q0, q, p.numHeads);
  check(k0, k, p.numKvHeads);
  // Position 0 is the identity.
  for (int64_t j = 0; j < p.numHeads * d; ++j)
    EXPECT_EQ(q[j], q0[j]);
}

double silu(double g) { return g / (1 + std::exp(-g)); }

TEST_F(HostKernelsTest, SwiGLU) {
  auto *swiglu = kernel<SwiGLUFn>("swiglu");
  auto *split = kernel<SwiGLUSplitFn>("swiglu_split");
  ASSERT_NE(swiglu, nullptr);
  ASSERT_NE(split, nullptr);
  const int64_t tokens = 9, inter = kIntermediate;
  std::vector<float> gateUp = random(tokens * 2 * inter, -10, 10);
  // Saturated gates: exp overflows to inf, silu goes to -0 or the input.
  gateUp[0] = -1000.0f;
  gateUp[1] = -100.0f;
  gateUp[2] = 100.0f;
  gateUp[3] = 1000.0f;
  std::vector<float> out(tokens * inter, NAN);
  std::vector<double> want(tokens * inter);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < inter; ++i)
      want[t * inter + i] =
          silu(gateUp[t * 2 * inter + i]) * gateUp[t * 2 * inter + inter + i];
  M2f dgu = makeMemRef(gateUp.data(), {tokens, 2 * inter});
  M2f dout = makeMemRef(out.data(), {tokens, inter});
  swiglu(&dgu, &dout);
  EXPECT_LT(relativeL2(out, want), 1e-5);
  for (float v : out)
    ASSERT_FALSE(std::isnan(v));

  std::vector<float> gate(tokens * inter), up(tokens * inter);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < inter; ++i) {
      gate[t * inter + i] = gateUp[t * 2 * inter + i];
      up[t * inter + i] = gateUp[t * 2 * inter + inter + i];
    }
  M2f dg = makeMemRef(gate.data(), {tokens, inter});
  M2f du = makeMemRef(up.data(), {tokens, inter});
  split(&dg, &du, &dg); // in place over gate
  EXPECT_LT(relativeL2(gate, want), 1e-5);
}

TEST_F(HostKernelsTest, ResidualAdd) {
  auto *add = kernel<AddFn>("add");
  ASSERT_NE(add, nullptr);
  for (int64_t tokens : {0, 1, 11}) {
    std::vector<float> a = random(tokens * kHidden, -4, 4);
    std::vector<float> b = random(tokens * kHidden, -4, 4);
    std::vector<double> want(a.size());
    for (size_t i = 0; i < a.size(); ++i)
      want[i] = double(a[i]) + b[i];
    M2f da = makeMemRef(a.data(), {tokens, kHidden});
    M2f db = makeMemRef(b.data(), {tokens, kHidden});
    add(&da, &db);
    EXPECT_LT(relativeL2(a, want), 1e-6);
  }
}

TEST_F(HostKernelsTest, AddBias) {
  auto *addBias = kernel<void(M2f *, M1f *)>("add_bias");
  ASSERT_NE(addBias, nullptr);
  for (int64_t tokens : {0, 1, 11}) {
    std::vector<float> x = random(tokens * kIntermediate, -4, 4);
    std::vector<float> bias = random(kIntermediate, -1, 1);
    std::vector<double> want(x.size());
    for (size_t i = 0; i < x.size(); ++i)
      want[i] = double(x[i]) + bias[i % kIntermediate];
    M2f dx = makeMemRef(x.data(), {tokens, kIntermediate});
    M1f dbias = makeMemRef(bias.data(), {int64_t(kIntermediate)});
    addBias(&dx, &dbias);
    EXPECT_LT(relativeL2(x, want), 1e-6);
  }
}

TEST_F(HostKernelsTest, GatherRows) {
  using Rows = MemRefDescriptor<int32_t, 1>;
  auto *gather = kernel<void(M2f *, Rows *, M2f *)>("gather_rows");
  ASSERT_NE(gather, nullptr);
  int64_t tokens = 9;
  std::vector<float> x = random(tokens * kHidden, -4, 4);
  std::vector<int32_t> rows = {8, 0, 3, 3};
  std::vector<float> out(rows.size() * kHidden, std::nanf(""));
  std::vector<double> want;
  for (int32_t r : rows)
    want.insert(want.end(), x.begin() + r * kHidden,
                x.begin() + (r + 1) * kHidden);
  M2f dx = makeMemRef(x.data(), {tokens, kHidden});
  Rows drows = makeMemRef(rows.data(), {int64_t(rows.size())});
  M2f dout = makeMemRef(out.data(), {int64_t(rows.size()), kHidden});
  gather(&dx, &drows, &dout);
  EXPECT_EQ(relativeL2(out, want), 0.0);
}

/// One ragged step: sequences with their context lengths and the number of
/// query tokens of this step (prefill, chunked prefill, decode, none).
struct SequenceStep {
  int32_t contextLen;
  int32_t queryLen;
};

const std::vector<SequenceStep> kSteps = {
    {1, 1},    // prefill of a one-token prompt
    {7, 7},    // whole-prompt prefill
    {33, 12},  // chunked prefill: 21 tokens already cached
    {100, 1},  // decode
    {100, 37}, // chunked prefill across many blocks
    {33, 1},   // decode, first token of a new block
    {5, 0},    // scheduled with no tokens this step
};

TEST_F(HostKernelsTest, PagedAttention) {
  std::vector<PagedAttentionParams> configs = attentionConfigs();
  for (size_t c = 0; c < configs.size(); ++c) {
    const PagedAttentionParams &p = configs[c];
    SCOPED_TRACE("attention config " + std::to_string(c) + ": heads " +
                 std::to_string(p.numHeads) + ", head dim " +
                 std::to_string(p.cache.headDim) + ", window " +
                 std::to_string(p.slidingWindow));
    auto *attention = kernel<PagedAttentionFn>("attn" + std::to_string(c));
    auto *kvWrite = kernel<KvWriteFn>("kv_write" + std::to_string(c));
    ASSERT_NE(attention, nullptr);
    ASSERT_NE(kvWrite, nullptr);
    const int64_t hq = p.numHeads, hkv = p.cache.numKvHeads,
                  d = p.cache.headDim, bs = p.cache.blockSize, group = hq / hkv;
    const int64_t numSeqs = kSteps.size();

    // Shuffled, non-contiguous blocks; spare blocks stay poisoned and pad
    // the block table, so a read past the context shows up as NaN.
    int64_t usedBlocks = 0, maxBlocks = 0;
    for (const SequenceStep &s : kSteps) {
      int64_t n = (s.contextLen + bs - 1) / bs;
      usedBlocks += n;
      maxBlocks = std::max(maxBlocks, n);
    }
    const int64_t numBlocks = usedBlocks + 5;
    std::vector<int32_t> perm(numBlocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    const int32_t spare = perm[numBlocks - 1];
    std::vector<int32_t> blockTable(numSeqs * (maxBlocks + 1), spare);
    int64_t next = 0;
    for (int64_t s = 0; s < numSeqs; ++s)
      for (int64_t b = 0; b * bs < kSteps[s].contextLen; ++b)
        blockTable[s * (maxBlocks + 1) + b] = perm[next++];
    const int64_t tableWidth = maxBlocks + 1;
    auto slotOf = [&](int64_t s, int64_t j) {
      return int32_t(blockTable[s * tableWidth + j / bs] * bs + j % bs);
    };

    // Logical keys and values of every sequence, [ctx, Hkv, D].
    std::vector<std::vector<float>> keys, values;
    for (const SequenceStep &s : kSteps) {
      keys.push_back(random(s.contextLen * hkv * d, -2, 2));
      values.push_back(random(s.contextLen * hkv * d, -2, 2));
    }

    // The step's packed tokens, plus one padding token at the end (slot -1,
    // in no sequence: neither written to the cache nor attended).
    std::vector<int32_t> queryStart = {0};
    for (const SequenceStep &s : kSteps)
      queryStart.push_back(queryStart.back() + s.queryLen);
    const int64_t tokens = queryStart.back() + 1;
    const int64_t width = (hq + 2 * hkv) * d;
    std::vector<float> qkv = random(tokens * width, -2, 2);
    std::vector<int32_t> slots(tokens, -1);
    std::vector<int32_t> contextLen;
    const size_t cacheSize = numBlocks * bs * hkv * d;
    std::vector<float> keyCache(cacheSize, NAN), valueCache(cacheSize, NAN);
    for (int64_t s = 0; s < numSeqs; ++s) {
      const SequenceStep &step = kSteps[s];
      contextLen.push_back(step.contextLen);
      int64_t cached = step.contextLen - step.queryLen;
      // Earlier steps' keys are in the cache already.
      for (int64_t j = 0; j < cached; ++j)
        for (int64_t i = 0; i < hkv * d; ++i) {
          keyCache[slotOf(s, j) * hkv * d + i] = keys[s][j * hkv * d + i];
          valueCache[slotOf(s, j) * hkv * d + i] = values[s][j * hkv * d + i];
        }
      // This step's come with the step's tokens.
      for (int64_t t = queryStart[s]; t < queryStart[s + 1]; ++t) {
        int64_t j = cached + (t - queryStart[s]);
        slots[t] = slotOf(s, j);
        for (int64_t i = 0; i < hkv * d; ++i) {
          qkv[t * width + hq * d + i] = keys[s][j * hkv * d + i];
          qkv[t * width + (hq + hkv) * d + i] = values[s][j * hkv * d + i];
        }
      }
    }

    M3f dq = makeMemRef(qkv.data(), {tokens, hq, d});
    dq.strides[0] = width;
    M3f dk = makeMemRef(qkv.data(), {tokens, hkv, d});
    dk.strides[0] = width;
    dk.offset = hq * d;
    M3f dv = dk;
    dv.offset = (hq + hkv) * d;
    M4f dkc = makeMemRef(keyCache.data(), {numBlocks, bs, hkv, d});
    M4f dvc = makeMemRef(valueCache.data(), {numBlocks, bs, hkv, d});
    M1i dslots = makeMemRef(slots.data(), {tokens});
    kvWrite(&dk, &dv, &dkc, &dvc, &dslots);

    // The cache holds exactly every context token; all else is still NaN.
    std::vector<char> used(numBlocks * bs, 0);
    for (int64_t s = 0; s < numSeqs; ++s)
      for (int64_t j = 0; j < kSteps[s].contextLen; ++j) {
        used[slotOf(s, j)] = 1;
        for (int64_t i = 0; i < hkv * d; ++i) {
          ASSERT_EQ(keyCache[slotOf(s, j) * hkv * d + i],
                    keys[s][j * hkv * d + i]);
          ASSERT_EQ(valueCache[slotOf(s, j) * hkv * d + i],
                    values[s][j * hkv * d + i]);
        }
      }
    for (int64_t slot = 0; slot < numBlocks * bs; ++slot) {
      if (used[slot])
        continue;
      for (int64_t i = 0; i < hkv * d; ++i) {
        ASSERT_TRUE(std::isnan(keyCache[slot * hkv * d + i]) &&
                    std::isnan(valueCache[slot * hkv * d + i]))
            << "slot " << slot;
      }
    }

    const float sentinel = 12345.0f;
    std::vector<float> out(tokens * hq * d, sentinel);
    M1i dstart = makeMemRef(queryStart.data(), {numSeqs + 1});
    M1i dctx = makeMemRef(contextLen.data(), {numSeqs});
    M2i dtable = makeMemRef(blockTable.data(), {numSeqs, tableWidth});
    M3f dout = makeMemRef(out.data(), {tokens, hq, d});
    auto start = std::chrono::steady_clock::now();
    attention(&dq, &dkc, &dvc, &dstart, &dctx, &dtable, &dout);
    double us = std::chrono::duration<double, std::micro>(
                    std::chrono::steady_clock::now() - start)
                    .count();
    std::printf("[ timing ] paged_attention hq=%lld hkv=%lld d=%lld w=%lld: "
                "%lld tokens in %.0f us\n",
                (long long)hq, (long long)hkv, (long long)d,
                (long long)p.slidingWindow, (long long)tokens, us);

    std::vector<float> got;
    std::vector<double> want;
    for (int64_t s = 0; s < numSeqs; ++s) {
      const SequenceStep &step = kSteps[s];
      for (int64_t t = queryStart[s]; t < queryStart[s + 1]; ++t) {
        int64_t pos = step.contextLen - step.queryLen + (t - queryStart[s]);
        int64_t lo = p.slidingWindow > 0
                         ? std::max<int64_t>(0, pos - p.slidingWindow + 1)
                         : 0;
        for (int64_t h = 0; h < hq; ++h) {
          int64_t g = h / group;
          const float *qrow = &qkv[t * width + h * d];
          std::vector<double> scores;
          double max = -INFINITY;
          for (int64_t j = lo; j <= pos; ++j) {
            const float *krow = &keys[s][(j * hkv + g) * d];
            double dot = 0;
            for (int64_t i = 0; i < d; ++i)
              dot += double(qrow[i]) * krow[i];
            scores.push_back(dot * p.scale);
            max = std::max(max, scores.back());
          }
          double sum = 0;
          for (double &x : scores)
            sum += x = std::exp(x - max);
          for (int64_t i = 0; i < d; ++i) {
            double o = 0;
            for (int64_t j = lo; j <= pos; ++j)
              o += scores[j - lo] * values[s][(j * hkv + g) * d + i];
            want.push_back(o / sum);
            float v = out[(t * hq + h) * d + i];
            ASSERT_FALSE(std::isnan(v)) << "token " << t << " head " << h;
            got.push_back(v);
          }
        }
      }
    }
    EXPECT_LT(relativeL2(got, want), 1e-5);
    // The padding token's row is not written.
    for (int64_t i = 0; i < hq * d; ++i)
      ASSERT_EQ(out[(tokens - 1) * hq * d + i], sentinel);
  }
}

/// Opt-in timing at a Llama-3.2-1B-like attention shape (32 query heads, 8
/// kv heads, head dim 64): OPTMLIR_HOSTKERNELS_BENCH=1 HostKernelsTest
/// --gtest_filter=*Benchmark*.
TEST_F(HostKernelsTest, AttentionBenchmark) {
  if (!std::getenv("OPTMLIR_HOSTKERNELS_BENCH"))
    GTEST_SKIP() << "set OPTMLIR_HOSTKERNELS_BENCH=1 to run";
  mlir::MLIRContext ctx;
  mlir::OwningOpRef<mlir::ModuleOp> m =
      mlir::ModuleOp::create(mlir::UnknownLoc::get(&ctx));
  PagedAttentionParams p;
  p.numHeads = 32;
  p.cache = {8, 64, 16};
  p.scale = 0.125;
  auto name = buildPagedAttention(*m, p);
  ASSERT_TRUE(mlir::succeeded(name));
  std::string error;
  auto shared = compileToSharedObject(*m, HostCodegenOptions(), error);
  ASSERT_TRUE(mlir::succeeded(shared)) << error;
  auto lib = HostModule::load(reinterpret_cast<const uint8_t *>(shared->data()),
                              shared->size(), &error);
  ASSERT_TRUE(lib) << error;
  auto *attention =
      lib->lookupFunction<PagedAttentionFn>("_mlir_ciface_" + *name);
  const int64_t hq = 32, hkv = 8, d = 64, bs = 16;
  struct Case {
    const char *what;
    int64_t seqs, context, queries;
  };
  for (Case c : {Case{"decode", 16, 1024, 1}, Case{"prefill", 1, 512, 512}}) {
    const int64_t blocksPerSeq = (c.context + bs - 1) / bs;
    const int64_t numBlocks = c.seqs * blocksPerSeq;
    std::vector<float> keyCache = random(numBlocks * bs * hkv * d, -1, 1);
    std::vector<float> valueCache = random(numBlocks * bs * hkv * d, -1, 1);
    std::vector<int32_t> table(numBlocks);
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), rng);
    std::vector<int32_t> start, contextLen(c.seqs, int32_t(c.context));
    for (int64_t s = 0; s <= c.seqs; ++s)
      start.push_back(int32_t(s * c.queries));
    const int64_t tokens = c.seqs * c.queries;
    std::vector<float> q = random(tokens * hq * d, -1, 1);
    std::vector<float> out(tokens * hq * d);
    M3f dq = makeMemRef(q.data(), {tokens, hq, d});
    M4f dkc = makeMemRef(keyCache.data(), {numBlocks, bs, hkv, d});
    M4f dvc = makeMemRef(valueCache.data(), {numBlocks, bs, hkv, d});
    M1i dstart = makeMemRef(start.data(), {c.seqs + 1});
    M1i dctx = makeMemRef(contextLen.data(), {c.seqs});
    M2i dtable = makeMemRef(table.data(), {c.seqs, blocksPerSeq});
    M3f dout = makeMemRef(out.data(), {tokens, hq, d});
    attention(&dq, &dkc, &dvc, &dstart, &dctx, &dtable, &dout); // warm up
    const int reps = 5;
    auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r)
      attention(&dq, &dkc, &dvc, &dstart, &dctx, &dtable, &dout);
    double ms = std::chrono::duration<double, std::milli>(
                    std::chrono::steady_clock::now() - t0)
                    .count() /
                reps;
    // Pairs (query token, key) attended, times heads, 2 FLOPs x 2 matmuls.
    double pairs = 0;
    for (int64_t i = 0; i < c.queries; ++i)
      pairs += c.context - c.queries + i + 1;
    double flops = 4.0 * pairs * c.seqs * hq * d;
    std::printf("[ timing ] paged_attention %s: %lld seqs x %lld queries, "
                "context %lld: %.3f ms, %.2f GFLOP/s\n",
                c.what, (long long)c.seqs, (long long)c.queries,
                (long long)c.context, ms, flops / ms / 1e6);
  }
}

TEST_F(HostKernelsTest, InnerLoopsAreAvx2Vectors) {
  mlir::MLIRContext ctx;
  mlir::OwningOpRef<mlir::ModuleOp> m =
      mlir::ModuleOp::create(mlir::UnknownLoc::get(&ctx));
  ASSERT_TRUE(mlir::succeeded(buildPagedAttention(*m, attentionConfigs()[4])));
  std::string ir, error;
  HostCodegenOptions options;
  options.llvmIROut = &ir;
  ASSERT_TRUE(mlir::succeeded(compileToObject(*m, options, error))) << error;
  // q.k and p*v run 8 lanes at a time as fused multiply-adds.
  EXPECT_TRUE(ir.find("fma.v8f32") != std::string::npos ||
              ir.find("fmuladd.v8f32") != std::string::npos)
      << ir;
}

TEST_F(HostKernelsTest, GeneratorsAreIdempotentAndCheckParameters) {
  mlir::MLIRContext ctx;
  mlir::OwningOpRef<mlir::ModuleOp> m =
      mlir::ModuleOp::create(mlir::UnknownLoc::get(&ctx));
  auto first = buildRmsNorm(*m, 384, 1e-6);
  auto again = buildRmsNorm(*m, 384, 1e-6);
  auto other = buildRmsNorm(*m, 384, 1e-5);
  ASSERT_TRUE(mlir::succeeded(first) && mlir::succeeded(again) &&
              mlir::succeeded(other));
  EXPECT_EQ(*first, *again);
  EXPECT_NE(*first, *other);
  EXPECT_EQ(*first, "rms_norm_h384_eps1em06");
  size_t count = 0;
  for (auto &op : m->getBody()->getOperations())
    count += llvm::isa<mlir::func::FuncOp>(op) ? 1 : 0;
  EXPECT_EQ(count, 2u);

  // Bad parameters are diagnosed, not built.
  std::string diagnostics;
  mlir::ScopedDiagnosticHandler handler(&ctx, [&](mlir::Diagnostic &d) {
    diagnostics += d.str() + "\n";
    return mlir::success();
  });
  RopeParams odd{2, 1, 63, 10000.0, RopeScaling()};
  EXPECT_TRUE(mlir::failed(buildRope(*m, odd)));
  PagedAttentionParams bad;
  bad.numHeads = 5;
  bad.cache = {2, 64, 16};
  bad.scale = 0.125;
  EXPECT_TRUE(mlir::failed(buildPagedAttention(*m, bad)));
  EXPECT_TRUE(mlir::failed(buildEmbed(*m, 0, 16)));
  EXPECT_NE(diagnostics.find("even head dim"), std::string::npos)
      << diagnostics;
  EXPECT_NE(diagnostics.find("not a multiple"), std::string::npos)
      << diagnostics;
  EXPECT_TRUE(mlir::succeeded(mlir::verify(*m)));
}

TEST(Fp8E4M3Test, ReferenceCodecRoundTripsAndRounds) {
  // Every finite code decodes and encodes back (0x7f/0xff are NaN, unused).
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) == 0x7f)
      continue;
    EXPECT_EQ(encodeF8E4M3(decodeF8E4M3(uint8_t(code))), code) << code;
  }
  EXPECT_EQ(decodeF8E4M3(0x38), 1.0f);
  EXPECT_EQ(decodeF8E4M3(0x7e), 448.0f);
  EXPECT_EQ(decodeF8E4M3(0x01), 1.0f / 512.0f);
  EXPECT_EQ(decodeF8E4M3(0x08), 1.0f / 64.0f);
  // Ties go to the even mantissa; saturation at 448; NaN saturates too.
  EXPECT_EQ(encodeF8E4M3(1.0625f), 0x38);
  EXPECT_EQ(encodeF8E4M3(1.1875f), 0x3a);
  EXPECT_EQ(encodeF8E4M3(1000.0f), 0x7e);
  EXPECT_EQ(encodeF8E4M3(-1000.0f), 0xfe);
  EXPECT_EQ(encodeF8E4M3(NAN), 0x7e);
  EXPECT_EQ(encodeF8E4M3(3.0f / 1024.0f), 0x02); // 1.5 steps of 2^-9: even
  EXPECT_EQ(encodeF8E4M3(1e-6f), 0x00);
}

TEST_F(HostKernelsTest, Fp8KvCacheWritesAndAttends) {
  // kv_write encodes exactly as the reference (every code's value, values
  // between codes, beyond the range); attention over the fp8 cache equals
  // attention over its decoded values.
  auto *kvWrite = kernel<KvWriteF8Fn>("kv_write_f8");
  auto *attention = kernel<PagedAttentionF8Fn>("attn_f8");
  ASSERT_NE(kvWrite, nullptr);
  ASSERT_NE(attention, nullptr);
  const PagedAttentionParams p = fp8AttentionConfig();
  const int64_t hq = p.numHeads, hkv = p.cache.numKvHeads, d = p.cache.headDim,
                bs = p.cache.blockSize, group = hq / hkv;
  const int64_t tokens = 40, rowElems = hkv * d, numBlocks = 4;
  std::vector<float> k = random(tokens * rowElems, -3, 3),
                     v = random(tokens * rowElems, -3, 3);
  for (int code = 0; code < 256; ++code) // every code's value, in k
    k[code] = decodeF8E4M3(uint8_t((code & 0x7f) == 0x7f ? 0 : code));
  k[300] = 1000.0f;
  k[301] = -513.0f;
  k[302] = 1.0625f;
  // One sequence of 40 tokens in blocks 2, 0, 3 (block 1 stays untouched).
  std::vector<int32_t> table = {2, 0, 3};
  std::vector<int32_t> slots(tokens);
  for (int64_t t = 0; t < tokens; ++t)
    slots[t] = table[t / bs] * bs + t % bs;
  std::vector<uint8_t> keyCache(numBlocks * bs * rowElems, 0x55),
      valueCache(numBlocks * bs * rowElems, 0x55);
  M3f dk = makeMemRef(k.data(), {tokens, hkv, d});
  M3f dv = makeMemRef(v.data(), {tokens, hkv, d});
  M4b dkc = makeMemRef(keyCache.data(), {numBlocks, bs, hkv, d});
  M4b dvc = makeMemRef(valueCache.data(), {numBlocks, bs, hkv, d});
  M1i dslots = makeMemRef(slots.data(), {tokens});
  kvWrite(&dk, &dv, &dkc, &dvc, &dslots);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < rowElems; ++i) {
      ASSERT_EQ(keyCache[slots[t] * rowElems + i],
                encodeF8E4M3(k[t * rowElems + i]))
          << "token " << t << " element " << i << " value "
          << k[t * rowElems + i];
      ASSERT_EQ(valueCache[slots[t] * rowElems + i],
                encodeF8E4M3(v[t * rowElems + i]));
    }
  for (int64_t i = 0; i < bs * rowElems; ++i)
    ASSERT_EQ(keyCache[1 * bs * rowElems + i], 0x55);

  // Prefill of all 40 tokens: causal attention over the decoded cache.
  std::vector<float> q = random(tokens * hq * d, -2, 2);
  std::vector<int32_t> queryStart = {0, int32_t(tokens)},
                       contextLen = {int32_t(tokens)};
  std::vector<float> out(tokens * hq * d, 0.0f);
  M3f dq = makeMemRef(q.data(), {tokens, hq, d});
  M1i dstart = makeMemRef(queryStart.data(), {2});
  M1i dctx = makeMemRef(contextLen.data(), {1});
  M2i dtable = makeMemRef(table.data(), {1, 3});
  M3f dout = makeMemRef(out.data(), {tokens, hq, d});
  attention(&dq, &dkc, &dvc, &dstart, &dctx, &dtable, &dout);
  std::vector<float> got;
  std::vector<double> want;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < hq; ++h) {
      int64_t g = h / group;
      std::vector<double> scores(t + 1), acc(d, 0.0);
      double maxScore = -INFINITY, sum = 0;
      for (int64_t j = 0; j <= t; ++j) {
        double dot = 0;
        for (int64_t e = 0; e < d; ++e)
          dot += double(q[(t * hq + h) * d + e]) *
                 decodeF8E4M3(keyCache[(slots[j] * hkv + g) * d + e]);
        scores[j] = dot * p.scale;
        maxScore = std::max(maxScore, scores[j]);
      }
      for (int64_t j = 0; j <= t; ++j) {
        double w = std::exp(scores[j] - maxScore);
        sum += w;
        for (int64_t e = 0; e < d; ++e)
          acc[e] += w * decodeF8E4M3(valueCache[(slots[j] * hkv + g) * d + e]);
      }
      for (int64_t e = 0; e < d; ++e) {
        got.push_back(out[(t * hq + h) * d + e]);
        want.push_back(acc[e] / sum);
      }
    }
  EXPECT_LT(relativeL2(got, want), 1e-5);
}

TEST_F(HostKernelsTest, Int8CacheWritesRowsWithScalesAndAttentionReadsThem) {
  // kv_write stores each (token, head) row as the reference encodes it (an
  // all-zero row included); attention over the int8 cache equals attention
  // over its decoded rows.
  auto *kvWrite = kernel<KvWriteF8Fn>("kv_write_i8");
  auto *attention = kernel<PagedAttentionF8Fn>("attn_i8");
  ASSERT_NE(kvWrite, nullptr);
  ASSERT_NE(attention, nullptr);
  const PagedAttentionParams p = int8AttentionConfig();
  const int64_t hq = p.numHeads, hkv = p.cache.numKvHeads, d = p.cache.headDim,
                bs = p.cache.blockSize, group = hq / hkv;
  const int64_t row = optrt::int8KvRowBytes(d);
  const int64_t tokens = 37, numBlocks = 4;
  std::vector<float> k = random(tokens * hkv * d, -3, 3),
                     v = random(tokens * hkv * d, -1, 1);
  for (int64_t e = 0; e < d; ++e)
    k[5 * hkv * d + e] = 0.0f; // token 5, head 0: all zero
  k[7 * hkv * d + 3] = 250.0f; // an outlier costs only its own row
  std::vector<int32_t> table = {3, 1, 0};
  std::vector<int32_t> slots(tokens);
  for (int64_t t = 0; t < tokens; ++t)
    slots[t] = table[t / bs] * bs + t % bs;
  std::vector<uint8_t> keyCache(numBlocks * bs * hkv * row, 0x55),
      valueCache(numBlocks * bs * hkv * row, 0x55);
  M3f dk = makeMemRef(k.data(), {tokens, hkv, d});
  M3f dv = makeMemRef(v.data(), {tokens, hkv, d});
  M4b dkc = makeMemRef(keyCache.data(), {numBlocks, bs, hkv, row});
  M4b dvc = makeMemRef(valueCache.data(), {numBlocks, bs, hkv, row});
  M1i dslots = makeMemRef(slots.data(), {tokens});
  kvWrite(&dk, &dv, &dkc, &dvc, &dslots);
  std::vector<uint8_t> want(row);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < hkv; ++h) {
      const int64_t at = (slots[t] * hkv + h) * row;
      optrt::encodeInt8KvRow(&k[(t * hkv + h) * d], d, want.data());
      ASSERT_TRUE(std::equal(want.begin(), want.end(), keyCache.begin() + at))
          << "keys of token " << t << " head " << h;
      optrt::encodeInt8KvRow(&v[(t * hkv + h) * d], d, want.data());
      ASSERT_TRUE(
          std::equal(want.begin(), want.end(), valueCache.begin() + at))
          << "values of token " << t << " head " << h;
    }
  for (int64_t i = 0; i < bs * hkv * row; ++i) // block 2 stays untouched
    ASSERT_EQ(keyCache[2 * bs * hkv * row + i], 0x55);

  std::vector<float> q = random(tokens * hq * d, -2, 2);
  std::vector<int32_t> queryStart = {0, int32_t(tokens)},
                       contextLen = {int32_t(tokens)};
  std::vector<float> out(tokens * hq * d, 0.0f);
  M3f dq = makeMemRef(q.data(), {tokens, hq, d});
  M1i dstart = makeMemRef(queryStart.data(), {2});
  M1i dctx = makeMemRef(contextLen.data(), {1});
  M2i dtable = makeMemRef(table.data(), {1, 3});
  M3f dout = makeMemRef(out.data(), {tokens, hq, d});
  attention(&dq, &dkc, &dvc, &dstart, &dctx, &dtable, &dout);
  auto decoded = [&](const std::vector<uint8_t> &cache, int64_t j,
                     int64_t g) {
    std::vector<float> x(d);
    optrt::decodeInt8KvRow(&cache[(slots[j] * hkv + g) * row], d, x.data());
    return x;
  };
  std::vector<float> got;
  std::vector<double> expected;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < hq; ++h) {
      int64_t g = h / group;
      std::vector<double> scores(t + 1), acc(d, 0.0);
      double maxScore = -INFINITY, sum = 0;
      for (int64_t j = 0; j <= t; ++j) {
        std::vector<float> key = decoded(keyCache, j, g);
        double dot = 0;
        for (int64_t e = 0; e < d; ++e)
          dot += double(q[(t * hq + h) * d + e]) * key[e];
        scores[j] = dot * p.scale;
        maxScore = std::max(maxScore, scores[j]);
      }
      for (int64_t j = 0; j <= t; ++j) {
        double w = std::exp(scores[j] - maxScore);
        sum += w;
        std::vector<float> value = decoded(valueCache, j, g);
        for (int64_t e = 0; e < d; ++e)
          acc[e] += w * value[e];
      }
      for (int64_t e = 0; e < d; ++e) {
        got.push_back(out[(t * hq + h) * d + e]);
        expected.push_back(acc[e] / sum);
      }
    }
  EXPECT_LT(relativeL2(got, expected), 1e-5);
}

} // namespace
