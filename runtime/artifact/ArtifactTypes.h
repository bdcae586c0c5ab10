//===- ArtifactTypes.h - Plain C++ description of an artifact ---*- C++ -*-===//
//
// What the compiler fills in to write an artifact, and what the reader can
// hand back as a copy (Artifact::toSpec). Plain structs so that optc never
// touches flatbuffers builders; the enums are the schema's own.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_ARTIFACT_ARTIFACTTYPES_H
#define OPTMLIR_RUNTIME_ARTIFACT_ARTIFACTTYPES_H

#include "runtime/artifact/Artifact_generated.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace optrt {
namespace artifact {

using fb::ArgKind;
using fb::BufferKind;
using fb::CommandKind;
using fb::DType;
using fb::KernelFormat;
using fb::KVLayoutOrder;
using fb::RopeScalingKind;

/// Command.kernel of commands that call no kernel.
constexpr uint32_t kNoKernel = 0xFFFFFFFFu;

struct RopeScaling {
  RopeScalingKind kind = RopeScalingKind::None;
  double factor = 0;
  double lowFreqFactor = 0;
  double highFreqFactor = 0;
  uint32_t originalMaxPositionEmbeddings = 0;
};

struct ModelInfo {
  std::string architecture;
  uint32_t vocabSize = 0, hiddenSize = 0, intermediateSize = 0;
  uint32_t numLayers = 0, numHeads = 0, numKVHeads = 0, headDim = 0;
  uint32_t maxPositionEmbeddings = 0;
  double rmsNormEps = 0;
  double ropeTheta = 0;
  RopeScaling ropeScaling; // kind None: written as absent
  uint32_t slidingWindow = 0;
  bool tieWordEmbeddings = false;
  int32_t bosId = -1;
  std::vector<int32_t> eosIds;
  DType activationDType = DType::Unknown;
};

struct KVCacheLayout {
  uint32_t blockSize = 0;
  DType dtype = DType::Unknown;
  KVLayoutOrder order = KVLayoutOrder::BlockTokenHeadDim;
  uint32_t numLayers = 0, numKVHeads = 0, headDim = 0;
};

struct Buffer {
  std::string name;
  uint64_t sizeBytes = 0;
  uint32_t alignment = 0;
  BufferKind kind = BufferKind::Activation;
};

struct Arg {
  ArgKind kind = ArgKind::Buffer;
  int64_t index = 0;
  uint64_t offset = 0;
  double value = 0;

  static Arg buffer(int64_t id, uint64_t offset = 0) {
    return {ArgKind::Buffer, id, offset, 0};
  }
  static Arg weight(int64_t id, uint64_t offset = 0) {
    return {ArgKind::Weight, id, offset, 0};
  }
  static Arg kvCache(int64_t layer) { return {ArgKind::KVCache, layer, 0, 0}; }
  static Arg runtimeScalar(int64_t id) {
    return {ArgKind::RuntimeScalar, id, 0, 0};
  }
  static Arg integer(int64_t v) { return {ArgKind::Int, v, 0, 0}; }
  static Arg real(double v) { return {ArgKind::Float, 0, 0, v}; }
};

struct Command {
  CommandKind kind = CommandKind::KernelCall;
  std::string name;
  uint32_t kernel = kNoKernel;
  uint32_t entry = 0;
  std::vector<Arg> args;
  /// Runs only in steps of minTokens..maxTokens packed tokens (0: no bound).
  uint32_t minTokens = 0;
  uint32_t maxTokens = 0;
};

struct Plan {
  std::vector<Buffer> buffers;
  uint32_t maxTokensPerStep = 0;
  std::vector<Command> commands;
  std::vector<std::string> runtimeScalars;
};

struct Kernel {
  std::string name; // [A-Za-z0-9_.-]+, not starting with '.': a file name
  std::string target;
  KernelFormat format = KernelFormat::Object;
  std::vector<std::string> entryPoints;
  std::vector<uint8_t> data;
};

/// Index entry of one weight. offset is assigned by the writer.
struct WeightInfo {
  std::string name;
  DType dtype = DType::Unknown;
  std::vector<int64_t> shape;
  std::string format = "dense";
  uint64_t offset = 0;
  uint64_t size = 0; // 0 for "dense": computed from dtype and shape
  bool noData = false;
};

struct Tokenizer {
  std::string kind;
  std::string json;
  /// tokenizer_config.json, verbatim; empty: the checkpoint had none.
  std::string configJson;
};

struct GenerationDefaults {
  std::optional<float> temperature, topP;
  std::optional<int32_t> topK, maxNewTokens;
  std::optional<float> repetitionPenalty;
};

struct SourceFile {
  std::string path;
  uint64_t size = 0;
  std::string checksum;
};

struct Provenance {
  std::string compiler, created;
  std::vector<SourceFile> sources;
  std::vector<std::string> passes, options;
};

/// Everything but the weight bytes. Optional parts are written only when set.
struct ArtifactSpec {
  ModelInfo model;
  std::optional<KVCacheLayout> kvCache;
  Plan plan;
  std::vector<Kernel> kernels;
  std::vector<WeightInfo> weights; // filled by the writer / reader
  std::optional<Tokenizer> tokenizer;
  GenerationDefaults generation;
  Provenance provenance;
};

/// Short lowercase name ("bf16", "f32", ...); "unknown" for bad values.
const char *dtypeName(DType dtype);
/// Bits per element; 0 for Unknown or out-of-range values.
unsigned dtypeBits(DType dtype);
/// Bytes of one token's keys (or values) of one kv head in a KV cache of
/// `dtype` elements: head_dim elements, plus an int8 cache's f32 scale
/// (runtime/core/QuantizedWeights.h).
uint64_t kvCacheRowBytes(DType dtype, uint64_t headDim);
const char *kernelFormatName(KernelFormat format);
/// File extension (with dot) that --extract-kernels uses for a format.
const char *kernelFormatExtension(KernelFormat format);
const char *commandKindName(CommandKind kind);
const char *bufferKindName(BufferKind kind);
const char *ropeScalingKindName(RopeScalingKind kind);
const char *kvLayoutOrderName(KVLayoutOrder order);

/// Bytes of a dense tensor, or nullopt when a dim is negative, the dtype is
/// unknown, or the size overflows 64 bits.
std::optional<uint64_t> denseByteSize(DType dtype,
                                      const std::vector<int64_t> &shape);

/// Whether `name` may be used as a kernel file name (no path separators).
bool isSafeKernelName(const std::string &name);

} // namespace artifact
} // namespace optrt

#endif // OPTMLIR_RUNTIME_ARTIFACT_ARTIFACTTYPES_H
