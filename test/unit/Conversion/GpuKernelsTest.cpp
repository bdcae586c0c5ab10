//===- GpuKernelsTest.cpp - Generated GPU kernels assemble ----------------===//
//
// Builds every GPU kernel for the shapes of both reference models and for
// head dims 80, 96 and 128 into one module, lowers it to PTX for sm_90a and
// sm_80, and assembles each PTX with ptxas (skipped, with a message, when
// the toolkit is absent). Numerics are checked on a GPU machine
// (test/gpu/README.md); here: entries present, launch rules sane, 16-byte
// loads where they pay, and resources from ptxas -v.
//
//===----------------------------------------------------------------------===//

#include "optmlir/Conversion/GpuKernels.h"
#include "optmlir/Target/NvptxCodegen.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"

#include "llvm/Support/Regex.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

using namespace optmlir;
using namespace optmlir::gpukernels;
using hostkernels::KvCacheShape;
using hostkernels::PagedAttentionParams;
using hostkernels::RopeParams;
using hostkernels::RopeScaling;

namespace {

struct ModelShape {
  int64_t hidden, heads, kvHeads, headDim, intermediate, vocab;
};

// The reference models of ../shared/models.
constexpr ModelShape kMain{384, 6, 2, 64, 1024, 8192};
constexpr ModelShape kDraft{192, 3, 1, 64, 512, 8192};

RopeScaling llama3Scaling() {
  RopeScaling s;
  s.kind = RopeScaling::Kind::Llama3;
  s.factor = 32.0;
  s.lowFreqFactor = 1.0;
  s.highFreqFactor = 4.0;
  s.originalMaxPositionEmbeddings = 8192;
  return s;
}

/// Builds every kernel of one model shape; appends what was built.
void buildModel(mlir::ModuleOp module, const ModelShape &m,
                std::vector<GpuKernel> &kernels) {
  auto add = [&](mlir::FailureOr<GpuKernel> kernel) {
    ASSERT_TRUE(mlir::succeeded(kernel));
    kernels.push_back(*kernel);
  };
  add(gpukernels::buildEmbed(module, m.vocab, m.hidden));
  add(gpukernels::buildGatherRows(module, m.hidden));
  add(gpukernels::buildRmsNorm(module, m.hidden, 1e-5));
  add(gpukernels::buildAddRmsNorm(module, m.hidden, 1e-5));
  add(gpukernels::buildAdd(module, m.hidden));
  add(gpukernels::buildSwiGLU(module, m.intermediate));
  add(gpukernels::buildSwiGLUSplit(module, m.intermediate));
  add(gpukernels::buildAddBias(module, (m.heads + 2 * m.kvHeads) * m.headDim));
  RopeParams rope{m.heads, m.kvHeads, m.headDim, 10000.0, {}};
  add(gpukernels::buildRope(module, rope));
  KvCacheShape cache{m.kvHeads, m.headDim, 16};
  add(gpukernels::buildKvWrite(module, cache));
  PagedAttentionParams attn{m.heads, cache, 1.0 / std::sqrt(double(m.headDim)),
                            0};
  add(gpukernels::buildPagedAttention(module, attn));
  // The projections of one layer and the LM head, for 1 and 8 tokens.
  int64_t qkv = (m.heads + 2 * m.kvHeads) * m.headDim;
  for (int64_t maxTokens : {1, 8}) {
    for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{
             {qkv, m.hidden},
             {m.hidden, m.heads * m.headDim},
             {2 * m.intermediate, m.hidden},
             {m.hidden, m.intermediate},
             {m.vocab, m.hidden}})
      add(gpukernels::buildGemv(module, {n, k, maxTokens, 4}));
  }
  // The decode step's fused GEMVs (1, 2 and 4 tokens): q/k/v with the norm
  // in, o and down with the residual out, gate/up with both norm and swiglu.
  using Epilogue = gpukernels::GemvParams::Epilogue;
  for (int64_t maxTokens : {1, 2, 4}) {
    auto fused = [&](int64_t n, int64_t k, bool norm, Epilogue epilogue) {
      gpukernels::GemvParams params{n, k, maxTokens, 4};
      params.rmsNormInput = norm;
      params.eps = 1e-5;
      params.epilogue = epilogue;
      add(gpukernels::buildGemv(module, params));
    };
    fused(qkv, m.hidden, true, Epilogue::None);
    fused(m.hidden, m.heads * m.headDim, false, Epilogue::Residual);
    fused(m.intermediate, m.hidden, true, Epilogue::SwiGLU);
    fused(m.hidden, m.intermediate, false, Epilogue::Residual);
  }
}

/// Attention-side kernels for other head dims, with llama3 RoPE and a
/// sliding window.
void buildHeadDim(mlir::ModuleOp module, int64_t headDim,
                  std::vector<GpuKernel> &kernels) {
  auto add = [&](mlir::FailureOr<GpuKernel> kernel) {
    ASSERT_TRUE(mlir::succeeded(kernel));
    kernels.push_back(*kernel);
  };
  RopeParams rope{8, 2, headDim, 500000.0, llama3Scaling()};
  add(gpukernels::buildRope(module, rope));
  KvCacheShape cache{2, headDim, 16};
  add(gpukernels::buildKvWrite(module, cache));
  double scale = 1.0 / std::sqrt(double(headDim));
  add(gpukernels::buildPagedAttention(module, {8, cache, scale, 0}));
  add(gpukernels::buildPagedAttention(module, {8, cache, scale, 64}));
}

class GpuKernelsTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    context = new mlir::MLIRContext();
    mlir::DialectRegistry registry;
    registerNvptxCodegenDialects(registry);
    context->appendDialectRegistry(registry);
    module = new mlir::OwningOpRef<mlir::ModuleOp>(
        mlir::ModuleOp::create(mlir::UnknownLoc::get(context)));
    kernels = new std::vector<GpuKernel>();
    buildModel(**module, kMain, *kernels);
    buildModel(**module, kDraft, *kernels);
    for (int64_t headDim : {80, 96, 128})
      buildHeadDim(**module, headDim, *kernels);
  }
  static void TearDownTestSuite() {
    delete kernels;
    delete module;
    delete context;
  }

  /// The PTX of the module for `chip`, compiled once per chip.
  static const std::string &ptxFor(const std::string &chip) {
    static std::map<std::string, std::string> cache;
    auto it = cache.find(chip);
    if (it != cache.end())
      return it->second;
    NvptxOptions options;
    options.chip = chip;
    std::string error;
    mlir::FailureOr<std::string> ptx = compileToPtx(**module, options, error);
    EXPECT_TRUE(mlir::succeeded(ptx)) << error;
    // OPTMLIR_GPU_PTX_DIR=dir keeps the PTX (dir/kernels_CHIP.ptx), e.g. to
    // carry it to the GPU machine.
    if (const char *dir = std::getenv("OPTMLIR_GPU_PTX_DIR");
        dir && mlir::succeeded(ptx)) {
      std::ofstream os(std::string(dir) + "/kernels_" + chip + ".ptx");
      os << *ptx;
    }
    return cache[chip] = mlir::succeeded(ptx) ? *ptx : std::string();
  }

  /// The text of one entry function of `ptx`, up to the next entry.
  static std::string entryBody(const std::string &ptx,
                               const std::string &name) {
    size_t start = ptx.find(".entry " + name + "(");
    if (start == std::string::npos)
      return "";
    size_t end = ptx.find(".entry ", start + 1);
    return ptx.substr(start, end == std::string::npos ? end : end - start);
  }

  void checkTarget(const std::string &chip) {
    const std::string &ptx = ptxFor(chip);
    ASSERT_FALSE(ptx.empty());
    EXPECT_NE(ptx.find(".target " + chip), std::string::npos);
    std::set<std::string> seen;
    for (const GpuKernel &kernel : *kernels) {
      if (!seen.insert(kernel.name).second)
        continue;
      std::string body = entryBody(ptx, kernel.name);
      ASSERT_FALSE(body.empty()) << kernel.name << " is not in the PTX";
      // The block size is required, and is what the launch rule says.
      EXPECT_NE(body.find(".reqntid " + std::to_string(kernel.launch.blockX) +
                          ", 1, 1"),
                std::string::npos)
          << kernel.name;
      // One .param per argument: pointers 8 bytes, scalars 4.
      std::string header = body.substr(0, body.find('{'));
      size_t params = 0;
      for (size_t pos = header.find(".param"); pos != std::string::npos;
           pos = header.find(".param", pos + 1))
        ++params;
      EXPECT_EQ(params, kernel.args.size()) << kernel.name;
      // No calls: libdevice or other externals would not link at load.
      EXPECT_EQ(body.find("call"), std::string::npos) << kernel.name;
      // 16-byte loads; the GEMV's weights through the non-coherent path.
      if (kernel.name.rfind("gemv", 0) == 0) {
        EXPECT_TRUE(llvm::Regex("ld\\.global\\.nc\\.v4\\.(b|u)32").match(body))
            << kernel.name << " has no 16-byte non-coherent loads";
      } else if (kernel.name.rfind("embed", 0) == 0 ||
                 kernel.name.rfind("rms_norm", 0) == 0 ||
                 kernel.name.rfind("kv_write", 0) == 0) {
        EXPECT_TRUE(
            llvm::Regex("ld\\.global(\\.nc)?\\.v4\\.(b|u)32").match(body))
            << kernel.name << " has no 16-byte loads";
      }
    }
    std::string error, usage;
    if (findPtxas().empty()) {
      GTEST_SKIP() << "ptxas not found: PTX for " << chip
                   << " was not assembled";
    }
    mlir::FailureOr<std::string> cubin =
        assembleCubin(ptx, chip, error, &usage);
    ASSERT_TRUE(mlir::succeeded(cubin)) << error;
    if (const char *dir = std::getenv("OPTMLIR_GPU_PTX_DIR")) {
      std::ofstream os(std::string(dir) + "/kernels_" + chip + ".cubin",
                       std::ios::binary);
      os << *cubin;
    }
    EXPECT_GT(cubin->size(), 1000u);
    EXPECT_EQ(cubin->substr(0, 4), "\x7f"
                                   "ELF");
    for (const std::string &name : seen)
      EXPECT_NE(usage.find(name + ":"), std::string::npos) << name;
    // No kernel spills or keeps a stack frame.
    EXPECT_EQ(usage.find("spill 0/0"), usage.find("spill"));
    std::cout << "ptxas resources for " << chip << ":\n" << usage;
  }

  static mlir::MLIRContext *context;
  static mlir::OwningOpRef<mlir::ModuleOp> *module;
  static std::vector<GpuKernel> *kernels;
};

mlir::MLIRContext *GpuKernelsTest::context = nullptr;
mlir::OwningOpRef<mlir::ModuleOp> *GpuKernelsTest::module = nullptr;
std::vector<GpuKernel> *GpuKernelsTest::kernels = nullptr;

TEST_F(GpuKernelsTest, ModuleVerifiesAndLaunchRulesAreSane) {
  ASSERT_TRUE(mlir::succeeded(mlir::verify(**module)));
  EXPECT_TRUE(
      (**module)->hasAttr(mlir::gpu::GPUDialect::getContainerModuleAttrName()));
  for (const GpuKernel &kernel : *kernels) {
    const LaunchRule &rule = kernel.launch;
    EXPECT_EQ(rule.blockX % 32, 0) << kernel.name;
    EXPECT_LE(rule.blockX, 1024) << kernel.name;
    EXPECT_EQ(rule.dynamicSharedBytes, 0) << kernel.name;
    EXPECT_GT(rule.gridX(1), 0) << kernel.name;
    // Every model size here is a multiple of 8: 16-byte vectors throughout.
    EXPECT_EQ(kernel.vectorWidth, 8) << kernel.name;
  }
  // The main model's kernels, as the runtime will launch them at T = 5.
  mlir::OwningOpRef<mlir::ModuleOp> scratch =
      mlir::ModuleOp::create(mlir::UnknownLoc::get(context));
  auto gemv = gpukernels::buildGemv(*scratch, {640, 384, 8, 4});
  ASSERT_TRUE(mlir::succeeded(gemv));
  // By default the 4 warps of a block split K over the same 4 rows.
  EXPECT_EQ(gemv->launch.gridX(5), 160);
  EXPECT_EQ(gemv->name, "gemv_n640_k384_t8_w4_s4");
  auto head = gpukernels::buildGemv(*scratch, {8192, 384, 1, 4});
  ASSERT_TRUE(mlir::succeeded(head));
  EXPECT_EQ(head->launch.gridX(1), 8192);
  EXPECT_EQ(gemv->launch.blockX, 128);
  // A swiglu GEMV computes 1024 features from 2048 rows: for 1 token a warp
  // reads a gate and an up row per feature, for 4 tokens two of each.
  gpukernels::GemvParams gateUp{1024, 384, 1, 4};
  gateUp.rmsNormInput = true;
  gateUp.eps = 1e-5;
  gateUp.epilogue = gpukernels::GemvParams::Epilogue::SwiGLU;
  auto gateUp1 = gpukernels::buildGemv(*scratch, gateUp);
  ASSERT_TRUE(mlir::succeeded(gateUp1));
  EXPECT_EQ(gateUp1->name, "gemv_n1024_k384_t1_w4_s4_rmsnorm_eps1em05_swiglu");
  EXPECT_EQ(gateUp1->launch.gridX(1), 1024);
  EXPECT_EQ(gateUp1->args.size(), 5u); // x, norm_weight, weight, y, T
  gateUp.maxTokens = 4;
  auto gateUp4 = gpukernels::buildGemv(*scratch, gateUp);
  ASSERT_TRUE(mlir::succeeded(gateUp4));
  EXPECT_EQ(gateUp4->launch.gridX(4), 512);
  // Rows per warp and loads in flight: 4 rows a warp make a block of 4
  // warps 4 rows, a swiglu's 2 (each a gate and an up row); the name says
  // what is not the default, and out-of-range tilings are refused.
  gpukernels::GemvParams wide{2048, 2048, 1, 4};
  wide.minRowsPerWarp = 4;
  wide.loadsInFlight = 16;
  auto wide1 = gpukernels::buildGemv(*scratch, wide);
  ASSERT_TRUE(mlir::succeeded(wide1));
  EXPECT_EQ(wide1->name, "gemv_n2048_k2048_t1_w4_s4_r4_l16");
  EXPECT_EQ(wide1->launch.gridX(1), 512);
  gateUp.maxTokens = 1;
  gateUp.minRowsPerWarp = 4;
  auto gateUpWide = gpukernels::buildGemv(*scratch, gateUp);
  ASSERT_TRUE(mlir::succeeded(gateUpWide));
  EXPECT_EQ(gateUpWide->launch.gridX(1), 512);
  wide.loadsInFlight = 33;
  EXPECT_TRUE(mlir::failed(gpukernels::buildGemv(*scratch, wide)));
  wide.loadsInFlight = 16;
  wide.minRowsPerWarp = 0;
  EXPECT_TRUE(mlir::failed(gpukernels::buildGemv(*scratch, wide)));
  KvCacheShape cache{2, 64, 16};
  auto attn = gpukernels::buildPagedAttention(*scratch, {6, cache, 0.125, 0});
  ASSERT_TRUE(mlir::succeeded(attn));
  // 6 query heads over 2 kv heads: 2 head groups of 3 along y; along x one
  // block per token, or up to 512 / 2 (token, split) pairs for few tokens.
  EXPECT_EQ(attn->launch.gridX(5), 5 + 256);
  EXPECT_EQ(attn->launch.gridX(2048), 2048 + 256);
  EXPECT_EQ(attn->launch.gridY, 2);
  EXPECT_EQ(attn->args.size(), 12u);
  // 256 counters, then 512 target blocks / 2 groups states per head, each
  // m, l and 64 floats.
  EXPECT_EQ(gpukernels::pagedAttentionWorkspaceBytes({6, cache, 0.125, 0}),
            (256 + 256 * 6 * 66) * 4);
  // Which parameters the planner may give flash_attention.
  EXPECT_TRUE(gpukernels::flashAttentionTiles({6, cache, 0.125, 0}));
  EXPECT_FALSE(
      gpukernels::flashAttentionTiles({6, KvCacheShape{2, 72, 16}, 0.125, 0}));
  EXPECT_FALSE(
      gpukernels::flashAttentionTiles({6, KvCacheShape{2, 512, 16}, 0.125, 0}));
  EXPECT_FALSE(gpukernels::flashAttentionTiles(
      {6, KvCacheShape{2, 64, 16, optmlir::hostkernels::KvElementType::F8E4M3}, 0.125, 0}));
  // Long query runs are left to flash attention from 64 queries on.
  EXPECT_TRUE(mlir::failed(
      gpukernels::buildPagedAttention(*scratch, {6, cache, 0.125, 0}, 16)));
  // A head dim wider than a warp of 16-byte lanes is refused.
  EXPECT_TRUE(mlir::failed(gpukernels::buildPagedAttention(
      *scratch, {4, KvCacheShape{4, 512, 16}, 0.125, 0})));
  auto norm = gpukernels::buildRmsNorm(*scratch, 384, 1e-5);
  ASSERT_TRUE(mlir::succeeded(norm));
  EXPECT_EQ(norm->launch.gridX(5), 5);
  EXPECT_EQ(norm->launch.blockX, 64);
}

TEST_F(GpuKernelsTest, BuildingTwiceReusesTheKernel) {
  mlir::OwningOpRef<mlir::ModuleOp> scratch =
      mlir::ModuleOp::create(mlir::UnknownLoc::get(context));
  auto first = gpukernels::buildSwiGLU(*scratch, 1024);
  auto second = gpukernels::buildSwiGLU(*scratch, 1024);
  ASSERT_TRUE(mlir::succeeded(first) && mlir::succeeded(second));
  EXPECT_EQ(first->name, second->name);
  EXPECT_EQ(first->launch.blockX, second->launch.blockX);
  auto gpuModule =
      (*scratch).lookupSymbol<mlir::gpu::GPUModuleOp>(kGpuModuleName);
  ASSERT_TRUE(gpuModule);
  size_t funcs = 0;
  for (auto f : gpuModule.getOps<mlir::gpu::GPUFuncOp>()) {
    (void)f;
    ++funcs;
  }
  EXPECT_EQ(funcs, 1u);
}

TEST_F(GpuKernelsTest, RejectsBadParameters) {
  mlir::OwningOpRef<mlir::ModuleOp> scratch =
      mlir::ModuleOp::create(mlir::UnknownLoc::get(context));
  mlir::ScopedDiagnosticHandler quiet(
      context, [](mlir::Diagnostic &) { return mlir::success(); });
  EXPECT_TRUE(mlir::failed(gpukernels::buildRmsNorm(*scratch, 0, 1e-5)));
  EXPECT_TRUE(mlir::failed(gpukernels::buildGemv(*scratch, {64, 64, 9, 4})));
  EXPECT_TRUE(mlir::failed(gpukernels::buildGemv(*scratch, {64, 64, 8, 4, 3})));
  gpukernels::GemvParams noEpsilon{64, 64, 1, 4};
  noEpsilon.rmsNormInput = true;
  EXPECT_TRUE(mlir::failed(gpukernels::buildGemv(*scratch, noEpsilon)));
  EXPECT_TRUE(mlir::failed(gpukernels::buildPagedAttention(
      *scratch, {3, KvCacheShape{2, 64, 16}, 0.1, 0})));
  EXPECT_TRUE(
      mlir::failed(gpukernels::buildRope(*scratch, {4, 2, 63, 10000.0, {}})));
}

// A Llama-2-7B-sized layer (hidden 4096, 32 heads of 128, 8 kv heads for
// GQA, intermediate 11008): larger blocks, loops over several chunks per
// thread, and the GEMV's unrolled main loop, for sm_90a only.
TEST_F(GpuKernelsTest, LargeShapesAssemble) {
  mlir::OwningOpRef<mlir::ModuleOp> large =
      mlir::ModuleOp::create(mlir::UnknownLoc::get(context));
  std::vector<GpuKernel> built;
  auto add = [&](mlir::FailureOr<GpuKernel> kernel) {
    ASSERT_TRUE(mlir::succeeded(kernel));
    built.push_back(*kernel);
  };
  add(gpukernels::buildRmsNorm(*large, 4096, 1e-5));
  add(gpukernels::buildAddRmsNorm(*large, 4096, 1e-5));
  add(gpukernels::buildSwiGLU(*large, 11008));
  add(gpukernels::buildRope(*large, {32, 8, 128, 10000.0, {}}));
  add(gpukernels::buildKvWrite(*large, {8, 128, 16}));
  add(gpukernels::buildPagedAttention(
      *large, {32, KvCacheShape{8, 128, 16}, 1.0 / std::sqrt(128.0), 0}));
  for (int64_t maxTokens : {1, 8})
    for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{
             {4096, 4096}, {6144, 4096}, {22016, 4096}, {4096, 11008}})
      for (int64_t splitK : {1, 4})
        add(gpukernels::buildGemv(*large, {n, k, maxTokens, 4, splitK}));
  EXPECT_EQ(built[0].launch.blockX, 512);
  NvptxOptions options;
  std::string error;
  mlir::FailureOr<std::string> ptx = compileToPtx(*large, options, error);
  ASSERT_TRUE(mlir::succeeded(ptx)) << error;
  if (const char *dir = std::getenv("OPTMLIR_GPU_PTX_DIR")) {
    std::ofstream os(std::string(dir) + "/kernels_large_sm_90a.ptx");
    os << *ptx;
  }
  for (const GpuKernel &kernel : built)
    EXPECT_FALSE(entryBody(*ptx, kernel.name).empty()) << kernel.name;
  if (findPtxas().empty())
    GTEST_SKIP() << "ptxas not found: large PTX was not assembled";
  std::string usage;
  mlir::FailureOr<std::string> cubin =
      assembleCubin(*ptx, options.chip, error, &usage);
  ASSERT_TRUE(mlir::succeeded(cubin)) << error;
  EXPECT_EQ(usage.find("spill 0/0"), usage.find("spill"));
  std::cout << "ptxas resources (7B shapes, sm_90a):\n" << usage;
}

TEST_F(GpuKernelsTest, Sm90aPtxAssembles) { checkTarget("sm_90a"); }

TEST_F(GpuKernelsTest, Sm80PtxAssembles) { checkTarget("sm_80"); }

} // namespace
