//===- AttentionPtxgen.cpp - PTX of the attention kernels, for the GPU ----===//
//
// attention-ptxgen OUTDIR [--chip sm_90a] [--no-cubin]
//
// The compiler half of the attention harness (test/gpu/README.md): builds
// flash_attention and the split decode paged_attention for the
// configurations the checker runs, lowers
// them to PTX for one chip, assembles a cubin with ptxas when it is there
// (so that the GPU machine does not JIT tens of large kernels), and writes
//   OUTDIR/flash_CHIP.ptx, OUTDIR/flash_CHIP.cubin, OUTDIR/ptxas_CHIP.txt
//   OUTDIR/manifest.txt: one line per kernel, `key=value` fields (name,
//     shape, launch rule, tiling variant, role) that the MLIR-free checker
//     (attention-check) reads.
//
//===----------------------------------------------------------------------===//

#include "optmlir/Conversion/GpuKernels.h"
#include "optmlir/Target/NvptxCodegen.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

using namespace optmlir;
using namespace optmlir::gpukernels;

namespace {

struct Variant {
  const char *name;
  FlashAttentionTiling tiling;
};

/// The tilings measured against each other on the benchmark shapes; the
/// first is buildFlashAttention's default. The first kFullyChecked are also
/// checked on every head dim, GQA ratio and window.
std::vector<Variant> variants() {
  std::vector<Variant> list;
  list.push_back({"default", FlashAttentionTiling()});
  // 64-row tiles, 16 rows per warp, Q in registers.
  FlashAttentionTiling t;
  t.warpRows = 16;
  t.qInRegisters = true;
  list.push_back({"r64_n64_qr", t});
  // wgmma (sm_90a): two warpgroups of 64 rows, Q from shared memory, 32-key
  // tiles, double-buffered; two blocks per SM need <= 128 registers.
  t = FlashAttentionTiling();
  t.warps = 8;
  t.warpRows = 16;
  t.keyTile = 32;
  t.wgmma = true;
  t.doubleBuffer = true;
  t.minBlocksPerSM = 2;
  list.push_back({"wgmma_r128_n32_qs_db_o2", t});
  // Checked on two cases, timed with 8 kv heads.
  t.warps = 4;
  t.minBlocksPerSM = 0;
  list.push_back({"wgmma_r64_n32_qs_db", t});
  t = FlashAttentionTiling();
  t.doubleBuffer = true;
  list.push_back({"r128_n64_qs_db", t});
  return list;
}

constexpr size_t kFullyChecked = 3;

struct Config {
  int64_t heads, kvHeads, headDim, blockSize, window, minQueryRows;
  const char *role; // "check": correctness cases; "bench": timed too
  Variant variant;
};

std::vector<Config> configs() {
  std::vector<Config> list;
  std::vector<Variant> all = variants();
  for (size_t i = 0; i < all.size(); ++i) {
    const Variant &v = all[i];
    if (i < kFullyChecked) {
      for (int64_t d : {64, 80, 96, 128})
        for (auto [h, kv] :
             std::vector<std::pair<int64_t, int64_t>>{{4, 4}, {8, 2}, {8, 1}})
          for (int64_t window : {0, 100})
            list.push_back({h, kv, d, 16, window, 64, "check", v});
      // Other block sizes, a smaller prefill threshold, a one-key window.
      list.push_back({8, 2, 128, 32, 0, 64, "check", v});
      list.push_back({8, 2, 96, 8, 37, 64, "check", v});
      list.push_back({4, 4, 64, 16, 0, 16, "check", v});
      list.push_back({8, 1, 128, 16, 1, 64, "check", v});
      for (int64_t kv : {8, 32})
        list.push_back({32, kv, 128, 16, 0, 64, "bench", v});
    } else {
      list.push_back({8, 2, 80, 16, 100, 64, "check", v});
      list.push_back({32, 8, 128, 16, 0, 64, "bench", v});
    }
  }
  return list;
}

bool writeFile(const std::string &path, const std::string &data) {
  std::ofstream os(path, std::ios::binary);
  os << data;
  return bool(os);
}

} // namespace

int main(int argc, char **argv) {
  std::string outDir, chip = "sm_90a";
  bool cubin = true, splitOnly = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--chip" && i + 1 < argc)
      chip = argv[++i];
    else if (arg == "--no-cubin")
      cubin = false;
    else if (arg == "--split-only") // the decode kernel alone: a small payload
      splitOnly = true;
    else if (outDir.empty() && arg[0] != '-')
      outDir = arg;
    else {
      std::cerr << "usage: attention-ptxgen OUTDIR [--chip sm_90a] "
                   "[--no-cubin] [--split-only]\n";
      return 2;
    }
  }
  if (outDir.empty()) {
    std::cerr << "attention-ptxgen: no output directory given\n";
    return 2;
  }

  mlir::MLIRContext context;
  mlir::DialectRegistry registry;
  registerNvptxCodegenDialects(registry);
  context.appendDialectRegistry(registry);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::ModuleOp::create(mlir::UnknownLoc::get(&context));
  std::ostringstream manifest;
  manifest << "# attention-ptxgen manifest: one kernel per line\n";
  // The split decode kernel as GPU plans use it: it leaves sequences of 64+
  // queries to flash_attention; its workspace starts zeroed.
  for (int64_t d : {64, 80, 96, 128})
    for (auto [h, kv] : std::vector<std::pair<int64_t, int64_t>>{
             {4, 4}, {8, 2}, {8, 1}, {32, 8}, {32, 32}})
      for (int64_t window : {0, 100}) {
        bool timed = d == 128 && h == 32 && window == 0;
        if (h == 32 && !timed)
          continue;
        hostkernels::PagedAttentionParams params;
        params.numHeads = h;
        params.cache = {kv, d, 16};
        params.scale = 1.0 / std::sqrt(double(d));
        params.slidingWindow = window;
        const int64_t longQueryRows = 64;
        mlir::FailureOr<GpuKernel> kernel =
            buildPagedAttention(*module, params, longQueryRows);
        if (mlir::failed(kernel)) {
          std::cerr << "attention-ptxgen: building a kernel failed\n";
          return 1;
        }
        const LaunchRule &rule = kernel->launch;
        char scale[64];
        std::snprintf(scale, sizeof(scale), "%.17g", params.scale);
        manifest << "kernel name=" << kernel->name << " kind=paged hq=" << h
                 << " hkv=" << kv << " d=" << d << " b=16 scale=" << scale
                 << " window=" << window << " minq=" << longQueryRows
                 << " rows=" << rule.rowsPerBlock
                 << " gridxperrow=" << rule.gridXPerRow
                 << " gridxfixed=" << rule.gridXFixed
                 << " gridy=" << rule.gridY << " block=" << rule.blockX
                 << " smem=" << rule.dynamicSharedBytes
                 << " workspace=" << pagedAttentionWorkspaceBytes(params)
                 << " variant=split role=" << (timed ? "bench" : "check")
                 << "\n";
      }
  for (const Config &config : splitOnly ? std::vector<Config>() : configs()) {
    hostkernels::PagedAttentionParams params;
    params.numHeads = config.heads;
    params.cache = {config.kvHeads, config.headDim, config.blockSize};
    params.scale = 1.0 / std::sqrt(double(config.headDim));
    params.slidingWindow = config.window;
    mlir::FailureOr<GpuKernel> kernel = buildFlashAttention(
        *module, params, config.minQueryRows, config.variant.tiling);
    if (mlir::failed(kernel)) {
      std::cerr << "attention-ptxgen: building a kernel failed\n";
      return 1;
    }
    const LaunchRule &rule = kernel->launch;
    char scale[64];
    std::snprintf(scale, sizeof(scale), "%.17g", params.scale);
    manifest << "kernel name=" << kernel->name << " hq=" << config.heads
             << " hkv=" << config.kvHeads << " d=" << config.headDim
             << " b=" << config.blockSize << " scale=" << scale
             << " window=" << config.window << " minq=" << config.minQueryRows
             << " rows=" << rule.rowsPerBlock
             << " gridxperrow=" << rule.gridXPerRow << " gridy=" << rule.gridY
             << " block=" << rule.blockX << " smem=" << rule.dynamicSharedBytes
             << " variant=" << config.variant.name << " role=" << config.role
             << "\n";
  }

  NvptxOptions options;
  options.chip = chip;
  std::string error;
  mlir::FailureOr<std::string> ptx = compileToPtx(*module, options, error);
  if (mlir::failed(ptx)) {
    std::cerr << "attention-ptxgen: " << error << "\n";
    return 1;
  }
  std::string base = outDir + "/flash_" + chip;
  if (!writeFile(base + ".ptx", *ptx) ||
      !writeFile(outDir + "/manifest.txt", manifest.str())) {
    std::cerr << "attention-ptxgen: cannot write into " << outDir << "\n";
    return 1;
  }
  if (cubin) {
    if (findPtxas().empty()) {
      std::cerr << "attention-ptxgen: ptxas not found, PTX only\n";
    } else {
      std::string usage;
      mlir::FailureOr<std::string> binary =
          assembleCubin(*ptx, chip, error, &usage);
      if (mlir::failed(binary)) {
        std::cerr << "attention-ptxgen: " << error << "\n";
        return 1;
      }
      writeFile(base + ".cubin", *binary);
      writeFile(outDir + "/ptxas_" + chip + ".txt", usage);
      std::cout << usage;
    }
  }
  std::cout << "attention-ptxgen: wrote " << base << ".ptx and " << outDir
            << "/manifest.txt\n";
  return 0;
}
