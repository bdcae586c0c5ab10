//===- Artifact.h - Loads and verifies .optpkg files ------------*- C++ -*-===//
//
// An Artifact is a verified, read-only view of an .optpkg file. open() maps
// the file and checks it before anything uses it: magic, versions, section
// bounds, checksums, the flatbuffers verifier, then the plan's internal
// references. A bad file is refused with one line; nothing throws.
// Accessors return the schema's flatbuffer tables (optrt::fb), which point
// into the mapping; weightData() points at a weight's bytes in the mapping.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_ARTIFACT_ARTIFACT_H
#define OPTMLIR_RUNTIME_ARTIFACT_ARTIFACT_H

#include "runtime/artifact/ArtifactFormat.h"
#include "runtime/artifact/ArtifactTypes.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace optrt {
namespace artifact {

struct VerifyOptions {
  /// Hash the whole weight blob. Turning this off saves reading every page
  /// of a huge file at load; the metadata is still fully checked.
  bool verifyWeightChecksum = true;
};

class Artifact {
public:
  /// Maps and verifies `path`. On failure returns nullptr and sets `error` to
  /// one line without the path (callers prefix it).
  static std::unique_ptr<Artifact> open(const std::string &path,
                                        std::string &error,
                                        const VerifyOptions &options = {});
  /// Verifies a copy of `size` bytes at `data` (tests, fuzzing, network).
  static std::unique_ptr<Artifact> fromBytes(const void *data, size_t size,
                                             std::string &error,
                                             const VerifyOptions &options = {});
  /// Runs every check on bytes in memory; returns "" if they form a valid
  /// artifact, else the error line. `data` needs no particular alignment.
  static std::string verify(const void *data, size_t size,
                            const VerifyOptions &options = {});

  ~Artifact();
  Artifact(const Artifact &) = delete;
  Artifact &operator=(const Artifact &) = delete;

  const FileHeader &header() const { return fileHeader; }
  uint64_t fileSize() const { return size; }
  bool hasVirtualWeights() const {
    return fileHeader.flags & kFlagVirtualWeights;
  }

  const fb::Artifact &root() const { return *rootTable; }
  /// Always present (verified).
  const fb::ModelInfo &model() const { return *rootTable->model(); }
  const fb::Plan &plan() const { return *rootTable->plan(); }
  /// Optional parts; nullptr when absent.
  const fb::KVCacheLayout *kvCache() const { return rootTable->kv_cache(); }
  const fb::Tokenizer *tokenizer() const { return rootTable->tokenizer(); }
  const fb::GenerationDefaults *generation() const {
    return rootTable->generation();
  }
  const fb::Provenance *provenance() const { return rootTable->provenance(); }

  size_t numKernels() const;
  const fb::Kernel &kernel(size_t i) const;
  size_t numWeights() const;
  const fb::WeightEntry &weight(size_t i) const;
  /// Index of the weight called `name`, if any.
  std::optional<size_t> findWeight(std::string_view name) const;
  /// The weight's bytes inside the mapping (64-byte aligned), or nullptr for
  /// a virtual weight.
  const uint8_t *weightData(size_t i) const;

  /// The weight blob: file offset (4096-aligned), size, and mapped bytes.
  uint64_t blobFileOffset() const { return fileHeader.blobOffset; }
  uint64_t blobSize() const { return fileHeader.blobSize; }
  const uint8_t *blobData() const { return base + fileHeader.blobOffset; }

  /// A plain copy of all metadata (kernel bytes included, weight bytes not).
  ArtifactSpec toSpec() const;

private:
  Artifact() = default;
  /// Checks bytes [base, base+size) and fills the members; "" on success.
  std::string load(const VerifyOptions &options);

  const uint8_t *base = nullptr;
  size_t size = 0;
  bool mapped = false;      // base came from mmap (else `owned`)
  std::unique_ptr<uint64_t[]> owned; // 8-aligned copy for fromBytes
  FileHeader fileHeader;
  const fb::Artifact *rootTable = nullptr;
  std::unordered_map<std::string_view, size_t> weightIndex;
};

/// The semantic checks open() runs after the flatbuffers verifier: weight
/// ranges inside a blob of `blobSize` bytes and disjoint, dense sizes
/// consistent, kernel names safe as file names, every index a command uses
/// in range. Returns "" or one line. `root` must already be verified.
std::string verifyMetadata(const fb::Artifact &root, uint64_t blobSize);

} // namespace artifact
} // namespace optrt

#endif // OPTMLIR_RUNTIME_ARTIFACT_ARTIFACT_H
