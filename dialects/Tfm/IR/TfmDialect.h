//===- TfmDialect.h - The tfm dialect ---------------------------*- C++ -*-===//

#ifndef OPTMLIR_DIALECTS_TFM_IR_TFMDIALECT_H
#define OPTMLIR_DIALECTS_TFM_IR_TFMDIALECT_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Dialect.h"

#include "dialects/Tfm/IR/TfmDialect.h.inc"

#endif // OPTMLIR_DIALECTS_TFM_IR_TFMDIALECT_H
