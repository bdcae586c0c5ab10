//===- TfmOps.h - tfm operations, types and attributes ----------*- C++ -*-===//

#ifndef OPTMLIR_DIALECTS_TFM_IR_TFMOPS_H
#define OPTMLIR_DIALECTS_TFM_IR_TFMOPS_H

#include "dialects/Tfm/IR/TfmDialect.h"

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/Tfm/IR/TfmEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/Tfm/IR/TfmAttrs.h.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/Tfm/IR/TfmTypes.h.inc"

#define GET_OP_CLASSES
#include "dialects/Tfm/IR/TfmOps.h.inc"

#endif // OPTMLIR_DIALECTS_TFM_IR_TFMOPS_H
