//===- ArtifactFormat.h - The .optpkg container layout ----------*- C++ -*-===//
//
// The fixed header at the start of every .optpkg file and the constants both
// the writer and the reader use. docs/artifact.md describes the layout; this
// file is its single source of truth in code.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_ARTIFACT_ARTIFACTFORMAT_H
#define OPTMLIR_RUNTIME_ARTIFACT_ARTIFACTFORMAT_H

#include <cstddef>
#include <cstdint>

namespace optrt {
namespace artifact {

/// "OPTPKG\r\n": the CR LF pair catches files mangled by newline conversion.
constexpr uint8_t kMagic[8] = {'O', 'P', 'T', 'P', 'K', 'G', '\r', '\n'};

/// Container layout version (this header and section placement).
constexpr uint32_t kFormatVersion = 1;
/// Artifact.fbs version; bumped when an older runtime must refuse new files.
constexpr uint32_t kSchemaVersion = 3;

/// Size of the version-1 header in bytes.
constexpr uint32_t kHeaderSize = 96;
/// The weight blob starts at a multiple of this (mmap granularity).
constexpr uint64_t kBlobAlignment = 4096;
/// Every weight starts at a multiple of this inside the blob (vector loads).
constexpr uint64_t kWeightAlignment = 64;
/// The flatbuffer starts at a multiple of this (its largest scalar).
constexpr uint64_t kFlatbufferAlignment = 8;

/// Header flag bits.
enum : uint64_t {
  /// Some weights have no data (built with --random-weights): the runtime
  /// fills them itself. Numerics of such an artifact mean nothing.
  kFlagVirtualWeights = 1u << 0,
  kKnownFlags = kFlagVirtualWeights,
};

/// Decoded header. On disk every field is little-endian, at these offsets:
///   0 magic[8]            8 formatVersion u32   12 schemaVersion u32
///  16 headerSize u32     20 reserved u32 (0)    24 flags u64
///  32 fileSize u64       40 flatbufferOffset    48 flatbufferSize
///  56 blobOffset         64 blobSize            72 flatbufferChecksum
///  80 blobChecksum       88 headerChecksum (XXH3-64 of bytes [0, 88))
struct FileHeader {
  uint32_t formatVersion = kFormatVersion;
  uint32_t schemaVersion = kSchemaVersion;
  uint32_t headerSize = kHeaderSize;
  uint32_t reserved = 0;
  uint64_t flags = 0;
  uint64_t fileSize = 0;
  uint64_t flatbufferOffset = 0;
  uint64_t flatbufferSize = 0;
  uint64_t blobOffset = 0;
  uint64_t blobSize = 0;
  uint64_t flatbufferChecksum = 0;
  uint64_t blobChecksum = 0;
  uint64_t headerChecksum = 0;
};

/// Byte offset of headerChecksum; the checksum covers everything before it.
constexpr size_t kHeaderChecksumOffset = 88;

/// Serializes `header` into `out[kHeaderSize]`, computing headerChecksum.
void encodeHeader(const FileHeader &header, uint8_t *out);
/// Reads the fields of a header from `in[kHeaderSize]` without checking them.
FileHeader decodeHeader(const uint8_t *in);

/// XXH3-64 (seed 0) of a byte range: the checksum of every section.
uint64_t checksum(const void *data, size_t size);

/// Incremental XXH3-64, for the weight blob that is written in pieces.
class StreamingChecksum {
public:
  StreamingChecksum();
  ~StreamingChecksum();
  StreamingChecksum(const StreamingChecksum &) = delete;
  StreamingChecksum &operator=(const StreamingChecksum &) = delete;
  void update(const void *data, size_t size);
  uint64_t digest() const;

private:
  void *state; // XXH3_state_t, kept opaque so xxhash.h stays out of headers.
};

} // namespace artifact
} // namespace optrt

#endif // OPTMLIR_RUNTIME_ARTIFACT_ARTIFACTFORMAT_H
