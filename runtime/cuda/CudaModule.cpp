//===- CudaModule.cpp - PTX/cubin modules and kernel launches -------------===//

#include "runtime/cuda/CudaModule.h"

#include "runtime/cuda/CudaCheck.h"

#include <cstring>

namespace optrt {
namespace cuda {
namespace {

bool isBinaryImage(std::string_view image) {
  if (image.size() >= 4 && std::memcmp(image.data(), "\x7f" "ELF", 4) == 0)
    return true; // cubin
  if (image.size() >= 4) {
    uint32_t magic;
    std::memcpy(&magic, image.data(), 4);
    if (magic == 0xBA55ED50u) // fatbin
      return true;
  }
  return false;
}

} // namespace

std::unique_ptr<CudaModule> CudaModule::load(std::string_view image,
                                             std::string &error) {
  if (image.empty()) {
    error = "cuModuleLoadDataEx: empty module image";
    return nullptr;
  }
  // PTX must be NUL-terminated; binaries are used in place.
  std::string ptx;
  const void *data = image.data();
  if (!isBinaryImage(image)) {
    ptx.assign(image.data(), image.size());
    data = ptx.c_str();
  }
  constexpr size_t kLogBytes = 16 * 1024;
  std::vector<char> errorLog(kLogBytes, 0), infoLog(kLogBytes, 0);
  CUjit_option options[] = {
      CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
      CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES};
  void *values[] = {errorLog.data(), reinterpret_cast<void *>(kLogBytes - 1),
                    infoLog.data(), reinterpret_cast<void *>(kLogBytes - 1)};
  std::unique_ptr<CudaModule> module(new CudaModule());
  CUresult r = driver().cuModuleLoadDataEx(&module->module_, data, 4, options,
                                           values);
  if (r != CUDA_SUCCESS) {
    module->module_ = nullptr;
    error = formatCuError("cuModuleLoadDataEx", r);
    std::string log = oneLine(errorLog.data());
    if (!log.empty())
      error += "; JIT log: " + log;
    return nullptr;
  }
  module->infoLog_ = oneLine(infoLog.data());
  return module;
}

CudaModule::~CudaModule() {
  if (module_)
    OPTRT_CU_IGNORE(cuModuleUnload, module_);
}

bool CudaModule::getKernel(std::string_view name, CudaKernel &kernel,
                           std::string &error) const {
  std::string nameZ(name);
  CUfunction function = nullptr;
  if (CUresult r = driver().cuModuleGetFunction(&function, module_,
                                                nameZ.c_str());
      r != CUDA_SUCCESS) {
    error = "kernel '" + nameZ +
            "' not in module: " + formatCuError("cuModuleGetFunction", r);
    return false;
  }
  kernel = CudaKernel();
  kernel.function = function;
  kernel.name = std::move(nameZ);
  if (auto getParamInfo = driver().cuFuncGetParamInfo) {
    // The driver answers CUDA_ERROR_INVALID_VALUE past the last parameter.
    // Kernel parameters are limited to 32 KiB, so this loop is bounded.
    int count = 0;
    size_t offset, size;
    while (count < 32768 &&
           getParamInfo(function, count, &offset, &size) == CUDA_SUCCESS)
      ++count;
    kernel.numParams = count;
  }
  return true;
}

bool launchKernel(CudaKernel &kernel, const LaunchConfig &config,
                  CUstream stream, const std::vector<void *> &args,
                  std::string &error) {
  if (!kernel.function) {
    error = "launch of '" + kernel.name + "': no such kernel loaded";
    return false;
  }
  if (kernel.numParams >= 0 && size_t(kernel.numParams) != args.size()) {
    error = "launch of '" + kernel.name + "': " + std::to_string(args.size()) +
            " arguments given, the kernel takes " +
            std::to_string(kernel.numParams);
    return false;
  }
  for (size_t i = 0; i < args.size(); ++i)
    if (!args[i]) {
      error = "launch of '" + kernel.name + "': argument " +
              std::to_string(i) + " is a null pointer";
      return false;
    }
  if (config.sharedBytes > kernel.sharedLimit) {
    // Blocks get more than 48 KiB of dynamic shared memory only by opting in.
    if (CUresult r = driver().cuFuncSetAttribute(
            kernel.function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            int(config.sharedBytes));
        r != CUDA_SUCCESS) {
      error = "launch of '" + kernel.name + "' with " +
              std::to_string(config.sharedBytes) +
              " shared bytes: " + formatCuError("cuFuncSetAttribute", r);
      return false;
    }
    kernel.sharedLimit = config.sharedBytes;
  }
  CUresult r;
  if (config.programmatic && driver().cuLaunchKernelEx) {
    CUlaunchAttribute attribute = {};
    attribute.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attribute.value.programmaticStreamSerializationAllowed = 1;
    CUlaunchConfig launch = {};
    launch.gridDimX = config.grid[0];
    launch.gridDimY = config.grid[1];
    launch.gridDimZ = config.grid[2];
    launch.blockDimX = config.block[0];
    launch.blockDimY = config.block[1];
    launch.blockDimZ = config.block[2];
    launch.sharedMemBytes = config.sharedBytes;
    launch.hStream = stream;
    launch.attrs = &attribute;
    launch.numAttrs = 1;
    r = driver().cuLaunchKernelEx(&launch, kernel.function,
                                  const_cast<void **>(args.data()), nullptr);
  } else {
    r = driver().cuLaunchKernel(
        kernel.function, config.grid[0], config.grid[1], config.grid[2],
        config.block[0], config.block[1], config.block[2], config.sharedBytes,
        stream, const_cast<void **>(args.data()), nullptr);
  }
  if (r != CUDA_SUCCESS) {
    error = "launch of '" + kernel.name + "' (grid " +
            std::to_string(config.grid[0]) + "x" +
            std::to_string(config.grid[1]) + "x" +
            std::to_string(config.grid[2]) + ", block " +
            std::to_string(config.block[0]) + "x" +
            std::to_string(config.block[1]) + "x" +
            std::to_string(config.block[2]) +
            "): " + formatCuError("cuLaunchKernel", r);
    return false;
  }
  return true;
}

} // namespace cuda
} // namespace optrt
