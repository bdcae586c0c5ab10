//===- CudaDriver.h - the CUDA driver API, loaded at run time ---*- C++ -*-===//
//
// The driver API (libcuda.so.1) is opened with dlopen rather than linked:
// the machine that builds the runtime has only the stub libcuda, and a binary
// with libcuda.so.1 in DT_NEEDED does not even start where no NVIDIA driver is
// installed. Loading it here lets the same binary run the CPU executor
// anywhere and report "no driver" as an ordinary error.
//
// Each entry is declared with cuda.h's own macro spelling, so `cuMemAlloc`
// becomes the member `cuMemAlloc_v2` with the _v2 signature and symbol, exactly
// as a program linked against libcuda would get. Call through OPTRT_CU_CHECK
// (CudaCheck.h) rather than directly.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_CUDA_CUDADRIVER_H
#define OPTMLIR_RUNTIME_CUDA_CUDADRIVER_H

#include <cuda.h>

#include <string>

namespace optrt {
namespace cuda {

/// Entries every supported driver (CUDA 12.x/13.x) has; loading fails without
/// any of them.
#define OPTRT_CUDA_REQUIRED_FUNCTIONS(X)                                       \
  X(cuGetErrorName)                                                            \
  X(cuGetErrorString)                                                          \
  X(cuInit)                                                                    \
  X(cuDriverGetVersion)                                                        \
  X(cuDeviceGetCount)                                                          \
  X(cuDeviceGet)                                                               \
  X(cuDeviceGetName)                                                           \
  X(cuDeviceGetAttribute)                                                      \
  X(cuDeviceTotalMem)                                                          \
  X(cuDevicePrimaryCtxRetain)                                                  \
  X(cuDevicePrimaryCtxRelease)                                                 \
  X(cuCtxSetCurrent)                                                           \
  X(cuCtxGetCurrent)                                                           \
  X(cuCtxPushCurrent)                                                          \
  X(cuCtxPopCurrent)                                                           \
  X(cuCtxSynchronize)                                                          \
  X(cuMemGetInfo)                                                              \
  X(cuMemAlloc)                                                                \
  X(cuMemFree)                                                                 \
  X(cuMemHostAlloc)                                                            \
  X(cuMemFreeHost)                                                             \
  X(cuMemcpyHtoDAsync)                                                         \
  X(cuMemcpyDtoHAsync)                                                         \
  X(cuMemcpyDtoDAsync)                                                         \
  X(cuMemsetD8Async)                                                           \
  X(cuStreamCreate)                                                            \
  X(cuStreamDestroy)                                                           \
  X(cuStreamSynchronize)                                                       \
  X(cuStreamQuery)                                                             \
  X(cuStreamWaitEvent)                                                         \
  X(cuEventCreate)                                                             \
  X(cuEventDestroy)                                                            \
  X(cuEventRecord)                                                             \
  X(cuEventSynchronize)                                                        \
  X(cuEventElapsedTime)                                                        \
  X(cuModuleLoadDataEx)                                                        \
  X(cuModuleUnload)                                                            \
  X(cuModuleGetFunction)                                                       \
  X(cuFuncSetAttribute)                                                        \
  X(cuFuncGetAttribute)                                                        \
  X(cuLaunchKernel)                                                            \
  X(cuStreamBeginCapture)                                                      \
  X(cuStreamEndCapture)                                                        \
  X(cuStreamIsCapturing)                                                       \
  X(cuGraphInstantiate)                                                        \
  X(cuGraphExecUpdate)                                                         \
  X(cuGraphLaunch)                                                             \
  X(cuGraphUpload)                                                             \
  X(cuGraphDestroy)                                                            \
  X(cuGraphExecDestroy)

/// Entries used when present (newer drivers); null otherwise.
#define OPTRT_CUDA_OPTIONAL_FUNCTIONS(X)                                        \
  X(cuFuncGetParamInfo) X(cuLaunchKernelEx)

#define OPTRT_CUDA_DECLARE_ENTRY(fn) decltype(&::fn) fn = nullptr;

/// The driver's entry points. Members carry cuda.h's versioned names.
struct CudaDriverApi {
  OPTRT_CUDA_REQUIRED_FUNCTIONS(OPTRT_CUDA_DECLARE_ENTRY)
  OPTRT_CUDA_OPTIONAL_FUNCTIONS(OPTRT_CUDA_DECLARE_ENTRY)
};

#undef OPTRT_CUDA_DECLARE_ENTRY

/// Opens libcuda.so.1 and resolves every entry, once per process; later calls
/// return the first outcome. False with a one-line reason when there is no
/// driver or it is too old. Does not call cuInit.
bool loadCudaDriver(std::string &error);

/// The loaded entry points. Only valid after loadCudaDriver succeeded (every
/// object of this library that holds a CUDA handle implies it did).
const CudaDriverApi &driver();

} // namespace cuda
} // namespace optrt

#endif // OPTMLIR_RUNTIME_CUDA_CUDADRIVER_H
