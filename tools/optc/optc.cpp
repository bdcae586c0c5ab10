//===- optc.cpp - the OptMLIR compiler driver -----------------------------===//
//
//   optc import DIR -o model.mlir     Hugging Face checkpoint -> tfm module
//
//===----------------------------------------------------------------------===//

#include "optmlir/Import/ImportModel.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"

using namespace llvm;

namespace {
cl::SubCommand importCommand("import",
                             "Import a Hugging Face checkpoint as a tfm module");
cl::opt<std::string> importDir(cl::Positional, cl::Required,
                               cl::desc("<checkpoint directory>"),
                               cl::sub(importCommand));
cl::opt<std::string> importOutput("o", cl::desc("Output file ('-' for stdout)"),
                                  cl::value_desc("file"), cl::init("-"),
                                  cl::sub(importCommand));

int fail(const Twine &message) {
  WithColor::error(errs(), "optc") << message << "\n";
  return 1;
}

int runImport() {
  mlir::MLIRContext context;
  std::string error;
  mlir::OwningOpRef<mlir::ModuleOp> module =
      optmlir::importCheckpoint(context, importDir, error);
  if (!module)
    return fail(error);
  // The output appears whole or not at all: ToolOutputFile removes it unless
  // kept.
  std::unique_ptr<ToolOutputFile> output =
      mlir::openOutputFile(importOutput, &error);
  if (!output)
    return fail(error);
  module->print(output->os());
  output->os() << "\n";
  output->os().flush();
  if (output->os().has_error())
    return fail(importOutput + ": write failed: " +
                output->os().error().message());
  output->keep();
  return 0;
}
} // namespace

int main(int argc, char **argv) {
  InitLLVM y(argc, argv);
  cl::ParseCommandLineOptions(argc, argv, "OptMLIR compiler\n");
  if (importCommand)
    return runImport();
  errs() << "optc: no command given (try 'optc import DIR -o model.mlir'; "
            "see --help)\n";
  return 1;
}
