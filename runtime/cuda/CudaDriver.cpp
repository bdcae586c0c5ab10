//===- CudaDriver.cpp - dlopen of libcuda.so.1 -----------------------------===//

#include "runtime/cuda/CudaDriver.h"

#include <dlfcn.h>

#include <mutex>

namespace optrt {
namespace cuda {
namespace {

// Two levels so that cuda.h's renaming macros (cuMemAlloc -> cuMemAlloc_v2)
// apply before the name becomes the symbol string.
#define OPTRT_CUDA_STR_(x) #x
#define OPTRT_CUDA_STR(x) OPTRT_CUDA_STR_(x)

CudaDriverApi api;
std::string loadError;
std::once_flag loadOnce;

void loadOnceImpl() {
  // RTLD_LOCAL: the symbols stay out of the global namespace, so nothing else
  // in the process binds to them by accident.
  void *handle = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char *why = dlerror();
    loadError = std::string("no CUDA driver: cannot load libcuda.so.1 (") +
                (why ? why : "unknown reason") + ")";
    return;
  }
  std::string missing;
#define OPTRT_CUDA_LOAD_REQUIRED(fn)                                           \
  api.fn = reinterpret_cast<decltype(api.fn)>(                                 \
      dlsym(handle, OPTRT_CUDA_STR(fn)));                                      \
  if (!api.fn)                                                                 \
    missing += std::string(missing.empty() ? "" : ", ") + OPTRT_CUDA_STR(fn);
#define OPTRT_CUDA_LOAD_OPTIONAL(fn)                                           \
  api.fn = reinterpret_cast<decltype(api.fn)>(dlsym(handle, OPTRT_CUDA_STR(fn)));
  OPTRT_CUDA_REQUIRED_FUNCTIONS(OPTRT_CUDA_LOAD_REQUIRED)
  OPTRT_CUDA_OPTIONAL_FUNCTIONS(OPTRT_CUDA_LOAD_OPTIONAL)
#undef OPTRT_CUDA_LOAD_REQUIRED
#undef OPTRT_CUDA_LOAD_OPTIONAL
  if (!missing.empty()) {
    // Keep the handle open: a partially filled table is never used.
    loadError = "CUDA driver too old: libcuda.so.1 lacks " + missing;
    api = CudaDriverApi();
  }
}

} // namespace

bool loadCudaDriver(std::string &error) {
  std::call_once(loadOnce, loadOnceImpl);
  if (!loadError.empty()) {
    error = loadError;
    return false;
  }
  return true;
}

const CudaDriverApi &driver() { return api; }

} // namespace cuda
} // namespace optrt
