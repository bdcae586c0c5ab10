//===- SampleArtifact.h - A small artifact for tests ------------*- C++ -*-===//
//
// One tiny Llama-shaped artifact that uses every field of the schema, shared
// by the unit tests and optpkg-testgen (which writes it for the lit tests).
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_TEST_UNIT_RUNTIME_ARTIFACT_SAMPLEARTIFACT_H
#define OPTMLIR_TEST_UNIT_RUNTIME_ARTIFACT_SAMPLEARTIFACT_H

#include "runtime/artifact/ArtifactFormat.h"
#include "runtime/artifact/ArtifactWriter.h"

#include <string>
#include <vector>

namespace optrt {
namespace artifact {
namespace testing {

/// Metadata of the sample (weights excluded).
ArtifactSpec sampleSpec();

/// The sample's weights with their bytes (deterministic patterns).
struct SampleWeight {
  WeightInfo info;
  std::vector<uint8_t> data;
};
std::vector<SampleWeight> sampleWeights();

/// Writes the sample to `path`; weights virtual when `virtualWeights`.
/// `spec` replaces the sample metadata (to write broken variants).
bool writeSample(const std::string &path, std::string &error,
                 bool virtualWeights = false,
                 const ArtifactSpec &spec = sampleSpec(),
                 const WriteOptions &options = {});

/// Reads a whole file; empty on failure.
std::vector<uint8_t> readFile(const std::string &path);
/// Writes bytes to a file; false on failure.
bool writeFile(const std::string &path, const std::vector<uint8_t> &bytes);

/// Re-encodes the header of `bytes` after `edit` changed it, so that the
/// header checksum stays valid (for version and layout cases).
template <typename Fn> void editHeader(std::vector<uint8_t> &bytes, Fn edit) {
  FileHeader h = decodeHeader(bytes.data());
  edit(h);
  encodeHeader(h, bytes.data());
}

} // namespace testing
} // namespace artifact
} // namespace optrt

#endif
