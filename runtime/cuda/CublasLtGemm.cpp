//===- CublasLtGemm.cpp - the plan's Gemm commands on cuBLASLt ------------===//

#include "runtime/cuda/CublasLtGemm.h"

#include "runtime/cuda/CudaCheck.h"

#include <cublasLt.h>

#include <algorithm>
#include <vector>

namespace optrt {
namespace cuda {
namespace {

cudaDataType_t cudaTypeOf(GemmType type) {
  switch (type) {
  case GemmType::F32:
    return CUDA_R_32F;
  case GemmType::F16:
    return CUDA_R_16F;
  case GemmType::BF16:
    return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

int64_t elementBytes(GemmType type) { return type == GemmType::F32 ? 4 : 2; }

/// The largest power of two (capped at 256) dividing the address: cuBLASLt's
/// heuristic assumes 256-byte aligned operands unless told otherwise, and a
/// plan operand at a byte offset inside a buffer may not be.
int alignmentOf(CUdeviceptr ptr) {
  if (!ptr)
    return 256;
  int align = 1;
  while (align < 256 && (ptr % (2 * align)) == 0)
    align *= 2;
  return align;
}

/// Matrix layouts for one call, destroyed at scope exit.
struct Layouts {
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  ~Layouts() {
    if (a)
      cublasLtMatrixLayoutDestroy(a);
    if (b)
      cublasLtMatrixLayoutDestroy(b);
    if (c)
      cublasLtMatrixLayoutDestroy(c);
  }
};

/// Column-major layouts of the swapped problem (see the header): cuBLASLt's
/// A is our B as K x N, its B is our A as K x M, its C/D is our C as N x M.
bool makeLayouts(const GemmProblem &p, int64_t m, Layouts &layouts,
                 std::string &error) {
  cudaDataType_t in = cudaTypeOf(p.inputType), out = cudaTypeOf(p.outputType);
  int64_t lda = p.lda ? p.lda : p.k, ldb = p.ldb ? p.ldb : p.k,
          ldc = p.ldc ? p.ldc : p.n;
  OPTRT_CUBLAS_CHECK(error, cublasLtMatrixLayoutCreate, &layouts.a, in, p.k,
                     p.n, ldb);
  OPTRT_CUBLAS_CHECK(error, cublasLtMatrixLayoutCreate, &layouts.b, in, p.k, m,
                     lda);
  OPTRT_CUBLAS_CHECK(error, cublasLtMatrixLayoutCreate, &layouts.c, out, p.n,
                     m, ldc);
  return true;
}

std::string describeProblem(const GemmProblem &p) {
  return "M=" + std::to_string(p.m) + " N=" + std::to_string(p.n) +
         " K=" + std::to_string(p.k) + " " + gemmTypeName(p.inputType) +
         "->" + gemmTypeName(p.outputType) + (p.bias ? " +bias" : "");
}

} // namespace

const char *gemmTypeName(GemmType type) {
  switch (type) {
  case GemmType::F32:
    return "f32";
  case GemmType::F16:
    return "f16";
  case GemmType::BF16:
    return "bf16";
  }
  return "?";
}

struct CublasLtGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatmulAlgo_t algo{};
  uint64_t workspaceBytes = 0;
  /// The heuristic's candidates, best first (kept until prepare() chose).
  std::vector<cublasLtMatmulHeuristicResult_t> candidates;
  Choice choice;
  ~Plan() {
    if (desc)
      cublasLtMatmulDescDestroy(desc);
  }
  void use(size_t candidate) {
    algo = candidates[candidate].algo;
    workspaceBytes = candidates[candidate].workspaceSize;
    choice.chosen = int(candidate);
  }
};

bool CublasLtGemm::Key::operator<(const Key &o) const {
  return std::tie(mBucket, n, k, lda, ldb, ldc, inputType, outputType, bias,
                  alignA, alignB, alignC, alignBias) <
         std::tie(o.mBucket, o.n, o.k, o.lda, o.ldb, o.ldc, o.inputType,
                  o.outputType, o.bias, o.alignA, o.alignB, o.alignC,
                  o.alignBias);
}

int64_t CublasLtGemm::mBucket(int64_t m) {
  int64_t bucket = 1;
  while (bucket < m)
    bucket *= 2;
  return bucket;
}

std::unique_ptr<CublasLtGemm> CublasLtGemm::create(CUstream stream,
                                                   std::string &error) {
  std::unique_ptr<CublasLtGemm> gemm(new CublasLtGemm());
  gemm->stream_ = stream;
  cublasLtHandle_t handle = nullptr;
  if (cublasStatus_t s = cublasLtCreate(&handle); s != CUBLAS_STATUS_SUCCESS) {
    error = formatCublasError("cublasLtCreate", s);
    return nullptr;
  }
  gemm->handle_ = handle;
  if (!gemm->workspace_.create(kWorkspaceBytes, error)) {
    error = "cuBLASLt workspace: " + error;
    return nullptr;
  }
  return gemm;
}

CublasLtGemm::~CublasLtGemm() {
  plans_.clear();
  if (handle_)
    cublasLtDestroy(static_cast<cublasLtHandle_t>(handle_));
}

bool CublasLtGemm::validate(const GemmProblem &p, std::string &error) const {
  auto fail = [&](const std::string &why) {
    error = "gemm " + describeProblem(p) + ": " + why;
    return false;
  };
  if (p.m <= 0 || p.n <= 0 || p.k <= 0)
    return fail("sizes must be positive");
  if (p.inputType == GemmType::F32)
    return fail("f32 inputs are not supported (bf16 or f16)");
  if (p.outputType != p.inputType && p.outputType != GemmType::F32)
    return fail("the output must have the input type or be f32");
  if ((p.lda && p.lda < p.k) || (p.ldb && p.ldb < p.k) ||
      (p.ldc && p.ldc < p.n))
    return fail("a row stride is smaller than its row");
  return true;
}

CublasLtGemm::Key CublasLtGemm::keyOf(const GemmProblem &p,
                                      int64_t bucket) const {
  Key key;
  key.mBucket = bucket;
  key.n = p.n;
  key.k = p.k;
  key.lda = p.lda ? p.lda : p.k;
  key.ldb = p.ldb ? p.ldb : p.k;
  key.ldc = p.ldc ? p.ldc : p.n;
  key.inputType = int(p.inputType);
  key.outputType = int(p.outputType);
  key.bias = p.bias != 0;
  key.alignA = alignmentOf(p.a);
  key.alignB = alignmentOf(p.b);
  key.alignC = alignmentOf(p.c);
  key.alignBias = p.bias ? alignmentOf(p.bias) : 0;
  return key;
}

std::unique_ptr<CublasLtGemm::Plan>
CublasLtGemm::makePlan(const GemmProblem &p, const Key &key,
                       int64_t heuristicM, int maxCandidates,
                       std::string &error) {
  auto plan = std::make_unique<Plan>();
  auto check = [&](const char *call, cublasStatus_t s) {
    if (s == CUBLAS_STATUS_SUCCESS)
      return true;
    error = "gemm " + describeProblem(p) + ": " + formatCublasError(call, s);
    return false;
  };
  if (!check("cublasLtMatmulDescCreate",
             cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F,
                                      CUDA_R_32F)))
    return nullptr;
  cublasOperation_t transA = CUBLAS_OP_T, transB = CUBLAS_OP_N;
  cublasLtEpilogue_t epilogue =
      p.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  if (!check("cublasLtMatmulDescSetAttribute",
             cublasLtMatmulDescSetAttribute(plan->desc,
                                            CUBLASLT_MATMUL_DESC_TRANSA,
                                            &transA, sizeof(transA))) ||
      !check("cublasLtMatmulDescSetAttribute",
             cublasLtMatmulDescSetAttribute(plan->desc,
                                            CUBLASLT_MATMUL_DESC_TRANSB,
                                            &transB, sizeof(transB))) ||
      !check("cublasLtMatmulDescSetAttribute",
             cublasLtMatmulDescSetAttribute(plan->desc,
                                            CUBLASLT_MATMUL_DESC_EPILOGUE,
                                            &epilogue, sizeof(epilogue))))
    return nullptr;
  if (p.bias) {
    // The heuristic wants to see a bias pointer; run() sets the real one.
    const void *bias = reinterpret_cast<const void *>(p.bias);
    if (!check("cublasLtMatmulDescSetAttribute",
               cublasLtMatmulDescSetAttribute(
                   plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                   sizeof(bias))))
      return nullptr;
  }

  Layouts layouts;
  if (!makeLayouts(p, heuristicM, layouts, error)) {
    error = "gemm " + describeProblem(p) + ": " + error;
    return nullptr;
  }
  cublasLtMatmulPreference_t pref = nullptr;
  if (!check("cublasLtMatmulPreferenceCreate",
             cublasLtMatmulPreferenceCreate(&pref)))
    return nullptr;
  uint64_t workspace = kWorkspaceBytes;
  uint32_t alignA = key.alignB, alignB = key.alignA, alignC = key.alignC;
  bool ok =
      check("cublasLtMatmulPreferenceSetAttribute",
            cublasLtMatmulPreferenceSetAttribute(
                pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                sizeof(workspace))) &&
      // Swapped like the operands: cuBLASLt's A is our B.
      check("cublasLtMatmulPreferenceSetAttribute",
            cublasLtMatmulPreferenceSetAttribute(
                pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &alignA,
                sizeof(alignA))) &&
      check("cublasLtMatmulPreferenceSetAttribute",
            cublasLtMatmulPreferenceSetAttribute(
                pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &alignB,
                sizeof(alignB))) &&
      check("cublasLtMatmulPreferenceSetAttribute",
            cublasLtMatmulPreferenceSetAttribute(
                pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &alignC,
                sizeof(alignC))) &&
      check("cublasLtMatmulPreferenceSetAttribute",
            cublasLtMatmulPreferenceSetAttribute(
                pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &alignC,
                sizeof(alignC)));
  std::vector<cublasLtMatmulHeuristicResult_t> results(
      std::max(1, maxCandidates));
  int returned = 0;
  if (ok)
    ok = check("cublasLtMatmulAlgoGetHeuristic",
               cublasLtMatmulAlgoGetHeuristic(
                   static_cast<cublasLtHandle_t>(handle_), plan->desc,
                   layouts.a, layouts.b, layouts.c, layouts.c, pref,
                   int(results.size()), results.data(), &returned));
  cublasLtMatmulPreferenceDestroy(pref);
  if (!ok)
    return nullptr;
  for (int i = 0; i < returned; ++i)
    if (results[i].state == CUBLAS_STATUS_SUCCESS)
      plan->candidates.push_back(results[i]);
  if (plan->candidates.empty()) {
    error = "gemm " + describeProblem(p) + ": cuBLASLt has no algorithm";
    return nullptr;
  }
  plan->choice.candidates = int(plan->candidates.size());
  plan->use(0);
  return plan;
}

CublasLtGemm::Plan *CublasLtGemm::getPlan(const GemmProblem &p,
                                          int64_t keyBucket,
                                          int64_t heuristicM,
                                          std::string &error) {
  Key key = keyOf(p, keyBucket);
  if (auto it = plans_.find(key); it != plans_.end())
    return it->second.get();
  std::unique_ptr<Plan> plan = makePlan(p, key, heuristicM, 1, error);
  if (!plan)
    return nullptr;
  Plan *raw = plan.get();
  plans_.emplace(key, std::move(plan));
  return raw;
}

bool CublasLtGemm::execute(Plan &plan, const GemmProblem &p,
                           std::string &error, bool &unsupported) {
  unsupported = false;
  Layouts layouts;
  if (!makeLayouts(p, p.m, layouts, error))
    return false;
  if (p.bias) {
    const void *bias = reinterpret_cast<const void *>(p.bias);
    OPTRT_CUBLAS_CHECK(error, cublasLtMatmulDescSetAttribute, plan.desc,
                       CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
  }
  cublasStatus_t s = cublasLtMatmul(
      static_cast<cublasLtHandle_t>(handle_), plan.desc, &p.alpha,
      reinterpret_cast<const void *>(p.b), layouts.a,
      reinterpret_cast<const void *>(p.a), layouts.b, &p.beta,
      reinterpret_cast<const void *>(p.c), layouts.c,
      reinterpret_cast<void *>(p.c), layouts.c, &plan.algo,
      reinterpret_cast<void *>(workspace_.ptr()), plan.workspaceBytes,
      stream_);
  if (s != CUBLAS_STATUS_SUCCESS) {
    // An algorithm chosen for the bucket's largest M may not fit this M.
    unsupported = s == CUBLAS_STATUS_NOT_SUPPORTED;
    error = formatCublasError("cublasLtMatmul", s);
    return false;
  }
  return true;
}

bool CublasLtGemm::timeCandidates(Plan &plan, const GemmProblem &p,
                                  std::string &error) {
  int repetitions = tuning_.repetitions;
  std::vector<CudaEvent> events(repetitions + 1);
  for (CudaEvent &event : events)
    if (!event.create(/*timing=*/true, error))
      return false;
  std::vector<float> medians(plan.candidates.size(), -1.0f);
  for (size_t i = 0; i < plan.candidates.size(); ++i) {
    plan.use(i);
    // One warm-up run (module loading, first-touch), then one event
    // between consecutive runs: a run's time is the difference.
    std::string why;
    bool unsupported = false, ran = execute(plan, p, why, unsupported);
    if (ran)
      OPTRT_CU_CHECK(error, cuEventRecord, events[0].handle(), stream_);
    for (int r = 0; ran && r < repetitions; ++r) {
      ran = execute(plan, p, why, unsupported);
      if (ran)
        OPTRT_CU_CHECK(error, cuEventRecord, events[r + 1].handle(), stream_);
    }
    // Waiting also surfaces a fault of the candidate's kernel (sticky: the
    // context is then unusable, so that is an error, not a skip).
    OPTRT_CU_CHECK(error, cuStreamSynchronize, stream_);
    if (!ran) {
      ++plan.choice.failed;
      continue;
    }
    std::vector<float> times(repetitions);
    for (int r = 0; r < repetitions; ++r)
      if (!CudaEvent::elapsedMs(events[r], events[r + 1], times[r], error))
        return false;
    std::nth_element(times.begin(), times.begin() + repetitions / 2,
                     times.end());
    medians[i] = times[repetitions / 2];
  }
  size_t best = 0;
  bool any = false;
  for (size_t i = 0; i < medians.size(); ++i)
    if (medians[i] >= 0 && (!any || medians[i] < medians[best])) {
      best = i;
      any = true;
    }
  // Within the noise of a few runs (2%) the heuristic's first stays.
  if (any && medians[0] >= 0 && medians[0] <= 1.02f * medians[best])
    best = 0;
  // None ran: keep the heuristic's first, as run() would have; run()
  // reports what goes wrong with it.
  plan.use(any ? best : 0);
  plan.choice.timed = any;
  plan.choice.firstMs = std::max(medians[0], 0.0f);
  plan.choice.chosenMs = any ? medians[best] : 0.0f;
  return true;
}

bool CublasLtGemm::prepare(const GemmProblem &problem, std::string &error) {
  if (!validate(problem, error))
    return false;
  int64_t bucket = mBucket(problem.m);
  Key key = keyOf(problem, bucket);
  if (plans_.count(key))
    return true;
  bool timing = tuning_.maxCandidates > 1 && tuning_.repetitions > 0;
  if (timing) {
    CUstreamCaptureStatus capture = CU_STREAM_CAPTURE_STATUS_NONE;
    OPTRT_CU_CHECK(error, cuStreamIsCapturing, stream_, &capture);
    if (capture != CU_STREAM_CAPTURE_STATUS_NONE) {
      error = "gemm " + describeProblem(problem) +
              ": prepare() times algorithms, which cannot happen while the "
              "stream is being captured";
      return false;
    }
  }
  std::unique_ptr<Plan> plan =
      makePlan(problem, key, bucket, timing ? tuning_.maxCandidates : 1, error);
  if (!plan)
    return false;
  if (timing && plan->candidates.size() > 1) {
    // Scratch for the operands not given (cuMemAlloc: 256-byte aligned,
    // which is what keyOf assumes of a null pointer).
    GemmProblem p = problem;
    int64_t in = elementBytes(p.inputType), out = elementBytes(p.outputType);
    DeviceBuffer scratch[3];
    struct {
      CUdeviceptr *ptr;
      uint64_t bytes;
    } operands[] = {
        {&p.a, uint64_t(p.m) * (p.lda ? p.lda : p.k) * in},
        {&p.b, uint64_t(p.n) * (p.ldb ? p.ldb : p.k) * in},
        {&p.c, uint64_t(p.m) * (p.ldc ? p.ldc : p.n) * out},
    };
    for (int i = 0; i < 3; ++i) {
      if (*operands[i].ptr)
        continue;
      if (!scratch[i].create(operands[i].bytes, error))
        return false;
      // Inputs of small non-zero values (all zeros may run faster than
      // real data): bytes 0x3c are 0.0115 in bf16, 1.06 in f16.
      OPTRT_CU_CHECK(error, cuMemsetD8Async, scratch[i].ptr(),
                     i == 2 ? 0 : 0x3c, operands[i].bytes, stream_);
      *operands[i].ptr = scratch[i].ptr();
    }
    if (!timeCandidates(*plan, p, error)) {
      error = "gemm " + describeProblem(problem) + ": timing algorithms: " +
              error;
      return false;
    }
    if (plan->choice.timed) {
      ++numTimed_;
      numOtherThanFirst_ += plan->choice.chosen != 0;
    }
  }
  plan->candidates.clear();
  plan->candidates.shrink_to_fit();
  plans_.emplace(key, std::move(plan));
  return true;
}

bool CublasLtGemm::choiceFor(const GemmProblem &problem,
                             Choice &choice) const {
  auto it = plans_.find(keyOf(problem, mBucket(problem.m)));
  if (it == plans_.end())
    return false;
  choice = it->second->choice;
  return true;
}

bool CublasLtGemm::run(const GemmProblem &problem, std::string &error) {
  if (!validate(problem, error))
    return false;
  if (!problem.a || !problem.b || !problem.c) {
    error = "gemm " + describeProblem(problem) + ": null operand pointer";
    return false;
  }
  int64_t bucket = mBucket(problem.m);
  Plan *plan = getPlan(problem, bucket, bucket, error);
  if (!plan)
    return false;
  bool unsupported = false;
  if (execute(*plan, problem, error, unsupported))
    return true;
  if (!unsupported || bucket == problem.m) {
    error = "gemm " + describeProblem(problem) + ": " + error;
    return false;
  }
  // Fall back to an algorithm chosen for this exact M (negative bucket keys
  // mark exact-M plans), cached like the others.
  plan = getPlan(problem, -problem.m, problem.m, error);
  if (!plan)
    return false;
  if (!execute(*plan, problem, error, unsupported)) {
    error = "gemm " + describeProblem(problem) + ": " + error;
    return false;
  }
  return true;
}

} // namespace cuda
} // namespace optrt
