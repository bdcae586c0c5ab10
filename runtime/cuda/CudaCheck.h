//===- CudaCheck.h - every CUDA call checked --------------------*- C++ -*-===//
//
// The runtime reports failures as one-line strings (bool + std::string &error,
// as ModelExecutor::step does), never by exceptions or aborts. These macros
// turn a CUresult or cublasStatus_t into such a line, naming the call and the
// status: "cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY (out of memory)".
//
// Use inside a function returning bool:
//   OPTRT_CU_CHECK(error, cuMemAlloc, &ptr, bytes);
//   OPTRT_CUBLAS_CHECK(error, cublasLtMatmulDescCreate, &desc, ...);
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_CUDA_CUDACHECK_H
#define OPTMLIR_RUNTIME_CUDA_CUDACHECK_H

#include "runtime/cuda/CudaDriver.h"

#include <cublasLt.h>

#include <string>
#include <string_view>

namespace optrt {
namespace cuda {

/// "CUDA_ERROR_OUT_OF_MEMORY (out of memory)"; the number when the driver is
/// not loaded or does not know the code.
std::string describeCuResult(CUresult result);

/// "CUBLAS_STATUS_NOT_SUPPORTED".
std::string describeCublasStatus(cublasStatus_t status);

/// "<call>: <description>", the error line of a failed call.
std::string formatCuError(std::string_view call, CUresult result);
std::string formatCublasError(std::string_view call, cublasStatus_t status);

/// Collapses a multi-line log (the PTX JIT's) into one line.
std::string oneLine(std::string_view text);

} // namespace cuda
} // namespace optrt

/// Calls driver entry `fn` (cuda.h spelling, e.g. cuMemAlloc) with the
/// remaining arguments; on failure sets `error` and returns false from the
/// enclosing function.
#define OPTRT_CU_CHECK(error, fn, ...)                                         \
  do {                                                                         \
    CUresult optrtCuResult_ = ::optrt::cuda::driver().fn(__VA_ARGS__);         \
    if (optrtCuResult_ != CUDA_SUCCESS) {                                      \
      (error) = ::optrt::cuda::formatCuError(#fn, optrtCuResult_);             \
      return false;                                                            \
    }                                                                          \
  } while (0)

/// The same for a cuBLASLt function.
#define OPTRT_CUBLAS_CHECK(error, fn, ...)                                     \
  do {                                                                         \
    cublasStatus_t optrtCublasStatus_ = fn(__VA_ARGS__);                       \
    if (optrtCublasStatus_ != CUBLAS_STATUS_SUCCESS) {                         \
      (error) = ::optrt::cuda::formatCublasError(#fn, optrtCublasStatus_);     \
      return false;                                                            \
    }                                                                          \
  } while (0)

/// Calls a driver entry whose failure cannot be reported (destructors).
#define OPTRT_CU_IGNORE(fn, ...) (void)::optrt::cuda::driver().fn(__VA_ARGS__)

#endif // OPTMLIR_RUNTIME_CUDA_CUDACHECK_H
