//===- ExternalTool.cpp - running a toolchain program on bytes ------------===//

#include "optmlir/Target/ExternalTool.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"

using namespace llvm;

mlir::FailureOr<optmlir::ToolRun> optmlir::runToolInTempDir(
    StringRef dirPrefix, StringRef program, StringRef inputName,
    StringRef input, StringRef outputName,
    function_ref<SmallVector<std::string>(StringRef, StringRef)> makeArgs,
    unsigned secondsToWait, std::string &error) {
  SmallString<128> dir;
  if (std::error_code ec = sys::fs::createUniqueDirectory(dirPrefix, dir)) {
    error = "cannot create a temporary directory: " + ec.message();
    return mlir::failure();
  }
  auto removeDir = make_scope_exit([&] { sys::fs::remove_directories(dir); });
  auto pathIn = [&](StringRef name) {
    SmallString<128> path(dir);
    sys::path::append(path, name);
    return std::string(path);
  };
  std::string inputPath = pathIn(inputName), outputPath = pathIn(outputName);
  std::string logPath = pathIn("tool.log");
  {
    std::error_code ec;
    raw_fd_ostream os(inputPath, ec);
    if (!ec) {
      os << input;
      os.close();
      ec = os.error();
    }
    if (ec) {
      error = "cannot write " + inputPath + ": " + ec.message();
      return mlir::failure();
    }
  }

  SmallVector<std::string> argStrings = makeArgs(inputPath, outputPath);
  SmallVector<StringRef> args = {program};
  args.append(argStrings.begin(), argStrings.end());
  std::optional<StringRef> redirects[] = {std::nullopt, logPath, logPath};
  std::string execError;
  bool failedToStart = false;
  int rc = sys::ExecuteAndWait(program, args, /*Env=*/std::nullopt, redirects,
                               secondsToWait, /*MemoryLimit=*/0, &execError,
                               &failedToStart);
  ToolRun run;
  if (auto log = MemoryBuffer::getFile(logPath))
    run.log = (*log)->getBuffer().str();
  if (rc != 0 || failedToStart) {
    run.failure = failedToStart ? "failed to start"
                                : "failed (exit " + std::to_string(rc) + ")";
    if (!execError.empty())
      run.failure += ": " + execError;
    return run;
  }
  auto output = MemoryBuffer::getFile(outputPath, /*IsText=*/false,
                                      /*RequiresNullTerminator=*/false);
  if (!output) {
    error = program.str() + " wrote no " + outputPath + ": " +
            output.getError().message();
    return mlir::failure();
  }
  run.succeeded = true;
  run.output = (*output)->getBuffer().str();
  return run;
}
