//===- optmlir-opt.cpp - the OptMLIR pass driver --------------------------===//
//
// Parses tfm (and upstream) IR, runs any registered pass, prints the result:
// every step of the compiler can be run and inspected on its own.
//
//===----------------------------------------------------------------------===//

#include "dialects/Tfm/IR/TfmDialect.h"
#include "passes/Passes.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::registerAllPasses();
  mlir::tfm::registerTfmPasses();

  mlir::DialectRegistry registry;
  registry.insert<mlir::tfm::TfmDialect>();
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "OptMLIR pass driver\n", registry));
}
