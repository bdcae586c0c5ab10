//===- Quantize.cpp - the linears' weights stored quantized ---------------===//
//
// Linears are rewritten last to first, so that a smoothing factor folded
// into an earlier weight (the up rows of a gate/up projection, for the down
// projection that reads its swiglu) is in that weight's data before it is
// quantized itself.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "optmlir/Quantization/CalibrationStats.h"
#include "optmlir/Quantization/Quantizer.h"
#include "optmlir/Quantization/WeightStore.h"
#include "runtime/core/NumberFormats.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/Support/Regex.h"

#include <cblas.h>

#include <cmath>
#include <cstring>

namespace mlir::tfm {
#define GEN_PASS_DEF_TFMQUANTIZE
#include "passes/Passes.h.inc"
} // namespace mlir::tfm

using namespace mlir;
using namespace mlir::tfm;
namespace quant = optmlir::quant;
using optrt::QuantizedCodes;

namespace {

/// The scheme the options describe.
struct Scheme {
  quant::WeightFormat format;
  enum class Method { Rtn, Awq, Gptq } method = Method::Rtn;
  bool actOrder = false;
  /// SmoothQuant before W8A8.
  bool smooth = false;
  double alpha = -1;
  ActivationQuant activations = ActivationQuant::None;
  bool needsStats() const {
    return method != Method::Rtn || smooth ||
           activations == ActivationQuant::F8Static;
  }
};

/// Where a smoothing factor s (dividing the input, multiplying the
/// weight's columns) is folded: the weight of the op that makes the input.
struct FoldTarget {
  enum class Kind { None, NormWeight, UpRows } kind = Kind::None;
  /// The rms_norm's weight, or the gate/up linear's weight.
  WeightOp weight;
  GetWeightOp get;
  /// UpRows: the first up row (the gate rows come first).
  int64_t firstRow = 0;
};

struct TfmQuantizePass : mlir::tfm::impl::TfmQuantizeBase<TfmQuantizePass> {
  using TfmQuantizeBase::TfmQuantizeBase;
  TfmQuantizePass(const TfmQuantizeOptions &options,
                  optmlir::WeightStore *store)
      : TfmQuantizeBase(options), injectedStore(store) {}

  void runOnOperation() override;

private:
  LogicalResult parseScheme(Scheme &scheme);
  /// The weight's f32 data: computed by this pass, else from the store
  /// (concatenations read part by part).
  LogicalResult readWeight(WeightOp weight, std::vector<float> &out);
  FoldTarget foldTargetOf(LinearOp op);
  /// Declares `name` derived from `source` after it, returns a get_weight
  /// of it before `user`.
  Value derivedWeight(WeightOp source, StringRef suffix, RankedTensorType type,
                      Operation *user, std::string &name);
  LogicalResult quantizeLinear(LinearOp op, const Scheme &scheme);

  optmlir::WeightStore *injectedStore = nullptr;
  // Per run (shared: passes are copied when pipelines are cloned).
  std::shared_ptr<optmlir::WeightStore> ownStore;
  optmlir::WeightStore *store = nullptr;
  std::shared_ptr<quant::CalibrationStats> calibration;
  std::shared_ptr<SymbolTable> symbols;
  /// Weights whose data this pass changed (folded factors), by name.
  llvm::StringMap<std::vector<float>> modified;
  llvm::StringMap<WeightOp> modifiedDecls;
  ModuleOp module;
};

LogicalResult TfmQuantizePass::parseScheme(Scheme &s) {
  auto fail = [&](const Twine &message) {
    return module.emitError() << "tfm-quantize: " << message;
  };
  std::string name = scheme;
  if (name == "w4a16") {
    s.format.codes = QuantizedCodes::Int4;
    s.format.groupSize = groupSize;
    s.format.symmetric = symmetric;
  } else if (name == "w8a16" || name == "w8a8") {
    s.format.codes = QuantizedCodes::Int8;
    s.format.groupSize = 0;
    if (name == "w8a8") {
      s.activations = ActivationQuant::Int8PerToken;
      s.smooth = smooth;
      s.alpha = smoothAlpha;
      if (s.alpha > 1)
        return fail("smooth-alpha must be at most 1, got " +
                    Twine(std::to_string(s.alpha)));
    }
  } else if (name == "fp8") {
    s.format.codes = QuantizedCodes::F8E4M3;
    s.format.groupSize = 0;
    if (fp8WeightScale != "channel" && fp8WeightScale != "tensor")
      return fail("fp8-weight-scale must be channel or tensor, got '" +
                  Twine(std::string(fp8WeightScale)) + "'");
    s.format.perTensor = fp8WeightScale == "tensor";
    if (fp8ActivationScale == "dynamic")
      s.activations = ActivationQuant::F8Dynamic;
    else if (fp8ActivationScale == "static")
      s.activations = ActivationQuant::F8Static;
    else
      return fail("fp8-activation-scale must be dynamic or static, got '" +
                  Twine(std::string(fp8ActivationScale)) + "'");
  } else {
    return fail("scheme must be w4a16, w8a16, w8a8 or fp8, got '" +
                Twine(name) + "'");
  }
  std::string m = method;
  if (m == "rtn")
    s.method = Scheme::Method::Rtn;
  else if (m == "awq")
    s.method = Scheme::Method::Awq;
  else if (m == "gptq")
    s.method = Scheme::Method::Gptq;
  else
    return fail("method must be rtn, awq or gptq, got '" + Twine(m) + "'");
  if (s.method != Scheme::Method::Rtn && name != "w4a16")
    return fail("method " + Twine(m) + " is for w4a16; " + Twine(name) +
                " rounds to nearest");
  s.actOrder = actOrder;
  if (s.actOrder && s.method != Scheme::Method::Gptq)
    return fail("act-order is a gptq option");
  return success();
}

LogicalResult TfmQuantizePass::readWeight(WeightOp weight,
                                          std::vector<float> &out) {
  std::string name = weight.getSymName().str();
  if (auto it = modified.find(name); it != modified.end()) {
    out = it->second;
    return success();
  }
  if (std::optional<ArrayAttr> parts = weight.getConcat()) {
    if (weight.getDimAttr().getInt() != 0)
      return weight.emitOpError("tfm-quantize reads concatenations along "
                                "dim 0 only");
    out.clear();
    for (Attribute part : *parts) {
      auto decl =
          symbols->lookup<WeightOp>(cast<FlatSymbolRefAttr>(part).getValue());
      std::vector<float> data;
      if (!decl || failed(readWeight(decl, data)))
        return failure();
      out.insert(out.end(), data.begin(), data.end());
    }
    return success();
  }
  std::string error;
  if (!store->readF32(name, out, error))
    return weight.emitOpError() << "tfm-quantize: " << error;
  return success();
}

FoldTarget TfmQuantizePass::foldTargetOf(LinearOp op) {
  FoldTarget target;
  Value input = op.getInput();
  // Every reader of the input must be this linear: a factor folded into
  // its producer would change what the others read.
  if (!input.hasOneUse())
    return target;
  if (auto norm = input.getDefiningOp<RMSNormOp>()) {
    auto get = norm.getWeight().getDefiningOp<GetWeightOp>();
    if (!get || !get.getResult().hasOneUse())
      return target;
    target.kind = FoldTarget::Kind::NormWeight;
    target.get = get;
    target.weight = symbols->lookup<WeightOp>(get.getName());
    return target.weight ? target : FoldTarget();
  }
  // silu(gate) * up / s = silu(gate) * (up / s): the up rows of the gate/up
  // projection.
  if (auto swiglu = input.getDefiningOp<SwiGLUOp>()) {
    auto split = swiglu.getUp().getDefiningOp<SplitOp>();
    if (!split || split.getNumResults() != 2 ||
        split.getDimAttr().getInt() != 1 ||
        swiglu.getGate() != split.getResult(0) ||
        swiglu.getUp() != split.getResult(1))
      return target;
    auto producer = split.getInput().getDefiningOp<LinearOp>();
    if (!producer || producer.getBias())
      return target;
    auto get = producer.getWeight().getDefiningOp<GetWeightOp>();
    if (!get || !get.getResult().hasOneUse())
      return target;
    target.kind = FoldTarget::Kind::UpRows;
    target.get = get;
    target.weight = symbols->lookup<WeightOp>(get.getName());
    target.firstRow =
        cast<RankedTensorType>(split.getResult(0).getType()).getDimSize(1);
    return target.weight ? target : FoldTarget();
  }
  return target;
}

Value TfmQuantizePass::derivedWeight(WeightOp source, StringRef suffix,
                                     RankedTensorType type, Operation *user,
                                     std::string &name) {
  // After the source and the weights already derived from it, in order.
  Operation *after = source;
  while (auto next = dyn_cast_or_null<WeightOp>(after->getNextNode()))
    if (next.getDerivedAttr() &&
        next.getDerivedAttr().getValue() == source.getSymName())
      after = next;
    else
      break;
  OpBuilder declBuilder(source);
  declBuilder.setInsertionPointAfter(after);
  auto decl =
      WeightOp::create(declBuilder, source.getLoc(),
                       declBuilder.getStringAttr(source.getSymName() + suffix),
                       TypeAttr::get(type), ArrayAttr(), IntegerAttr(),
                       FlatSymbolRefAttr::get(source.getSymNameAttr()));
  // Renames the new symbol if the name is taken.
  StringAttr unique = symbols->insert(decl);
  name = unique.str();
  OpBuilder builder(user);
  return GetWeightOp::create(builder, user->getLoc(), type,
                             FlatSymbolRefAttr::get(unique));
}

/// W8A8's output error on the calibration sample for smoothing factors s:
/// || X W^T - fq(X / s) q(W s)^T ||^2.
double w8a8SampleError(const std::vector<float> &w, int64_t rows, int64_t cols,
                       const quant::LinearInputStats &stats,
                       const std::vector<float> &s) {
  const int64_t samples = stats.sampleRows();
  std::vector<float> x(stats.sample), ws(w);
  quant::scaleColumns(ws.data(), rows, cols, s);
  quant::WeightFormat format;
  format.codes = QuantizedCodes::Int8;
  format.groupSize = 0;
  std::vector<float> wq =
      quant::quantizeRtn(ws.data(), rows, cols, format).dequantize();
  std::vector<float> xs(x), inverse(cols);
  for (int64_t c = 0; c < cols; ++c)
    inverse[c] = 1.0f / s[c];
  quant::scaleColumns(xs.data(), samples, cols, inverse);
  optrt::fakeQuantizeActivations(optrt::ActivationQuant::Int8PerToken,
                                 xs.data(), samples, cols, cols);
  std::vector<float> exact(samples * rows), approx(samples * rows);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, samples, rows, cols,
              1.0f, x.data(), cols, w.data(), cols, 0.0f, exact.data(), rows);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, samples, rows, cols,
              1.0f, xs.data(), cols, wq.data(), cols, 0.0f, approx.data(),
              rows);
  double sum = 0;
  for (size_t i = 0; i < exact.size(); ++i)
    sum += double(exact[i] - approx[i]) * double(exact[i] - approx[i]);
  return sum;
}

LogicalResult TfmQuantizePass::quantizeLinear(LinearOp op,
                                              const Scheme &scheme) {
  auto get = op.getWeight().getDefiningOp<GetWeightOp>();
  WeightOp source = symbols->lookup<WeightOp>(get.getName());
  std::string name = source.getSymName().str();
  RankedTensorType type = source.getTensorType();
  const int64_t rows = type.getDimSize(0), cols = type.getDimSize(1);
  MLIRContext *context = &getContext();

  // The stored arrays' types.
  quant::WeightFormat format = scheme.format;
  Type codeType, scaleType;
  int64_t scaleCols = 1, scaleRows = rows;
  switch (format.codes) {
  case QuantizedCodes::Int4:
    codeType = IntegerType::get(context, 4);
    scaleType = Float16Type::get(context);
    scaleCols = cols / format.groupSize;
    break;
  case QuantizedCodes::Int8:
    codeType = IntegerType::get(context, 8);
    scaleType = Float32Type::get(context);
    break;
  case QuantizedCodes::F8E4M3:
    codeType = Float8E4M3FNType::get(context);
    scaleType = Float32Type::get(context);
    if (format.perTensor)
      scaleRows = 1;
    break;
  }
  auto valuesType = RankedTensorType::get({rows, cols}, codeType);
  auto scalesType = RankedTensorType::get({scaleRows, scaleCols}, scaleType);
  auto zerosType = RankedTensorType::get(
      {rows, scaleCols}, IntegerType::get(context, 8, IntegerType::Unsigned));
  bool withZeros = format.codes == QuantizedCodes::Int4 && !format.symmetric;

  std::optional<double> activationScale;
  quant::QuantizedMatrix matrix;
  if (store->hasData()) {
    std::vector<float> w;
    if (failed(readWeight(source, w)))
      return failure();
    const quant::LinearInputStats *stats =
        calibration ? calibration->find(name) : nullptr;
    if (scheme.needsStats() && !stats)
      return op.emitOpError()
             << "tfm-quantize: the calibration statistics "
                "have no entry for '"
             << name << "' (calibrated with other fusion passes?)";
    if (stats && stats->channels != cols)
      return op.emitOpError() << "tfm-quantize: the calibration statistics of '"
                              << name << "' are for " << stats->channels
                              << " input features, not " << cols;
    // Smoothing factors (AWQ, SmoothQuant): where they can be folded.
    FoldTarget fold;
    if (scheme.method == Scheme::Method::Awq || scheme.smooth)
      fold = foldTargetOf(op);
    std::vector<float> s;
    if (fold.kind != FoldTarget::Kind::None) {
      if (scheme.method == Scheme::Method::Awq) {
        s = quant::searchAwqScales(w.data(), rows, cols, format,
                                   stats->absMean.data(),
                                   stats->hessian.data());
      } else {
        std::vector<float> wMax = quant::columnAbsMax(w.data(), rows, cols);
        auto factors = [&](double alpha) {
          return quant::smoothQuantFactors(stats->absMax, wMax, alpha);
        };
        if (scheme.alpha >= 0 || stats->sampleRows() == 0) {
          s = factors(scheme.alpha >= 0 ? scheme.alpha : 0.5);
        } else {
          // Migration strength chosen on the calibration sample.
          double bestError = -1;
          for (int step = 2; step <= 8; ++step) {
            std::vector<float> candidate = factors(0.1 * step);
            double error = w8a8SampleError(w, rows, cols, *stats, candidate);
            if (bestError < 0 || error < bestError) {
              bestError = error;
              s = candidate;
            }
          }
        }
      }
      quant::scaleColumns(w.data(), rows, cols, s);
      // Fold 1 / s into the producer of the input.
      std::vector<float> producer;
      if (failed(readWeight(fold.weight, producer)))
        return failure();
      if (fold.kind == FoldTarget::Kind::NormWeight) {
        for (int64_t c = 0; c < cols; ++c)
          producer[c] /= s[c];
      } else {
        int64_t producerCols = fold.weight.getTensorType().getDimSize(1);
        for (int64_t c = 0; c < cols; ++c)
          for (int64_t k = 0; k < producerCols; ++k)
            producer[(fold.firstRow + c) * producerCols + k] /= s[c];
      }
      std::string producerName = fold.weight.getSymName().str();
      modified[producerName] = std::move(producer);
      modifiedDecls[producerName] = fold.weight;
    }
    if (scheme.method == Scheme::Method::Gptq) {
      quant::GptqOptions options;
      options.actOrder = scheme.actOrder;
      std::string error;
      if (!quant::quantizeGptq(w.data(), rows, cols, format,
                               stats->hessian.data(), options, matrix, error))
        return op.emitOpError() << "tfm-quantize: " << name << ": " << error;
    } else if (scheme.method == Scheme::Method::Awq) {
      // AWQ's clipping: the range of each group that rounds best on the
      // inputs as scaled (H / (s_i s_j)).
      std::vector<float> hessian = stats->hessian;
      if (!s.empty())
        for (int64_t i = 0; i < cols; ++i)
          for (int64_t j = 0; j < cols; ++j)
            hessian[i * cols + j] /= s[i] * s[j];
      std::vector<float> clip =
          quant::searchClipRatios(w.data(), rows, cols, format, hessian.data());
      matrix = quant::quantizeRtn(w.data(), rows, cols, format, clip.data());
    } else {
      matrix = quant::quantizeRtn(w.data(), rows, cols, format);
    }
    if (scheme.activations == ActivationQuant::F8Static) {
      float top = 0;
      for (int64_t c = 0; c < cols; ++c)
        top = std::max(top, stats->absMax[c] / (s.empty() ? 1.0f : s[c]));
      activationScale = top > 0 ? top / 448.0 : 1.0;
    }
  } else if (scheme.activations == ActivationQuant::F8Static) {
    return op.emitOpError("tfm-quantize: static fp8 activation scales come "
                          "from calibration, which a model without weight "
                          "data cannot have");
  }

  // The new weights and the op that reads them.
  std::string valuesName, scalesName, zerosName;
  Value values = derivedWeight(source, ".qvalues", valuesType, op, valuesName);
  Value scales = derivedWeight(source, ".qscales", scalesType, op, scalesName);
  Value zeros;
  if (withZeros)
    zeros = derivedWeight(source, ".qzeros", zerosType, op, zerosName);
  if (store->hasData()) {
    store->putComputed(valuesName, std::move(matrix.values));
    std::vector<uint8_t> bytes;
    if (format.codes == QuantizedCodes::Int4) {
      bytes.resize(matrix.scalesF16.size() * 2);
      std::memcpy(bytes.data(), matrix.scalesF16.data(), bytes.size());
    } else {
      bytes.resize(matrix.scalesF32.size() * 4);
      std::memcpy(bytes.data(), matrix.scalesF32.data(), bytes.size());
    }
    store->putComputed(scalesName, std::move(bytes));
    if (withZeros)
      store->putComputed(zerosName, std::move(matrix.zeros));
  }
  OpBuilder builder(op);
  auto quantized = QuantizedLinearOp::create(
      builder, op.getLoc(), op.getType(), op.getInput(), values, scales, zeros,
      ActivationQuantAttr::get(context, scheme.activations),
      activationScale ? builder.getF64FloatAttr(*activationScale)
                      : FloatAttr());
  Value result = quantized.getResult();
  if (Value bias = op.getBias())
    result = AddOp::create(builder, op.getLoc(), op.getType(), result, bias);
  op.getResult().replaceAllUsesWith(result);
  op.erase();
  if (get.getResult().use_empty())
    get.erase();
  return success();
}

void TfmQuantizePass::runOnOperation() {
  module = getOperation();
  Scheme chosen;
  if (failed(parseScheme(chosen)))
    return signalPassFailure();
  symbols = std::make_shared<SymbolTable>(module);
  modified.clear();
  modifiedDecls.clear();
  store = injectedStore;
  if (!store) {
    // Run on its own (optmlir-opt): the checkpoint the module came from.
    std::string error;
    if (auto dir = module->getAttrOfType<StringAttr>("tfm.checkpoint"))
      ownStore = optmlir::WeightStore::open(dir.str(), error);
    else
      ownStore = optmlir::WeightStore::empty();
    if (!ownStore) {
      module.emitError() << "tfm-quantize: " << error;
      return signalPassFailure();
    }
    store = ownStore.get();
  }
  if (store->hasData() && chosen.needsStats()) {
    if (std::string(stats).empty()) {
      module.emitError() << "tfm-quantize: " << std::string(scheme) << " ("
                         << std::string(method) << ")"
                         << " needs calibration statistics of this model "
                            "('optc calibrate'; optc compile --calibration "
                            "FILE, the pass's stats=FILE)";
      return signalPassFailure();
    }
    std::string error;
    calibration =
        quant::CalibrationStats::read(stats, store->fingerprint(), error);
    if (!calibration) {
      module.emitError() << "tfm-quantize: " << error;
      return signalPassFailure();
    }
  } else {
    calibration.reset();
  }

  std::string excludePattern = exclude;
  llvm::Regex excluded(excludePattern);
  std::string regexError;
  if (!excludePattern.empty() && !excluded.isValid(regexError)) {
    module.emitError() << "tfm-quantize: exclude is not a valid regex: "
                       << regexError;
    return signalPassFailure();
  }
  SmallVector<LinearOp> targets;
  bool failedCheck = false;
  module.walk([&](LinearOp op) {
    auto get = op.getWeight().getDefiningOp<GetWeightOp>();
    if (!get || !symbols->lookup<WeightOp>(get.getName()))
      return;
    StringRef name = get.getName();
    if (!excludePattern.empty() && excluded.match(name))
      return;
    auto type = cast<RankedTensorType>(op.getWeight().getType());
    std::string problem = quant::checkFormat(chosen.format, type.getDimSize(0),
                                             type.getDimSize(1));
    if (!problem.empty() && !failedCheck) {
      // The first one names the problem; the others repeat it.
      op.emitOpError() << "tfm-quantize: " << name << ": " << problem;
      failedCheck = true;
    }
    targets.push_back(op);
  });
  if (failedCheck)
    return signalPassFailure();
  for (LinearOp op : llvm::reverse(targets))
    if (failed(quantizeLinear(op, chosen)))
      return signalPassFailure();

  // Weights that absorbed smoothing factors and were not quantized (norm
  // weights): new derived weights with the changed data, read instead.
  for (auto &[name, data] : modified) {
    WeightOp decl = modifiedDecls[name];
    SmallVector<GetWeightOp> readers;
    module.walk([&](GetWeightOp get) {
      if (get.getName() == name)
        readers.push_back(get);
    });
    if (readers.empty())
      continue; // quantized: its data went into the quantized arrays
    OpBuilder declBuilder(decl);
    declBuilder.setInsertionPointAfter(decl);
    auto smoothed = WeightOp::create(
        declBuilder, decl.getLoc(),
        declBuilder.getStringAttr(name + ".smoothed"),
        TypeAttr::get(decl.getTensorType()), ArrayAttr(), IntegerAttr(),
        FlatSymbolRefAttr::get(decl.getSymNameAttr()));
    StringAttr unique = symbols->insert(smoothed);
    store->putComputedF32(unique.str(), data);
    for (GetWeightOp get : readers)
      get.setNameAttr(FlatSymbolRefAttr::get(unique));
  }
}

} // namespace

namespace mlir::tfm {
std::unique_ptr<Pass> createTfmQuantizePass(const TfmQuantizeOptions &options,
                                            optmlir::WeightStore *store) {
  return std::make_unique<TfmQuantizePass>(options, store);
}
} // namespace mlir::tfm
