//===- CudaDevice.h - one GPU: context, stream, memory, events --*- C++ -*-===//
//
// The device-facing basics the GPU executor builds on. The device's primary
// context is used (not cuCtxCreate, whose signature changed in CUDA 13), so
// cuBLASLt and anything else using the CUDA runtime share it. CudaDevice::create
// makes the context current on the calling thread; another thread must call
// makeCurrent() before using any of these objects.
//
// Objects holding CUDA resources are move-only values with a two-phase
// create(..., error); a default-constructed one holds nothing. Destructors
// release quietly (a failure there cannot be reported, and the context may
// already be gone at exit).
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_CUDA_CUDADEVICE_H
#define OPTMLIR_RUNTIME_CUDA_CUDADEVICE_H

#include "runtime/cuda/CudaDriver.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace optrt {
namespace cuda {

struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  int computeMajor = 0, computeMinor = 0;
  int smCount = 0;
  uint64_t totalMemory = 0;
  /// Largest dynamic shared memory a block may opt into.
  int maxSharedPerBlockOptin = 0;
  int l2CacheBytes = 0;
  /// cuDriverGetVersion, e.g. 13000.
  int driverVersion = 0;
};

class CudaDevice {
public:
  /// cuInit, then the primary context of device `ordinal`, made current on
  /// this thread. Null with a one-line reason when there is no driver or GPU.
  static std::unique_ptr<CudaDevice> create(int ordinal, std::string &error);
  ~CudaDevice();
  CudaDevice(const CudaDevice &) = delete;
  CudaDevice &operator=(const CudaDevice &) = delete;

  const DeviceInfo &info() const { return info_; }
  CUdevice device() const { return device_; }
  CUcontext context() const { return context_; }

  /// Makes the context current on the calling thread.
  bool makeCurrent(std::string &error) const;
  bool memoryInfo(uint64_t &freeBytes, uint64_t &totalBytes,
                  std::string &error) const;
  bool synchronize(std::string &error) const;

private:
  CudaDevice() = default;
  DeviceInfo info_;
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
};

/// Device memory from cuMemAlloc (256-byte aligned).
class DeviceBuffer {
public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer &&other) noexcept { *this = std::move(other); }
  DeviceBuffer &operator=(DeviceBuffer &&other) noexcept;

  bool create(uint64_t bytes, std::string &error);
  void reset();
  CUdeviceptr ptr() const { return ptr_; }
  uint64_t size() const { return size_; }

private:
  CUdeviceptr ptr_ = 0;
  uint64_t size_ = 0;
  CUcontext context_ = nullptr; // to free with the owning context current
};

/// Page-locked host memory, for staging: only copies from pinned memory are
/// truly asynchronous and capturable.
class PinnedBuffer {
public:
  PinnedBuffer() = default;
  ~PinnedBuffer() { reset(); }
  PinnedBuffer(PinnedBuffer &&other) noexcept { *this = std::move(other); }
  PinnedBuffer &operator=(PinnedBuffer &&other) noexcept;

  bool create(uint64_t bytes, std::string &error);
  void reset();
  void *data() const { return data_; }
  template <typename T> T *as() const { return static_cast<T *>(data_); }
  uint64_t size() const { return size_; }

private:
  void *data_ = nullptr;
  uint64_t size_ = 0;
  CUcontext context_ = nullptr;
};

/// One allocation carved into the plan's buffers by a bump pointer: the plan
/// sizes everything up front, so there is nothing to free one by one, and a
/// single allocation keeps addresses stable for captured graphs.
class DeviceArena {
public:
  static constexpr uint64_t kAlignment = 256; // what cuBLASLt and TMA like

  bool create(uint64_t capacity, std::string &error);
  /// The next `bytes` (aligned); 0 with an error naming the sizes when the
  /// arena is full.
  CUdeviceptr allocate(uint64_t bytes, std::string &error);
  /// Forgets every allocation (the memory stays).
  void reset() { used_ = 0; }
  uint64_t used() const { return used_; }
  uint64_t capacity() const { return backing_.size(); }
  CUdeviceptr base() const { return backing_.ptr(); }

private:
  DeviceBuffer backing_;
  uint64_t used_ = 0;
};

/// A non-blocking stream (never synchronizes with the legacy default stream;
/// capturable). One per executor.
class CudaStream {
public:
  CudaStream() = default;
  ~CudaStream() { reset(); }
  CudaStream(CudaStream &&other) noexcept { *this = std::move(other); }
  CudaStream &operator=(CudaStream &&other) noexcept;

  bool create(std::string &error);
  void reset();
  CUstream handle() const { return stream_; }

  /// Asynchronous copies; host memory should be pinned (PinnedBuffer) for the
  /// copy to overlap and to be capturable into a graph.
  bool copyToDevice(CUdeviceptr dst, const void *src, uint64_t bytes,
                    std::string &error);
  bool copyToHost(void *dst, CUdeviceptr src, uint64_t bytes,
                  std::string &error);
  bool copyOnDevice(CUdeviceptr dst, CUdeviceptr src, uint64_t bytes,
                    std::string &error);
  bool memset(CUdeviceptr dst, uint8_t value, uint64_t bytes,
              std::string &error);
  bool synchronize(std::string &error);

private:
  CUstream stream_ = nullptr;
};

/// An event, for timing (create(true)) or ordering between streams.
class CudaEvent {
public:
  CudaEvent() = default;
  ~CudaEvent() { reset(); }
  CudaEvent(CudaEvent &&other) noexcept { *this = std::move(other); }
  CudaEvent &operator=(CudaEvent &&other) noexcept;

  bool create(bool timing, std::string &error);
  void reset();
  CUevent handle() const { return event_; }
  bool record(const CudaStream &stream, std::string &error);
  bool synchronize(std::string &error);
  /// Milliseconds from `start` to `end`, both recorded and completed.
  static bool elapsedMs(const CudaEvent &start, const CudaEvent &end,
                        float &ms, std::string &error);

private:
  CUevent event_ = nullptr;
};

} // namespace cuda
} // namespace optrt

#endif // OPTMLIR_RUNTIME_CUDA_CUDADEVICE_H
