//===- ArtifactTest.cpp - Artifact writer and reader/verifier tests -------===//

#include "SampleArtifact.h"

#include "runtime/artifact/Artifact.h"
#include "runtime/artifact/ArtifactWriter.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <dirent.h>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

using namespace optrt::artifact;
using namespace optrt::artifact::testing;

namespace {

/// A fresh, empty directory per test, removed afterwards.
class ArtifactTest : public ::testing::Test {
protected:
  void SetUp() override {
    char tmpl[] = "/tmp/optpkg-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
  }
  void TearDown() override {
    for (const std::string &name : listDir())
      ::unlink((dir + "/" + name).c_str());
    ::rmdir(dir.c_str());
  }
  std::set<std::string> listDir() const {
    std::set<std::string> names;
    if (DIR *d = ::opendir(dir.c_str())) {
      while (dirent *e = ::readdir(d))
        if (std::string(e->d_name) != "." && std::string(e->d_name) != "..")
          names.insert(e->d_name);
      ::closedir(d);
    }
    return names;
  }
  std::vector<uint8_t> goodBytes() {
    std::string error;
    EXPECT_TRUE(writeSample(dir + "/good.optpkg", error)) << error;
    return readFile(dir + "/good.optpkg");
  }
  std::string dir;
};

std::string verifyBytes(const std::vector<uint8_t> &bytes,
                        bool weightChecksum = true) {
  VerifyOptions options;
  options.verifyWeightChecksum = weightChecksum;
  return Artifact::verify(bytes.data(), bytes.size(), options);
}

/// Assembles a container around an arbitrary flatbuffer and blob with valid
/// checksums, to reach the checks behind them.
std::vector<uint8_t> assemble(const std::vector<uint8_t> &flat,
                              const std::vector<uint8_t> &blob,
                              uint64_t flags = 0) {
  FileHeader h;
  h.flags = flags;
  h.flatbufferOffset = kHeaderSize;
  h.flatbufferSize = flat.size();
  h.flatbufferChecksum = checksum(flat.data(), flat.size());
  h.blobOffset = (kHeaderSize + flat.size() + 4095) / 4096 * 4096;
  h.blobSize = blob.size();
  h.blobChecksum = checksum(blob.data(), blob.size());
  h.fileSize = h.blobOffset + blob.size();
  std::vector<uint8_t> out(h.fileSize);
  encodeHeader(h, out.data());
  std::copy(flat.begin(), flat.end(), out.begin() + kHeaderSize);
  std::copy(blob.begin(), blob.end(), out.begin() + h.blobOffset);
  return out;
}

/// The sample's metadata with weights laid out by the writer, for forging.
ArtifactSpec laidOutSpec() {
  ArtifactWriter writer(sampleSpec());
  for (const SampleWeight &w : sampleWeights())
    writer.addVirtualWeight(w.info);
  std::string error;
  std::vector<uint8_t> flat = writer.buildFlatbuffer(error);
  auto artifact = Artifact::fromBytes(
      assemble(flat, {}, kFlagVirtualWeights).data(),
      assemble(flat, {}, kFlagVirtualWeights).size(), error);
  EXPECT_TRUE(artifact) << error;
  ArtifactSpec spec = artifact->toSpec();
  // Give every weight real bytes, laid out contiguously 64-aligned.
  uint64_t at = 0;
  for (WeightInfo &w : spec.weights) {
    w.noData = false;
    w.offset = at;
    at = (at + w.size + 63) / 64 * 64;
  }
  return spec;
}

std::string verifySpec(const ArtifactSpec &spec, uint64_t blobSize = 4096) {
  return verifyBytes(assemble(packArtifact(spec),
                              std::vector<uint8_t>(blobSize, 0)));
}

::testing::AssertionResult startsWith(const std::string &s,
                                      const std::string &prefix) {
  if (s.compare(0, prefix.size(), prefix) == 0)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "'" << s << "' does not start with '" << prefix << "'";
}

} // namespace

TEST_F(ArtifactTest, RoundTripsEveryField) {
  std::string error;
  ASSERT_TRUE(writeSample(dir + "/a.optpkg", error)) << error;
  EXPECT_EQ(listDir(), std::set<std::string>{"a.optpkg"});
  std::unique_ptr<Artifact> a = Artifact::open(dir + "/a.optpkg", error);
  ASSERT_TRUE(a) << error;

  ArtifactSpec want = sampleSpec();
  ArtifactSpec got = a->toSpec();
  const ModelInfo &wm = want.model, &gm = got.model;
  EXPECT_EQ(gm.architecture, wm.architecture);
  EXPECT_EQ(gm.vocabSize, wm.vocabSize);
  EXPECT_EQ(gm.hiddenSize, wm.hiddenSize);
  EXPECT_EQ(gm.intermediateSize, wm.intermediateSize);
  EXPECT_EQ(gm.numLayers, wm.numLayers);
  EXPECT_EQ(gm.numHeads, wm.numHeads);
  EXPECT_EQ(gm.numKVHeads, wm.numKVHeads);
  EXPECT_EQ(gm.headDim, wm.headDim);
  EXPECT_EQ(gm.maxPositionEmbeddings, wm.maxPositionEmbeddings);
  EXPECT_EQ(gm.rmsNormEps, wm.rmsNormEps);
  EXPECT_EQ(gm.ropeTheta, wm.ropeTheta);
  EXPECT_EQ(gm.ropeScaling.kind, wm.ropeScaling.kind);
  EXPECT_EQ(gm.ropeScaling.factor, wm.ropeScaling.factor);
  EXPECT_EQ(gm.ropeScaling.lowFreqFactor, wm.ropeScaling.lowFreqFactor);
  EXPECT_EQ(gm.ropeScaling.highFreqFactor, wm.ropeScaling.highFreqFactor);
  EXPECT_EQ(gm.ropeScaling.originalMaxPositionEmbeddings,
            wm.ropeScaling.originalMaxPositionEmbeddings);
  EXPECT_EQ(gm.slidingWindow, wm.slidingWindow);
  EXPECT_EQ(gm.tieWordEmbeddings, wm.tieWordEmbeddings);
  EXPECT_EQ(gm.bosId, wm.bosId);
  EXPECT_EQ(gm.eosIds, wm.eosIds);
  EXPECT_EQ(gm.activationDType, wm.activationDType);

  ASSERT_TRUE(got.kvCache);
  EXPECT_EQ(got.kvCache->blockSize, want.kvCache->blockSize);
  EXPECT_EQ(got.kvCache->dtype, want.kvCache->dtype);
  EXPECT_EQ(got.kvCache->order, want.kvCache->order);
  EXPECT_EQ(got.kvCache->numLayers, want.kvCache->numLayers);
  EXPECT_EQ(got.kvCache->numKVHeads, want.kvCache->numKVHeads);
  EXPECT_EQ(got.kvCache->headDim, want.kvCache->headDim);

  EXPECT_EQ(got.plan.maxTokensPerStep, want.plan.maxTokensPerStep);
  EXPECT_EQ(got.plan.runtimeScalars, want.plan.runtimeScalars);
  ASSERT_EQ(got.plan.buffers.size(), want.plan.buffers.size());
  for (size_t i = 0; i < want.plan.buffers.size(); ++i) {
    EXPECT_EQ(got.plan.buffers[i].name, want.plan.buffers[i].name);
    EXPECT_EQ(got.plan.buffers[i].sizeBytes, want.plan.buffers[i].sizeBytes);
    EXPECT_EQ(got.plan.buffers[i].alignment, want.plan.buffers[i].alignment);
    EXPECT_EQ(got.plan.buffers[i].kind, want.plan.buffers[i].kind);
  }
  ASSERT_EQ(got.plan.commands.size(), want.plan.commands.size());
  for (size_t i = 0; i < want.plan.commands.size(); ++i) {
    const Command &g = got.plan.commands[i], &w = want.plan.commands[i];
    EXPECT_EQ(g.kind, w.kind);
    EXPECT_EQ(g.name, w.name);
    EXPECT_EQ(g.kernel, w.kernel);
    EXPECT_EQ(g.entry, w.entry);
    ASSERT_EQ(g.args.size(), w.args.size());
    for (size_t j = 0; j < w.args.size(); ++j) {
      EXPECT_EQ(g.args[j].kind, w.args[j].kind);
      EXPECT_EQ(g.args[j].index, w.args[j].index);
      EXPECT_EQ(g.args[j].offset, w.args[j].offset);
      EXPECT_EQ(g.args[j].value, w.args[j].value);
    }
  }
  ASSERT_EQ(got.kernels.size(), want.kernels.size());
  for (size_t i = 0; i < want.kernels.size(); ++i) {
    EXPECT_EQ(got.kernels[i].name, want.kernels[i].name);
    EXPECT_EQ(got.kernels[i].target, want.kernels[i].target);
    EXPECT_EQ(got.kernels[i].format, want.kernels[i].format);
    EXPECT_EQ(got.kernels[i].entryPoints, want.kernels[i].entryPoints);
    EXPECT_EQ(got.kernels[i].data, want.kernels[i].data);
  }
  ASSERT_TRUE(got.tokenizer);
  EXPECT_EQ(got.tokenizer->kind, want.tokenizer->kind);
  EXPECT_EQ(got.tokenizer->json, want.tokenizer->json);
  EXPECT_EQ(got.generation.temperature, want.generation.temperature);
  EXPECT_EQ(got.generation.topP, want.generation.topP);
  EXPECT_EQ(got.generation.topK, want.generation.topK);
  EXPECT_EQ(got.generation.maxNewTokens, want.generation.maxNewTokens);
  EXPECT_FALSE(got.generation.repetitionPenalty);
  EXPECT_EQ(got.provenance.compiler, want.provenance.compiler);
  EXPECT_EQ(got.provenance.created, want.provenance.created);
  ASSERT_EQ(got.provenance.sources.size(), want.provenance.sources.size());
  for (size_t i = 0; i < want.provenance.sources.size(); ++i) {
    EXPECT_EQ(got.provenance.sources[i].path, want.provenance.sources[i].path);
    EXPECT_EQ(got.provenance.sources[i].size, want.provenance.sources[i].size);
    EXPECT_EQ(got.provenance.sources[i].checksum,
              want.provenance.sources[i].checksum);
  }
  EXPECT_EQ(got.provenance.passes, want.provenance.passes);
  EXPECT_EQ(got.provenance.options, want.provenance.options);

  // Weights: index entries, alignment, and the bytes in the mapping.
  std::vector<SampleWeight> weights = sampleWeights();
  ASSERT_EQ(a->numWeights(), weights.size());
  EXPECT_FALSE(a->hasVirtualWeights());
  EXPECT_EQ(a->blobFileOffset() % kBlobAlignment, 0u);
  for (size_t i = 0; i < weights.size(); ++i) {
    const WeightInfo &g = got.weights[i];
    EXPECT_EQ(g.name, weights[i].info.name);
    EXPECT_EQ(g.dtype, weights[i].info.dtype);
    EXPECT_EQ(g.shape, weights[i].info.shape);
    EXPECT_EQ(g.format, "dense");
    EXPECT_EQ(g.size, weights[i].data.size());
    EXPECT_FALSE(g.noData);
    EXPECT_EQ(g.offset % kWeightAlignment, 0u);
    const uint8_t *data = a->weightData(i);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(data) % kWeightAlignment, 0u);
    EXPECT_EQ(std::vector<uint8_t>(data, data + g.size), weights[i].data);
    EXPECT_EQ(a->findWeight(g.name), i);
  }
  EXPECT_FALSE(a->findWeight("no.such.weight"));
  EXPECT_EQ(a->header().formatVersion, kFormatVersion);
  EXPECT_EQ(a->header().schemaVersion, kSchemaVersion);
  EXPECT_EQ(a->fileSize(), a->header().fileSize);
}

TEST_F(ArtifactTest, VirtualWeightsHaveSizesButNoData) {
  std::string error;
  ASSERT_TRUE(writeSample(dir + "/v.optpkg", error, true)) << error;
  auto a = Artifact::open(dir + "/v.optpkg", error);
  ASSERT_TRUE(a) << error;
  EXPECT_TRUE(a->hasVirtualWeights());
  EXPECT_EQ(a->blobSize(), 0u);
  std::vector<SampleWeight> weights = sampleWeights();
  for (size_t i = 0; i < weights.size(); ++i) {
    EXPECT_TRUE(a->weight(i).no_data());
    EXPECT_EQ(a->weight(i).size(), weights[i].data.size());
    EXPECT_EQ(a->weightData(i), nullptr);
  }
}

TEST_F(ArtifactTest, KeepsTokenizerConfigOnlyWhenGiven) {
  for (std::string config : {std::string(), std::string(R"({"chat_template":
                                 "{{ messages[0].content }}"})")}) {
    ArtifactSpec spec = sampleSpec();
    spec.tokenizer->configJson = config;
    ArtifactWriter writer(spec);
    for (const SampleWeight &w : sampleWeights())
      writer.addVirtualWeight(w.info);
    std::string error;
    std::vector<uint8_t> bytes =
        assemble(writer.buildFlatbuffer(error), {}, kFlagVirtualWeights);
    auto artifact = Artifact::fromBytes(bytes.data(), bytes.size(), error);
    ASSERT_TRUE(artifact) << error;
    // Absent, not empty, so that a reader can tell "none" apart.
    EXPECT_EQ(artifact->tokenizer()->config_json() != nullptr, !config.empty());
    EXPECT_EQ(artifact->toSpec().tokenizer->configJson, config);
  }
}

TEST_F(ArtifactTest, StreamsWeightsAndReportsProgress) {
  ArtifactWriter writer(sampleSpec());
  std::vector<SampleWeight> weights = sampleWeights();
  for (const SampleWeight &w : weights) {
    std::vector<uint8_t> bytes = w.data;
    // Deliver in 3-byte pieces, as a converting producer would.
    writer.addWeight(w.info, [bytes](const ByteSink &sink, std::string &) {
      for (size_t i = 0; i < bytes.size(); i += 3)
        if (!sink(bytes.data() + i, std::min<size_t>(3, bytes.size() - i)))
          return false;
      return true;
    });
  }
  uint64_t last = 0, total = 0;
  bool monotonic = true;
  writer.setProgress([&](uint64_t done, uint64_t all, const std::string &) {
    monotonic &= done >= last;
    last = done;
    total = all;
  });
  std::string error;
  ASSERT_TRUE(writer.write(dir + "/s.optpkg", error)) << error;
  EXPECT_TRUE(monotonic);
  EXPECT_EQ(last, total);
  auto a = Artifact::open(dir + "/s.optpkg", error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(total, a->blobSize());
  for (size_t i = 0; i < weights.size(); ++i)
    EXPECT_EQ(std::vector<uint8_t>(a->weightData(i),
                                   a->weightData(i) + a->weight(i).size()),
              weights[i].data);
}

TEST_F(ArtifactTest, WriterLeavesNothingBehindOnFailure) {
  std::string path = dir + "/x.optpkg";
  auto attempt = [&](WeightProducer producer) {
    ArtifactWriter writer(sampleSpec());
    std::vector<SampleWeight> weights = sampleWeights();
    for (size_t i = 0; i < weights.size(); ++i) {
      if (i == 1)
        writer.addWeight(weights[i].info, std::move(producer));
      else
        writer.addWeight(weights[i].info, weights[i].data.data());
    }
    std::string error;
    EXPECT_FALSE(writer.write(path, error));
    EXPECT_EQ(listDir(), std::set<std::string>{}) << error;
    return error;
  };
  EXPECT_EQ(attempt([](const ByteSink &, std::string &e) {
              e = "disk image unreadable";
              return false;
            }),
            "weight 'model.layers.0.input_layernorm.weight': disk image "
            "unreadable");
  EXPECT_EQ(attempt([](const ByteSink &sink, std::string &) {
              uint8_t b[5] = {};
              return sink(b, 5);
            }),
            "weight 'model.layers.0.input_layernorm.weight': produced 5 "
            "bytes, not the declared 32 bytes");
  EXPECT_EQ(attempt([](const ByteSink &sink, std::string &) {
              uint8_t b[40] = {};
              sink(b, 40);
              return true;
            }),
            "weight 'model.layers.0.input_layernorm.weight': produced more "
            "than the declared 32 bytes");

  // Invalid metadata is refused before any file is created.
  ArtifactSpec spec = sampleSpec();
  spec.plan.commands[0].args[0] = Arg::buffer(4);
  ArtifactWriter invalid(spec);
  std::string error;
  EXPECT_FALSE(invalid.write(path, error));
  EXPECT_EQ(error, "refusing to write an invalid artifact: invalid plan: "
                   "command 0 'embed' argument 0 references buffer 4, but "
                   "the plan has 4 buffers");
  EXPECT_EQ(listDir(), std::set<std::string>{});

  // A missing directory fails cleanly.
  EXPECT_FALSE(writeSample(dir + "/no/such/dir/x.optpkg", error));
  EXPECT_TRUE(startsWith(error, "cannot create a file next to it: "));

}

TEST_F(ArtifactTest, FailedRewriteKeepsOldFile) {
  std::string path = dir + "/x.optpkg", error;
  ASSERT_TRUE(writeSample(path, error)) << error;
  std::vector<uint8_t> before = readFile(path);
  ArtifactWriter writer(sampleSpec());
  for (const SampleWeight &w : sampleWeights())
    writer.addWeight(w.info,
                     [](const ByteSink &, std::string &) { return false; });
  EXPECT_FALSE(writer.write(path, error));
  EXPECT_EQ(error, "weight 'model.embed_tokens.weight': producer failed");
  EXPECT_EQ(listDir(), std::set<std::string>{"x.optpkg"});
  EXPECT_EQ(readFile(path), before);
}

TEST_F(ArtifactTest, RefusesForeignFiles) {
  EXPECT_EQ(verifyBytes({}), "not an OptMLIR artifact (the file is empty)");
  std::string text = "hello, world: this is not a model at all\n";
  EXPECT_EQ(verifyBytes(std::vector<uint8_t>(text.begin(), text.end())),
            "not an OptMLIR artifact (bad magic)");
  EXPECT_EQ(verifyBytes({'O', 'P', 'X'}), "not an OptMLIR artifact (bad magic)");
  std::string json = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  std::vector<uint8_t> st(8, 0);
  st[0] = uint8_t(json.size());
  st.insert(st.end(), json.begin(), json.end());
  st.insert(st.end(), 4, 0);
  EXPECT_EQ(verifyBytes(st),
            "not an OptMLIR artifact (bad magic; this looks like a "
            "safetensors checkpoint: compile it with optc first)");
  std::string error;
  EXPECT_FALSE(Artifact::open(dir + "/missing.optpkg", error));
  EXPECT_EQ(error, "cannot open: No such file or directory");
  EXPECT_FALSE(Artifact::open(dir, error));
  EXPECT_EQ(error, "is a directory, not an artifact file");
}

TEST_F(ArtifactTest, RefusesEveryTruncation) {
  std::vector<uint8_t> good = goodBytes();
  ASSERT_EQ(verifyBytes(good), "");
  // Every proper prefix: inside the magic, the header, the metadata, the
  // padding and the blob.
  for (size_t n = 1; n < good.size(); ++n) {
    std::string error =
        verifyBytes(std::vector<uint8_t>(good.begin(), good.begin() + n));
    ASSERT_TRUE(startsWith(error, "truncated: ")) << "prefix " << n;
  }
  EXPECT_EQ(verifyBytes(std::vector<uint8_t>(good.begin(), good.begin() + 40)),
            "truncated: the file is 40 bytes, shorter than the 96-byte header");
  FileHeader h = decodeHeader(good.data());
  size_t cut = h.blobOffset + 10;
  EXPECT_EQ(
      verifyBytes(std::vector<uint8_t>(good.begin(), good.begin() + cut)),
      "truncated: the file is " + std::to_string(cut) +
          " bytes, its header says " + std::to_string(h.fileSize));
}

TEST_F(ArtifactTest, RefusesFlippedBytes) {
  std::vector<uint8_t> good = goodBytes();
  FileHeader h = decodeHeader(good.data());
  auto flip = [&](uint64_t at) {
    std::vector<uint8_t> bytes = good;
    bytes[at] ^= 0x01;
    return bytes;
  };
  // Header bytes whose change cannot be mistaken for truncation or a version.
  for (uint64_t at : {20u, 24u, 31u, 72u, 80u, 88u, 95u})
    EXPECT_EQ(verifyBytes(flip(at)),
              "header checksum mismatch: the header is corrupt")
        << "byte " << at;
  for (uint64_t at = h.flatbufferOffset;
       at < h.flatbufferOffset + h.flatbufferSize; at += 97)
    EXPECT_EQ(verifyBytes(flip(at)),
              "metadata checksum mismatch: the metadata section is corrupt");
  for (uint64_t at = h.blobOffset; at < h.blobOffset + h.blobSize; at += 31)
    EXPECT_EQ(verifyBytes(flip(at)),
              "weight blob checksum mismatch: the weights are corrupt");
  // The blob check can be skipped for huge files; the rest still runs.
  EXPECT_EQ(verifyBytes(flip(h.blobOffset), /*weightChecksum=*/false), "");
  EXPECT_NE(verifyBytes(flip(h.flatbufferOffset + 8), false), "");
  // Magic: foreign; a byte appended: size no longer matches.
  EXPECT_EQ(verifyBytes(flip(2)), "not an OptMLIR artifact (bad magic)");
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  EXPECT_EQ(verifyBytes(longer), "corrupt file: it is " +
                                     std::to_string(longer.size()) +
                                     " bytes, its header says " +
                                     std::to_string(good.size()));
}

TEST_F(ArtifactTest, RefusesNewerVersions) {
  std::vector<uint8_t> bytes = goodBytes();
  editHeader(bytes, [](FileHeader &h) { h.formatVersion = kFormatVersion + 1; });
  EXPECT_EQ(verifyBytes(bytes),
            "artifact format version 2 is newer than this runtime supports "
            "(1)");
  bytes = goodBytes();
  editHeader(bytes, [](FileHeader &h) { h.schemaVersion = 7; });
  EXPECT_EQ(verifyBytes(bytes), "artifact schema version 7 is newer than "
                                "this runtime supports (3)");
  // Even a truncated newer file names the version, not the truncation.
  bytes.resize(20);
  EXPECT_TRUE(startsWith(verifyBytes(bytes), "artifact schema version 7"));
  bytes = goodBytes();
  editHeader(bytes, [](FileHeader &h) { h.flags |= 1u << 5; });
  EXPECT_EQ(verifyBytes(bytes), "artifact uses features this runtime does "
                                "not support (flags 0x20)");
  bytes = goodBytes();
  editHeader(bytes, [](FileHeader &h) { h.schemaVersion = 0; });
  EXPECT_EQ(verifyBytes(bytes),
            "metadata schema version 3 does not match the header's 0");
}

TEST_F(ArtifactTest, RefusesMalformedMetadata) {
  // Garbage with valid checksums reaches the flatbuffers verifier.
  std::vector<uint8_t> garbage(200);
  for (size_t i = 0; i < garbage.size(); ++i)
    garbage[i] = uint8_t(i * 37 + 11);
  EXPECT_EQ(verifyBytes(assemble(garbage, {})),
            "metadata failed flatbuffers verification: the file is malformed");
}

TEST_F(ArtifactTest, RefusesCommandWithMissingBuffer) {
  ArtifactSpec spec = sampleSpec();
  spec.plan.commands[2].args[2] = Arg::buffer(9);
  WriteOptions options;
  options.validate = false;
  std::string error;
  ASSERT_TRUE(writeSample(dir + "/bad.optpkg", error, false, spec, options))
      << error;
  EXPECT_FALSE(Artifact::open(dir + "/bad.optpkg", error));
  EXPECT_EQ(error, "invalid plan: command 2 'layer0.q_proj' argument 2 "
                   "references buffer 9, but the plan has 4 buffers");
}

TEST_F(ArtifactTest, SemanticChecks) {
  ASSERT_EQ(verifySpec(laidOutSpec()), "");
  auto check = [&](auto edit, const std::string &message) {
    ArtifactSpec spec = laidOutSpec();
    edit(spec);
    EXPECT_EQ(verifySpec(spec), message);
  };
  check([](ArtifactSpec &s) { s.weights[1].offset = s.weights[0].offset; },
        "invalid weight index: 'model.embed_tokens.weight' and "
        "'model.layers.0.input_layernorm.weight' overlap");
  check([](ArtifactSpec &s) { s.weights[4].offset = 4096; },
        "invalid weight 'model.norm.weight': bytes 4096..4128 lie outside "
        "the weight blob (4096 bytes)");
  check([](ArtifactSpec &s) { s.weights[2].offset += 8; },
        "invalid weight 'model.layers.0.self_attn.q_proj.weight': offset 584 "
        "is not 64-byte aligned");
  check([](ArtifactSpec &s) { s.weights[0].shape = {32, 9}; },
        "invalid weight 'model.embed_tokens.weight': 512 bytes, but a bf16 "
        "tensor of its shape has 576");
  check([](ArtifactSpec &s) { s.weights[0].shape = {-1, 8}; },
        "invalid weight 'model.embed_tokens.weight': bad dtype or shape");
  check([](ArtifactSpec &s) { s.weights[1].name = s.weights[0].name; },
        "invalid weight 'model.embed_tokens.weight': the name appears twice");
  check([](ArtifactSpec &s) { s.weights[3].noData = true; },
        "invalid weight index: weights without data, but the header does not "
        "mark the artifact as having virtual weights");
  check([](ArtifactSpec &s) { s.kernels[0].name = "../evil"; },
        "invalid kernel 0: name '../evil' is not a safe file name");
  check([](ArtifactSpec &s) { s.kernels[1].name = s.kernels[0].name; },
        "invalid kernel 'host_kernels': the name appears twice");
  check([](ArtifactSpec &s) { s.plan.commands[3].kernel = 4; },
        "invalid plan: command 3 'layer0.attention' calls kernel 4, but the "
        "artifact has 4 kernels");
  check([](ArtifactSpec &s) { s.plan.commands[1].entry = 2; },
        "invalid plan: command 1 'layer0.rmsnorm' calls entry point 2 of "
        "kernel 'host_kernels', which has 2");
  check([](ArtifactSpec &s) { s.plan.commands[0].kernel = kNoKernel; },
        "invalid plan: command 0 'embed' is a kernel call without a kernel");
  check([](ArtifactSpec &s) { s.plan.commands[3].args[2] = Arg::kvCache(2); },
        "invalid plan: command 3 'layer0.attention' argument 2 references KV "
        "cache layer 2, but the cache has 2 layers");
  check([](ArtifactSpec &s) { s.kvCache.reset(); },
        "invalid plan: command 3 'layer0.attention' argument 1 uses the KV "
        "cache, but the artifact has no KV cache layout");
  check([](ArtifactSpec &s) {
          s.plan.commands[0].args[3] = Arg::runtimeScalar(-1);
        },
        "invalid plan: command 0 'embed' argument 3 references runtime "
        "scalar -1, but the plan has 2");
  check([](ArtifactSpec &s) { s.plan.commands[2].args[1] = Arg::weight(5); },
        "invalid plan: command 2 'layer0.q_proj' argument 1 references weight "
        "5, but the artifact has 5 weights");
  check([](ArtifactSpec &s) { s.plan.commands[4].args[0].offset = 4097; },
        "invalid plan: command 4 'copy_out' argument 0 has offset 4097 past "
        "the end of buffer 'logits'");
  check([](ArtifactSpec &s) { s.plan.buffers[1].alignment = 48; },
        "invalid plan: buffer 1 'hidden' has alignment 48, not a power of "
        "two");
  check([](ArtifactSpec &s) { s.plan.commands[2].kind = CommandKind(200); },
        "invalid plan: command 2 'layer0.q_proj' has an unknown kind 200");
  check([](ArtifactSpec &s) { s.kvCache->blockSize = 0; },
        "invalid KV cache layout: block size 0");
}

TEST_F(ArtifactTest, VerifiesUnalignedInput) {
  std::vector<uint8_t> good = goodBytes();
  std::vector<uint8_t> shifted(good.size() + 1);
  std::copy(good.begin(), good.end(), shifted.begin() + 1);
  EXPECT_EQ(Artifact::verify(shifted.data() + 1, good.size()), "");
  std::string error;
  auto a = Artifact::fromBytes(shifted.data() + 1, good.size(), error);
  ASSERT_TRUE(a) << error;
  EXPECT_EQ(a->numWeights(), sampleWeights().size());
}
