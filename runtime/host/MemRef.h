//===- MemRef.h - MLIR memref descriptors for host kernels ------*- C++ -*-===//
//
// The C layout of a ranked memref as MLIR's LLVM lowering defines it; the
// `_mlir_ciface_NAME` entry points of host kernels take one pointer to such a
// descriptor per memref argument (and, when the function returns values, a
// pointer to the result first). Plain C++, no MLIR.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_HOST_MEMREF_H
#define OPTMLIR_RUNTIME_HOST_MEMREF_H

#include <cstdint>

namespace optrt {

/// memref<d0 x ... x d(N-1) x T> with any strided layout: element
/// (i0, ..., iN-1) is aligned[offset + sum_k i_k * strides[k]]. `allocated` is
/// what the kernel would free; kernels here never free arguments, so callers
/// set it equal to `aligned`.
template <typename T, int N> struct MemRefDescriptor {
  T *allocated;
  T *aligned;
  int64_t offset;
  int64_t sizes[N];
  int64_t strides[N];
};

/// memref<T>: no sizes or strides.
template <typename T> struct MemRefDescriptor<T, 0> {
  T *allocated;
  T *aligned;
  int64_t offset;
};

/// Describes a contiguous row-major buffer of the given sizes.
template <typename T, int N>
MemRefDescriptor<T, N> makeMemRef(T *data, const int64_t (&sizes)[N]) {
  MemRefDescriptor<T, N> desc;
  desc.allocated = data;
  desc.aligned = data;
  desc.offset = 0;
  int64_t stride = 1;
  for (int i = N - 1; i >= 0; --i) {
    desc.sizes[i] = sizes[i];
    desc.strides[i] = stride;
    stride *= sizes[i];
  }
  return desc;
}

template <typename T> MemRefDescriptor<T, 0> makeMemRef(T *data) {
  return MemRefDescriptor<T, 0>{data, data, 0};
}

} // namespace optrt

#endif // OPTMLIR_RUNTIME_HOST_MEMREF_H
