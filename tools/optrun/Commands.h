//===- Commands.h - optrun subcommands --------------------------*- C++ -*-===//
//
// Each subcommand lives in its own file and registers itself on the main
// CLI11 app; when it is chosen its callback stores the process exit code.
// New subcommands (generate, perplexity, serve, bench) follow the same shape.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_TOOLS_OPTRUN_COMMANDS_H
#define OPTMLIR_TOOLS_OPTRUN_COMMANDS_H

#include <string>

namespace CLI {
class App;
} // namespace CLI

namespace optrun {

/// Adds `optrun inspect`; sets `exitCode` when it runs.
void addInspectCommand(CLI::App &app, int &exitCode);

/// Prints "optrun: error: <subject>: <problem>" to stderr; returns 1, the
/// exit code for every failure after arguments were parsed.
int reportError(const std::string &subject, const std::string &problem);

} // namespace optrun

#endif // OPTMLIR_TOOLS_OPTRUN_COMMANDS_H
