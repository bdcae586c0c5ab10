//===- optc.cpp - the OptMLIR compiler driver -----------------------------===//
//
//   optc import DIR -o model.mlir     Hugging Face checkpoint -> tfm module
//   optc compile DIR -o model.optpkg  the whole pipeline, to an artifact
//   optc compile --config config.json --random-weights -o model.optpkg
//                                     any shape without a checkpoint: the
//                                     runtime fills the weights from a seed
//
//===----------------------------------------------------------------------===//

#include "optmlir/Import/Checkpoint.h"
#include "optmlir/Import/ImportModel.h"
#include "optmlir/Quantization/CalibrationStats.h"
#include "optmlir/Quantization/WeightStore.h"
#include "optmlir/Target/ModelPlan.h"
#include "optmlir/Target/NvptxCodegen.h"
#include "passes/Passes.h"
#include "runtime/artifact/Artifact.h"
#include "runtime/artifact/ArtifactWriter.h"
#include "runtime/core/NumberFormats.h"
#include "runtime/engine/Perplexity.h"
#include "runtime/engine/TextDocuments.h"
#include "runtime/exec/ModelExecutor.h"
#include "runtime/tokenizer/Tokenizer.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FileUtilities.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/xxhash.h"

#include <chrono>
#include <cstring>

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/WithColor.h"

using namespace llvm;

namespace {
cl::SubCommand importCommand("import",
                             "Import a Hugging Face checkpoint as a tfm module");
cl::opt<std::string> importDir(cl::Positional, cl::Required,
                               cl::desc("<checkpoint directory>"),
                               cl::sub(importCommand));
cl::opt<std::string> importOutput("o", cl::desc("Output file ('-' for stdout)"),
                                  cl::value_desc("file"), cl::init("-"),
                                  cl::sub(importCommand));

cl::SubCommand compileCommand(
    "compile", "Compile a Hugging Face checkpoint (or a config.json with "
               "--random-weights) to an artifact");
cl::opt<std::string> compileDir(cl::Positional, cl::Optional,
                                cl::desc("<checkpoint directory>"),
                                cl::sub(compileCommand));
cl::opt<std::string> compileConfig(
    "config",
    cl::desc("config.json to compile without a checkpoint (needs "
             "--random-weights)"),
    cl::value_desc("file"), cl::sub(compileCommand));
cl::opt<bool> compileRandomWeights(
    "random-weights",
    cl::desc("Store no weight data: the runtime fills the weights with random "
             "values (for benchmarking shapes whose weights we do not have)"),
    cl::init(false), cl::sub(compileCommand));
cl::opt<std::string> compileOutput("o", cl::desc("Output artifact"),
                                   cl::value_desc("file"), cl::Required,
                                   cl::sub(compileCommand));
cl::opt<std::string> compileTarget(
    "target",
    cl::desc("cpu (the host processor), sm_90a (H100/H200) or sm_80 (A100)"),
    cl::init("cpu"), cl::sub(compileCommand));
cl::opt<std::string> compileCpu(
    "cpu", cl::desc("Host processor to generate code for (x86-64-v3, native)"),
    cl::init("x86-64-v3"), cl::sub(compileCommand));
cl::opt<int64_t> compileMaxTokens(
    "max-tokens-per-step",
    cl::desc("Most tokens one step may carry (sizes the activations)"),
    cl::init(2048), cl::sub(compileCommand));
cl::opt<std::string> compileKvCacheDtype(
    "kv-cache-dtype",
    cl::desc("How the KV cache stores keys and values: auto (the target's "
             "activation type: f32 on the CPU, bf16 on GPUs), fp8e4m3 (one "
             "byte) or int8 (one byte, with an f32 scale per token and head); "
             "the last two on the CPU target so far"),
    cl::init("auto"), cl::sub(compileCommand));
cl::opt<int64_t> compileKvBlockSize(
    "kv-block-size",
    cl::desc("Tokens per paged KV-cache block (a power of two up to 1024)"),
    cl::init(16), cl::sub(compileCommand));
cl::opt<std::string> compileGemvTiling(
    "gemv-tiling",
    cl::desc("GPU decode GEMV tiling as WARPS/SPLITK[/ROWS[/LOADS]]: warps "
             "per block, how many share one output row, rows per warp at "
             "least, 16-byte loads in flight per lane (tuning; default "
             "auto: the planner's rule)"),
    cl::value_desc("w/s/r/l"), cl::init("auto"), cl::Hidden,
    cl::sub(compileCommand));
cl::opt<bool> compileNoFusion("no-fusion",
                              cl::desc("Skip the projection fusion passes"),
                              cl::init(false), cl::sub(compileCommand));
cl::opt<std::string> compileQuantize(
    "quantize",
    cl::desc("Store the linears' weights quantized (tfm-quantize; "
             "docs/quantization.md): none, w4a16-rtn, w4a16-awq, w4a16-gptq, "
             "w8a16, w8a8-sq (SmoothQuant), w8a8 (no smoothing) or fp8; awq, "
             "gptq, w8a8 and static fp8 need --calibration"),
    cl::init("none"), cl::sub(compileCommand));
cl::opt<std::string> compileCalibration(
    "calibration",
    cl::desc("Calibration statistics of this model (optc calibrate)"),
    cl::value_desc("file"), cl::sub(compileCommand));
cl::opt<int64_t>
    compileGroupSize("group-size",
                     cl::desc("w4a16: input features a scale covers"),
                     cl::init(128), cl::sub(compileCommand));
cl::opt<bool> compileSymmetric("symmetric", cl::desc("w4a16: no zero points"),
                               cl::init(false), cl::sub(compileCommand));
cl::opt<bool> compileActOrder(
    "act-order",
    cl::desc("w4a16-gptq: quantize columns in order of decreasing Hessian "
             "diagonal"),
    cl::init(false), cl::sub(compileCommand));
cl::opt<double> compileSmoothAlpha(
    "smooth-alpha",
    cl::desc("w8a8-sq: migration strength in [0, 1]; default: chosen per "
             "layer on the calibration sample"),
    cl::init(-1.0), cl::sub(compileCommand));
cl::opt<std::string>
    compileFp8WeightScale("fp8-weight-scale",
                          cl::desc("fp8: channel (default) or tensor"),
                          cl::init("channel"), cl::sub(compileCommand));
cl::opt<std::string> compileFp8ActivationScale(
    "fp8-activation-scale",
    cl::desc("fp8: dynamic (default) or static (from --calibration)"),
    cl::init("dynamic"), cl::sub(compileCommand));
cl::opt<std::string> compileQuantizeExclude(
    "quantize-exclude",
    cl::desc("Weights left unquantized, a regex of their names (default: "
             "lm_head and the embeddings; '' quantizes every linear)"),
    cl::init("^lm_head\\.|embed_tokens"), cl::sub(compileCommand));

cl::SubCommand calibrateCommand(
    "calibrate", "Run a checkpoint over calibration text and record what the "
                 "quantization methods need (optc compile --calibration)");
cl::opt<std::string> calibrateDir(cl::Positional, cl::Required,
                                  cl::desc("<checkpoint directory>"),
                                  cl::sub(calibrateCommand));
cl::opt<std::string> calibrateData(
    "data",
    cl::desc("Calibration text: JSON lines with a \"text\" field, or plain "
             "text (never the evaluation text)"),
    cl::value_desc("file"), cl::Required, cl::sub(calibrateCommand));
cl::opt<std::string> calibrateOutput("o", cl::desc("Statistics file to write"),
                                     cl::value_desc("file"), cl::Required,
                                     cl::sub(calibrateCommand));
cl::opt<int64_t>
    calibrateMaxTokens("max-tokens",
                       cl::desc("Tokens of the text to run at most"),
                       cl::init(32768), cl::sub(calibrateCommand));
cl::opt<int64_t> calibrateWindow(
    "window", cl::desc("Tokens per sequence (the text is cut into these)"),
    cl::init(512), cl::sub(calibrateCommand));
cl::opt<int64_t> calibrateSampleRows(
    "sample-rows",
    cl::desc("Input rows kept per linear (SmoothQuant's choice of alpha)"),
    cl::init(256), cl::sub(calibrateCommand));

int fail(const Twine &message) {
  WithColor::error(errs(), "optc") << message << "\n";
  return 1;
}

int runImport() {
  mlir::MLIRContext context;
  std::string error;
  mlir::OwningOpRef<mlir::ModuleOp> module =
      optmlir::importCheckpoint(context, importDir, error);
  if (!module)
    return fail(error);
  // The output appears whole or not at all: ToolOutputFile removes it unless
  // kept.
  std::unique_ptr<ToolOutputFile> output =
      mlir::openOutputFile(importOutput, &error);
  if (!output)
    return fail(error);
  module->print(output->os());
  output->os() << "\n";
  output->os().flush();
  if (output->os().has_error())
    return fail(importOutput + ": write failed: " +
                output->os().error().message());
  output->keep();
  return 0;
}
namespace art = optrt::artifact;

/// Element `e` of a BF16, F16 or F32 tensor, as f32.
float elementAsF32(optmlir::DType dtype, const uint8_t *data, int64_t e) {
  uint16_t half;
  float value;
  switch (dtype) {
  case optmlir::DType::BF16:
    std::memcpy(&half, data + 2 * e, 2);
    return optrt::bf16ToFloat(half);
  case optmlir::DType::F16:
    std::memcpy(&half, data + 2 * e, 2);
    return optrt::f16ToFloat(half);
  default:
    std::memcpy(&value, data + 4 * e, 4);
    return value;
  }
}

/// Hands `count` elements of `dtype` at `data` to `sink` as `to` (F32 or
/// BF16), in chunks.
bool streamConverted(optmlir::DType dtype, const uint8_t *data, int64_t count,
                     art::DType to, const art::ByteSink &sink) {
  if (to == art::DType::BF16 && dtype == optmlir::DType::BF16)
    return sink(data, count * 2);
  constexpr int64_t kChunk = 1 << 16;
  std::vector<float> f32(to == art::DType::F32 ? kChunk : 0);
  std::vector<uint16_t> bf16(to == art::DType::BF16 ? kChunk : 0);
  for (int64_t start = 0; start < count; start += kChunk) {
    int64_t n = std::min<int64_t>(kChunk, count - start);
    for (int64_t i = 0; i < n; ++i) {
      float value = elementAsF32(dtype, data, start + i);
      if (to == art::DType::F32)
        f32[i] = value;
      else
        bf16[i] = optrt::floatToBF16(value);
    }
    bool written = to == art::DType::F32
                       ? sink(f32.data(), n * sizeof(float))
                       : sink(bf16.data(), n * sizeof(uint16_t));
    if (!written)
      return false;
  }
  return true;
}

/// xxh3 of a whole file, for provenance.
std::string fileChecksum(const std::string &path, uint64_t &size) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return "";
  size = (*buffer)->getBufferSize();
  return "xxh3:" + llvm::utohexstr(llvm::xxh3_64bits(
                       llvm::arrayRefFromStringRef((*buffer)->getBuffer())),
                   /*LowerCase=*/true);
}

/// Generation defaults from generation_config.json, where present.
void readGenerationDefaults(const std::string &dir,
                            art::GenerationDefaults &defaults) {
  auto buffer = llvm::MemoryBuffer::getFile(dir + "/generation_config.json");
  if (!buffer)
    return;
  llvm::Expected<llvm::json::Value> json =
      llvm::json::parse((*buffer)->getBuffer());
  if (!json) {
    llvm::consumeError(json.takeError());
    return;
  }
  const llvm::json::Object *object = json->getAsObject();
  if (!object)
    return;
  // Without do_sample Hugging Face decodes greedily, whatever else it says.
  bool sample = object->getBoolean("do_sample").value_or(false);
  defaults.temperature = sample ? float(object->getNumber("temperature")
                                            .value_or(1.0))
                                : 0.0f;
  if (sample) {
    if (auto topP = object->getNumber("top_p"))
      defaults.topP = float(*topP);
    if (auto topK = object->getInteger("top_k"))
      defaults.topK = int32_t(*topK);
  }
  if (auto maxNew = object->getInteger("max_new_tokens"))
    defaults.maxNewTokens = int32_t(*maxNew);
  if (auto penalty = object->getNumber("repetition_penalty"))
    defaults.repetitionPenalty = float(*penalty);
}

/// A progress bar on a terminal, once the work has taken over a second.
class ProgressBar {
public:
  explicit ProgressBar(std::string label = "packing weights")
      : label(std::move(label)) {}
  void update(uint64_t done, uint64_t total) {
    if (!llvm::sys::Process::StandardErrIsDisplayed() || total == 0)
      return;
    auto now = std::chrono::steady_clock::now();
    if (now - start < std::chrono::seconds(1) ||
        (done < total && now - last < std::chrono::milliseconds(100)))
      return;
    last = now;
    int filled = int(40 * done / total);
    errs() << "\r" << label << " [" << std::string(filled, '#')
           << std::string(40 - filled, ' ') << "] " << (100 * done / total)
           << "%";
    if (done == total)
      errs() << "\n";
  }

private:
  std::string label;
  std::chrono::steady_clock::time_point start =
      std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last;
};

/// tfm-quantize's options for --quantize=NAME and the other quantization
/// flags; std::nullopt for an unknown scheme.
std::optional<mlir::tfm::TfmQuantizeOptions> quantizeOptions(StringRef name) {
  mlir::tfm::TfmQuantizeOptions o;
  if (name.consume_front("w4a16-")) {
    if (name != "rtn" && name != "awq" && name != "gptq")
      return std::nullopt;
    o.scheme = "w4a16";
    o.method = name.str();
  } else if (name == "w8a16") {
    o.scheme = "w8a16";
  } else if (name == "w8a8-sq" || name == "w8a8") {
    o.scheme = "w8a8";
    o.smooth = name == "w8a8-sq";
  } else if (name == "fp8") {
    o.scheme = "fp8";
  } else {
    return std::nullopt;
  }
  o.groupSize = compileGroupSize;
  o.symmetric = compileSymmetric;
  o.actOrder = compileActOrder;
  o.smoothAlpha = compileSmoothAlpha;
  o.fp8WeightScale = compileFp8WeightScale;
  o.fp8ActivationScale = compileFp8ActivationScale;
  o.exclude = compileQuantizeExclude;
  o.stats = compileCalibration;
  return o;
}

/// The graph passes between import and planning, the same for compile and
/// calibrate (whose statistics then name the weights compile's linears
/// read): projection fusion, cleanup, quantization when asked for.
void addGraphPasses(mlir::PassManager &pm,
                    const mlir::tfm::TfmQuantizeOptions *quantize,
                    optmlir::WeightStore *store, bool fuse = !compileNoFusion) {
  if (fuse) {
    pm.addPass(mlir::tfm::createTfmFuseQKV());
    pm.addPass(mlir::tfm::createTfmFuseGateUp());
  }
  pm.addPass(mlir::createCanonicalizerPass());
  pm.addPass(mlir::createCSEPass());
  if (quantize)
    pm.addPass(mlir::tfm::createTfmQuantizePass(*quantize, store));
}

int runCompile() {
  optmlir::ModelPlanOptions options;
  if (compileTarget == "cpu") {
    options.target = optmlir::PlanTarget::Host;
  } else if (compileTarget == "sm_90a" || compileTarget == "sm_80") {
    options.target = optmlir::PlanTarget::Nvptx;
    options.chip = compileTarget;
  } else {
    return fail("--target=" + compileTarget +
                ": unknown target (expected cpu, sm_90a or sm_80)");
  }
  if (compileMaxTokens < 1 || compileMaxTokens > (1 << 20))
    return fail("--max-tokens-per-step must be in [1, 1048576]");
  if (compileKvCacheDtype != "auto" && compileKvCacheDtype != "fp8e4m3" &&
      compileKvCacheDtype != "int8")
    return fail("--kv-cache-dtype=" + compileKvCacheDtype +
                ": unknown (expected auto, fp8e4m3 or int8)");
  if (compileKvBlockSize < 1 || compileKvBlockSize > 1024 ||
      (compileKvBlockSize & (compileKvBlockSize - 1)))
    return fail("--kv-block-size must be a power of two up to 1024, got " +
                Twine(int64_t(compileKvBlockSize)));

  if (compileGemvTiling != "auto") {
    // Fields left out keep the kernels' defaults.
    options.gemvMinRowsPerWarp = 1;
    options.gemvLoadsInFlight = 4;
    int64_t *targets[] = {&options.gemvWarps, &options.gemvSplitK,
                          &options.gemvMinRowsPerWarp,
                          &options.gemvLoadsInFlight};
    SmallVector<StringRef, 4> fields;
    StringRef(compileGemvTiling).split(fields, '/');
    bool bad = fields.size() < 2 || fields.size() > 4;
    for (size_t i = 0; !bad && i < fields.size(); ++i)
      bad = fields[i].getAsInteger(10, *targets[i]) || *targets[i] < 1;
    if (bad || options.gemvWarps > 32 ||
        options.gemvWarps % options.gemvSplitK != 0 ||
        options.gemvMinRowsPerWarp > 8 || options.gemvLoadsInFlight > 32)
      return fail("--gemv-tiling=" + compileGemvTiling +
                  ": expected auto or WARPS/SPLITK[/ROWS[/LOADS]] with 1 <= "
                  "WARPS <= 32, SPLITK dividing WARPS, ROWS <= 8, LOADS <= 32");
  }

  mlir::DialectRegistry registry;
  optmlir::registerHostCodegenDialects(registry);
  optmlir::registerNvptxCodegenDialects(registry);
  mlir::MLIRContext context(registry);
  std::string error;
  // With --config the module comes from the hyperparameters alone: no
  // checkpoint to read weights from, no tokenizer.
  bool fromConfig = !compileConfig.empty();
  if (fromConfig == !compileDir.empty())
    return fail("give either a checkpoint directory or --config FILE");
  if (fromConfig && !compileRandomWeights)
    return fail("--config needs --random-weights (there is no checkpoint to "
                "read weights from)");
  optmlir::ModelConfig config;
  mlir::OwningOpRef<mlir::ModuleOp> module;
  if (fromConfig) {
    if (!optmlir::loadModelConfig(compileConfig, config, &error))
      return fail(error);
    module = optmlir::buildModelModule(context, config, "");
    if (!module || mlir::failed(mlir::verify(*module)))
      return fail(compileConfig + ": the model built from it does not verify");
  } else {
    module = optmlir::importCheckpoint(context, compileDir, error);
    if (!module)
      return fail(error);
  }
  std::string dir =
      fromConfig
          ? compileConfig.getValue()
          : llvm::cast<mlir::StringAttr>((*module)->getAttr("tfm.checkpoint"))
                .str();

  // The weights' data: the checkpoint, and what passes compute from it.
  std::unique_ptr<optmlir::WeightStore> store =
      fromConfig || compileRandomWeights
          ? optmlir::WeightStore::empty()
          : optmlir::WeightStore::open(dir, error);
  if (!store)
    return fail(error);
  std::optional<mlir::tfm::TfmQuantizeOptions> quantize;
  if (compileQuantize != "none") {
    quantize = quantizeOptions(compileQuantize);
    if (!quantize)
      return fail("--quantize=" + compileQuantize +
                  ": unknown scheme (expected none, w4a16-rtn, w4a16-awq, "
                  "w4a16-gptq, w8a16, w8a8-sq, w8a8 or fp8)");
  }

  std::vector<std::string> passes;
  mlir::PassManager pm(&context);
  addGraphPasses(pm, quantize ? &*quantize : nullptr, store.get());
  // The KV cache's layout, recorded on the attention ops for the planner.
  mlir::tfm::TfmKvLayoutOptions kvLayout;
  kvLayout.blockSize = compileKvBlockSize;
  kvLayout.elementType =
      compileKvCacheDtype == "auto" ? std::string("native")
                                    : std::string(compileKvCacheDtype);
  pm.addPass(mlir::tfm::createTfmKvLayout(kvLayout));
  {
    std::string pipeline;
    llvm::raw_string_ostream os(pipeline);
    pm.printAsTextualPipeline(os);
    passes.push_back(os.str());
  }
  // The first error a pass reports is the message (one line, without the
  // op's location: the pass names the weight).
  std::string firstError;
  mlir::LogicalResult passed = mlir::success();
  {
    mlir::ScopedDiagnosticHandler handler(&context, [&](mlir::Diagnostic &d) {
      if (d.getSeverity() == mlir::DiagnosticSeverity::Error &&
          firstError.empty())
        firstError = d.str();
      return mlir::success();
    });
    passed = pm.run(*module);
  }
  if (mlir::failed(passed))
    return fail(dir + ": " +
                (firstError.empty() ? "the graph passes failed" : firstError));

  options.maxTokensPerStep = compileMaxTokens;
  options.codegen.cpu = compileCpu;
  mlir::FailureOr<optmlir::ModelPlan> plan =
      optmlir::planModel(*module, options, error);
  if (mlir::failed(plan))
    return fail(dir + ": " + error);

  art::ArtifactSpec &spec = plan->spec;
  if (!fromConfig) {
    auto tokenizerText =
        llvm::MemoryBuffer::getFile(dir + "/tokenizer.json");
    if (!tokenizerText)
      return fail(dir + "/tokenizer.json: " +
                  tokenizerText.getError().message());
    spec.tokenizer =
        art::Tokenizer{"huggingface", (*tokenizerText)->getBuffer().str(), ""};
    // The chat template and special token names, for `optrun serve`.
    if (auto configText =
            llvm::MemoryBuffer::getFile(dir + "/tokenizer_config.json"))
      spec.tokenizer->configJson = (*configText)->getBuffer().str();
    readGenerationDefaults(dir, spec.generation);
  }
  spec.provenance.compiler = "optc 0.1";
  {
    auto now = std::chrono::system_clock::to_time_t(
        std::chrono::system_clock::now());
    char date[32];
    std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    spec.provenance.created = date;
  }
  std::error_code ec;
  if (fromConfig) {
    art::SourceFile source;
    source.path = llvm::sys::path::filename(dir).str();
    source.checksum = fileChecksum(dir, source.size);
    spec.provenance.sources.push_back(std::move(source));
  } else {
    for (llvm::sys::fs::directory_iterator it(dir, ec), end; it != end && !ec;
         it.increment(ec)) {
      StringRef name = llvm::sys::path::filename(it->path());
      if (!name.ends_with(".json") && !name.ends_with(".safetensors"))
        continue;
      art::SourceFile source;
      source.path = name.str();
      source.checksum = fileChecksum(it->path(), source.size);
      spec.provenance.sources.push_back(std::move(source));
    }
  }
  llvm::sort(spec.provenance.sources,
             [](const art::SourceFile &a, const art::SourceFile &b) {
               return a.path < b.path;
             });
  spec.provenance.passes = passes;
  spec.provenance.options = {"--target=" + compileTarget, "--cpu=" + compileCpu,
                             "--max-tokens-per-step=" +
                                 std::to_string(compileMaxTokens)};
  if (compileRandomWeights)
    spec.provenance.options.push_back("--random-weights");

  art::ArtifactWriter writer(spec);
  for (const optmlir::PlannedWeight &weight : plan->weights) {
    art::WeightInfo info;
    info.name = weight.name;
    info.dtype = weight.storedType.value_or(plan->weightType);
    info.shape = weight.shape;
    if (compileRandomWeights) {
      writer.addVirtualWeight(info);
      continue;
    }
    // Arrays a pass computed (quantized weights) are written as they are;
    // the rest come from the checkpoint (or a pass's f32 values) in the
    // plan's type.
    if (const std::vector<uint8_t> *bytes = store->computed(weight.name)) {
      writer.addWeight(info, bytes->data());
      continue;
    }
    const optmlir::WeightStore *source = store.get();
    std::vector<std::string> parts = weight.parts;
    art::DType to = info.dtype;
    writer.addWeight(info, [source, parts, to](const art::ByteSink &sink,
                                               std::string &error) {
      for (const std::string &part : parts) {
        if (const std::vector<float> *values = source->computedF32(part)) {
          if (!streamConverted(
                  optmlir::DType::F32,
                  reinterpret_cast<const uint8_t *>(values->data()),
                  int64_t(values->size()), to, sink)) {
            error = "writing weight '" + part + "' failed";
            return false;
          }
          continue;
        }
        const optmlir::TensorInfo *tensor = source->source()->find(part);
        const uint8_t *data = source->source()->tensorData(part);
        if (!tensor || !data) {
          error = "weight '" + part + "' is not in the checkpoint";
          return false;
        }
        if (!streamConverted(tensor->dtype, data, tensor->numElements(), to,
                             sink)) {
          error = "writing weight '" + part + "' failed";
          return false;
        }
      }
      return true;
    });
  }
  ProgressBar bar;
  writer.setProgress([&](uint64_t done, uint64_t total, const std::string &) {
    bar.update(done, total);
  });
  if (!writer.write(compileOutput, error))
    return fail(compileOutput + ": " + error);
  return 0;
}
/// optc calibrate: the model compiled for the CPU (with compile's graph
/// passes, into a temporary artifact) runs the calibration text through the
/// runtime, which shows every gemm's input to the statistics.
int runCalibrate() {
  if (calibrateWindow < 2 || calibrateMaxTokens < calibrateWindow)
    return fail("--window must be at least 2 and --max-tokens at least the "
                "window");
  std::string error;
  std::unique_ptr<optmlir::WeightStore> store =
      optmlir::WeightStore::open(calibrateDir, error);
  if (!store)
    return fail(error);
  std::vector<std::string> documents;
  if (!optrt::readDocuments(calibrateData, documents, error))
    return fail(calibrateData + ": " + error);

  SmallString<128> temporary;
  if (std::error_code ec =
          sys::fs::createTemporaryFile("optc-calibrate", "optpkg", temporary))
    return fail("cannot create a temporary file: " + ec.message());
  FileRemover removeTemporary(temporary);
  compileDir = calibrateDir;
  compileOutput = std::string(temporary);
  compileTarget = "cpu";
  compileQuantize = "none";
  if (int status = runCompile())
    return status;

  std::unique_ptr<optrt::artifact::Artifact> artifact =
      optrt::artifact::Artifact::open(std::string(temporary), error);
  if (!artifact)
    return fail(error);
  const optrt::fb::Tokenizer *tokenizerEntry = artifact->tokenizer();
  std::unique_ptr<optrt::Tokenizer> tokenizer =
      tokenizerEntry && tokenizerEntry->json()
          ? optrt::Tokenizer::fromJson(tokenizerEntry->json()->string_view(),
                                       &error)
          : nullptr;
  if (!tokenizer)
    return fail(calibrateDir + ": its tokenizer does not load: " + error);
  const optrt::fb::ModelInfo &info = artifact->model();
  std::optional<int32_t> bos = tokenizer->bosId(), eos = tokenizer->eosId();
  if (info.bos_id() >= 0)
    bos = info.bos_id();
  if (info.eos_ids() && info.eos_ids()->size() > 0)
    eos = info.eos_ids()->Get(0);
  if (!bos || !eos)
    return fail(calibrateDir + ": the model names no beginning- or "
                               "end-of-sequence token");
  std::vector<optrt::TokenId> stream =
      optrt::perplexityTokenStream(*tokenizer, documents, *bos, *eos);
  int64_t usable = std::min<int64_t>(stream.size(), calibrateMaxTokens);
  usable -= usable % calibrateWindow;
  if (usable < calibrateWindow)
    return fail(calibrateData + ": " + std::to_string(stream.size()) +
                " tokens, fewer than one window of " +
                std::to_string(int64_t(calibrateWindow)));
  stream.resize(usable);

  std::map<std::string, optmlir::quant::LinearInputAccumulator, std::less<>>
      accumulators;
  optrt::ExecutorOptions executorOptions;
  executorOptions.gemmInputObserver = [&](std::string_view weight,
                                          const float *rows, int64_t numRows,
                                          int64_t cols, int64_t stride) {
    auto it = accumulators.find(weight);
    if (it == accumulators.end())
      it = accumulators
               .emplace(std::string(weight),
                        optmlir::quant::LinearInputAccumulator(
                            cols, calibrateSampleRows))
               .first;
    it->second.add(rows, numRows, stride);
  };
  std::unique_ptr<optrt::ModelExecutor> executor =
      optrt::createExecutor(*artifact, executorOptions, error);
  if (!executor)
    return fail(error);
  optrt::PerplexityOptions scoring;
  scoring.window = int32_t(calibrateWindow);
  ProgressBar bar("calibrating");
  scoring.progress = [&](int64_t done, int64_t total) {
    bar.update(uint64_t(done), uint64_t(total));
  };
  optrt::PerplexityResult result;
  if (!optrt::scorePerplexity(*executor, stream, scoring, result, error))
    return fail(calibrateData + ": " + error);

  optmlir::quant::CalibrationStats stats;
  stats.modelFingerprint = store->fingerprint();
  stats.tokens = usable;
  stats.source = sys::path::filename(calibrateData).str();
  for (const auto &[name, accumulator] : accumulators)
    stats.linears[name] = accumulator.finish();
  if (!stats.write(calibrateOutput, error))
    return fail(error);
  outs() << "calibrated on " << usable << " tokens of " << stats.source
         << " (perplexity " << format("%.4f", result.perplexity)
         << "): " << stats.linears.size() << " linears -> " << calibrateOutput
         << "\n";
  return 0;
}
} // namespace

int main(int argc, char **argv) {
  InitLLVM y(argc, argv);
  cl::ParseCommandLineOptions(argc, argv, "OptMLIR compiler\n");
  if (importCommand)
    return runImport();
  if (compileCommand)
    return runCompile();
  if (calibrateCommand)
    return runCalibrate();
  errs() << "optc: no command given (try 'optc import DIR -o model.mlir', "
            "'optc compile DIR -o model.optpkg' or 'optc calibrate DIR --data "
            "FILE -o stats'; see --help)\n";
  return 1;
}
