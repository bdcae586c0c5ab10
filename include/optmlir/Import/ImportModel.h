//===- ImportModel.h - Hugging Face checkpoint to tfm -----------*- C++ -*-===//
//
// Builds the tfm module of a Llama-family model: one tfm.weight per
// checkpoint tensor (types only, the data stays in the files) and a
// func.func @forward over packed tokens.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_IMPORT_IMPORTMODEL_H
#define OPTMLIR_IMPORT_IMPORTMODEL_H

#include "optmlir/Import/ModelConfig.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <string>

namespace optmlir {

/// Builds the module for `config`. `checkpointDir`, when not empty, is
/// recorded as the weight store's source. The forward function is
///   func.func @forward(%input_ids: tensor<?xi32>, %positions: tensor<?xi32>)
///       -> tensor<?x<vocab>xf32>
/// over the packed tokens of one sequence.
mlir::OwningOpRef<mlir::ModuleOp> buildModelModule(mlir::MLIRContext &context,
                                                   const ModelConfig &config,
                                                   llvm::StringRef checkpointDir);

/// Reads config.json, the safetensors files and the tokenizer metadata of
/// the checkpoint in `dir`, checks them against each other and builds the
/// module. On failure returns null and sets `error` to one line naming the
/// file and the problem.
mlir::OwningOpRef<mlir::ModuleOp> importCheckpoint(mlir::MLIRContext &context,
                                                   llvm::StringRef dir,
                                                   std::string &error);

} // namespace optmlir

#endif // OPTMLIR_IMPORT_IMPORTMODEL_H
