//===- optrun.cpp - Runs OptMLIR artifacts --------------------------------===//
//
// optrun SUBCOMMAND ...: the runtime's command-line front end. It links no
// MLIR or LLVM code: only the runtime libraries.
//
//===----------------------------------------------------------------------===//

#include "Commands.h"

#include <CLI/CLI.hpp>

#include <iostream>

namespace optrun {
int reportError(const std::string &subject, const std::string &problem) {
  std::cerr << "optrun: error: " << subject << ": " << problem << "\n";
  return 1;
}
} // namespace optrun

int main(int argc, char **argv) {
  CLI::App app{"optrun: loads and runs OptMLIR artifacts (.optpkg)"};
  app.require_subcommand(1, 1);
  int exitCode = 0;
  optrun::addInspectCommand(app, exitCode);
  optrun::addGenerateCommand(app, exitCode);
  optrun::addPerplexityCommand(app, exitCode);
  optrun::addBenchCommand(app, exitCode);
  optrun::addServeCommand(app, exitCode);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &e) {
    // --help and friends exit 0; usage errors exit 2, as most tools do.
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  return exitCode;
}
