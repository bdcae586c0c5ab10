//===- optpkg-testgen.cpp - Writes sample and broken artifacts ------------===//
//
// Test-only tool for the lit tests in test/Runtime: optrun cannot write
// artifacts, and the compiler may not be built. Writes into DIR:
//   good.optpkg, virtual.optpkg       valid (real / virtual weights)
//   empty.optpkg, foreign.txt, foreign.safetensors
//   truncated-header.optpkg, truncated-metadata.optpkg, truncated-blob.optpkg
//   flipped-header.optpkg, flipped-metadata.optpkg, flipped-blob.optpkg
//   newer-format.optpkg, newer-schema.optpkg, missing-buffer.optpkg
//
//===----------------------------------------------------------------------===//

#include "SampleArtifact.h"

#include "runtime/artifact/Artifact.h"

#include <cstdio>
#include <cstring>

using namespace optrt::artifact;
using namespace optrt::artifact::testing;

static int fail(const std::string &what) {
  std::fprintf(stderr, "optpkg-testgen: error: %s\n", what.c_str());
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 2)
    return fail("usage: optpkg-testgen DIR");
  std::string dir = argv[1];
  std::string error;
  if (!writeSample(dir + "/good.optpkg", error))
    return fail(error);
  if (!writeSample(dir + "/virtual.optpkg", error, /*virtualWeights=*/true))
    return fail(error);

  std::vector<uint8_t> good = readFile(dir + "/good.optpkg");
  FileHeader h = decodeHeader(good.data());
  bool ok = true;
  auto variant = [&](const std::string &name, std::vector<uint8_t> bytes) {
    ok &= writeFile(dir + "/" + name, bytes);
  };
  auto prefix = [&](uint64_t n) {
    return std::vector<uint8_t>(good.begin(), good.begin() + n);
  };
  auto flipped = [&](uint64_t at) {
    std::vector<uint8_t> bytes = good;
    bytes[at] ^= 0x40;
    return bytes;
  };

  variant("empty.optpkg", {});
  std::string text = "This is a text file, not a model.\n";
  variant("foreign.txt", std::vector<uint8_t>(text.begin(), text.end()));
  std::string st = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  std::vector<uint8_t> safetensors(8);
  safetensors[0] = uint8_t(st.size());
  safetensors.insert(safetensors.end(), st.begin(), st.end());
  safetensors.insert(safetensors.end(), 4, 0);
  variant("foreign.safetensors", safetensors);

  variant("truncated-header.optpkg", prefix(40));
  variant("truncated-metadata.optpkg", prefix(h.flatbufferOffset + 100));
  variant("truncated-blob.optpkg", prefix(h.blobOffset + h.blobSize / 2));
  variant("flipped-header.optpkg", flipped(24)); // flags
  variant("flipped-metadata.optpkg",
          flipped(h.flatbufferOffset + h.flatbufferSize / 2));
  variant("flipped-blob.optpkg", flipped(h.blobOffset + 1));

  std::vector<uint8_t> newer = good;
  editHeader(newer, [](FileHeader &fh) { fh.formatVersion = kFormatVersion + 1; });
  variant("newer-format.optpkg", newer);
  newer = good;
  editHeader(newer, [](FileHeader &fh) { fh.schemaVersion = kSchemaVersion + 1; });
  variant("newer-schema.optpkg", newer);

  // A plan whose command uses a buffer that does not exist; the writer's own
  // validation is off so that the broken file can be produced at all.
  ArtifactSpec spec = sampleSpec();
  spec.plan.commands[2].args[2] = Arg::buffer(9);
  WriteOptions options;
  options.validate = false;
  if (!writeSample(dir + "/missing-buffer.optpkg", error, false, spec,
                   options))
    return fail(error);

  if (!ok)
    return fail("cannot write into " + dir);
  return 0;
}
