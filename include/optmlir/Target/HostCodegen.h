//===- HostCodegen.h - MLIR kernels to x86-64 native code -------*- C++ -*-===//
//
// Turns a module of CPU kernels (func.func over memrefs built from scf, arith,
// math, vector, memref, affine and linalg-on-buffers ops) into native code for
// the host: an ELF relocatable object, and a shared object the runtime loads
// with dlopen (runtime/host/HostModule.h, no MLIR/LLVM there).
//
// Functions carrying the `llvm.emit_c_interface` unit attribute get a
// `_mlir_ciface_NAME` wrapper that takes memref descriptors by pointer
// (runtime/host/MemRef.h); the other public functions are exported with the
// expanded descriptor ABI.
//
// Only upstream passes are used: affine/vector/scf to cf, math through
// polynomial approximations (then LLVM intrinsics or libm), arith, memref,
// func and cf to the LLVM dialect; then LLVM IR, the LLVM O1-3 pipeline and an
// in-memory object emitted by a TargetMachine for `cpu`/`features`. The shared
// object is linked by the system C compiler driver (`cc -shared ... -lm`).
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_TARGET_HOSTCODEGEN_H
#define OPTMLIR_TARGET_HOSTCODEGEN_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"

#include <string>

namespace optmlir {

struct HostCodegenOptions {
  /// LLVM CPU name; "native" means the machine running the compiler. The
  /// default (AVX2 + FMA + BMI2) runs on the CI machine and on the GPU
  /// machine's host.
  std::string cpu = "x86-64-v3";
  /// Extra LLVM target features, e.g. "+avx512f,-fma"; empty for none.
  std::string features;
  /// LLVM optimization level, 0 to 3.
  int optLevel = 3;
  /// Compiler driver used to link the shared object; empty searches PATH for
  /// cc, gcc, clang, then g++.
  std::string linker;
  /// When not null, the textual LLVM IR after optimization is written here
  /// (for debugging and lit tests).
  std::string *llvmIROut = nullptr;
};

/// Lowers `kernels` (which is not modified: a clone is lowered) to an ELF
/// relocatable object for x86-64 and returns its bytes. On failure returns
/// failure() and sets `error` to a message naming the failing step
/// (including MLIR diagnostics).
mlir::FailureOr<std::string> compileToObject(mlir::ModuleOp kernels,
                                             const HostCodegenOptions &options,
                                             std::string &error);

/// Links a relocatable object (as returned by compileToObject) into an ELF
/// shared object with the system linker, in a temporary directory that is
/// always removed. Returns the shared object's bytes.
mlir::FailureOr<std::string> linkSharedObject(llvm::StringRef object,
                                              const HostCodegenOptions &options,
                                              std::string &error);

/// Both products of one compilation: the object is what
/// `optrun inspect --extract-kernels` writes as NAME.o, the shared object is
/// what the runtime loads.
struct HostBinary {
  std::string object;
  std::string sharedObject;
};

/// compileToObject followed by linkSharedObject.
mlir::FailureOr<HostBinary> compileToBinary(mlir::ModuleOp kernels,
                                            const HostCodegenOptions &options,
                                            std::string &error);

/// Returns the bytes of an ELF shared object holding `kernels`.
mlir::FailureOr<std::string>
compileToSharedObject(mlir::ModuleOp kernels, const HostCodegenOptions &options,
                      std::string &error);

/// Registers what the lowering needs in `registry` (the LLVM IR translations
/// of the builtin and LLVM dialects). compileToObject appends these to the
/// module's context itself; tools that build the context up front may call
/// this to avoid a registry change at compile time.
void registerHostCodegenDialects(mlir::DialectRegistry &registry);

} // namespace optmlir

#endif // OPTMLIR_TARGET_HOSTCODEGEN_H
