//===- ArtifactFormat.cpp - Header encoding and checksums -----------------===//

#include "runtime/artifact/ArtifactFormat.h"

#include <cstring>

// Inlined so that the fuzzer and tools need no extra library to link.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace optrt {
namespace artifact {

namespace {
void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    p[i] = uint8_t(v >> (8 * i));
}
void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    p[i] = uint8_t(v >> (8 * i));
}
uint32_t get32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= uint32_t(p[i]) << (8 * i);
  return v;
}
uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= uint64_t(p[i]) << (8 * i);
  return v;
}
} // namespace

void encodeHeader(const FileHeader &h, uint8_t *out) {
  std::memset(out, 0, kHeaderSize);
  std::memcpy(out, kMagic, sizeof(kMagic));
  put32(out + 8, h.formatVersion);
  put32(out + 12, h.schemaVersion);
  put32(out + 16, h.headerSize);
  put32(out + 20, h.reserved);
  put64(out + 24, h.flags);
  put64(out + 32, h.fileSize);
  put64(out + 40, h.flatbufferOffset);
  put64(out + 48, h.flatbufferSize);
  put64(out + 56, h.blobOffset);
  put64(out + 64, h.blobSize);
  put64(out + 72, h.flatbufferChecksum);
  put64(out + 80, h.blobChecksum);
  put64(out + kHeaderChecksumOffset, checksum(out, kHeaderChecksumOffset));
}

FileHeader decodeHeader(const uint8_t *in) {
  FileHeader h;
  h.formatVersion = get32(in + 8);
  h.schemaVersion = get32(in + 12);
  h.headerSize = get32(in + 16);
  h.reserved = get32(in + 20);
  h.flags = get64(in + 24);
  h.fileSize = get64(in + 32);
  h.flatbufferOffset = get64(in + 40);
  h.flatbufferSize = get64(in + 48);
  h.blobOffset = get64(in + 56);
  h.blobSize = get64(in + 64);
  h.flatbufferChecksum = get64(in + 72);
  h.blobChecksum = get64(in + 80);
  h.headerChecksum = get64(in + kHeaderChecksumOffset);
  return h;
}

uint64_t checksum(const void *data, size_t size) {
  return XXH3_64bits(data, size);
}

StreamingChecksum::StreamingChecksum() : state(XXH3_createState()) {
  XXH3_64bits_reset(static_cast<XXH3_state_t *>(state));
}
StreamingChecksum::~StreamingChecksum() {
  XXH3_freeState(static_cast<XXH3_state_t *>(state));
}
void StreamingChecksum::update(const void *data, size_t size) {
  XXH3_64bits_update(static_cast<XXH3_state_t *>(state), data, size);
}
uint64_t StreamingChecksum::digest() const {
  return XXH3_64bits_digest(static_cast<const XXH3_state_t *>(state));
}

} // namespace artifact
} // namespace optrt
