//===- KvLayout.cpp - the paged KV cache's block size and element type ----===//

#include "passes/Passes.h"

#include "llvm/Support/MathExtras.h"

namespace mlir::tfm {
#define GEN_PASS_DEF_TFMKVLAYOUT
#include "passes/Passes.h.inc"
} // namespace mlir::tfm

using namespace mlir;
using namespace mlir::tfm;

namespace {
struct TfmKvLayoutPass : mlir::tfm::impl::TfmKvLayoutBase<TfmKvLayoutPass> {
  using TfmKvLayoutBase::TfmKvLayoutBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (!llvm::isPowerOf2_64(uint64_t(blockSize)) || blockSize > 1024) {
      module.emitError() << "tfm-kv-layout: block-size must be a power of "
                            "two up to 1024, got "
                         << int64_t(blockSize);
      return signalPassFailure();
    }
    SmallVector<AttentionOp> attentions;
    module.walk([&](AttentionOp op) { attentions.push_back(op); });
    if (attentions.empty())
      return;
    auto keyType = cast<RankedTensorType>(attentions.front().getKey().getType());
    Type element;
    if (elementType == "native")
      element = keyType.getElementType();
    else if (elementType == "fp8e4m3")
      element = Float8E4M3FNType::get(&getContext());
    else if (elementType == "int8")
      element = IntegerType::get(&getContext(), 8);
    else {
      module.emitError() << "tfm-kv-layout: element-type must be native, "
                            "fp8e4m3 or int8, got '"
                         << std::string(elementType) << "'";
      return signalPassFailure();
    }
    // One cache serves every layer: its shape must be the same everywhere.
    for (AttentionOp op : attentions)
      if (op.getKey().getType() != keyType) {
        op.emitOpError() << "has keys of type " << op.getKey().getType()
                         << ", the first attention " << keyType
                         << ": one paged KV cache cannot serve both";
        return signalPassFailure();
      }
    auto cache = KVCacheType::get(&getContext(), int64_t(attentions.size()),
                                  keyType.getDimSize(1), keyType.getDimSize(2),
                                  blockSize, element);
    for (AttentionOp op : attentions)
      op.setKvCacheAttr(TypeAttr::get(cache));
  }
};
} // namespace
