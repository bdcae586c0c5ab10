//===- CudaCheck.cpp - error lines for CUDA and cuBLASLt -------------------===//

#include "runtime/cuda/CudaCheck.h"

namespace optrt {
namespace cuda {

std::string describeCuResult(CUresult result) {
  const CudaDriverApi &api = driver();
  const char *name = nullptr;
  const char *text = nullptr;
  if (api.cuGetErrorName)
    (void)api.cuGetErrorName(result, &name);
  if (api.cuGetErrorString)
    (void)api.cuGetErrorString(result, &text);
  std::string out = name ? name : "CUresult " + std::to_string(int(result));
  if (text)
    out += std::string(" (") + text + ")";
  return out;
}

std::string describeCublasStatus(cublasStatus_t status) {
  // cublasLtGetStatusName needs no device, so it is always safe to call.
  const char *name = cublasLtGetStatusName(status);
  return name ? name : "cublasStatus " + std::to_string(int(status));
}

std::string formatCuError(std::string_view call, CUresult result) {
  return std::string(call) + ": " + describeCuResult(result);
}

std::string formatCublasError(std::string_view call, cublasStatus_t status) {
  return std::string(call) + ": " + describeCublasStatus(status);
}

std::string oneLine(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool pendingBreak = false;
  for (char c : text) {
    if (c == '\n' || c == '\r') {
      pendingBreak = !out.empty();
      continue;
    }
    if (c == '\0')
      break;
    if (pendingBreak) {
      out += "; ";
      pendingBreak = false;
    }
    out += c;
  }
  return out;
}

} // namespace cuda
} // namespace optrt
