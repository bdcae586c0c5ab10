//===- SampleArtifact.cpp - A small artifact for tests --------------------===//

#include "SampleArtifact.h"

#include <fstream>
#include <iterator>

namespace optrt {
namespace artifact {
namespace testing {

ArtifactSpec sampleSpec() {
  ArtifactSpec spec;
  ModelInfo &m = spec.model;
  m.architecture = "LlamaForCausalLM";
  m.vocabSize = 32;
  m.hiddenSize = 8;
  m.intermediateSize = 16;
  m.numLayers = 2;
  m.numHeads = 2;
  m.numKVHeads = 1;
  m.headDim = 4;
  m.maxPositionEmbeddings = 128;
  m.rmsNormEps = 1e-5;
  m.ropeTheta = 500000;
  m.ropeScaling = {RopeScalingKind::Llama3, 32, 1, 4, 8192};
  m.slidingWindow = 64;
  m.tieWordEmbeddings = true;
  m.bosId = 1;
  m.eosIds = {2, 31};
  m.activationDType = DType::BF16;

  spec.kvCache = KVCacheLayout{16, DType::BF16, KVLayoutOrder::BlockHeadTokenDim,
                               2, 1, 4};

  Plan &p = spec.plan;
  p.maxTokensPerStep = 64;
  p.runtimeScalars = {"num_tokens", "num_seqs"};
  p.buffers = {{"token_ids", 256, 64, BufferKind::Input},
               {"hidden", 1024, 64, BufferKind::Activation},
               {"logits", 4096, 256, BufferKind::Output},
               {"scratch", 2048, 0, BufferKind::Workspace}};
  p.commands = {
      {CommandKind::KernelCall, "embed", 0, 0,
       {Arg::buffer(0), Arg::weight(0), Arg::buffer(1),
        Arg::runtimeScalar(0)}},
      {CommandKind::KernelCall, "layer0.rmsnorm", 0, 1,
       {Arg::buffer(1), Arg::weight(1), Arg::buffer(1, 512),
        Arg::real(1e-5), Arg::integer(-7)}},
      {CommandKind::Gemm, "layer0.q_proj", kNoKernel, 0,
       {Arg::buffer(1, 512), Arg::weight(2, 64), Arg::buffer(3),
        Arg::integer(8)}},
      {CommandKind::Attention, "layer0.attention", 1, 0,
       {Arg::buffer(3), Arg::kvCache(0), Arg::kvCache(1),
        Arg::runtimeScalar(1)}},
      {CommandKind::Copy, "copy_out", kNoKernel, 0,
       {Arg::buffer(2), Arg::buffer(1), Arg::integer(1024)}},
  };

  spec.kernels = {
      {"host_kernels", "x86_64", KernelFormat::Object,
       {"embed_bf16", "rmsnorm_bf16"},
       {0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0}},
      {"attention_sm90", "sm_90a", KernelFormat::PTX, {"paged_attention"},
       {'.', 'v', 'e', 'r', 's', 'i', 'o', 'n', ' ', '8', '.', '0', '\n'}},
      {"attention_sm90.sass", "sm_90a", KernelFormat::Cubin,
       {"paged_attention"}, {0x7f, 'E', 'L', 'F', 2, 1, 1, 0x33}},
      {"blas_shim", "x86_64", KernelFormat::SharedObject, {"gemm"},
       {0x7f, 'E', 'L', 'F', 2, 1, 1, 3}},
  };

  spec.tokenizer = Tokenizer{
      "byte-level-bpe",
      R"({"version":"1.0","model":{"type":"BPE","vocab":{"a":0}}})"};
  spec.generation.temperature = 0.6f;
  spec.generation.topP = 0.9f;
  spec.generation.topK = 40;
  spec.generation.maxNewTokens = 256;
  // repetitionPenalty left unset: absent fields must stay absent.

  Provenance &pr = spec.provenance;
  pr.compiler = "optc 0.1.0";
  pr.created = "2025-01-02T03:04:05Z";
  pr.sources = {{"model/config.json", 612, "xxh3:0123456789abcdef"},
                {"model/model.safetensors", 1546, "xxh3:fedcba9876543210"}};
  pr.passes = {"tfm-decompose", "tfm-fuse", "convert-tfm-to-linalg"};
  pr.options = {"--target=cpu", "-O2"};
  return spec;
}

std::vector<SampleWeight> sampleWeights() {
  auto make = [](std::string name, DType dtype, std::vector<int64_t> shape,
                 uint8_t seed) {
    SampleWeight w;
    w.info.name = std::move(name);
    w.info.dtype = dtype;
    w.info.shape = std::move(shape);
    uint64_t size = *denseByteSize(w.info.dtype, w.info.shape);
    for (uint64_t i = 0; i < size; ++i)
      w.data.push_back(uint8_t(seed + i * 7));
    return w;
  };
  std::vector<SampleWeight> out;
  out.push_back(make("model.embed_tokens.weight", DType::BF16, {32, 8}, 1));
  out.push_back(
      make("model.layers.0.input_layernorm.weight", DType::F32, {8}, 2));
  out.push_back(
      make("model.layers.0.self_attn.q_proj.weight", DType::BF16, {8, 8}, 3));
  // 3 bytes: the next weight must still start 64-byte aligned.
  out.push_back(make("model.layers.0.odd", DType::I4, {5}, 4));
  out.push_back(make("model.norm.weight", DType::F32, {8}, 5));
  return out;
}

bool writeSample(const std::string &path, std::string &error,
                 bool virtualWeights, const ArtifactSpec &spec,
                 const WriteOptions &options) {
  ArtifactWriter writer(spec);
  std::vector<SampleWeight> weights = sampleWeights();
  for (SampleWeight &w : weights) {
    if (virtualWeights)
      writer.addVirtualWeight(w.info);
    else
      writer.addWeight(w.info, w.data.data());
  }
  return writer.write(path, error, options);
}

std::vector<uint8_t> readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

bool writeFile(const std::string &path, const std::vector<uint8_t> &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char *>(bytes.data()), bytes.size());
  return bool(out);
}

} // namespace testing
} // namespace artifact
} // namespace optrt
