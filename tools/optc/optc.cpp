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
#include "optmlir/Target/ModelPlan.h"
#include "optmlir/Target/NvptxCodegen.h"
#include "passes/Passes.h"
#include "runtime/artifact/ArtifactWriter.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/xxhash.h"

#include <chrono>
#include <cstring>

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
             "activation type: f32 on the CPU, bf16 on GPUs) or fp8e4m3 (one "
             "byte, CPU target so far)"),
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
  uint32_t bits;
  float value;
  switch (dtype) {
  case optmlir::DType::BF16:
    std::memcpy(&half, data + 2 * e, 2);
    bits = uint32_t(half) << 16;
    std::memcpy(&value, &bits, 4);
    return value;
  case optmlir::DType::F16:
    std::memcpy(&half, data + 2 * e, 2);
    return llvm::APFloat(llvm::APFloat::IEEEhalf(), llvm::APInt(16, half))
        .convertToFloat();
  default:
    std::memcpy(&value, data + 4 * e, 4);
    return value;
  }
}

/// f32 to bf16, rounding to nearest even (NaN stays NaN).
uint16_t toBF16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7fffffff) > 0x7f800000)
    return uint16_t((bits >> 16) | 0x40);
  bits += 0x7fff + ((bits >> 16) & 1);
  return uint16_t(bits >> 16);
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
        bf16[i] = toBF16(value);
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
  void update(uint64_t done, uint64_t total) {
    if (!llvm::sys::Process::StandardErrIsDisplayed() || total == 0)
      return;
    auto now = std::chrono::steady_clock::now();
    if (now - start < std::chrono::seconds(1) ||
        (done < total && now - last < std::chrono::milliseconds(100)))
      return;
    last = now;
    int filled = int(40 * done / total);
    errs() << "\rpacking weights [" << std::string(filled, '#')
           << std::string(40 - filled, ' ') << "] " << (100 * done / total)
           << "%";
    if (done == total)
      errs() << "\n";
  }

private:
  std::chrono::steady_clock::time_point start =
      std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last;
};

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
  if (compileKvCacheDtype != "auto" && compileKvCacheDtype != "fp8e4m3")
    return fail("--kv-cache-dtype=" + compileKvCacheDtype +
                ": unknown (expected auto or fp8e4m3)");
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

  std::vector<std::string> passes;
  mlir::PassManager pm(&context);
  if (!compileNoFusion) {
    pm.addPass(mlir::tfm::createTfmFuseQKV());
    pm.addPass(mlir::tfm::createTfmFuseGateUp());
  }
  pm.addPass(mlir::createCanonicalizerPass());
  pm.addPass(mlir::createCSEPass());
  // The KV cache's layout, recorded on the attention ops for the planner.
  mlir::tfm::TfmKvLayoutOptions kvLayout;
  kvLayout.blockSize = compileKvBlockSize;
  kvLayout.elementType =
      compileKvCacheDtype == "fp8e4m3" ? "fp8e4m3" : "native";
  pm.addPass(mlir::tfm::createTfmKvLayout(kvLayout));
  {
    std::string pipeline;
    llvm::raw_string_ostream os(pipeline);
    pm.printAsTextualPipeline(os);
    passes.push_back(os.str());
  }
  if (mlir::failed(pm.run(*module)))
    return fail(dir + ": the graph passes failed");

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

  std::unique_ptr<optmlir::Checkpoint> checkpoint;
  if (!fromConfig) {
    if (!optmlir::loadModelConfig(dir + "/config.json", config, &error))
      return fail(error);
    checkpoint = optmlir::Checkpoint::open(dir, config, &error);
    if (!checkpoint)
      return fail(error);
  }

  art::ArtifactWriter writer(spec);
  for (const optmlir::PlannedWeight &weight : plan->weights) {
    art::WeightInfo info;
    info.name = weight.name;
    info.dtype = plan->weightType;
    info.shape = weight.shape;
    if (compileRandomWeights) {
      writer.addVirtualWeight(info);
      continue;
    }
    const optmlir::Checkpoint *store = checkpoint.get();
    std::vector<std::string> parts = weight.parts;
    art::DType to = plan->weightType;
    writer.addWeight(info, [store, parts, to](const art::ByteSink &sink,
                                              std::string &error) {
      for (const std::string &part : parts) {
        const optmlir::TensorInfo *tensor = store->find(part);
        const uint8_t *data = store->tensorData(part);
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
} // namespace

int main(int argc, char **argv) {
  InitLLVM y(argc, argv);
  cl::ParseCommandLineOptions(argc, argv, "OptMLIR compiler\n");
  if (importCommand)
    return runImport();
  if (compileCommand)
    return runCompile();
  errs() << "optc: no command given (try 'optc import DIR -o model.mlir' or "
            "'optc compile DIR -o model.optpkg'; see --help)\n";
  return 1;
}
