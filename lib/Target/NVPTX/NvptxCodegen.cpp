//===- NvptxCodegen.cpp - GPU kernels to PTX and cubin --------------------===//
//
// See NvptxCodegen.h. PTX comes from upstream's gpu-lower-to-nvvm pipeline
// with `cubin-format=isa` (the gpu.binary then holds PTX text); cubin from
// running ptxas ourselves, which keeps its -v report (registers, shared
// memory, spills) that the upstream `bin` format discards.
//
//===----------------------------------------------------------------------===//

#include "optmlir/Target/NvptxCodegen.h"

#include "optmlir/Target/ExternalTool.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Pipelines/Passes.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/Regex.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdlib>

using namespace mlir;

namespace optmlir {

void registerNvptxCodegenDialects(DialectRegistry &registry) {
  registry.insert<gpu::GPUDialect>();
  // The conversion interfaces the GPU-to-NVVM pass relies on, then what
  // registerAllExtensions leaves out (TOOLCHAIN.md): the NVVM target and
  // the translations to LLVM IR.
  registerAllExtensions(registry);
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  registerAllToLLVMIRTranslations(registry);
}

FailureOr<std::string> compileToPtx(ModuleOp kernels,
                                    const NvptxOptions &options,
                                    std::string &error) {
  MLIRContext *context = kernels.getContext();
  {
    DialectRegistry registry;
    registerNvptxCodegenDialects(registry);
    context->appendDialectRegistry(registry);
  }
  unsigned gpuModules = 0;
  for (auto gpuModule : kernels.getOps<gpu::GPUModuleOp>()) {
    (void)gpuModule;
    ++gpuModules;
  }
  if (gpuModules != 1) {
    error = "nvptx codegen: expected exactly one gpu.module, found " +
            std::to_string(gpuModules);
    return failure();
  }

  std::string diagnostics;
  ScopedDiagnosticHandler handler(context, [&](Diagnostic &diag) {
    llvm::raw_string_ostream os(diagnostics);
    if (!diagnostics.empty())
      os << "\n";
    os << diag.getLocation() << ": " << diag;
    return success();
  });

  OwningOpRef<ModuleOp> clone(cast<ModuleOp>(kernels->clone()));
  if (failed(verify(*clone))) {
    error = "nvptx codegen: the kernel module does not verify: " + diagnostics;
    return failure();
  }

  // griddepcontrol (programmatic dependent launch) exists from sm_90, and
  // LLVM selects prefetch only there: before, both go (a prefetch is a
  // hint, and without early launches there is nothing to overlap).
  int chipNumber = 0;
  if (StringRef(options.chip).starts_with("sm_") &&
      !StringRef(options.chip).drop_front(3).take_while(llvm::isDigit)
           .getAsInteger(10, chipNumber) &&
      chipNumber < 90)
    clone->walk([](Operation *op) {
      if (isa<NVVM::GriddepcontrolOp, NVVM::PrefetchOp>(op))
        op->erase();
    });

  gpu::GPUToNVVMPipelineOptions pipeline;
  pipeline.cubinChip = options.chip;
  pipeline.cubinFeatures = options.features;
  pipeline.cubinFormat = "isa";
  pipeline.optLevel = options.optLevel;
  PassManager pm(context);
  gpu::buildLowerToNVVMPassPipeline(pm, pipeline);
  if (failed(pm.run(*clone))) {
    error = "nvptx codegen: lowering to PTX for " + options.chip +
            " failed: " + diagnostics;
    return failure();
  }

  std::string ptx;
  clone->walk([&](gpu::BinaryOp binary) {
    for (Attribute attr : binary.getObjects()) {
      auto object = dyn_cast<gpu::ObjectAttr>(attr);
      if (object && object.getFormat() == gpu::CompilationTarget::Assembly)
        ptx = object.getObject().getValue().str();
    }
  });
  if (ptx.empty()) {
    error = "nvptx codegen: the pipeline produced no PTX object";
    return failure();
  }
  return ptx;
}

std::string findPtxas() {
  for (const char *variable : {"CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"}) {
    const char *root = std::getenv(variable);
    if (!root || !*root)
      continue;
    llvm::SmallString<128> path(root);
    llvm::sys::path::append(path, "bin", "ptxas");
    if (llvm::sys::fs::can_execute(path))
      return std::string(path);
  }
  if (llvm::sys::fs::can_execute("/usr/local/cuda/bin/ptxas"))
    return "/usr/local/cuda/bin/ptxas";
  if (llvm::ErrorOr<std::string> path = llvm::sys::findProgramByName("ptxas"))
    return *path;
  return "";
}

namespace {

/// Condenses ptxas -v output to one line per entry function.
std::string summarizeResources(llvm::StringRef log) {
  std::string summary;
  llvm::raw_string_ostream os(summary);
  llvm::Regex entry("Compiling entry function '([^']+)'");
  llvm::Regex frame("([0-9]+) bytes stack frame, ([0-9]+) bytes spill stores, "
                    "([0-9]+) bytes spill loads");
  llvm::Regex regs("Used ([0-9]+) registers");
  llvm::Regex smem("([0-9]+) bytes smem");
  std::string name, stack = "0", spillStores = "0", spillLoads = "0";
  llvm::SmallVector<llvm::StringRef> lines;
  log.split(lines, '\n');
  for (llvm::StringRef line : lines) {
    llvm::SmallVector<llvm::StringRef> m;
    if (entry.match(line, &m)) {
      name = m[1].str();
      stack = spillStores = spillLoads = "0";
    } else if (frame.match(line, &m)) {
      stack = m[1].str();
      spillStores = m[2].str();
      spillLoads = m[3].str();
    } else if (!name.empty() && regs.match(line, &m)) {
      std::string registers = m[1].str();
      std::string shared = "0";
      if (smem.match(line, &m))
        shared = m[1].str();
      os << name << ": " << registers << " registers, " << shared
         << " bytes smem, " << stack << " bytes stack, spill " << spillStores
         << "/" << spillLoads << "\n";
      name.clear();
    }
  }
  return summary;
}

} // namespace

FailureOr<std::string> assembleCubin(llvm::StringRef ptx, llvm::StringRef chip,
                                     std::string &error,
                                     std::string *resourceUsage) {
  std::string ptxas = findPtxas();
  if (ptxas.empty()) {
    error = "nvptx codegen: ptxas not found (looked in $CUDA_HOME/bin, "
            "$CUDA_PATH/bin, $CUDA_ROOT/bin, /usr/local/cuda/bin and PATH); "
            "install the CUDA toolkit or keep the PTX only";
    return failure();
  }
  std::string arch = ("-arch=" + chip).str();
  std::string toolError;
  FailureOr<ToolRun> run = runToolInTempDir(
      "optmlir-ptxas", ptxas, "kernels.ptx", ptx, "kernels.cubin",
      [&](llvm::StringRef input, llvm::StringRef output) {
        return llvm::SmallVector<std::string>{arch, "-O3", "-v", "-o",
                                              output.str(), input.str()};
      },
      /*secondsToWait=*/300, toolError);
  if (failed(run)) {
    error = "nvptx codegen: " + toolError;
    return failure();
  }
  if (!run->succeeded) {
    error = "nvptx codegen: " + ptxas + " " + arch + " " + run->failure;
    // The errors come first; the info lines of -v would drown them.
    std::string errors;
    llvm::SmallVector<llvm::StringRef> lines;
    llvm::StringRef(run->log).split(lines, '\n');
    for (llvm::StringRef line : lines)
      if (!line.contains("ptxas info") && !line.trim().empty() &&
          errors.size() < 4000)
        errors += line.str() + "\n";
    if (!errors.empty())
      error += ":\n" + errors;
    return failure();
  }
  if (resourceUsage)
    *resourceUsage = summarizeResources(run->log);
  return std::move(run->output);
}

} // namespace optmlir
