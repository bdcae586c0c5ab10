//===- TfmOps.cpp - tfm operation verifiers and folders -------------------===//

#include "dialects/Tfm/IR/TfmOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"

using namespace mlir;
using namespace mlir::tfm;

namespace {
/// A dynamic size is compatible with any size: shapes are only checked where
/// both sides are known.
bool sameSize(int64_t a, int64_t b) {
  return a == b || ShapedType::isDynamic(a) || ShapedType::isDynamic(b);
}

RankedTensorType tensorTypeOf(Value value) {
  return llvm::cast<RankedTensorType>(value.getType());
}

/// Prints a shape as `[?, 384]` for messages.
std::string shapeString(ArrayRef<int64_t> shape) {
  std::string text = "[";
  llvm::raw_string_ostream os(text);
  llvm::interleaveComma(shape, os, [&](int64_t size) {
    if (ShapedType::isDynamic(size))
      os << "?";
    else
      os << size;
  });
  os << "]";
  return text;
}

/// Checks that `value` has rank `rank`, naming it `what` in the message.
LogicalResult expectRank(Operation *op, Value value, StringRef what,
                         int64_t rank) {
  int64_t actual = tensorTypeOf(value).getRank();
  if (actual == rank)
    return success();
  return op->emitOpError() << what << " must have rank " << rank << ", got "
                           << shapeString(tensorTypeOf(value).getShape());
}

LogicalResult expectSize(Operation *op, StringRef what, int64_t actual,
                         StringRef expectedWhat, int64_t expected) {
  if (sameSize(actual, expected))
    return success();
  return op->emitOpError() << what << " is " << actual << " but "
                           << expectedWhat << " is " << expected;
}

LogicalResult expectSameElementType(Operation *op, Value value,
                                    StringRef what, Type expected) {
  Type actual = tensorTypeOf(value).getElementType();
  if (actual == expected)
    return success();
  return op->emitOpError() << what << " has element type " << actual
                           << " but " << expected << " was expected";
}

LogicalResult expectShape(Operation *op, Value value, StringRef what,
                          ArrayRef<int64_t> expected) {
  ArrayRef<int64_t> actual = tensorTypeOf(value).getShape();
  if (actual.size() == expected.size() &&
      llvm::all_of(llvm::zip_equal(actual, expected), [](auto pair) {
        return sameSize(std::get<0>(pair), std::get<1>(pair));
      }))
    return success();
  return op->emitOpError() << what << " has shape " << shapeString(actual)
                           << " but " << shapeString(expected)
                           << " was expected";
}

/// Looks up the tfm.weight that `name` refers to, or emits an error on `op`.
WeightOp lookupWeight(Operation *op, SymbolTableCollection &symbolTable,
                      FlatSymbolRefAttr name) {
  auto weight = symbolTable.lookupNearestSymbolFrom<WeightOp>(op, name);
  if (!weight)
    op->emitOpError() << "refers to " << name
                      << ", which is not a tfm.weight";
  return weight;
}
} // namespace

//===----------------------------------------------------------------------===//
// WeightOp and GetWeightOp
//===----------------------------------------------------------------------===//

LogicalResult WeightOp::verify() {
  if (getConcat().has_value() != getDim().has_value())
    return emitOpError("needs both a concat list and a dim, or neither");
  if (getConcat() && getDerived())
    return emitOpError("is either a concatenation or derived, not both");
  // getDim() is unsigned: read the attribute as signed.
  IntegerAttr dim = getDimAttr();
  if (dim && (dim.getInt() < 0 || dim.getInt() >= getTensorType().getRank()))
    return emitOpError() << "concat dim " << dim.getInt()
                         << " is out of range for rank "
                         << getTensorType().getRank();
  if (getConcat() && getConcat()->empty())
    return emitOpError("concat list is empty");
  return success();
}

/// Whether following concat parts from `start` leads to the weight named
/// `target`. Parts that are not weights are skipped: their own verifier
/// reports them.
static bool concatReaches(Operation *from, SymbolTableCollection &symbolTable,
                          WeightOp start, StringRef target) {
  SmallVector<WeightOp> worklist = {start};
  llvm::SmallPtrSet<Operation *, 8> visited;
  while (!worklist.empty()) {
    WeightOp weight = worklist.pop_back_val();
    if (weight.getSymName() == target)
      return true;
    std::optional<ArrayAttr> parts = weight.getConcat();
    if (!visited.insert(weight).second || !parts)
      continue;
    for (Attribute attr : *parts)
      if (auto part = symbolTable.lookupNearestSymbolFrom<WeightOp>(
              from, llvm::cast<FlatSymbolRefAttr>(attr)))
        worklist.push_back(part);
  }
  return false;
}

LogicalResult WeightOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  if (FlatSymbolRefAttr source = getDerivedAttr()) {
    if (source.getValue() == getSymName())
      return emitOpError("is derived from itself");
    return success(lookupWeight(*this, symbolTable, source) != nullptr);
  }
  if (!getConcat())
    return success();
  RankedTensorType type = getTensorType();
  int64_t dim = getDimAttr().getInt();
  ArrayAttr parts = *getConcat();
  int64_t total = 0;
  for (auto [index, attr] : llvm::enumerate(parts)) {
    auto name = llvm::cast<FlatSymbolRefAttr>(attr);
    if (name.getValue() == getSymName())
      return emitOpError() << "concat part " << index << " refers to itself";
    WeightOp part = lookupWeight(*this, symbolTable, name);
    if (!part)
      return failure();
    if (concatReaches(*this, symbolTable, part, getSymName()))
      return emitOpError() << "concat part " << name << " refers back to "
                           << FlatSymbolRefAttr::get(getSymNameAttr())
                           << " through its own concat parts";
    RankedTensorType partType = part.getTensorType();
    if (partType.getElementType() != type.getElementType())
      return emitOpError() << "concat part " << name << " has element type "
                           << partType.getElementType() << " but "
                           << type.getElementType() << " was expected";
    if (partType.getRank() != type.getRank())
      return emitOpError() << "concat part " << name << " has rank "
                           << partType.getRank() << " but "
                           << type.getRank() << " was expected";
    for (int64_t d = 0; d < type.getRank(); ++d) {
      if (d != dim && partType.getDimSize(d) != type.getDimSize(d))
        return emitOpError()
               << "concat part " << name << " has shape "
               << shapeString(partType.getShape())
               << ", which differs from " << shapeString(type.getShape())
               << " outside dim " << dim;
    }
    total += partType.getDimSize(dim);
  }
  if (total != type.getDimSize(dim))
    return emitOpError() << "concat parts add up to " << total
                         << " along dim " << dim << " but the weight has "
                         << type.getDimSize(dim);
  return success();
}

LogicalResult
GetWeightOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  WeightOp weight = lookupWeight(*this, symbolTable, getNameAttr());
  if (!weight)
    return failure();
  if (weight.getTensorType() != getResult().getType())
    return emitOpError() << "result type " << getResult().getType()
                         << " differs from the type of " << getNameAttr()
                         << ", " << weight.getTensorType();
  return success();
}

//===----------------------------------------------------------------------===//
// High-level ops
//===----------------------------------------------------------------------===//

LogicalResult EmbedOp::verify() {
  if (failed(expectRank(*this, getIds(), "ids", 1)) ||
      failed(expectRank(*this, getTable(), "table", 2)))
    return failure();
  RankedTensorType table = tensorTypeOf(getTable());
  if (failed(expectShape(*this, getResult(), "result",
                         {tensorTypeOf(getIds()).getDimSize(0),
                          table.getDimSize(1)})))
    return failure();
  // A lookup copies rows: there is no arithmetic to round to another type.
  return expectSameElementType(*this, getResult(), "result",
                               table.getElementType());
}

LogicalResult RMSNormOp::verify() {
  RankedTensorType input = tensorTypeOf(getInput());
  if (input.getRank() < 1)
    return emitOpError("input must have rank 1 or more");
  if (failed(expectRank(*this, getWeight(), "weight", 1)) ||
      failed(expectSize(*this, "weight size", tensorTypeOf(getWeight()).getDimSize(0),
                        "the last dim of input", input.getShape().back())) ||
      failed(expectShape(*this, getResult(), "result", input.getShape())) ||
      failed(expectSameElementType(*this, getResult(), "result",
                                   input.getElementType())))
    return failure();
  if (!(getEps().convertToDouble() > 0))
    return emitOpError("eps must be positive");
  return success();
}

LogicalResult LinearOp::verify() {
  RankedTensorType input = tensorTypeOf(getInput());
  if (input.getRank() < 1)
    return emitOpError("input must have rank 1 or more");
  if (failed(expectRank(*this, getWeight(), "weight", 2)))
    return failure();
  RankedTensorType weight = tensorTypeOf(getWeight());
  int64_t outFeatures = weight.getDimSize(0);
  if (failed(expectSize(*this, "weight in_features", weight.getDimSize(1),
                        "the last dim of input", input.getShape().back())))
    return failure();
  if (getBias() &&
      failed(expectShape(*this, getBias(), "bias", {outFeatures})))
    return failure();
  SmallVector<int64_t> expected(input.getShape());
  expected.back() = outFeatures;
  return expectShape(*this, getResult(), "result", expected);
}

LogicalResult QuantizedLinearOp::verify() {
  RankedTensorType input = tensorTypeOf(getInput());
  if (input.getRank() < 1)
    return emitOpError("input must have rank 1 or more");
  if (failed(expectRank(*this, getValues(), "values", 2)) ||
      failed(expectRank(*this, getScales(), "scales", 2)))
    return failure();
  RankedTensorType values = tensorTypeOf(getValues());
  RankedTensorType scales = tensorTypeOf(getScales());
  const int64_t n = values.getDimSize(0), k = values.getDimSize(1);
  if (failed(expectSize(*this, "values in_features", k, "the last dim of input",
                        input.getShape().back())))
    return failure();
  Type codes = values.getElementType();
  Type scaleType = scales.getElementType();
  MLIRContext *context = getContext();
  if (codes.isInteger(4)) {
    if (scaleType != Float16Type::get(context))
      return emitOpError() << "int4 values need f16 scales, got " << scaleType;
    int64_t groups = scales.getDimSize(1);
    if (scales.getDimSize(0) != n || groups <= 0 || k % groups != 0 ||
        (k / groups) % 2 != 0)
      return emitOpError() << "scales of shape "
                           << shapeString(scales.getShape())
                           << " do not split the " << k << " input features of "
                           << n << " rows into groups of an even size";
    if (getZeros() &&
        failed(expectShape(*this, getZeros(), "zeros", scales.getShape())))
      return failure();
  } else {
    if (getZeros())
      return emitOpError("only int4 values have zero points");
    if (scaleType != Float32Type::get(context))
      return emitOpError() << "int8 and fp8 values need f32 scales, got "
                           << scaleType;
    bool perRow = scales.getDimSize(0) == n && scales.getDimSize(1) == 1;
    bool perTensor = isa<Float8E4M3FNType>(codes) &&
                     scales.getDimSize(0) == 1 && scales.getDimSize(1) == 1;
    if (!perRow && !perTensor)
      return emitOpError() << "scales have shape "
                           << shapeString(scales.getShape()) << " but [" << n
                           << ", 1] (one a row) was expected";
  }
  ActivationQuant mode = getActivations();
  if (mode == ActivationQuant::Int8PerToken && !codes.isInteger(8))
    return emitOpError("int8 activations need int8 values");
  if ((mode == ActivationQuant::F8Dynamic ||
       mode == ActivationQuant::F8Static) &&
      !isa<Float8E4M3FNType>(codes))
    return emitOpError("fp8 activations need fp8 values");
  bool needsScale = mode == ActivationQuant::F8Static;
  if (needsScale != getActivationScale().has_value())
    return emitOpError(needsScale ? "fp8_static activations need an "
                                    "activation_scale"
                                  : "only fp8_static activations take an "
                                    "activation_scale");
  if (needsScale && !(getActivationScale()->convertToDouble() > 0))
    return emitOpError("activation_scale must be positive");
  SmallVector<int64_t> expected(input.getShape());
  expected.back() = n;
  return expectShape(*this, getResult(), "result", expected);
}

LogicalResult RopeOp::verify() {
  if (failed(expectRank(*this, getInput(), "input", 3)) ||
      failed(expectRank(*this, getPositions(), "positions", 1)))
    return failure();
  RankedTensorType input = tensorTypeOf(getInput());
  if (failed(expectSize(*this, "positions length",
                        tensorTypeOf(getPositions()).getDimSize(0),
                        "the token count of input", input.getDimSize(0))))
    return failure();
  int64_t headDim = input.getDimSize(2);
  if (!ShapedType::isDynamic(headDim) && headDim % 2 != 0)
    return emitOpError() << "input head dim must be even, got " << headDim;
  if (!(getTheta().convertToDouble() > 0))
    return emitOpError("theta must be positive");
  if (getResult().getType() != input)
    return emitOpError() << "result type " << getResult().getType()
                         << " differs from input type " << input;
  return success();
}

LogicalResult AttentionOp::verify() {
  if (failed(expectRank(*this, getQuery(), "query", 3)) ||
      failed(expectRank(*this, getKey(), "key", 3)) ||
      failed(expectRank(*this, getValue(), "value", 3)))
    return failure();
  RankedTensorType query = tensorTypeOf(getQuery());
  RankedTensorType key = tensorTypeOf(getKey());
  if (failed(expectShape(*this, getValue(), "value", key.getShape())) ||
      failed(expectSize(*this, "key token count", key.getDimSize(0),
                        "the query token count", query.getDimSize(0))) ||
      failed(expectSize(*this, "key head dim", key.getDimSize(2),
                        "the query head dim", query.getDimSize(2))))
    return failure();
  int64_t heads = query.getDimSize(1), kvHeads = key.getDimSize(1);
  if (ShapedType::isDynamic(heads) || ShapedType::isDynamic(kvHeads))
    return emitOpError("query and key head counts must be static");
  if (kvHeads < 1)
    return emitOpError() << "needs at least one key/value head, got "
                         << kvHeads;
  if (heads % kvHeads != 0)
    return emitOpError() << "query has " << heads
                         << " heads, not a multiple of the " << kvHeads
                         << " key/value heads";
  // getSlidingWindow() is unsigned: read the attribute as signed.
  IntegerAttr window = getSlidingWindowAttr();
  if (window && window.getInt() <= 0)
    return emitOpError() << "sliding_window must be positive, got "
                         << window.getInt();
  if (getSlidingWindow() && !getCausal())
    return emitOpError("sliding_window needs causal");
  if (!(getScale().convertToDouble() > 0))
    return emitOpError("scale must be positive");
  if (getResult().getType() != query)
    return emitOpError() << "result type " << getResult().getType()
                         << " differs from query type " << query;
  if (std::optional<KVCacheType> cache = getKvCache()) {
    if (cache->getKvHeads() != kvHeads)
      return emitOpError() << "kv_cache has " << cache->getKvHeads()
                           << " kv heads, the key " << kvHeads;
    if (cache->getHeadDim() != key.getDimSize(2))
      return emitOpError() << "kv_cache head_dim " << cache->getHeadDim()
                           << " differs from the key head dim "
                           << key.getDimSize(2);
    if (!llvm::isPowerOf2_64(cache->getBlockSize()) ||
        cache->getBlockSize() > 1024)
      return emitOpError() << "kv_cache block_size must be a power of two "
                              "up to 1024, got "
                           << cache->getBlockSize();
    Type element = cache->getElementType();
    if (!isa<Float32Type, BFloat16Type, Float16Type, Float8E4M3FNType>(
            element) &&
        !element.isSignlessInteger(8))
      return emitOpError() << "kv_cache element_type must be f32, bf16, f16, "
                              "f8E4M3FN or i8, got "
                           << element;
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Primitives
//===----------------------------------------------------------------------===//

LogicalResult MatmulOp::verify() {
  RankedTensorType lhs = tensorTypeOf(getLhs());
  RankedTensorType rhs = tensorTypeOf(getRhs());
  int64_t rank = lhs.getRank();
  if (rank < 2)
    return emitOpError("lhs must have rank 2 or more");
  if (failed(expectRank(*this, getRhs(), "rhs", rank)))
    return failure();
  SmallVector<int64_t> expected(lhs.getShape().drop_back());
  for (int64_t d = 0; d < rank - 2; ++d)
    if (failed(expectSize(*this, "rhs batch dim " + std::to_string(d),
                          rhs.getDimSize(d), "that of lhs",
                          lhs.getDimSize(d))))
      return failure();
  if (failed(expectSize(*this, "rhs rows", rhs.getDimSize(rank - 2),
                        "the lhs columns", lhs.getDimSize(rank - 1))))
    return failure();
  expected.push_back(rhs.getDimSize(rank - 1));
  return expectShape(*this, getResult(), "result", expected);
}

template <typename BinaryOp>
static LogicalResult verifyBroadcastBinary(BinaryOp op) {
  RankedTensorType lhs = tensorTypeOf(op.getLhs());
  ArrayRef<int64_t> rhsShape = tensorTypeOf(op.getRhs()).getShape();
  ArrayRef<int64_t> lhsShape = lhs.getShape();
  if (rhsShape.size() > lhsShape.size() ||
      !llvm::all_of(llvm::zip_equal(rhsShape,
                                    lhsShape.take_back(rhsShape.size())),
                    [](auto pair) {
                      return sameSize(std::get<0>(pair), std::get<1>(pair));
                    }))
    return op.emitOpError() << "rhs shape " << shapeString(rhsShape)
                            << " is not a suffix of lhs shape "
                            << shapeString(lhsShape);
  if (failed(expectSameElementType(op, op.getRhs(), "rhs",
                                   lhs.getElementType())))
    return failure();
  if (op.getResult().getType() != lhs)
    return op.emitOpError() << "result type " << op.getResult().getType()
                            << " differs from lhs type " << lhs;
  return success();
}

LogicalResult AddOp::verify() { return verifyBroadcastBinary(*this); }
LogicalResult MulOp::verify() { return verifyBroadcastBinary(*this); }

OpFoldResult ScaleOp::fold(FoldAdaptor) {
  if (getFactor().convertToDouble() == 1.0)
    return getInput();
  return {};
}

OpFoldResult CastOp::fold(FoldAdaptor) {
  if (getInput().getType() == getResult().getType())
    return getInput();
  return {};
}

/// Checks that `dim` indexes a dimension of `value`.
static LogicalResult verifyDimIndex(Operation *op, Value value, int64_t dim) {
  int64_t rank = tensorTypeOf(value).getRank();
  if (dim >= 0 && dim < rank)
    return success();
  return op->emitOpError() << "dim " << dim << " is out of range for rank "
                           << rank;
}

LogicalResult SoftmaxOp::verify() {
  return verifyDimIndex(*this, getInput(), getDimAttr().getInt());
}

LogicalResult CausalMaskOp::verify() {
  if (tensorTypeOf(getInput()).getRank() < 2)
    return emitOpError("input must have rank 2 or more");
  // getSlidingWindow() is unsigned: read the attribute as signed.
  IntegerAttr window = getSlidingWindowAttr();
  if (window && window.getInt() <= 0)
    return emitOpError() << "sliding_window must be positive, got "
                         << window.getInt();
  return success();
}

LogicalResult TransposeOp::verify() {
  RankedTensorType input = tensorTypeOf(getInput());
  ArrayRef<int64_t> perm = getPermutation();
  if (static_cast<int64_t>(perm.size()) != input.getRank())
    return emitOpError() << "permutation has " << perm.size()
                         << " entries but input has rank "
                         << input.getRank();
  SmallVector<bool> seen(perm.size(), false);
  for (int64_t p : perm) {
    if (p < 0 || p >= input.getRank() || seen[p])
      return emitOpError() << "permutation [" << perm
                           << "] is not a permutation of the input "
                              "dimensions";
    seen[p] = true;
  }
  SmallVector<int64_t> expected;
  for (int64_t p : perm)
    expected.push_back(input.getDimSize(p));
  if (failed(expectShape(*this, getResult(), "result", expected)) ||
      failed(expectSameElementType(*this, getResult(), "result",
                                   input.getElementType())))
    return failure();
  return success();
}

OpFoldResult TransposeOp::fold(FoldAdaptor) {
  ArrayRef<int64_t> perm = getPermutation();
  if (llvm::equal(perm, llvm::seq<int64_t>(0, perm.size())) &&
      getInput().getType() == getResult().getType())
    return getInput();
  // transpose(transpose(x, p1), p2) is x when p1 composed with p2 is the
  // identity.
  auto inner = getInput().getDefiningOp<TransposeOp>();
  if (!inner || inner.getInput().getType() != getResult().getType())
    return {};
  ArrayRef<int64_t> innerPerm = inner.getPermutation();
  for (auto [i, p] : llvm::enumerate(perm))
    if (innerPerm[p] != static_cast<int64_t>(i))
      return {};
  return inner.getInput();
}

/// The product of the trailing (all but the first) dims of `shape`, or
/// nothing when one of them is dynamic.
static std::optional<int64_t> trailingProduct(ArrayRef<int64_t> shape) {
  int64_t product = 1;
  for (int64_t size : shape.drop_front()) {
    if (ShapedType::isDynamic(size))
      return std::nullopt;
    product *= size;
  }
  return product;
}

/// Whether `input` may be reshaped to `result` (the rule of tfm.reshape):
/// both static with equal element counts, or the leading dim kept and the
/// static trailing dims with equal products.
static bool isValidReshape(RankedTensorType input, RankedTensorType result) {
  if (input.hasStaticShape() && result.hasStaticShape())
    return input.getNumElements() == result.getNumElements();
  if (input.getRank() == 0 || result.getRank() == 0)
    return false;
  std::optional<int64_t> inputInner = trailingProduct(input.getShape());
  std::optional<int64_t> resultInner = trailingProduct(result.getShape());
  return inputInner && resultInner && *inputInner == *resultInner &&
         sameSize(input.getDimSize(0), result.getDimSize(0));
}

LogicalResult ReshapeOp::verify() {
  RankedTensorType input = tensorTypeOf(getInput());
  RankedTensorType result = tensorTypeOf(getResult());
  if (input.getElementType() != result.getElementType())
    return emitOpError() << "result element type " << result.getElementType()
                         << " differs from input element type "
                         << input.getElementType();
  if (isValidReshape(input, result))
    return success();
  if (input.hasStaticShape() && result.hasStaticShape())
    return emitOpError() << "input " << shapeString(input.getShape())
                         << " and result " << shapeString(result.getShape())
                         << " have different element counts";
  return emitOpError() << "cannot reshape " << shapeString(input.getShape())
                       << " to " << shapeString(result.getShape())
                       << ": a dynamic reshape keeps the leading dim and "
                          "the product of the static trailing dims";
}

OpFoldResult ReshapeOp::fold(FoldAdaptor) {
  if (getInput().getType() == getResult().getType())
    return getInput();
  // reshape(reshape(x)) is one reshape; it folds away when it gives x back.
  // The two steps are merged only where the merged reshape is itself valid:
  // [?, 6] -> [4, 6] -> [3, 8] is, but [?, 6] -> [3, 8] is not.
  if (auto inner = getInput().getDefiningOp<ReshapeOp>()) {
    if (inner.getInput().getType() == getResult().getType())
      return inner.getInput();
    if (!isValidReshape(tensorTypeOf(inner.getInput()),
                        tensorTypeOf(getResult())))
      return {};
    getInputMutable().assign(inner.getInput());
    return getResult();
  }
  return {};
}

LogicalResult RepeatOp::verify() {
  int64_t dim = getDimAttr().getInt(), times = getTimesAttr().getInt();
  if (failed(verifyDimIndex(*this, getInput(), dim)))
    return failure();
  if (times < 1)
    return emitOpError() << "times must be at least 1, got " << times;
  RankedTensorType input = tensorTypeOf(getInput());
  SmallVector<int64_t> expected(input.getShape());
  if (!ShapedType::isDynamic(expected[dim]))
    expected[dim] *= times;
  if (failed(expectShape(*this, getResult(), "result", expected)) ||
      failed(expectSameElementType(*this, getResult(), "result",
                                   input.getElementType())))
    return failure();
  return success();
}

LogicalResult SplitOp::verify() {
  int64_t dim = getDimAttr().getInt();
  if (failed(verifyDimIndex(*this, getInput(), dim)))
    return failure();
  if (getResults().empty())
    return emitOpError("needs at least one result");
  RankedTensorType input = tensorTypeOf(getInput());
  if (ShapedType::isDynamic(input.getDimSize(dim)))
    return emitOpError() << "input dim " << dim << " must be static";
  int64_t total = 0;
  for (auto [index, result] : llvm::enumerate(getResults())) {
    RankedTensorType type = tensorTypeOf(result);
    SmallVector<int64_t> expected(input.getShape());
    expected[dim] = type.getRank() == input.getRank()
                        ? type.getDimSize(dim)
                        : ShapedType::kDynamic;
    if (ShapedType::isDynamic(expected[dim]))
      return emitOpError() << "result " << index << " must have rank "
                           << input.getRank() << " and a static size in dim "
                           << dim;
    if (failed(expectShape(*this, result, "result " + std::to_string(index),
                           expected)) ||
        failed(expectSameElementType(*this, result,
                                     "result " + std::to_string(index),
                                     input.getElementType())))
      return failure();
    total += expected[dim];
  }
  if (total != input.getDimSize(dim))
    return emitOpError() << "results add up to " << total << " along dim "
                         << dim << " but the input has "
                         << input.getDimSize(dim);
  return success();
}

#define GET_OP_CLASSES
#include "dialects/Tfm/IR/TfmOps.cpp.inc"
