//===- HostCodegen.cpp - MLIR kernels to x86-64 native code ---------------===//
//
// MLIR (memref level) -> LLVM dialect -> LLVM IR -> O3 -> ELF object, then
// `cc -shared` for the shared object. See HostCodegen.h.
//
//===----------------------------------------------------------------------===//

#include "optmlir/Target/HostCodegen.h"

#include "optmlir/Target/ExternalTool.h"

#include "mlir/Conversion/AffineToStandard/AffineToStandard.h"
#include "mlir/Conversion/ArithToLLVM/ArithToLLVM.h"
#include "mlir/Conversion/ControlFlowToLLVM/ControlFlowToLLVM.h"
#include "mlir/Conversion/FuncToLLVM/ConvertFuncToLLVMPass.h"
#include "mlir/Conversion/IndexToLLVM/IndexToLLVM.h"
#include "mlir/Conversion/MathToLLVM/MathToLLVM.h"
#include "mlir/Conversion/MathToLibm/MathToLibm.h"
#include "mlir/Conversion/MemRefToLLVM/MemRefToLLVM.h"
#include "mlir/Conversion/ReconcileUnrealizedCasts/ReconcileUnrealizedCasts.h"
#include "mlir/Conversion/SCFToControlFlow/SCFToControlFlow.h"
#include "mlir/Conversion/UBToLLVM/UBToLLVM.h"
#include "mlir/Conversion/VectorToLLVM/ConvertVectorToLLVMPass.h"
#include "mlir/Conversion/VectorToSCF/VectorToSCF.h"
#include "mlir/Dialect/Affine/IR/AffineOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Transforms/Passes.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Math/Transforms/Passes.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/Vector/Transforms/Passes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Verifier.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"
#include "llvm/TargetParser/Triple.h"

#include <algorithm>
#include <mutex>

using namespace mlir;

namespace optmlir {

namespace {

/// The runtime loads kernels with dlopen on Linux, so the only triple we emit.
constexpr llvm::StringLiteral kTargetTriple = "x86_64-unknown-linux-gnu";

void initializeX86Target() {
  // Target registration is global and not idempotent-safe across threads.
  static std::once_flag once;
  std::call_once(once, [] {
    LLVMInitializeX86TargetInfo();
    LLVMInitializeX86Target();
    LLVMInitializeX86TargetMC();
    LLVMInitializeX86AsmPrinter();
  });
}

/// Collects MLIR diagnostics (errors and their notes) into one string so that
/// failures reach the caller's `error` rather than stderr.
class DiagnosticCollector {
public:
  explicit DiagnosticCollector(MLIRContext *context)
      : handler(context, [this](Diagnostic &diag) {
          if (diag.getSeverity() != DiagnosticSeverity::Error &&
              diag.getSeverity() != DiagnosticSeverity::Warning)
            return success();
          llvm::raw_string_ostream os(messages);
          if (!messages.empty())
            os << "; ";
          os << diag.getLocation() << ": " << diag;
          // Notes often print whole operations: keep them short.
          for (Diagnostic &note : diag.getNotes()) {
            std::string text = note.str();
            if (text.size() > 160)
              text = text.substr(0, 160) + "...";
            os << " (note: " << text << ")";
          }
          return success();
        }) {}

  /// "what" plus the collected diagnostics, on one line.
  std::string message(llvm::StringRef what) const {
    std::string result = what.str();
    if (!messages.empty())
      result += ": " + messages;
    std::replace(result.begin(), result.end(), '\n', ' ');
    return result;
  }

private:
  std::string messages;
  ScopedDiagnosticHandler handler;
};

/// Rewrites math functions with polynomial approximations (vectorizable and
/// with no libm call), widening f16/bf16 math to f32 first.
LogicalResult approximateMath(ModuleOp module) {
  RewritePatternSet patterns(module.getContext());
  populateMathPolynomialApproximationPatterns(patterns);
  return applyPatternsGreedily(module, std::move(patterns));
}

/// Upstream passes from memref-level kernels to the LLVM dialect.
void buildLowerToLLVMPipeline(PassManager &pm) {
  pm.addNestedPass<func::FuncOp>(createConvertLinalgToLoopsPass());
  pm.addNestedPass<func::FuncOp>(vector::createLowerVectorMaskPass());
  pm.addNestedPass<func::FuncOp>(vector::createLowerVectorMultiReductionPass());
  // Transfers of rank > 1 become loops of 1-D transfers; 1-D ones are left
  // for vector-to-llvm, which turns them into (masked) vector loads/stores.
  VectorTransferToSCFOptions transferOptions;
  transferOptions.targetRank = 1;
  pm.addNestedPass<func::FuncOp>(createConvertVectorToSCFPass(transferOptions));
  pm.addPass(createLowerAffinePass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  // expand-strided-metadata introduces affine.apply.
  pm.addPass(createLowerAffinePass());
  // bf16 (and the small float) conversions become integer arithmetic: LLVM
  // would call compiler-rt's __truncsfbf2, which libgcc 12 lacks.
  arith::ArithExpandOpsPassOptions expandOptions;
  expandOptions.includeBf16 = true;
  expandOptions.includeF8E8M0 = true;
  expandOptions.includeF4E2M1 = true;
  pm.addPass(arith::createArithExpandOpsPass(expandOptions));
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  pm.addPass(createConvertVectorToLLVMPass());
  // Math with an LLVM intrinsic (sqrt, fma, exp of f64, ...) goes there; the
  // rest (erf of f64, ...) becomes libm calls.
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createConvertMathToLibmPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createUBToLLVMConversionPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

llvm::CodeGenOptLevel toCodeGenOptLevel(int level) {
  switch (level) {
  case 0:
    return llvm::CodeGenOptLevel::None;
  case 1:
    return llvm::CodeGenOptLevel::Less;
  case 2:
    return llvm::CodeGenOptLevel::Default;
  default:
    return llvm::CodeGenOptLevel::Aggressive;
  }
}

llvm::OptimizationLevel toOptimizationLevel(int level) {
  switch (level) {
  case 0:
    return llvm::OptimizationLevel::O0;
  case 1:
    return llvm::OptimizationLevel::O1;
  case 2:
    return llvm::OptimizationLevel::O2;
  default:
    return llvm::OptimizationLevel::O3;
  }
}

std::unique_ptr<llvm::TargetMachine>
createTargetMachine(const HostCodegenOptions &options, std::string &error) {
  initializeX86Target();
  llvm::Triple triple(kTargetTriple);
  std::string lookupError;
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(triple, lookupError);
  if (!target) {
    error =
        "host codegen: no LLVM target for " + triple.str() + ": " + lookupError;
    return nullptr;
  }

  std::string cpu = options.cpu.empty() ? "x86-64" : options.cpu;
  llvm::SubtargetFeatures features;
  if (cpu == "native") {
    cpu = llvm::sys::getHostCPUName().str();
    for (const auto &[name, enabled] : llvm::sys::getHostCPUFeatures())
      features.AddFeature(name, enabled);
  }
  if (!options.features.empty()) {
    llvm::SmallVector<llvm::StringRef> extra;
    llvm::StringRef(options.features).split(extra, ',', -1, false);
    for (llvm::StringRef feature : extra) {
      feature = feature.trim();
      if (feature.size() < 2 || (feature[0] != '+' && feature[0] != '-')) {
        error = "host codegen: bad target feature '" + feature.str() +
                "' (expected +name or -name)";
        return nullptr;
      }
      features.AddFeature(feature);
    }
  }
  // LLVM only warns (on stderr) about an unknown CPU and falls back to a
  // generic one: refuse it instead so a typo cannot silently lose AVX2.
  std::unique_ptr<llvm::MCSubtargetInfo> subtargetInfo(
      target->createMCSubtargetInfo(triple, "", ""));
  if (subtargetInfo && !subtargetInfo->isCPUStringValid(cpu)) {
    error = "host codegen: unknown CPU '" + cpu + "' for " + triple.str();
    return nullptr;
  }

  llvm::TargetOptions targetOptions;
  std::unique_ptr<llvm::TargetMachine> machine(target->createTargetMachine(
      triple, cpu, features.getString(), targetOptions, llvm::Reloc::PIC_,
      llvm::CodeModel::Small, toCodeGenOptLevel(options.optLevel)));
  if (!machine)
    error = "host codegen: cannot create a target machine for " + cpu;
  return machine;
}

void optimizeLLVMModule(llvm::Module &module, llvm::TargetMachine &machine,
                        int optLevel) {
  llvm::LoopAnalysisManager loopAnalyses;
  llvm::FunctionAnalysisManager functionAnalyses;
  llvm::CGSCCAnalysisManager cgsccAnalyses;
  llvm::ModuleAnalysisManager moduleAnalyses;

  llvm::PipelineTuningOptions tuning;
  tuning.LoopUnrolling = optLevel > 1;
  tuning.LoopVectorization = optLevel > 1;
  tuning.SLPVectorization = optLevel > 1;
  llvm::PassBuilder builder(&machine, tuning);
  builder.registerModuleAnalyses(moduleAnalyses);
  builder.registerCGSCCAnalyses(cgsccAnalyses);
  builder.registerFunctionAnalyses(functionAnalyses);
  builder.registerLoopAnalyses(loopAnalyses);
  builder.crossRegisterProxies(loopAnalyses, functionAnalyses, cgsccAnalyses,
                               moduleAnalyses);

  llvm::OptimizationLevel level = toOptimizationLevel(optLevel);
  llvm::ModulePassManager passes =
      optLevel == 0 ? builder.buildO0DefaultPipeline(level)
                    : builder.buildPerModuleDefaultPipeline(level);
  passes.run(module, moduleAnalyses);
}

/// Finds the compiler driver used as linker: options.linker, else the first
/// of cc, gcc, clang, g++ on PATH.
llvm::ErrorOr<std::string> findLinker(const HostCodegenOptions &options) {
  if (!options.linker.empty()) {
    if (llvm::sys::path::has_parent_path(options.linker)) {
      if (llvm::sys::fs::can_execute(options.linker))
        return options.linker;
      return std::make_error_code(std::errc::no_such_file_or_directory);
    }
    return llvm::sys::findProgramByName(options.linker);
  }
  for (llvm::StringRef name : {"cc", "gcc", "clang", "g++"})
    if (llvm::ErrorOr<std::string> path = llvm::sys::findProgramByName(name))
      return path;
  return std::make_error_code(std::errc::no_such_file_or_directory);
}

/// Last non-empty lines of `text`, joined with "; ", for one-line errors.
std::string summarizeOutput(llvm::StringRef text, size_t maxLines = 4) {
  llvm::SmallVector<llvm::StringRef> lines;
  text.split(lines, '\n', -1, false);
  size_t first = lines.size() > maxLines ? lines.size() - maxLines : 0;
  std::string result;
  for (size_t i = first; i < lines.size(); ++i) {
    llvm::StringRef line = lines[i].trim();
    if (line.empty())
      continue;
    if (!result.empty())
      result += "; ";
    result += line.str();
  }
  return result;
}

} // namespace

void registerHostCodegenDialects(DialectRegistry &registry) {
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
}

FailureOr<std::string> compileToObject(ModuleOp kernels,
                                       const HostCodegenOptions &options,
                                       std::string &error) {
  if (options.optLevel < 0 || options.optLevel > 3) {
    error = "host codegen: optimization level must be 0 to 3, got " +
            std::to_string(options.optLevel);
    return failure();
  }
  std::unique_ptr<llvm::TargetMachine> machine =
      createTargetMachine(options, error);
  if (!machine)
    return failure();

  MLIRContext *context = kernels.getContext();
  {
    DialectRegistry registry;
    registerHostCodegenDialects(registry);
    context->appendDialectRegistry(registry);
  }
  // The approximation patterns create ops of these dialects; they must be
  // loaded before any rewrite runs (the pass manager loads the rest).
  context->loadDialect<
      affine::AffineDialect, arith::ArithDialect, cf::ControlFlowDialect,
      func::FuncDialect, LLVM::LLVMDialect, math::MathDialect,
      memref::MemRefDialect, scf::SCFDialect, vector::VectorDialect>();

  DiagnosticCollector diagnostics(context);
  // Lower a clone: the caller keeps its kernels (for lit output, other
  // targets, provenance).
  OwningOpRef<ModuleOp> module(kernels.clone());
  if (failed(verify(*module))) {
    error = diagnostics.message("host codegen: invalid kernel module");
    return failure();
  }
  if (failed(approximateMath(*module))) {
    error = diagnostics.message(
        "host codegen: math approximation did not converge");
    return failure();
  }
  PassManager pm(context);
  // Keep failures in `error`: no crash reproducers, no IR dumps on stderr.
  buildLowerToLLVMPipeline(pm);
  if (failed(pm.run(*module))) {
    error = diagnostics.message("host codegen: lowering to LLVM failed");
    return failure();
  }

  // The conversions are partial: name the first op they left behind rather
  // than let the translation fail on it with a dump of the whole function.
  Operation *leftover = nullptr;
  module->walk([&](Operation *op) {
    if (op == module->getOperation() ||
        isa<LLVM::LLVMDialect>(op->getDialect()))
      return WalkResult::advance();
    leftover = op;
    return WalkResult::interrupt();
  });
  if (leftover) {
    std::string location;
    llvm::raw_string_ostream os(location);
    os << leftover->getLoc();
    error = "host codegen: '" + leftover->getName().getStringRef().str() +
            "' at " + location +
            " cannot be lowered to LLVM (host kernels take memrefs and use "
            "scf/arith/math/vector/memref/affine/linalg-on-buffers ops)";
    return failure();
  }

  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(*module, llvmContext, "optmlir_host_kernels");
  if (!llvmModule) {
    error = diagnostics.message("host codegen: translation to LLVM IR failed");
    return failure();
  }
  llvmModule->setTargetTriple(machine->getTargetTriple());
  llvmModule->setDataLayout(machine->createDataLayout());

  optimizeLLVMModule(*llvmModule, *machine, options.optLevel);
  {
    std::string verifyMessage;
    llvm::raw_string_ostream os(verifyMessage);
    if (llvm::verifyModule(*llvmModule, &os)) {
      error = "host codegen: LLVM IR invalid after optimization: " +
              summarizeOutput(verifyMessage);
      return failure();
    }
  }
  if (options.llvmIROut) {
    options.llvmIROut->clear();
    llvm::raw_string_ostream os(*options.llvmIROut);
    llvmModule->print(os, nullptr);
  }

  llvm::SmallVector<char, 0> buffer;
  llvm::raw_svector_ostream os(buffer);
  llvm::legacy::PassManager codegen;
  if (machine->addPassesToEmitFile(codegen, os, nullptr,
                                   llvm::CodeGenFileType::ObjectFile)) {
    error = "host codegen: the target cannot emit object files";
    return failure();
  }
  codegen.run(*llvmModule);
  return std::string(buffer.begin(), buffer.end());
}

FailureOr<std::string> linkSharedObject(llvm::StringRef object,
                                        const HostCodegenOptions &options,
                                        std::string &error) {
  llvm::ErrorOr<std::string> linker = findLinker(options);
  if (!linker) {
    error = options.linker.empty()
                ? "host codegen: no C compiler (cc, gcc, clang or g++) on "
                  "PATH to link the kernels' shared object"
                : "host codegen: linker '" + options.linker + "' not found";
    return failure();
  }

  // --no-undefined: a kernel that needs a symbol libc/libm do not have (e.g.
  // MLIR's runtime helper memrefCopy) fails here, not at load in the runtime.
  // --hash-style=gnu and no build id keep the output small and reproducible.
  std::string toolError;
  FailureOr<ToolRun> run = runToolInTempDir(
      "optmlir-host", *linker, "kernels.o", object, "kernels.so",
      [](StringRef input, StringRef output) {
        return SmallVector<std::string>{
            "-shared", "-o", output.str(), input.str(), "-lm",
            "-Wl,--no-undefined", "-Wl,-z,noexecstack",
            "-Wl,--build-id=none"};
      },
      /*secondsToWait=*/120, toolError);
  if (failed(run)) {
    error = "host codegen: " + toolError;
    return failure();
  }
  if (!run->succeeded) {
    std::string log = summarizeOutput(run->log);
    error = "host codegen: linking with " + *linker + " " + run->failure;
    if (!log.empty())
      error += ": " + log;
    if (log.find("memrefCopy") != std::string::npos)
      error += " (memref.copy between non-contiguous layouts calls MLIR's "
               "runtime library, which host kernels cannot use: copy with "
               "loops or vector transfers)";
    return failure();
  }
  return std::move(run->output);
}

FailureOr<HostBinary> compileToBinary(ModuleOp kernels,
                                      const HostCodegenOptions &options,
                                      std::string &error) {
  FailureOr<std::string> object = compileToObject(kernels, options, error);
  if (failed(object))
    return failure();
  FailureOr<std::string> shared = linkSharedObject(*object, options, error);
  if (failed(shared))
    return failure();
  return HostBinary{std::move(*object), std::move(*shared)};
}

FailureOr<std::string> compileToSharedObject(ModuleOp kernels,
                                             const HostCodegenOptions &options,
                                             std::string &error) {
  FailureOr<HostBinary> binary = compileToBinary(kernels, options, error);
  if (failed(binary))
    return failure();
  return std::move(binary->sharedObject);
}

} // namespace optmlir
