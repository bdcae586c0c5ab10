//===- CudaModule.h - PTX/cubin modules and kernel launches -----*- C++ -*-===//
//
// Loads the artifact's kernels (PTX text, or cubin/fatbin assembled by ptxas
// at compile time) into the current context and launches them. A PTX JIT
// failure comes back with the JIT's error log in the one-line error.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_CUDA_CUDAMODULE_H
#define OPTMLIR_RUNTIME_CUDA_CUDAMODULE_H

#include "runtime/cuda/CudaDriver.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace optrt {
namespace cuda {

struct LaunchConfig {
  unsigned grid[3] = {1, 1, 1};
  unsigned block[3] = {1, 1, 1};
  /// Dynamic shared memory; above 48 KiB the kernel's limit is raised first.
  unsigned sharedBytes = 0;
  /// Programmatic dependent launch (sm_90+, cuLaunchKernelEx): the kernel
  /// may start while the stream's previous kernel finishes. Only for
  /// kernels that wait (griddepcontrol.wait) before touching memory, as every
  /// generated kernel for sm_90 does; ignored by drivers without
  /// cuLaunchKernelEx.
  bool programmatic = false;
};

/// A kernel of a loaded module; valid while the module lives.
struct CudaKernel {
  CUfunction function = nullptr;
  std::string name;
  /// Parameter count from the driver (cuFuncGetParamInfo), or -1 when the
  /// driver cannot tell; launches with another count are refused.
  int numParams = -1;
  /// Dynamic shared memory limit already set on the function.
  unsigned sharedLimit = 48 * 1024;
};

class CudaModule {
public:
  /// Loads `image`: a cubin or fatbin (recognized by magic number) or PTX
  /// text (need not be NUL-terminated). Needs a current context.
  static std::unique_ptr<CudaModule> load(std::string_view image,
                                          std::string &error);
  ~CudaModule();
  CudaModule(const CudaModule &) = delete;
  CudaModule &operator=(const CudaModule &) = delete;

  /// Looks up a kernel by its (mangled, for C++) name.
  bool getKernel(std::string_view name, CudaKernel &kernel,
                 std::string &error) const;
  /// The JIT's informational log (register and shared memory use), for PTX.
  const std::string &jitInfoLog() const { return infoLog_; }
  CUmodule handle() const { return module_; }

private:
  CudaModule() = default;
  CUmodule module_ = nullptr;
  std::string infoLog_;
};

/// Launches `kernel` on `stream`. `args` holds one pointer per kernel
/// parameter, to the parameter's value (cuLaunchKernel's kernelParams).
bool launchKernel(CudaKernel &kernel, const LaunchConfig &config,
                  CUstream stream, const std::vector<void *> &args,
                  std::string &error);

} // namespace cuda
} // namespace optrt

#endif // OPTMLIR_RUNTIME_CUDA_CUDAMODULE_H
