//===- TfmDialect.cpp - tfm dialect, types and attributes -----------------===//

#include "dialects/Tfm/IR/TfmOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::tfm;

#include "dialects/Tfm/IR/TfmDialect.cpp.inc"
#include "dialects/Tfm/IR/TfmEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialects/Tfm/IR/TfmAttrs.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/Tfm/IR/TfmTypes.cpp.inc"

void TfmDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/Tfm/IR/TfmOps.cpp.inc"
      >();
  addTypes<
#define GET_TYPEDEF_LIST
#include "dialects/Tfm/IR/TfmTypes.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/Tfm/IR/TfmAttrs.cpp.inc"
      >();
}

LogicalResult
RopeScalingAttr::verify(function_ref<InFlightDiagnostic()> emitError,
                        RopeScalingKind kind, APFloat factorValue,
                        APFloat lowFreqValue, APFloat highFreqValue,
                        int64_t originalMaxPositionEmbeddings) {
  double factor = factorValue.convertToDouble();
  double lowFreqFactor = lowFreqValue.convertToDouble();
  double highFreqFactor = highFreqValue.convertToDouble();
  if (!(factor > 0))
    return emitError() << "rope scaling factor must be positive, got "
                       << factor;
  if (kind != RopeScalingKind::Llama3)
    return success();
  if (!(lowFreqFactor > 0) || !(highFreqFactor > lowFreqFactor))
    return emitError() << "llama3 rope scaling needs 0 < low_freq_factor < "
                          "high_freq_factor, got "
                       << lowFreqFactor << " and " << highFreqFactor;
  if (originalMaxPositionEmbeddings <= 0)
    return emitError() << "llama3 rope scaling needs a positive "
                          "original_max_position_embeddings";
  return success();
}

LogicalResult KVCacheType::verify(function_ref<InFlightDiagnostic()> emitError,
                                  int64_t layers, int64_t kvHeads,
                                  int64_t headDim, int64_t blockSize,
                                  Type elementType) {
  if (layers <= 0 || kvHeads <= 0 || headDim <= 0 || blockSize <= 0)
    return emitError() << "kv_cache sizes must be positive, got layers = "
                       << layers << ", kv_heads = " << kvHeads
                       << ", head_dim = " << headDim
                       << ", block_size = " << blockSize;
  if (!llvm::isa<FloatType, IntegerType>(elementType))
    return emitError() << "kv_cache element_type must be a float or integer "
                          "type, got "
                       << elementType;
  return success();
}
