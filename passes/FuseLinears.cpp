//===- FuseLinears.cpp - merge linears that share an input ----------------===//

#include "passes/FuseLinears.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/SymbolTable.h"

using namespace mlir;
using namespace mlir::tfm;

namespace {
/// `a.q_proj.weight`, `a.k_proj.weight`, `a.v_proj.weight` with role "qkv"
/// give `a.qkv_proj.weight`: the common prefix and suffix around the role.
/// Names without that shape give `<first name>.<role>`.
std::string fusedWeightName(ArrayRef<StringRef> names, StringRef role) {
  size_t prefix = names.front().size(), suffix = names.front().size();
  for (StringRef name : names.drop_front()) {
    StringRef first = names.front();
    size_t p = 0;
    while (p < prefix && p < name.size() && name[p] == first[p])
      ++p;
    prefix = p;
    size_t s = 0;
    while (s < suffix && s < name.size() &&
           name[name.size() - 1 - s] == first[first.size() - 1 - s])
      ++s;
    suffix = s;
  }
  bool distinctMiddles = llvm::all_of(names, [&](StringRef name) {
    return name.size() > prefix + suffix;
  });
  if (!distinctMiddles)
    return (names.front() + "." + role).str();
  return (names.front().take_front(prefix) + role +
          names.front().take_back(suffix))
      .str();
}

/// The tfm.weight that `value` reads, if it is read with tfm.get_weight.
WeightOp declarationOf(SymbolTable &symbols, Value value) {
  auto read = value ? value.getDefiningOp<GetWeightOp>() : GetWeightOp();
  if (!read)
    return {};
  return symbols.lookup<WeightOp>(read.getName());
}

/// Declares `name` as the concatenation of `parts` along dim 0, after the
/// last part; returns the read of it at `builder`'s insertion point.
Value readConcatenation(OpBuilder &builder, SymbolTable &symbols,
                        ArrayRef<WeightOp> parts, StringRef name) {
  MLIRContext *context = builder.getContext();
  WeightOp firstPart = parts.front(), lastPart = parts.back();
  RankedTensorType first = firstPart.getTensorType();
  SmallVector<int64_t> shape(first.getShape());
  SmallVector<Attribute> refs;
  shape[0] = 0;
  for (WeightOp part : parts) {
    shape[0] += part.getTensorType().getDimSize(0);
    refs.push_back(FlatSymbolRefAttr::get(part.getSymNameAttr()));
  }
  auto type = first.clone(shape);
  OpBuilder declBuilder(context);
  auto decl = WeightOp::create(
      declBuilder, lastPart.getLoc(), StringAttr::get(context, name),
      TypeAttr::get(type), ArrayAttr::get(context, refs),
      declBuilder.getI64IntegerAttr(0), FlatSymbolRefAttr());
  Operation *last = lastPart;
  for (WeightOp part : parts)
    if (last->isBeforeInBlock(part))
      last = part;
  // Renames the new symbol if the name is taken.
  StringAttr unique = symbols.insert(decl, std::next(Block::iterator(last)));
  return GetWeightOp::create(builder, firstPart.getLoc(), type,
                             FlatSymbolRefAttr::get(unique));
}
} // namespace

LogicalResult mlir::tfm::fuseLinears(ModuleOp module,
                                     ArrayRef<LinearOp> linears,
                                     StringRef fusedRole) {
  if (linears.size() < 2)
    return failure();
  LinearOp head = linears.front();
  bool biased = head.getBias() != nullptr;
  SymbolTable symbols(module);
  SmallVector<WeightOp> weights, biases;
  SmallVector<StringRef> weightNames, biasNames;
  for (LinearOp linear : linears) {
    if (linear.getInput() != head.getInput() ||
        linear->getBlock() != head->getBlock() ||
        (linear.getBias() != nullptr) != biased ||
        linear.getWeight().getType().getElementType() !=
            head.getWeight().getType().getElementType() ||
        llvm::count(linears, linear) != 1)
      return failure();
    WeightOp weight = declarationOf(symbols, linear.getWeight());
    WeightOp bias = declarationOf(symbols, linear.getBias());
    if (!weight || (biased && !bias))
      return failure();
    weights.push_back(weight);
    weightNames.push_back(weight.getSymName());
    if (biased) {
      biases.push_back(bias);
      biasNames.push_back(bias.getSymName());
    }
  }

  LinearOp first = head;
  for (LinearOp linear : linears)
    if (linear->isBeforeInBlock(first))
      first = linear;
  OpBuilder builder(first);
  Value weight = readConcatenation(builder, symbols, weights,
                                   fusedWeightName(weightNames, fusedRole));
  Value bias;
  if (biased)
    bias = readConcatenation(builder, symbols, biases,
                             fusedWeightName(biasNames, fusedRole));

  auto headType = head.getType();
  SmallVector<int64_t> shape(headType.getShape());
  SmallVector<Type> pieceTypes;
  shape.back() = 0;
  for (LinearOp linear : linears) {
    shape.back() += linear.getType().getShape().back();
    pieceTypes.push_back(linear.getType());
  }
  Value fused = LinearOp::create(builder, first.getLoc(), headType.clone(shape),
                                 head.getInput(), weight, bias);
  auto split = SplitOp::create(builder, first.getLoc(), pieceTypes, fused,
                               headType.getRank() - 1);
  for (auto [fusedLinear, piece] :
       llvm::zip_equal(linears, split.getResults())) {
    LinearOp linear = fusedLinear;
    SmallVector<Operation *> reads = {linear.getWeight().getDefiningOp()};
    if (linear.getBias())
      reads.push_back(linear.getBias().getDefiningOp());
    linear.replaceAllUsesWith(piece);
    linear.erase();
    for (Operation *read : reads)
      if (read->use_empty())
        read->erase();
  }
  return success();
}
