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
// strides, alignments, bias) by cuBLASLt's heuristic and cached; the 32 MiB
// workspace belongs to this object, so one object serves one stream (and
// may be captured into a CUDA graph: nothing is allocated at run time).
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
  /// Chooses and caches the algorithm for `problem`'s bucket without running
  /// it (at load, so that the first step does not pay for the heuristic).
  /// Pointers only matter through their alignment.
  bool prepare(const GemmProblem &problem, std::string &error);

  /// The bucket an M belongs to: the next power of two. Decode batch sizes
  /// and prefill chunk sizes share an algorithm within a bucket.
  static int64_t mBucket(int64_t m);
  size_t numCachedAlgorithms() const { return plans_.size(); }

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
  /// queried with M = `heuristicM`) if new.
  Plan *getPlan(const GemmProblem &problem, int64_t keyBucket,
                int64_t heuristicM, std::string &error);
  bool execute(Plan &plan, const GemmProblem &problem, std::string &error,
               bool &unsupported);

  void *handle_ = nullptr; // cublasLtHandle_t, kept out of this header
  CUstream stream_ = nullptr;
  DeviceBuffer workspace_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

} // namespace cuda
} // namespace optrt

#endif // OPTMLIR_RUNTIME_CUDA_CUBLASLTGEMM_H
