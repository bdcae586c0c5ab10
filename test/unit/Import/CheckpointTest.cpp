//===- CheckpointTest.cpp - Tests for checkpoint directories --------------===//

#include "optmlir/Import/Checkpoint.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace optmlir;
namespace fs = std::filesystem;

namespace {

/// A fresh directory, removed with its contents at the end of the test.
class TempDir {
public:
  TempDir() {
    std::string pattern =
        (fs::temp_directory_path() / "optmlir-ckpt-XXXXXX").string();
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    if (mkdtemp(buffer.data()))
      path = buffer.data();
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty())
      fs::remove_all(path, ec);
  }
  void write(const std::string &name, const std::string &bytes) const {
    std::ofstream out(path + "/" + name, std::ios::binary);
    out.write(bytes.data(), bytes.size());
  }
  std::string path;
};

struct Spec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};

/// Serializes tensors into a safetensors image; tensor i's bytes all hold i.
std::string makeSafeTensors(const std::vector<Spec> &specs) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (size_t i = 0; i < specs.size(); ++i) {
    int64_t count = 1;
    for (int64_t d : specs[i].shape)
      count *= d;
    size_t begin = data.size();
    data.append(count * dtypeSize(specs[i].dtype), static_cast<char>(i));
    header[specs[i].name] = {{"dtype", dtypeName(specs[i].dtype)},
                             {"shape", specs[i].shape},
                             {"data_offsets", {begin, data.size()}}};
  }
  std::string text = header.dump();
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i)
    bytes[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  return bytes + text + data;
}

ModelConfig tinyConfig() {
  ModelConfig config;
  std::string error;
  bool ok = parseModelConfig(R"({
    "architectures": ["LlamaForCausalLM"], "vocab_size": 16,
    "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 2,
    "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
    "torch_dtype": "bfloat16"})",
                             "tiny/config.json", config, &error);
  EXPECT_TRUE(ok) << error;
  return config;
}

/// What the config implies, in BF16.
std::vector<Spec> expectedSpecs(const ModelConfig &config) {
  std::vector<Spec> specs;
  for (const ExpectedTensor &t : expectedTensors(config))
    specs.push_back({t.name, DType::BF16, t.shape});
  return specs;
}

/// Opens `dir` and expects an error containing `expected`, with the
/// directory's path shown as "DIR".
void expectOpenError(const TempDir &dir, const ModelConfig &config,
                     const std::string &expected) {
  std::string error;
  EXPECT_EQ(Checkpoint::open(dir.path, config, &error), nullptr);
  std::string shown = error;
  for (size_t at; (at = shown.find(dir.path)) != std::string::npos;)
    shown.replace(at, dir.path.size(), "DIR");
  EXPECT_NE(shown.find(expected), std::string::npos)
      << "error: " << shown << "\nexpected: " << expected;
  EXPECT_EQ(error.find('\n'), std::string::npos);
}

std::string indexJson(const std::map<std::string, std::string> &weightMap) {
  nlohmann::json index;
  index["metadata"] = {{"total_size", 0}};
  index["weight_map"] = weightMap;
  return index.dump(2);
}

} // namespace

TEST(Checkpoint, SingleFile) {
  TempDir dir;
  ModelConfig config = tinyConfig();
  std::vector<Spec> specs = expectedSpecs(config);
  specs.push_back({"model.rotary_emb.inv_freq", DType::F32, {2}}); // Extra.
  dir.write("model.safetensors", makeSafeTensors(specs));

  std::string error;
  std::unique_ptr<Checkpoint> ckpt = Checkpoint::open(dir.path, config, &error);
  ASSERT_NE(ckpt, nullptr) << error;
  EXPECT_EQ(ckpt->files().size(), 1u);
  EXPECT_EQ(ckpt->indexPath(), "");
  EXPECT_EQ(ckpt->directory(), dir.path);
  EXPECT_EQ(ckpt->dtype(), DType::BF16);
  const SafeTensorsFile *file = nullptr;
  const TensorInfo *info = ckpt->find("model.layers.1.mlp.down_proj.weight", &file);
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(file, ckpt->files()[0].get());
  EXPECT_EQ(info->shape, std::vector<int64_t>({8, 12}));
  const uint8_t *data = ckpt->tensorData("model.embed_tokens.weight");
  ASSERT_NE(data, nullptr);
  EXPECT_EQ(data[0], 0); // Tensor 0's bytes.
  EXPECT_EQ(ckpt->tensorData("lm_head.weight")[5], 2);
  EXPECT_EQ(ckpt->find("nope", &file), nullptr);
  EXPECT_EQ(file, nullptr);
  EXPECT_EQ(ckpt->tensorData("nope"), nullptr);
}

TEST(Checkpoint, Sharded) {
  TempDir dir;
  ModelConfig config = tinyConfig();
  std::vector<Spec> specs = expectedSpecs(config);
  std::vector<Spec> first(specs.begin(), specs.begin() + 10);
  std::vector<Spec> second(specs.begin() + 10, specs.end());
  // A stale copy of a tensor in the other shard: the index decides.
  second.push_back(first[0]);
  dir.write("model-00001-of-00002.safetensors", makeSafeTensors(first));
  dir.write("model-00002-of-00002.safetensors", makeSafeTensors(second));
  std::map<std::string, std::string> weightMap;
  for (const Spec &s : first)
    weightMap[s.name] = "model-00001-of-00002.safetensors";
  for (size_t i = 0; i + 1 < second.size(); ++i)
    weightMap[second[i].name] = "model-00002-of-00002.safetensors";
  dir.write("model.safetensors.index.json", indexJson(weightMap));

  std::string error;
  std::unique_ptr<Checkpoint> ckpt = Checkpoint::open(dir.path, config, &error);
  ASSERT_NE(ckpt, nullptr) << error;
  ASSERT_EQ(ckpt->files().size(), 2u);
  EXPECT_EQ(ckpt->indexPath(), dir.path + "/model.safetensors.index.json");
  EXPECT_EQ(ckpt->files()[0]->displayName(),
            dir.path + "/model-00001-of-00002.safetensors");
  const SafeTensorsFile *file = nullptr;
  ASSERT_NE(ckpt->find(specs[0].name, &file), nullptr);
  EXPECT_EQ(file, ckpt->files()[0].get());
  ASSERT_NE(ckpt->find(specs.back().name, &file), nullptr);
  EXPECT_EQ(file, ckpt->files()[1].get());
}

TEST(Checkpoint, TiedEmbeddingsNeedNoLmHead) {
  TempDir dir;
  ModelConfig config = tinyConfig();
  config.tieWordEmbeddings = true;
  dir.write("model.safetensors", makeSafeTensors(expectedSpecs(config)));
  std::string error;
  std::unique_ptr<Checkpoint> ckpt = Checkpoint::open(dir.path, config, &error);
  ASSERT_NE(ckpt, nullptr) << error;
  EXPECT_EQ(ckpt->find("lm_head.weight"), nullptr);
}

TEST(Checkpoint, TensorErrors) {
  ModelConfig config = tinyConfig();
  {
    TempDir dir;
    std::vector<Spec> specs = expectedSpecs(config);
    specs.erase(specs.begin() + 5);
    dir.write("model.safetensors", makeSafeTensors(specs));
    expectOpenError(dir, config,
                    "DIR/model.safetensors: missing tensor "
                    "'model.layers.0.self_attn.q_proj.weight'");
  }
  {
    TempDir dir;
    std::vector<Spec> specs = expectedSpecs(config);
    for (Spec &s : specs)
      if (s.name == "model.layers.1.mlp.down_proj.weight")
        s.shape = {12, 8};
    dir.write("model.safetensors", makeSafeTensors(specs));
    expectOpenError(dir, config,
                    "DIR/model.safetensors: tensor "
                    "'model.layers.1.mlp.down_proj.weight' has shape [12, 8], "
                    "but the config implies [8, 12]");
  }
  {
    TempDir dir;
    std::vector<Spec> specs = expectedSpecs(config);
    specs[1].dtype = DType::F16;
    dir.write("model.safetensors", makeSafeTensors(specs));
    expectOpenError(dir, config,
                    "DIR/model.safetensors: tensor 'model.norm.weight' has "
                    "dtype F16, but the config says BF16");
    // Without a dtype in the config the weights must still agree.
    ModelConfig untyped = config;
    untyped.dtypeSpecified = false;
    untyped.dtype = DType::F32;
    expectOpenError(dir, untyped,
                    "tensor 'model.norm.weight' has dtype F16, but the other "
                    "weights are BF16");
  }
  {
    TempDir dir;
    dir.write("model.safetensors", "garbage!garbage!");
    expectOpenError(dir, config,
                    "DIR/model.safetensors: header length 2406443243860549991 "
                    "runs past the end of the file (16 bytes)");
  }
  {
    TempDir dir;
    expectOpenError(dir, config,
                    "DIR: no model.safetensors or model.safetensors.index.json");
  }
  std::string error;
  EXPECT_EQ(Checkpoint::open("/nonexistent/dir", config, &error), nullptr);
  EXPECT_EQ(error,
            "/nonexistent/dir: no model.safetensors or "
            "model.safetensors.index.json");
}

TEST(Checkpoint, IndexErrors) {
  ModelConfig config = tinyConfig();
  std::vector<Spec> specs = expectedSpecs(config);
  std::map<std::string, std::string> weightMap;
  for (const Spec &s : specs)
    weightMap[s.name] = "model-00001-of-00001.safetensors";
  const std::string shard = makeSafeTensors(specs);
  const char *index = "DIR/model.safetensors.index.json";

  auto check = [&](const std::string &indexText, const std::string &shardBytes,
                   const std::string &expected) {
    SCOPED_TRACE(expected);
    TempDir dir;
    dir.write("model.safetensors.index.json", indexText);
    if (!shardBytes.empty())
      dir.write("model-00001-of-00001.safetensors", shardBytes);
    expectOpenError(dir, config, expected);
  };

  check("{\"weight_map\": ", shard,
        std::string(index) + ": not valid JSON: parse error");
  check("[]", shard, std::string(index) + ": index is array, expected a JSON object");
  check("{}", shard, std::string(index) + ": missing key 'weight_map'");
  check(R"({"weight_map": []})", shard,
        std::string(index) + ": key 'weight_map' must be an object, got array");
  check(R"({"weight_map": {"a": 1}})", shard,
        std::string(index) + ": weight_map entry for tensor 'a' must be a string, got number");
  check(R"({"weight_map": {"a": "../model.safetensors"}})", shard,
        std::string(index) + ": shard '../model.safetensors' for tensor 'a' is "
                             "not a path inside the checkpoint directory");
  check(R"({"weight_map": {"a": "/etc/passwd"}})", shard,
        "is not a path inside the checkpoint directory");
  check(indexJson(weightMap), "",
        std::string(index) + ": shard 'model-00001-of-00001.safetensors' does "
                             "not exist (DIR/model-00001-of-00001.safetensors)");

  // The index promises a tensor the shard lacks.
  std::map<std::string, std::string> extra = weightMap;
  extra["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00001.safetensors";
  check(indexJson(extra), shard,
        std::string(index) + ": tensor 'model.layers.9.mlp.up_proj.weight' is "
                             "mapped to shard 'model-00001-of-00001.safetensors', "
                             "which does not contain it");

  // The index forgets a tensor: it is missing, whatever the shard holds.
  std::map<std::string, std::string> fewer = weightMap;
  fewer.erase("model.norm.weight");
  check(indexJson(fewer), shard,
        std::string(index) + ": missing tensor 'model.norm.weight'");

  // A corrupt shard reports its own name.
  check(indexJson(weightMap), std::string(8, '\0'),
        "DIR/model-00001-of-00001.safetensors: header is not valid JSON");
}

TEST(Checkpoint, SharedModels) {
  std::string root = OPTMLIR_SHARED_MODELS_DIR;
  if (!fs::exists(root + "/main/config.json"))
    GTEST_SKIP() << "shared models not available at " << root;
  std::string error;

  ModelConfig mainConfig;
  ASSERT_TRUE(loadModelConfig(root + "/main", mainConfig, &error)) << error;
  std::unique_ptr<Checkpoint> main =
      Checkpoint::open(root + "/main", mainConfig, &error);
  ASSERT_NE(main, nullptr) << error;
  EXPECT_EQ(main->files().size(), 3u);
  EXPECT_EQ(main->dtype(), DType::BF16);
  const SafeTensorsFile *file = nullptr;
  const TensorInfo *head = main->find("lm_head.weight", &file);
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(head->shape, std::vector<int64_t>({8192, 384}));
  EXPECT_EQ(fs::path(file->displayName()).filename(),
            "model-00003-of-00003.safetensors");
  // Every expected tensor resolves to data inside its file.
  uint64_t bytes = 0;
  for (const ExpectedTensor &t : expectedTensors(mainConfig)) {
    const TensorInfo *info = main->find(t.name, &file);
    ASSERT_NE(info, nullptr) << t.name;
    EXPECT_LE(info->end, file->dataSize());
    EXPECT_NE(main->tensorData(t.name), nullptr);
    bytes += info->byteSize();
  }
  EXPECT_EQ(bytes, 15733632u * 2); // README: 15,733,632 bf16 parameters.

  ModelConfig draftConfig;
  ASSERT_TRUE(loadModelConfig(root + "/draft", draftConfig, &error)) << error;
  std::unique_ptr<Checkpoint> draft =
      Checkpoint::open(root + "/draft", draftConfig, &error);
  ASSERT_NE(draft, nullptr) << error;
  EXPECT_EQ(draft->files().size(), 1u);
  EXPECT_EQ(draft->indexPath(), "");

  // The draft's weights do not fit the main model's config.
  EXPECT_EQ(Checkpoint::open(root + "/draft", mainConfig, &error), nullptr);
  EXPECT_NE(error.find("has shape [8192, 192], but the config implies [8192, 384]"),
            std::string::npos)
      << error;
}
