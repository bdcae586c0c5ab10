//===- NvptxCodegen.h - GPU kernels to PTX and cubin ------------*- C++ -*-===//
//
// Turns a module holding one gpu.module of kernels (as built by
// optmlir/Conversion/GpuKernels.h) into PTX with the upstream pipeline
// (gpu::buildLowerToNVVMPassPipeline: gpu -> nvvm -> LLVM IR -> LLVM's
// NVPTX backend, serialized in `isa` format, so no CUDA toolkit is needed),
// and PTX into cubin with the toolkit's ptxas program when it is present.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_TARGET_NVPTXCODEGEN_H
#define OPTMLIR_TARGET_NVPTXCODEGEN_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"

#include <string>

namespace mlir {
class DialectRegistry;
} // namespace mlir

namespace optmlir {

struct NvptxOptions {
  /// "sm_90a" (H100/H200: wgmma, setmaxnreg) or "sm_80" (A100), or any
  /// chip LLVM's NVPTX backend knows.
  std::string chip = "sm_90a";
  /// PTX ISA features; sm_90a needs +ptx80 or newer (the default +ptx60
  /// aborts). ptxas 13.0 accepts up to PTX 9.0.
  std::string features = "+ptx80";
  /// LLVM optimization level of the NVPTX compilation, 0 to 3.
  int optLevel = 3;
};

/// Lowers `kernels` (not modified: a clone is lowered) to PTX text for
/// `options.chip`. The module must hold exactly one gpu.module. On failure
/// returns failure() and sets `error` (with the MLIR diagnostics).
mlir::FailureOr<std::string> compileToPtx(mlir::ModuleOp kernels,
                                          const NvptxOptions &options,
                                          std::string &error);

/// The ptxas program: $CUDA_HOME/bin, $CUDA_PATH/bin, /usr/local/cuda/bin,
/// then PATH. Empty when none is found.
std::string findPtxas();

/// Assembles `ptx` for `chip` with ptxas (-O3 -v) in a temporary directory
/// that is always removed, and returns the cubin's bytes. When
/// `resourceUsage` is not null it receives ptxas's report, one line per
/// entry: "NAME: R registers, S bytes smem, B bytes stack, spill X/Y".
/// Fails with a clear error when ptxas is absent (see findPtxas).
mlir::FailureOr<std::string>
assembleCubin(llvm::StringRef ptx, llvm::StringRef chip, std::string &error,
              std::string *resourceUsage = nullptr);

/// Registers what the lowering needs (NVVM target attribute, conversion
/// interfaces, LLVM IR translations) in `registry`. compileToPtx appends
/// them to the module's context itself; tools may call this up front.
void registerNvptxCodegenDialects(mlir::DialectRegistry &registry);

} // namespace optmlir

#endif // OPTMLIR_TARGET_NVPTXCODEGEN_H
