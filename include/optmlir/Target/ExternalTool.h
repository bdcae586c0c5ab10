//===- ExternalTool.h - running a toolchain program on bytes ----*- C++ -*-===//
//
// Code generation ends in programs of the toolchain (the system linker for
// host shared objects, ptxas for cubins): this runs one on bytes in a fresh
// temporary directory that is always removed.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_TARGET_EXTERNALTOOL_H
#define OPTMLIR_TARGET_EXTERNALTOOL_H

#include "mlir/Support/LLVM.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/SmallVector.h"

#include <string>

namespace optmlir {

struct ToolRun {
  /// The program ran and exited with 0.
  bool succeeded = false;
  /// What went wrong, when it did not: did not start, or its exit code.
  std::string failure;
  /// Its standard output and error together.
  std::string log;
  /// The output file's bytes, when it succeeded.
  std::string output;
};

/// Writes `input` to a file named `inputName` in a new temporary directory
/// (named after `dirPrefix`), runs `program` with the arguments `makeArgs`
/// builds from the input and output paths, and reads back the file named
/// `outputName`. Fails (setting `error`) only when the directory or files
/// cannot be handled; a program that fails is reported in the ToolRun.
mlir::FailureOr<ToolRun> runToolInTempDir(
    llvm::StringRef dirPrefix, llvm::StringRef program,
    llvm::StringRef inputName, llvm::StringRef input,
    llvm::StringRef outputName,
    llvm::function_ref<llvm::SmallVector<std::string>(
        llvm::StringRef inputPath, llvm::StringRef outputPath)>
        makeArgs,
    unsigned secondsToWait, std::string &error);

} // namespace optmlir

#endif // OPTMLIR_TARGET_EXTERNALTOOL_H
