//===- CublasLtGemm.h - the plan's Gemm commands on cuBLASLt ----*- C++ -*-===//
//
// C[M, N] = alpha * A[M, K] * B[N, K]^T + beta * C (+ bias[N]), row-major as
// in the plan (PlanAbi.h: weights are [N, K]). cuBLASLt is column-major: a
// row-major [R, C] matrix is the column-major [C, R] one, so we ask for
// C^T[N, M] = B[N, K] * A^T[K, M], i.e. cuBLASLt's A = our B (transposed),
// its B = our A (not transposed). That "TN" form is the layout cuBLASLt's
// tensor-core kernels favour.
//
// Inputs bf16 or fp16, accumulation and scaling in f32, output of the input
// type or f32. The algorithm is chosen once per (M bucket, N, K, types,
// strides, alignments, bias) and cached: prepare() (at load) asks cuBLASLt's
// heuristic for several candidates and keeps the fastest on this GPU, timed
// with events on the stream; a bucket that run() meets unprepared gets the
// heuristic's first, untimed (no timing ever happens inside a step or a CUDA
// graph capture). The 32 MiB workspace belongs to this object, so one object
// serves one stream (and may be captured into a CUDA graph: nothing is
// allocated at run time).
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_CUDA_CUBLASLTGEMM_H
#define OPTMLIR_RUNTIME_CUDA_CUBLASLTGEMM_H

#include "runtime/cuda/CudaDevice.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

namespace optrt {
namespace cuda {

enum class GemmType { F32, F16, BF16 };

const char *gemmTypeName(GemmType type);

struct GemmProblem {
  int64_t m = 0, n = 0, k = 0;
  GemmType inputType = GemmType::BF16; // A and B
  GemmType outputType = GemmType::BF16; // C and bias
  /// Row strides in elements; 0 means packed (K, K and N).
  int64_t lda = 0, ldb = 0, ldc = 0;
  CUdeviceptr a = 0, b = 0, c = 0;
  /// Optional bias[N] of outputType, added to every row (fused epilogue).
  CUdeviceptr bias = 0;
  float alpha = 1.0f, beta = 0.0f;
};

class CublasLtGemm {
public:
  static constexpr uint64_t kWorkspaceBytes = 32ull << 20;

  /// A handle and workspace for `stream`. Needs the device's context current.
  static std::unique_ptr<CublasLtGemm> create(CUstream stream,
                                              std::string &error);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm &) = delete;
  CublasLtGemm &operator=(const CublasLtGemm &) = delete;

  /// Enqueues the GEMM on the stream (asynchronous).
  bool run(const GemmProblem &problem, std::string &error);
  /// Chooses and caches the algorithm for `problem`'s bucket, at load (so
  /// that steps pay neither the heuristic nor the timing): the heuristic's
  /// candidates for M = the bucket each run once to warm up, then
  /// `repetitions` times between events; the lowest median wins (the
  /// heuristic's first unless another is over 2% faster). Candidates
  /// that fail are skipped; when none runs, the heuristic's first is kept.
  /// The runs use `problem.m` rows on the given operands, overwriting C (a
  /// null A, B or C gets device scratch of the right size, 256-byte
  /// aligned); bias is used when given. Synchronizes the stream; refused
  /// while the stream is being captured. A bucket already cached (prepared,
  /// or met by run()) is kept as it is.
  bool prepare(const GemmProblem &problem, std::string &error);

  /// How prepare() chooses. maxCandidates 1 (or repetitions 0) keeps the
  /// heuristic's first without timing anything.
  struct Tuning {
    int maxCandidates = 8;
    int repetitions = 5;
  };
  void setTuning(const Tuning &tuning) { tuning_ = tuning; }
  const Tuning &tuning() const { return tuning_; }

  /// What was decided for one cached bucket (for tests and reports).
  struct Choice {
    /// Algorithms the heuristic returned (at most Tuning::maxCandidates).
    int candidates = 0;
    /// Candidates that failed when timed (skipped).
    int failed = 0;
    /// The algorithm kept, as its rank in the heuristic's order: 0 is the
    /// heuristic's first.
    int chosen = 0;
    /// Whether the choice was timed (false: the heuristic's first, untimed).
    bool timed = false;
    /// Median milliseconds per run of the heuristic's first (0 if it failed)
    /// and of the chosen algorithm, when timed.
    float firstMs = 0, chosenMs = 0;
  };
  /// The choice cached for `problem`'s bucket (its key: M bucket, sizes,
  /// types, strides, alignments, bias); false if there is none.
  bool choiceFor(const GemmProblem &problem, Choice &choice) const;

  /// The bucket an M belongs to: the next power of two. Decode batch sizes
  /// and prefill chunk sizes share an algorithm within a bucket.
  static int64_t mBucket(int64_t m);
  size_t numCachedAlgorithms() const { return plans_.size(); }
  /// Buckets whose algorithm prepare() chose by timing, and how many of
  /// those chose another algorithm than the heuristic's first.
  size_t numTimedChoices() const { return numTimed_; }
  size_t numChoicesOtherThanFirst() const { return numOtherThanFirst_; }

private:
  struct Key {
    int64_t mBucket, n, k, lda, ldb, ldc;
    int inputType, outputType;
    bool bias;
    int alignA, alignB, alignC, alignBias;
    bool operator<(const Key &o) const;
  };
  struct Plan;

  CublasLtGemm() = default;
  bool validate(const GemmProblem &problem, std::string &error) const;
  Key keyOf(const GemmProblem &problem, int64_t bucket) const;
  /// The cached plan for `problem` under `keyBucket`, making it (heuristic
  /// queried with M = `heuristicM`, its first algorithm) if new.
  Plan *getPlan(const GemmProblem &problem, int64_t keyBucket,
                int64_t heuristicM, std::string &error);
  /// A plan for `problem` with the heuristic's candidates for M =
  /// `heuristicM` (at most `maxCandidates`, at least one), not cached.
  std::unique_ptr<Plan> makePlan(const GemmProblem &problem, const Key &key,
                                 int64_t heuristicM, int maxCandidates,
                                 std::string &error);
  /// Times `plan`'s candidates on `problem` and keeps the fastest.
  bool timeCandidates(Plan &plan, const GemmProblem &problem,
                      std::string &error);
  bool execute(Plan &plan, const GemmProblem &problem, std::string &error,
               bool &unsupported);

  void *handle_ = nullptr; // cublasLtHandle_t, kept out of this header
  CUstream stream_ = nullptr;
  DeviceBuffer workspace_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  Tuning tuning_;
  size_t numTimed_ = 0, numOtherThanFirst_ = 0;
};

} // namespace cuda
} // namespace optrt

#endif // OPTMLIR_RUNTIME_CUDA_CUBLASLTGEMM_H
