//===- ModelConfigTest.cpp - Tests for config.json parsing ----------------===//

#include "optmlir/Import/ModelConfig.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>

using namespace optmlir;
using nlohmann::json;

namespace {

// Trimmed copies of the published config.json files.
const char *kLlama32_1B = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64,
  "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
  "intermediate_size": 8192, "max_position_embeddings": 131072,
  "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32,
  "num_hidden_layers": 16, "num_key_value_heads": 8, "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0,
                   "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192,
                   "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "transformers_version": "4.45.0.dev0",
  "use_cache": true, "vocab_size": 128256
})";

const char *kMistral7B = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1,
  "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096,
  "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 32768, "model_type": "mistral",
  "num_attention_heads": 32, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
  "sliding_window": 4096, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "use_cache": true, "vocab_size": 32000
})";

const char *kQwen2_05B = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
  "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu",
  "hidden_size": 896, "initializer_range": 0.02, "intermediate_size": 4864,
  "max_position_embeddings": 131072, "max_window_layers": 24,
  "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
  "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
  "sliding_window": 131072, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "use_cache": true, "use_sliding_window": false,
  "vocab_size": 151936
})";

/// A small Llama config to edit in error tests.
json smallLlama() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "vocab_size": 100,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "dtype": "float32"
  })");
}

ModelConfig parseOk(const std::string &text) {
  ModelConfig config;
  std::string error;
  EXPECT_TRUE(parseModelConfig(text, "config.json", config, &error)) << error;
  return config;
}

/// Expects parsing to fail with an error containing `expected`.
void expectError(const std::string &text, const std::string &expected) {
  SCOPED_TRACE(text);
  ModelConfig config;
  std::string error;
  EXPECT_FALSE(parseModelConfig(text, "dir/config.json", config, &error));
  EXPECT_NE(error.find(expected), std::string::npos)
      << "error: " << error << "\nexpected: " << expected;
  EXPECT_EQ(error.rfind("dir/config.json: ", 0), 0u) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
}

void expectJsonError(const json &config, const std::string &expected) {
  expectError(config.dump(), expected);
}

const ExpectedTensor *findExpected(const std::vector<ExpectedTensor> &list,
                                   const std::string &name) {
  for (const ExpectedTensor &t : list)
    if (t.name == name)
      return &t;
  return nullptr;
}

} // namespace

TEST(ModelConfig, Llama32_1B) {
  ModelConfig c = parseOk(kLlama32_1B);
  EXPECT_EQ(c.architecture, Architecture::Llama);
  EXPECT_STREQ(architectureName(c.architecture), "LlamaForCausalLM");
  EXPECT_EQ(c.vocabSize, 128256);
  EXPECT_EQ(c.hiddenSize, 2048);
  EXPECT_EQ(c.intermediateSize, 8192);
  EXPECT_EQ(c.numLayers, 16);
  EXPECT_EQ(c.numHeads, 32);
  EXPECT_EQ(c.numKvHeads, 8);
  EXPECT_EQ(c.headDim, 64);
  EXPECT_EQ(c.maxPositionEmbeddings, 131072);
  EXPECT_DOUBLE_EQ(c.rmsNormEps, 1e-5);
  EXPECT_DOUBLE_EQ(c.ropeTheta, 500000.0);
  EXPECT_EQ(c.ropeScaling.kind, RopeScaling::Llama3);
  EXPECT_DOUBLE_EQ(c.ropeScaling.factor, 32.0);
  EXPECT_DOUBLE_EQ(c.ropeScaling.lowFreqFactor, 1.0);
  EXPECT_DOUBLE_EQ(c.ropeScaling.highFreqFactor, 4.0);
  EXPECT_EQ(c.ropeScaling.originalMaxPositionEmbeddings, 8192);
  EXPECT_TRUE(c.tieWordEmbeddings);
  EXPECT_FALSE(c.qkvBias || c.oBias || c.mlpBias);
  EXPECT_EQ(c.dtype, DType::BF16);
  EXPECT_TRUE(c.dtypeSpecified);
  EXPECT_EQ(c.bosTokenId, 128000);
  EXPECT_EQ(c.eosTokenIds, std::vector<int64_t>({128001}));
  EXPECT_EQ(c.slidingWindowForLayer(0), std::nullopt);

  // Tied embeddings: no lm_head.weight.
  std::vector<ExpectedTensor> tensors = expectedTensors(c);
  EXPECT_EQ(tensors.size(), 2u + 16u * 9u);
  EXPECT_EQ(findExpected(tensors, "lm_head.weight"), nullptr);
  const ExpectedTensor *k = findExpected(tensors, "model.layers.15.self_attn.k_proj.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->shape, std::vector<int64_t>({512, 2048}));
  EXPECT_EQ(k->role, WeightRole::KProj);
  EXPECT_EQ(k->layer, 15);
}

TEST(ModelConfig, Llama31EosListAndUntied) {
  json j = json::parse(kLlama32_1B);
  j["eos_token_id"] = {128001, 128008, 128009};
  j["tie_word_embeddings"] = false;
  ModelConfig c = parseOk(j.dump());
  EXPECT_EQ(c.eosTokenIds, std::vector<int64_t>({128001, 128008, 128009}));
  std::vector<ExpectedTensor> tensors = expectedTensors(c);
  const ExpectedTensor *head = findExpected(tensors, "lm_head.weight");
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(head->shape, std::vector<int64_t>({128256, 2048}));
}

TEST(ModelConfig, MistralSlidingWindow) {
  ModelConfig c = parseOk(kMistral7B);
  EXPECT_EQ(c.architecture, Architecture::Mistral);
  EXPECT_EQ(c.headDim, 128); // hidden / heads: no head_dim key.
  EXPECT_EQ(c.slidingWindow, 4096);
  EXPECT_EQ(c.slidingWindowForLayer(0), 4096);
  EXPECT_EQ(c.slidingWindowForLayer(31), 4096);
  EXPECT_EQ(c.slidingWindowForLayer(32), std::nullopt);
  EXPECT_EQ(c.slidingWindowForLayer(-1), std::nullopt);
  EXPECT_FALSE(c.qkvBias || c.oBias || c.mlpBias);
  EXPECT_EQ(c.maxPositionEmbeddings, 32768);

  // Mistral v0.2 and later: no window.
  json j = json::parse(kMistral7B);
  j["sliding_window"] = nullptr;
  c = parseOk(j.dump());
  EXPECT_EQ(c.slidingWindow, std::nullopt);
  EXPECT_EQ(c.slidingWindowForLayer(0), std::nullopt);

  // Mistral ignores attention_bias: it has no biases.
  j["attention_bias"] = true;
  c = parseOk(j.dump());
  EXPECT_FALSE(c.qkvBias);

  j["sliding_window"] = "4096";
  expectJsonError(j, "key 'sliding_window' must be an integer, got string");
  j["sliding_window"] = 0;
  expectJsonError(j, "key 'sliding_window' must be positive, got 0");
}

TEST(ModelConfig, Qwen2BiasesAndWindows) {
  ModelConfig c = parseOk(kQwen2_05B);
  EXPECT_EQ(c.architecture, Architecture::Qwen2);
  EXPECT_TRUE(c.qkvBias);
  EXPECT_FALSE(c.oBias);
  EXPECT_FALSE(c.mlpBias);
  EXPECT_EQ(c.headDim, 64);
  EXPECT_DOUBLE_EQ(c.ropeTheta, 1e6);
  EXPECT_EQ(c.slidingWindow, std::nullopt); // use_sliding_window is false.

  std::vector<ExpectedTensor> tensors = expectedTensors(c);
  EXPECT_EQ(tensors.size(), 2u + 24u * 12u);
  const ExpectedTensor *q = findExpected(tensors, "model.layers.0.self_attn.q_proj.bias");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->shape, std::vector<int64_t>({896}));
  const ExpectedTensor *v = findExpected(tensors, "model.layers.23.self_attn.v_proj.bias");
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->shape, std::vector<int64_t>({128}));
  EXPECT_EQ(findExpected(tensors, "model.layers.0.self_attn.o_proj.bias"), nullptr);
  EXPECT_EQ(findExpected(tensors, "model.layers.0.mlp.up_proj.bias"), nullptr);

  // Layers from max_window_layers on use the window.
  json j = json::parse(kQwen2_05B);
  j["use_sliding_window"] = true;
  j["sliding_window"] = 4096;
  j["max_window_layers"] = 20;
  c = parseOk(j.dump());
  EXPECT_EQ(c.slidingWindow, 4096);
  EXPECT_EQ(c.slidingWindowForLayer(19), std::nullopt);
  EXPECT_EQ(c.slidingWindowForLayer(20), 4096);
  EXPECT_EQ(c.slidingWindowForLayer(23), 4096);

  // max_window_layers >= num_hidden_layers: no layer slides.
  j["max_window_layers"] = 24;
  c = parseOk(j.dump());
  EXPECT_EQ(c.slidingWindow, std::nullopt);

  // Newer transformers list the layer types explicitly.
  j["num_hidden_layers"] = 3;
  j["layer_types"] = {"full_attention", "sliding_attention", "full_attention"};
  c = parseOk(j.dump());
  EXPECT_EQ(c.slidingWindowForLayer(0), std::nullopt);
  EXPECT_EQ(c.slidingWindowForLayer(1), 4096);
  EXPECT_EQ(c.slidingWindowForLayer(2), std::nullopt);
  j["layer_types"] = {"full_attention"};
  expectJsonError(j, "key 'layer_types' has 1 entries, expected 3");
  j["layer_types"] = {"full_attention", "chunked_attention", "full_attention"};
  expectJsonError(j, "key 'layer_types' entry 1 must be");
  j.erase("layer_types");
  j["use_sliding_window"] = "yes";
  expectJsonError(j, "key 'use_sliding_window' must be a boolean, got string");
}

TEST(ModelConfig, LlamaBiases) {
  json j = smallLlama();
  j["attention_bias"] = true;
  ModelConfig c = parseOk(j.dump());
  EXPECT_TRUE(c.qkvBias);
  EXPECT_TRUE(c.oBias);
  EXPECT_FALSE(c.mlpBias);
  std::vector<ExpectedTensor> tensors = expectedTensors(c);
  const ExpectedTensor *o = findExpected(tensors, "model.layers.1.self_attn.o_proj.bias");
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->shape, std::vector<int64_t>({64}));
  const ExpectedTensor *kb = findExpected(tensors, "model.layers.1.self_attn.k_proj.bias");
  ASSERT_NE(kb, nullptr);
  EXPECT_EQ(kb->shape, std::vector<int64_t>({32}));

  j["mlp_bias"] = true;
  c = parseOk(j.dump());
  tensors = expectedTensors(c);
  EXPECT_EQ(tensors.size(), 3u + 2u * 16u);
  const ExpectedTensor *down = findExpected(tensors, "model.layers.0.mlp.down_proj.bias");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->shape, std::vector<int64_t>({64}));
  const ExpectedTensor *gate = findExpected(tensors, "model.layers.0.mlp.gate_proj.bias");
  ASSERT_NE(gate, nullptr);
  EXPECT_EQ(gate->shape, std::vector<int64_t>({128}));

  j["attention_bias"] = 1;
  expectJsonError(j, "key 'attention_bias' must be a boolean, got number");
}

TEST(ModelConfig, Defaults) {
  json j = smallLlama();
  j.erase("num_key_value_heads");
  j.erase("max_position_embeddings");
  j.erase("rms_norm_eps");
  j.erase("dtype");
  ModelConfig c = parseOk(j.dump());
  EXPECT_EQ(c.numKvHeads, 4);
  EXPECT_EQ(c.headDim, 16);
  EXPECT_EQ(c.maxPositionEmbeddings, 2048);
  EXPECT_DOUBLE_EQ(c.rmsNormEps, 1e-6);
  EXPECT_DOUBLE_EQ(c.ropeTheta, 10000.0);
  EXPECT_EQ(c.ropeScaling.kind, RopeScaling::None);
  EXPECT_FALSE(c.tieWordEmbeddings);
  EXPECT_EQ(c.dtype, DType::F32);
  EXPECT_FALSE(c.dtypeSpecified);
  EXPECT_EQ(c.bosTokenId, std::nullopt);
  EXPECT_TRUE(c.eosTokenIds.empty());

  // head_dim null means "derive it".
  j["head_dim"] = nullptr;
  EXPECT_EQ(parseOk(j.dump()).headDim, 16);
  // An explicit head_dim need not divide hidden_size.
  j["head_dim"] = 24;
  EXPECT_EQ(parseOk(j.dump()).headDim, 24);
  j["dtype"] = "float16";
  EXPECT_EQ(parseOk(j.dump()).dtype, DType::F16);
  // "dtype" (transformers 5) wins over "torch_dtype".
  j["torch_dtype"] = "float32";
  EXPECT_EQ(parseOk(j.dump()).dtype, DType::F16);
  j.erase("dtype");
  EXPECT_EQ(parseOk(j.dump()).dtype, DType::F32);
}

TEST(ModelConfig, RopeVariants) {
  json j = smallLlama();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2}};
  ModelConfig c = parseOk(j.dump());
  EXPECT_EQ(c.ropeScaling.kind, RopeScaling::Linear);
  EXPECT_DOUBLE_EQ(c.ropeScaling.factor, 2.0);

  j["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_EQ(parseOk(j.dump()).ropeScaling.kind, RopeScaling::None);
  j["rope_scaling"] = nullptr;
  EXPECT_EQ(parseOk(j.dump()).ropeScaling.kind, RopeScaling::None);

  // transformers 5: everything inside rope_parameters.
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_type", "llama3"},
                          {"rope_theta", 500000.0},
                          {"factor", 8.0},
                          {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 8192}};
  c = parseOk(j.dump());
  EXPECT_EQ(c.ropeScaling.kind, RopeScaling::Llama3);
  EXPECT_DOUBLE_EQ(c.ropeScaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.ropeTheta, 500000.0);
  j["rope_parameters"] = {{"rope_theta", 20000}};
  c = parseOk(j.dump());
  EXPECT_EQ(c.ropeScaling.kind, RopeScaling::None);
  EXPECT_DOUBLE_EQ(c.ropeTheta, 20000.0);

  j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  expectJsonError(j, "unsupported rope type 'yarn' (supported: default, linear, llama3)");
  j.erase("rope_parameters");
  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  expectJsonError(j, "unsupported rope type 'dynamic'");
  j["rope_scaling"] = {{"factor", 2.0}};
  expectJsonError(j, "rope_scaling has no 'rope_type'");
  j["rope_scaling"] = {{"rope_type", "linear"}};
  expectJsonError(j, "missing key 'rope_scaling.factor'");
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", -1}};
  expectJsonError(j, "key 'rope_scaling.factor' must be a positive number");
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}};
  expectJsonError(j, "missing key 'rope_scaling.original_max_position_embeddings'");
  j["rope_scaling"]["original_max_position_embeddings"] = 8192;
  j["rope_scaling"]["high_freq_factor"] = 1.0;
  expectJsonError(j, "high_freq_factor 1.000000 must be larger than low_freq_factor");
  j["rope_scaling"] = "llama3";
  expectJsonError(j, "key 'rope_scaling' must be an object, got string");
  j["rope_scaling"] = nullptr;
  j["rope_theta"] = "big";
  expectJsonError(j, "key 'rope_theta' must be a number, got string");
  j["rope_theta"] = 0;
  expectJsonError(j, "key 'rope_theta' must be a positive number");
}

TEST(ModelConfig, Errors) {
  expectError("{", "dir/config.json: not valid JSON: parse error");
  expectError("[]", "config is array, expected a JSON object");
  expectError("{}", "missing key 'architectures'");

  json j = smallLlama();
  j["architectures"] = {"GPT2LMHeadModel"};
  expectJsonError(j, "unknown architecture 'GPT2LMHeadModel' (supported: "
                 "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
  j["architectures"] = json::array();
  expectJsonError(j, "key 'architectures' must be a non-empty list of strings");
  j["architectures"] = "LlamaForCausalLM";
  expectJsonError(j, "key 'architectures' must be a non-empty list of strings");

  j = smallLlama();
  j.erase("hidden_size");
  expectJsonError(j, "missing key 'hidden_size'");
  j["hidden_size"] = "64";
  expectJsonError(j, "key 'hidden_size' must be an integer, got string");
  j["hidden_size"] = 64.0;
  expectJsonError(j, "key 'hidden_size' must be an integer, got number");
  j["hidden_size"] = -64;
  expectJsonError(j, "key 'hidden_size' must be positive, got -64");
  j["hidden_size"] = 1ull << 63;
  expectJsonError(j, "key 'hidden_size' value 9223372036854775808 is out of range");
  j["hidden_size"] = 1ll << 40;
  expectJsonError(j, "key 'hidden_size' value 1099511627776 is larger than the limit");
  j["hidden_size"] = 66;
  expectJsonError(j, "hidden_size 66 is not divisible by num_attention_heads 4 "
                 "and no head_dim is given");

  j = smallLlama();
  j["num_key_value_heads"] = 3;
  expectJsonError(j, "num_attention_heads 4 is not a multiple of "
                 "num_key_value_heads 3");
  j["num_key_value_heads"] = 0;
  expectJsonError(j, "key 'num_key_value_heads' must be positive, got 0");

  j = smallLlama();
  j["num_hidden_layers"] = 1000000;
  expectJsonError(j, "key 'num_hidden_layers' value 1000000 is larger than the limit 65536");
  j = smallLlama();
  j["head_dim"] = 0;
  expectJsonError(j, "key 'head_dim' must be positive");
  j = smallLlama();
  j["hidden_act"] = "gelu";
  expectJsonError(j, "hidden_act 'gelu' is not supported (expected 'silu')");
  j = smallLlama();
  j["dtype"] = "int8";
  expectJsonError(j, "unknown dtype 'int8' (supported: bfloat16, float16, float32)");
  j.erase("dtype");
  j["torch_dtype"] = 16;
  expectJsonError(j, "key 'torch_dtype' must be a string, got number");
  j = smallLlama();
  j["tie_word_embeddings"] = "true";
  expectJsonError(j, "key 'tie_word_embeddings' must be a boolean, got string");
  j = smallLlama();
  j["eos_token_id"] = "2";
  expectJsonError(j, "key 'eos_token_id' must be an integer or a list of integers, got string");
  j["eos_token_id"] = {1, "2"};
  expectJsonError(j, "key 'eos_token_id' must be an integer or a list of integers, got string");
  j["eos_token_id"] = -1;
  expectJsonError(j, "key 'eos_token_id' must not be negative");
  j.erase("eos_token_id");
  j["bos_token_id"] = 1.5;
  expectJsonError(j, "key 'bos_token_id' must be an integer, got number");
  j = smallLlama();
  j["rms_norm_eps"] = 0;
  expectJsonError(j, "key 'rms_norm_eps' must be a positive number");

  // A failed parse leaves the output alone.
  ModelConfig c;
  c.hiddenSize = 7;
  std::string error;
  EXPECT_FALSE(parseModelConfig("{}", "x", c, &error));
  EXPECT_EQ(c.hiddenSize, 7);
  EXPECT_FALSE(parseModelConfig("{}", "x", c, nullptr));
}

TEST(ModelConfig, WeightNames) {
  EXPECT_EQ(weightName(WeightRole::Embed), "model.embed_tokens.weight");
  EXPECT_EQ(weightName(WeightRole::FinalNorm, 3), "model.norm.weight");
  EXPECT_EQ(weightName(WeightRole::LmHead), "lm_head.weight");
  EXPECT_EQ(weightName(WeightRole::InputNorm, 0),
            "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(weightName(WeightRole::PostAttentionNorm, 5),
            "model.layers.5.post_attention_layernorm.weight");
  EXPECT_EQ(weightName(WeightRole::QProj, 1), "model.layers.1.self_attn.q_proj.weight");
  EXPECT_EQ(weightName(WeightRole::KBias, 1), "model.layers.1.self_attn.k_proj.bias");
  EXPECT_EQ(weightName(WeightRole::OProj, 12), "model.layers.12.self_attn.o_proj.weight");
  EXPECT_EQ(weightName(WeightRole::GateProj, 2), "model.layers.2.mlp.gate_proj.weight");
  EXPECT_EQ(weightName(WeightRole::UpBias, 2), "model.layers.2.mlp.up_proj.bias");
  EXPECT_EQ(weightName(WeightRole::DownProj, 2), "model.layers.2.mlp.down_proj.weight");
  EXPECT_EQ(weightName(WeightRole::QProj), "");
  EXPECT_FALSE(isPerLayer(WeightRole::LmHead));
  EXPECT_TRUE(isPerLayer(WeightRole::DownBias));
}

TEST(ModelConfig, SharedModels) {
  std::string root = OPTMLIR_SHARED_MODELS_DIR;
  if (!std::filesystem::exists(root + "/main/config.json"))
    GTEST_SKIP() << "shared models not available at " << root;
  ModelConfig main;
  std::string error;
  // A directory or the file itself.
  ASSERT_TRUE(loadModelConfig(root + "/main", main, &error)) << error;
  EXPECT_EQ(main.architecture, Architecture::Llama);
  EXPECT_EQ(main.numLayers, 6);
  EXPECT_EQ(main.hiddenSize, 384);
  EXPECT_EQ(main.numHeads, 6);
  EXPECT_EQ(main.numKvHeads, 2);
  EXPECT_EQ(main.headDim, 64);
  EXPECT_EQ(main.intermediateSize, 1024);
  EXPECT_EQ(main.vocabSize, 8192);
  EXPECT_EQ(main.maxPositionEmbeddings, 2048);
  EXPECT_DOUBLE_EQ(main.rmsNormEps, 1e-5);
  EXPECT_DOUBLE_EQ(main.ropeTheta, 10000.0);
  EXPECT_EQ(main.ropeScaling.kind, RopeScaling::None);
  EXPECT_FALSE(main.tieWordEmbeddings);
  EXPECT_FALSE(main.qkvBias || main.oBias || main.mlpBias);
  EXPECT_EQ(main.dtype, DType::BF16);
  EXPECT_EQ(main.bosTokenId, 0);
  EXPECT_EQ(main.eosTokenIds, std::vector<int64_t>({1}));
  EXPECT_EQ(expectedTensors(main).size(), 3u + 6u * 9u);

  ModelConfig draft;
  ASSERT_TRUE(loadModelConfig(root + "/draft/config.json", draft, &error)) << error;
  EXPECT_EQ(draft.numLayers, 2);
  EXPECT_EQ(draft.hiddenSize, 192);
  EXPECT_EQ(draft.numHeads, 3);
  EXPECT_EQ(draft.numKvHeads, 1);
  EXPECT_EQ(draft.intermediateSize, 512);

  EXPECT_FALSE(loadModelConfig(root + "/nonexistent", draft, &error));
  EXPECT_EQ(error, root + "/nonexistent: cannot open: No such file or directory");
}
