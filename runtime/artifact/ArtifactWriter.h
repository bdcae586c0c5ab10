//===- ArtifactWriter.h - Writes .optpkg files ------------------*- C++ -*-===//
//
// Builds an artifact from plain structs. Weight bytes are streamed into the
// file at write() time, one weight after the other, so that a 14 GB model is
// never held in memory twice. The file appears atomically: it is written to a
// temporary file in the same directory and renamed; on any failure nothing
// is left behind.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_ARTIFACT_ARTIFACTWRITER_H
#define OPTMLIR_RUNTIME_ARTIFACT_ARTIFACTWRITER_H

#include "runtime/artifact/ArtifactTypes.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace optrt {
namespace artifact {

/// Receives a weight's bytes in pieces; returns false if writing failed
/// (the producer should then stop and return false too).
using ByteSink = std::function<bool(const void *data, size_t size)>;
/// Produces one weight's bytes by calling the sink; on failure returns false
/// and sets `error`. It must deliver exactly the weight's size in total.
using WeightProducer =
    std::function<bool(const ByteSink &sink, std::string &error)>;
/// Called as the blob is written: bytes done and total, and the weight name.
using ProgressFn =
    std::function<void(uint64_t done, uint64_t total, const std::string &name)>;

struct WriteOptions {
  /// Run the reader's semantic checks on the metadata before writing. Only
  /// tests that produce deliberately broken artifacts turn this off.
  bool validate = true;
};

class ArtifactWriter {
public:
  /// `spec.weights` is ignored: weights are added with the add* methods.
  explicit ArtifactWriter(ArtifactSpec spec);

  /// A weight whose bytes live in memory (e.g. a mapped checkpoint) until
  /// write() returns; `data` holds info.size bytes (computed if 0).
  void addWeight(WeightInfo info, const void *data);
  /// A weight produced while writing (conversion, packing, quantization).
  void addWeight(WeightInfo info, WeightProducer producer);
  /// A weight with no data (--random-weights): its size is recorded and the
  /// header flag kFlagVirtualWeights is set.
  void addVirtualWeight(WeightInfo info);

  void setProgress(ProgressFn fn) { progress = std::move(fn); }

  /// Writes the artifact to `path`. On failure returns false, sets `error`
  /// to one line, and leaves no file (neither `path` nor a temporary).
  bool write(const std::string &path, std::string &error,
             const WriteOptions &options = {});

  /// The flatbuffer section alone (weights laid out as write() would), for
  /// tests and for tools that embed the metadata elsewhere.
  std::vector<uint8_t> buildFlatbuffer(std::string &error);

private:
  struct PendingWeight {
    WeightInfo info;
    const void *data = nullptr;
    WeightProducer producer;
  };
  bool layoutWeights(std::string &error);

  ArtifactSpec spec;
  std::vector<PendingWeight> weights;
  ProgressFn progress;
  uint64_t blobSize = 0;
};

/// Serializes `spec` (weights with offsets as given) into a finished
/// flatbuffer with the artifact file identifier.
std::vector<uint8_t> packArtifact(const ArtifactSpec &spec);

} // namespace artifact
} // namespace optrt

#endif // OPTMLIR_RUNTIME_ARTIFACT_ARTIFACTWRITER_H
