//===- FlashAttentionTest.cpp - flash_attention builds and assembles ------===//
//
// Builds flash_attention for head dims 64, 80, 96 and 128, GQA ratios 1, 4
// and 8, with and without a sliding window, and the measured tilings;
// lowers the module to PTX for sm_90a and sm_80 and assembles it with
// ptxas (skipped, with a message, when the toolkit is absent). Numerics and
// speed are checked on a GPU machine (test/gpu/README.md); here: the PTX
// has the tensor-core instructions and no calls, launch rules are what the
// runtime must use, ptxas reports no spills for the default tiling, and bad
// parameters are refused with one clear error.
//
//===----------------------------------------------------------------------===//

#include "optmlir/Conversion/GpuKernels.h"
#include "optmlir/Target/NvptxCodegen.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"

#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace optmlir;
using namespace optmlir::gpukernels;
using hostkernels::KvCacheShape;
using hostkernels::PagedAttentionParams;

namespace {

PagedAttentionParams attention(int64_t heads, int64_t kvHeads, int64_t headDim,
                               int64_t window, int64_t blockSize = 16) {
  PagedAttentionParams p;
  p.numHeads = heads;
  p.cache = KvCacheShape{kvHeads, headDim, blockSize};
  p.scale = 1.0 / std::sqrt(double(headDim));
  p.slidingWindow = window;
  return p;
}

/// Occurrences of `needle` in `text`.
size_t count(const std::string &text, const std::string &needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos;
       pos = text.find(needle, pos + 1))
    ++n;
  return n;
}

class FlashAttentionTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    context = new mlir::MLIRContext();
    mlir::DialectRegistry registry;
    registerNvptxCodegenDialects(registry);
    context->appendDialectRegistry(registry);
    module = new mlir::OwningOpRef<mlir::ModuleOp>(
        mlir::ModuleOp::create(mlir::UnknownLoc::get(context)));
    kernels = new std::vector<GpuKernel>();
    for (int64_t headDim : {64, 80, 96, 128})
      for (int64_t group : {1, 4, 8})
        for (int64_t window : {0, 100}) {
          auto kernel = buildFlashAttention(
              **module, attention(8, 8 / group, headDim, window));
          ASSERT_TRUE(mlir::succeeded(kernel));
          kernels->push_back(*kernel);
        }
    // The other tilings, on a Llama-sized head.
    FlashAttentionTiling wide;
    wide.warpRows = 32;
    wide.qInRegisters = false;
    FlashAttentionTiling short32;
    short32.keyTile = 32;
    for (const FlashAttentionTiling &t : {wide, short32}) {
      auto kernel = buildFlashAttention(**module, attention(32, 8, 128, 0),
                                        /*minQueryRows=*/64, t);
      ASSERT_TRUE(mlir::succeeded(kernel));
      kernels->push_back(*kernel);
    }
  }
  static void TearDownTestSuite() {
    delete kernels;
    delete module;
    delete context;
  }

  static std::string entryBody(const std::string &ptx,
                               const std::string &name) {
    size_t start = ptx.find(".entry " + name + "(");
    if (start == std::string::npos)
      return "";
    size_t end = ptx.find(".entry ", start + 1);
    return ptx.substr(start, end == std::string::npos ? end : end - start);
  }

  void checkTarget(const std::string &chip) {
    NvptxOptions options;
    options.chip = chip;
    std::string error;
    mlir::FailureOr<std::string> ptx = compileToPtx(**module, options, error);
    ASSERT_TRUE(mlir::succeeded(ptx)) << error;
    EXPECT_NE(ptx->find(".target " + chip), std::string::npos);
    // One extern shared array, sized at launch.
    EXPECT_EQ(count(*ptx, ".extern .shared"), 1u);
    for (const GpuKernel &kernel : *kernels) {
      std::string body = entryBody(*ptx, kernel.name);
      ASSERT_FALSE(body.empty()) << kernel.name << " is not in the PTX";
      EXPECT_NE(body.find(".reqntid 128, 1, 1"), std::string::npos)
          << kernel.name;
      EXPECT_NE(body.find("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16."
                          "f32"),
                std::string::npos)
          << kernel.name;
      EXPECT_NE(body.find("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16"),
                std::string::npos)
          << kernel.name;
      EXPECT_NE(body.find("cp.async.cg.shared.global"), std::string::npos)
          << kernel.name;
      EXPECT_NE(body.find("ex2.approx"), std::string::npos) << kernel.name;
      EXPECT_EQ(body.find("call"), std::string::npos) << kernel.name;
      std::string header = body.substr(0, body.find('{'));
      EXPECT_EQ(count(header, ".param"), kernel.args.size()) << kernel.name;
    }
    if (findPtxas().empty())
      GTEST_SKIP() << "ptxas not found: PTX for " << chip
                   << " was not assembled";
    std::string usage;
    mlir::FailureOr<std::string> cubin =
        assembleCubin(*ptx, chip, error, &usage);
    ASSERT_TRUE(mlir::succeeded(cubin)) << error;
    EXPECT_EQ(cubin->substr(0, 4), "\x7f"
                                   "ELF");
    std::istringstream lines(usage);
    std::map<std::string, std::string> byName;
    for (std::string line; std::getline(lines, line);)
      byName[line.substr(0, line.find(':'))] = line;
    for (const GpuKernel &kernel : *kernels) {
      ASSERT_TRUE(byName.count(kernel.name)) << kernel.name;
      // The default tiling must fit in registers: a spill inside the key
      // loop costs more than the tiling saves.
      bool defaultTiling = kernel.name.find("_r") == std::string::npos;
      if (defaultTiling)
        EXPECT_NE(byName[kernel.name].find("spill 0/0"), std::string::npos)
            << byName[kernel.name];
    }
    std::cout << "ptxas resources for " << chip << ":\n" << usage;
  }

  static mlir::MLIRContext *context;
  static mlir::OwningOpRef<mlir::ModuleOp> *module;
  static std::vector<GpuKernel> *kernels;
};

mlir::MLIRContext *FlashAttentionTest::context = nullptr;
mlir::OwningOpRef<mlir::ModuleOp> *FlashAttentionTest::module = nullptr;
std::vector<GpuKernel> *FlashAttentionTest::kernels = nullptr;

TEST_F(FlashAttentionTest, ModuleVerifiesAndLaunchRulesAreSane) {
  ASSERT_TRUE(mlir::succeeded(mlir::verify(**module)));
  for (const GpuKernel &kernel : *kernels) {
    const LaunchRule &rule = kernel.launch;
    EXPECT_EQ(rule.blockX, 128) << kernel.name;
    EXPECT_GT(rule.dynamicSharedBytes, 0) << kernel.name;
    // Above this the launch could not opt in on an H100 (227 KiB).
    EXPECT_LE(rule.dynamicSharedBytes, 227 * 1024) << kernel.name;
    EXPECT_EQ(kernel.args.size(), 11u) << kernel.name;
  }
  mlir::OwningOpRef<mlir::ModuleOp> scratch =
      mlir::ModuleOp::create(mlir::UnknownLoc::get(context));
  auto flash = buildFlashAttention(*scratch, attention(32, 8, 128, 0));
  ASSERT_TRUE(mlir::succeeded(flash));
  EXPECT_EQ(flash->name,
            "flash_attention_h32_kv8_d128_b16_s0p0883883476_w0_m64");
  EXPECT_EQ(flash->launch.rowsPerBlock, 64);
  EXPECT_EQ(flash->launch.gridXPerRow, 2);
  EXPECT_EQ(flash->launch.gridY, 32);
  // 64-key K and V tiles of 128 + 8 bf16 per row; Q shares V's space.
  EXPECT_EQ(flash->launch.dynamicSharedBytes, 2 * 64 * 272);
  // Tiles <= ceil(T / 64) + T / 64: at T = 100, one sequence of 64 and one
  // of 36 rows... at most 2 + 1 tiles; the grid has 4 columns.
  EXPECT_EQ(flash->launch.gridX(100), 4);
  // A smaller threshold needs a larger bound on the tile count.
  auto small = buildFlashAttention(*scratch, attention(32, 8, 128, 0), 16);
  ASSERT_TRUE(mlir::succeeded(small));
  EXPECT_EQ(small->launch.gridXPerRow, 5);
  EXPECT_NE(small->name, flash->name);
  // Building twice returns the same kernel and adds nothing.
  auto again = buildFlashAttention(*scratch, attention(32, 8, 128, 0));
  ASSERT_TRUE(mlir::succeeded(again));
  EXPECT_EQ(again->name, flash->name);
  auto gpuModule =
      (*scratch).lookupSymbol<mlir::gpu::GPUModuleOp>(kGpuModuleName);
  ASSERT_TRUE(gpuModule);
  size_t funcs = 0;
  for (auto f : gpuModule.getOps<mlir::gpu::GPUFuncOp>()) {
    (void)f;
    ++funcs;
  }
  EXPECT_EQ(funcs, 2u);
  // The 128-row tiling: three tiles per 128 rows of T at most.
  FlashAttentionTiling wide;
  wide.warpRows = 32;
  wide.qInRegisters = false;
  auto big = buildFlashAttention(*scratch, attention(32, 8, 128, 0), 64, wide);
  ASSERT_TRUE(mlir::succeeded(big));
  EXPECT_EQ(big->launch.rowsPerBlock, 128);
  EXPECT_EQ(big->launch.gridXPerRow, 3);
  EXPECT_EQ(big->launch.dynamicSharedBytes, 2 * 64 * 272 + 128 * 272);
}

TEST_F(FlashAttentionTest, RejectsBadParameters) {
  mlir::OwningOpRef<mlir::ModuleOp> scratch =
      mlir::ModuleOp::create(mlir::UnknownLoc::get(context));
  std::vector<std::string> messages;
  mlir::ScopedDiagnosticHandler capture(context, [&](mlir::Diagnostic &diag) {
    messages.push_back(diag.str());
    return mlir::success();
  });
  auto refused = [&](mlir::FailureOr<GpuKernel> kernel,
                     const std::string &expected) {
    EXPECT_TRUE(mlir::failed(kernel)) << expected;
    ASSERT_FALSE(messages.empty()) << expected;
    EXPECT_NE(messages.back().find(expected), std::string::npos)
        << messages.back();
    EXPECT_EQ(messages.back().find('\n'), std::string::npos)
        << messages.back();
  };
  refused(buildFlashAttention(*scratch, attention(8, 2, 72, 0)),
          "multiple of 16 and at most 256, got 72");
  refused(buildFlashAttention(*scratch, attention(8, 2, 512, 0)),
          "multiple of 16 and at most 256, got 512");
  refused(buildFlashAttention(*scratch, attention(6, 4, 64, 0)),
          "head count 6 is not a multiple of the kv head count 4");
  refused(buildFlashAttention(*scratch, attention(8, 2, 64, -1)),
          "negative sliding window -1");
  refused(buildFlashAttention(*scratch, attention(8, 2, 64, 0, 0)),
          "block size must be positive, got 0");
  refused(buildFlashAttention(*scratch, attention(8, 2, 64, 0), 0),
          "min query rows must be positive, got 0");
  PagedAttentionParams negativeScale = attention(8, 2, 64, 0);
  negativeScale.scale = -0.125;
  refused(buildFlashAttention(*scratch, negativeScale),
          "positive finite scale, got -0.125");
  FlashAttentionTiling badRows;
  badRows.warpRows = 24;
  refused(buildFlashAttention(*scratch, attention(8, 2, 64, 0), 64, badRows),
          "warp rows must be 16 or 32, got 24");
  FlashAttentionTiling badKeys;
  badKeys.keyTile = 48;
  refused(buildFlashAttention(*scratch, attention(8, 2, 64, 0), 64, badKeys),
          "key tile must be 32 or 64, got 48");
  // Nothing was built.
  auto gpuModule =
      (*scratch).lookupSymbol<mlir::gpu::GPUModuleOp>(kGpuModuleName);
  EXPECT_TRUE(!gpuModule || gpuModule.getOps<mlir::gpu::GPUFuncOp>().empty());
}

TEST_F(FlashAttentionTest, Sm90aPtxAssembles) { checkTarget("sm_90a"); }

TEST_F(FlashAttentionTest, Sm80PtxAssembles) { checkTarget("sm_80"); }

} // namespace
