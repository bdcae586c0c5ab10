//===- CudaDevice.cpp - one GPU: context, stream, memory, events ----------===//

#include "runtime/cuda/CudaDevice.h"

#include "runtime/cuda/CudaCheck.h"

#include <utility>

namespace optrt {
namespace cuda {
namespace {

/// Makes `context` current for a scope (releases need their context current
/// and may run on a thread that has none, or another one).
class ScopedContext {
public:
  explicit ScopedContext(CUcontext context) {
    if (context && driver().cuCtxPushCurrent(context) == CUDA_SUCCESS)
      pushed = true;
  }
  ~ScopedContext() {
    CUcontext popped;
    if (pushed)
      OPTRT_CU_IGNORE(cuCtxPopCurrent, &popped);
  }

private:
  bool pushed = false;
};

CUcontext currentContext() {
  CUcontext context = nullptr;
  if (driver().cuCtxGetCurrent)
    (void)driver().cuCtxGetCurrent(&context);
  return context;
}

bool requireContext(CUcontext context, const char *what, std::string &error) {
  if (context)
    return true;
  error = std::string(what) +
          ": no CUDA context is current on this thread (call "
          "CudaDevice::makeCurrent first)";
  return false;
}

} // namespace

//===----------------------------------------------------------------------===//
// CudaDevice
//===----------------------------------------------------------------------===//

std::unique_ptr<CudaDevice> CudaDevice::create(int ordinal,
                                               std::string &error) {
  if (!loadCudaDriver(error))
    return nullptr;
  auto fail = [&](std::string message) {
    error = std::move(message);
    return nullptr;
  };
  const CudaDriverApi &api = driver();
  if (CUresult r = api.cuInit(0); r != CUDA_SUCCESS)
    return fail(formatCuError("cuInit", r));
  int count = 0;
  if (CUresult r = api.cuDeviceGetCount(&count); r != CUDA_SUCCESS)
    return fail(formatCuError("cuDeviceGetCount", r));
  if (ordinal < 0 || ordinal >= count)
    return fail("CUDA device " + std::to_string(ordinal) +
                " does not exist (" + std::to_string(count) + " found)");

  std::unique_ptr<CudaDevice> device(new CudaDevice());
  DeviceInfo &info = device->info_;
  info.ordinal = ordinal;
  if (CUresult r = api.cuDeviceGet(&device->device_, ordinal);
      r != CUDA_SUCCESS)
    return fail(formatCuError("cuDeviceGet", r));
  CUdevice dev = device->device_;
  char name[256] = {0};
  if (CUresult r = api.cuDeviceGetName(name, sizeof(name) - 1, dev);
      r != CUDA_SUCCESS)
    return fail(formatCuError("cuDeviceGetName", r));
  info.name = name;
  struct {
    CUdevice_attribute attribute;
    int *out;
  } attributes[] = {
      {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, &info.computeMajor},
      {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, &info.computeMinor},
      {CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, &info.smCount},
      {CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
       &info.maxSharedPerBlockOptin},
      {CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, &info.l2CacheBytes},
  };
  for (auto &a : attributes)
    if (CUresult r = api.cuDeviceGetAttribute(a.out, a.attribute, dev);
        r != CUDA_SUCCESS)
      return fail(formatCuError("cuDeviceGetAttribute", r));
  size_t total = 0;
  if (CUresult r = api.cuDeviceTotalMem(&total, dev); r != CUDA_SUCCESS)
    return fail(formatCuError("cuDeviceTotalMem", r));
  info.totalMemory = total;
  if (CUresult r = api.cuDriverGetVersion(&info.driverVersion);
      r != CUDA_SUCCESS)
    return fail(formatCuError("cuDriverGetVersion", r));

  if (CUresult r = api.cuDevicePrimaryCtxRetain(&device->context_, dev);
      r != CUDA_SUCCESS)
    return fail(formatCuError("cuDevicePrimaryCtxRetain", r));
  if (!device->makeCurrent(error))
    return nullptr; // the destructor releases the retained context
  return device;
}

CudaDevice::~CudaDevice() {
  if (context_)
    OPTRT_CU_IGNORE(cuDevicePrimaryCtxRelease, device_);
}

bool CudaDevice::makeCurrent(std::string &error) const {
  OPTRT_CU_CHECK(error, cuCtxSetCurrent, context_);
  return true;
}

bool CudaDevice::memoryInfo(uint64_t &freeBytes, uint64_t &totalBytes,
                            std::string &error) const {
  size_t f = 0, t = 0;
  OPTRT_CU_CHECK(error, cuMemGetInfo, &f, &t);
  freeBytes = f;
  totalBytes = t;
  return true;
}

bool CudaDevice::synchronize(std::string &error) const {
  OPTRT_CU_CHECK(error, cuCtxSynchronize);
  return true;
}

//===----------------------------------------------------------------------===//
// DeviceBuffer, PinnedBuffer, DeviceArena
//===----------------------------------------------------------------------===//

DeviceBuffer &DeviceBuffer::operator=(DeviceBuffer &&other) noexcept {
  if (this != &other) {
    reset();
    ptr_ = std::exchange(other.ptr_, 0);
    size_ = std::exchange(other.size_, 0);
    context_ = std::exchange(other.context_, nullptr);
  }
  return *this;
}

bool DeviceBuffer::create(uint64_t bytes, std::string &error) {
  reset();
  CUcontext context = currentContext();
  if (!requireContext(context, "DeviceBuffer::create", error))
    return false;
  CUdeviceptr ptr = 0;
  // cuMemAlloc refuses 0 bytes; an empty buffer is still a valid one.
  if (CUresult r = driver().cuMemAlloc(&ptr, bytes ? bytes : 1);
      r != CUDA_SUCCESS) {
    error = formatCuError("cuMemAlloc", r) + " allocating " +
            std::to_string(bytes) + " bytes";
    return false;
  }
  ptr_ = ptr;
  size_ = bytes;
  context_ = context;
  return true;
}

void DeviceBuffer::reset() {
  if (ptr_) {
    ScopedContext scope(context_);
    OPTRT_CU_IGNORE(cuMemFree, ptr_);
  }
  ptr_ = 0;
  size_ = 0;
  context_ = nullptr;
}

PinnedBuffer &PinnedBuffer::operator=(PinnedBuffer &&other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    context_ = std::exchange(other.context_, nullptr);
  }
  return *this;
}

bool PinnedBuffer::create(uint64_t bytes, std::string &error) {
  reset();
  CUcontext context = currentContext();
  if (!requireContext(context, "PinnedBuffer::create", error))
    return false;
  void *data = nullptr;
  if (CUresult r = driver().cuMemHostAlloc(&data, bytes ? bytes : 1, 0);
      r != CUDA_SUCCESS) {
    error = formatCuError("cuMemHostAlloc", r) + " allocating " +
            std::to_string(bytes) + " pinned bytes";
    return false;
  }
  data_ = data;
  size_ = bytes;
  context_ = context;
  return true;
}

void PinnedBuffer::reset() {
  if (data_) {
    ScopedContext scope(context_);
    OPTRT_CU_IGNORE(cuMemFreeHost, data_);
  }
  data_ = nullptr;
  size_ = 0;
  context_ = nullptr;
}

bool DeviceArena::create(uint64_t capacity, std::string &error) {
  used_ = 0;
  return backing_.create(capacity, error);
}

CUdeviceptr DeviceArena::allocate(uint64_t bytes, std::string &error) {
  uint64_t offset = (used_ + kAlignment - 1) / kAlignment * kAlignment;
  if (!backing_.ptr() || offset + bytes > backing_.size()) {
    error = "device arena full: " + std::to_string(bytes) +
            " bytes requested, " + std::to_string(used_) + " of " +
            std::to_string(backing_.size()) + " used";
    return 0;
  }
  used_ = offset + bytes;
  return backing_.ptr() + offset;
}

//===----------------------------------------------------------------------===//
// CudaStream, CudaEvent
//===----------------------------------------------------------------------===//

CudaStream &CudaStream::operator=(CudaStream &&other) noexcept {
  if (this != &other) {
    reset();
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}

bool CudaStream::create(std::string &error) {
  reset();
  if (!requireContext(currentContext(), "CudaStream::create", error))
    return false;
  OPTRT_CU_CHECK(error, cuStreamCreate, &stream_, CU_STREAM_NON_BLOCKING);
  return true;
}

void CudaStream::reset() {
  if (stream_)
    OPTRT_CU_IGNORE(cuStreamDestroy, stream_);
  stream_ = nullptr;
}

bool CudaStream::copyToDevice(CUdeviceptr dst, const void *src,
                              uint64_t bytes, std::string &error) {
  OPTRT_CU_CHECK(error, cuMemcpyHtoDAsync, dst, src, bytes, stream_);
  return true;
}

bool CudaStream::copyToHost(void *dst, CUdeviceptr src, uint64_t bytes,
                            std::string &error) {
  OPTRT_CU_CHECK(error, cuMemcpyDtoHAsync, dst, src, bytes, stream_);
  return true;
}

bool CudaStream::copyOnDevice(CUdeviceptr dst, CUdeviceptr src,
                              uint64_t bytes, std::string &error) {
  OPTRT_CU_CHECK(error, cuMemcpyDtoDAsync, dst, src, bytes, stream_);
  return true;
}

bool CudaStream::memset(CUdeviceptr dst, uint8_t value, uint64_t bytes,
                        std::string &error) {
  OPTRT_CU_CHECK(error, cuMemsetD8Async, dst, value, bytes, stream_);
  return true;
}

bool CudaStream::synchronize(std::string &error) {
  OPTRT_CU_CHECK(error, cuStreamSynchronize, stream_);
  return true;
}

CudaEvent &CudaEvent::operator=(CudaEvent &&other) noexcept {
  if (this != &other) {
    reset();
    event_ = std::exchange(other.event_, nullptr);
  }
  return *this;
}

bool CudaEvent::create(bool timing, std::string &error) {
  reset();
  OPTRT_CU_CHECK(error, cuEventCreate, &event_,
                 timing ? CU_EVENT_DEFAULT : CU_EVENT_DISABLE_TIMING);
  return true;
}

void CudaEvent::reset() {
  if (event_)
    OPTRT_CU_IGNORE(cuEventDestroy, event_);
  event_ = nullptr;
}

bool CudaEvent::record(const CudaStream &stream, std::string &error) {
  OPTRT_CU_CHECK(error, cuEventRecord, event_, stream.handle());
  return true;
}

bool CudaEvent::synchronize(std::string &error) {
  OPTRT_CU_CHECK(error, cuEventSynchronize, event_);
  return true;
}

bool CudaEvent::elapsedMs(const CudaEvent &start, const CudaEvent &end,
                          float &ms, std::string &error) {
  OPTRT_CU_CHECK(error, cuEventElapsedTime, &ms, start.handle(),
                 end.handle());
  return true;
}

} // namespace cuda
} // namespace optrt
