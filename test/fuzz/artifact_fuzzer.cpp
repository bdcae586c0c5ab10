//===- artifact_fuzzer.cpp - libFuzzer target for the artifact verifier ---===//
//
// Any input must either verify into an artifact whose every reference lies
// inside the buffer, or be refused with one non-empty line; never crash.
//
// Checksums would stop almost every mutation at the header, so most inputs
// are "mode byte, flatbuffer, blob": the fuzzer wraps them in a container with
// correct checksums and spends its time on the flatbuffers verifier and the
// semantic checks. Inputs starting with 'O' (the magic) are whole files.
//
//===----------------------------------------------------------------------===//

#include "runtime/artifact/Artifact.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

using namespace optrt::artifact;

static std::vector<uint8_t> wrap(const uint8_t *data, size_t size) {
  // Blob length from the mode byte (multiples of 16), the rest is metadata.
  size_t blobLen = std::min<size_t>(size_t(data[0] >> 1) * 16, size - 1);
  size_t flatLen = size - 1 - blobLen;
  FileHeader h;
  h.flags = (data[0] & 1) ? kFlagVirtualWeights : 0;
  h.flatbufferOffset = kHeaderSize;
  h.flatbufferSize = flatLen;
  h.flatbufferChecksum = checksum(data + 1, flatLen);
  h.blobOffset = (kHeaderSize + flatLen + kBlobAlignment - 1) /
                 kBlobAlignment * kBlobAlignment;
  h.blobSize = blobLen;
  h.blobChecksum = checksum(data + 1 + flatLen, blobLen);
  h.fileSize = h.blobOffset + blobLen;
  std::vector<uint8_t> out(h.fileSize);
  encodeHeader(h, out.data());
  std::copy(data + 1, data + 1 + flatLen, out.begin() + kHeaderSize);
  std::copy(data + 1 + flatLen, data + size, out.begin() + h.blobOffset);
  return out;
}

static void check(const uint8_t *data, size_t size) {
  std::string error;
  std::unique_ptr<Artifact> a = Artifact::fromBytes(data, size, error);
  if (!a) {
    if (error.empty() || error.find('\n') != std::string::npos)
      abort();
    if (Artifact::verify(data, size).empty())
      abort(); // the two entry points must agree
    return;
  }
  // Touch what the verifier vouched for, so that ASan checks its ranges.
  unsigned sum = 0;
  for (size_t i = 0; i < a->numWeights(); ++i) {
    const uint8_t *w = a->weightData(i);
    uint64_t n = a->weight(i).size();
    if (w && n)
      sum += w[0] + w[n - 1];
    if (a->findWeight(a->weight(i).name()->string_view()) != i)
      abort();
  }
  ArtifactSpec spec = a->toSpec();
  for (const Kernel &k : spec.kernels) {
    if (!isSafeKernelName(k.name))
      abort();
    sum += k.data.empty() ? 0 : k.data.back();
  }
  for (const Command &c : spec.plan.commands)
    for (const Arg &arg : c.args)
      if (arg.kind == ArgKind::Buffer &&
          uint64_t(arg.index) >= spec.plan.buffers.size())
        abort();
  if (sum == 0xFFFFFFFFu)
    abort(); // keeps `sum` alive
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  if (data[0] == 'O') {
    check(data, size);
    return 0;
  }
  std::vector<uint8_t> file = wrap(data, size);
  check(file.data(), file.size());
  return 0;
}
