//===- ArtifactTypes.cpp - Names and sizes of schema enums ----------------===//

#include "runtime/artifact/ArtifactTypes.h"

namespace optrt {
namespace artifact {

const char *dtypeName(DType dtype) {
  switch (dtype) {
  case DType::F32: return "f32";
  case DType::F16: return "f16";
  case DType::BF16: return "bf16";
  case DType::F64: return "f64";
  case DType::I8: return "i8";
  case DType::U8: return "u8";
  case DType::I16: return "i16";
  case DType::I32: return "i32";
  case DType::I64: return "i64";
  case DType::Bool: return "bool";
  case DType::F8E4M3: return "f8e4m3";
  case DType::F8E5M2: return "f8e5m2";
  case DType::I4: return "i4";
  case DType::U4: return "u4";
  case DType::Unknown: break;
  }
  return "unknown";
}

unsigned dtypeBits(DType dtype) {
  switch (dtype) {
  case DType::F64: case DType::I64: return 64;
  case DType::F32: case DType::I32: return 32;
  case DType::F16: case DType::BF16: case DType::I16: return 16;
  case DType::I8: case DType::U8: case DType::Bool:
  case DType::F8E4M3: case DType::F8E5M2: return 8;
  case DType::I4: case DType::U4: return 4;
  case DType::Unknown: break;
  }
  return 0;
}

const char *kernelFormatName(KernelFormat format) {
  switch (format) {
  case KernelFormat::SharedObject: return "shared-object";
  case KernelFormat::Object: return "object";
  case KernelFormat::PTX: return "ptx";
  case KernelFormat::Cubin: return "cubin";
  }
  return "unknown";
}

const char *kernelFormatExtension(KernelFormat format) {
  switch (format) {
  case KernelFormat::SharedObject: return ".so";
  case KernelFormat::Object: return ".o";
  case KernelFormat::PTX: return ".ptx";
  case KernelFormat::Cubin: return ".cubin";
  }
  return ".bin";
}

uint64_t kvCacheRowBytes(DType dtype, uint64_t headDim) {
  if (dtype == DType::I8)
    return headDim + 4;
  return headDim * dtypeBits(dtype) / 8;
}

const char *commandKindName(CommandKind kind) {
  switch (kind) {
  case CommandKind::KernelCall: return "kernel-call";
  case CommandKind::Gemm: return "gemm";
  case CommandKind::Copy: return "copy";
  case CommandKind::Attention: return "attention";
  case CommandKind::Memset: return "memset";
  case CommandKind::Collective: return "collective";
  case CommandKind::Sample: return "sample";
  case CommandKind::QuantizedGemm:
    return "quantized-gemm";
  }
  return "unknown";
}

const char *bufferKindName(BufferKind kind) {
  switch (kind) {
  case BufferKind::Input: return "input";
  case BufferKind::Output: return "output";
  case BufferKind::Activation: return "activation";
  case BufferKind::Workspace: return "workspace";
  }
  return "unknown";
}

const char *ropeScalingKindName(RopeScalingKind kind) {
  switch (kind) {
  case RopeScalingKind::None: return "none";
  case RopeScalingKind::Linear: return "linear";
  case RopeScalingKind::Dynamic: return "dynamic";
  case RopeScalingKind::Llama3: return "llama3";
  case RopeScalingKind::Yarn: return "yarn";
  case RopeScalingKind::LongRope: return "longrope";
  }
  return "unknown";
}

const char *kvLayoutOrderName(KVLayoutOrder order) {
  switch (order) {
  case KVLayoutOrder::BlockTokenHeadDim: return "block-token-head-dim";
  case KVLayoutOrder::BlockHeadTokenDim: return "block-head-token-dim";
  }
  return "unknown";
}

std::optional<uint64_t> denseByteSize(DType dtype,
                                      const std::vector<int64_t> &shape) {
  unsigned bits = dtypeBits(dtype);
  if (bits == 0)
    return std::nullopt;
  uint64_t count = 1;
  for (int64_t dim : shape) {
    if (dim < 0)
      return std::nullopt;
    if (dim != 0 && count > UINT64_MAX / 8 / uint64_t(dim))
      return std::nullopt;
    count *= uint64_t(dim);
  }
  // Sub-byte types pack two per byte; a trailing half byte still takes one.
  return (count * bits + 7) / 8;
}

bool isSafeKernelName(const std::string &name) {
  if (name.empty() || name.size() > 200 || name[0] == '.')
    return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
    if (!ok)
      return false;
  }
  return true;
}

} // namespace artifact
} // namespace optrt
