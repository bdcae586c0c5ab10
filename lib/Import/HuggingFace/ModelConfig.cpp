//===- ModelConfig.cpp - Hugging Face config.json for Llama-family models -===//

#include "optmlir/Import/ModelConfig.h"
#include "optmlir/Support/MappedFile.h"

#include "JsonText.h"

#include <cmath>
#include <filesystem>
#include <limits>

using namespace optmlir;
using optmlir::hf::json;

/// Sizes beyond this are a corrupt config, not a model; the cap also keeps
/// products of two sizes (e.g. heads * head_dim) inside int64.
static constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();
/// Keeps expectedTensors() and per-layer tables small on hostile configs.
static constexpr int64_t kMaxLayers = 65536;

namespace {
struct ArchitectureEntry {
  Architecture arch;
  const char *name;
  int64_t defaultMaxPositions; // transformers' default for the class.
};
} // namespace

static constexpr ArchitectureEntry kArchitectures[] = {
    {Architecture::Llama, "LlamaForCausalLM", 2048},
    {Architecture::Mistral, "MistralForCausalLM", 4096 * 32},
    {Architecture::Qwen2, "Qwen2ForCausalLM", 32768},
};

const char *optmlir::architectureName(Architecture arch) {
  for (const ArchitectureEntry &entry : kArchitectures)
    if (entry.arch == arch)
      return entry.name;
  return "<invalid architecture>";
}

std::optional<int64_t> ModelConfig::slidingWindowForLayer(int64_t layer) const {
  if (!slidingWindow || layer < 0 ||
      layer >= static_cast<int64_t>(slidingLayers.size()) ||
      !slidingLayers[layer])
    return std::nullopt;
  return slidingWindow;
}

namespace {
/// Typed access to config.json keys; the first error wins and names the key
/// (dotted for nested objects: "rope_scaling.factor").
class ConfigReader {
public:
  ConfigReader(const std::string &path, std::string *error)
      : path(path), error(error) {}

  bool fail(const std::string &message) {
    if (!failed && error)
      *error = path + ": " + message;
    failed = true;
    return false;
  }
  bool hasFailed() const { return failed; }

  /// The value of `key` in `object`, or nullptr if absent or null.
  static const json *get(const json &object, const char *key) {
    auto it = object.find(key);
    if (it == object.end() || it->is_null())
      return nullptr;
    return &*it;
  }

  bool wrongType(const std::string &label, const json &value,
                 const char *expected) {
    return fail("key '" + label + "' must be " + expected + ", got " +
                value.type_name());
  }

  bool toInt(const json &value, const std::string &label, int64_t &out) {
    if (value.is_number_unsigned()) {
      uint64_t v = value.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return fail("key '" + label + "' value " + std::to_string(v) +
                    " is out of range");
      out = static_cast<int64_t>(v);
      return true;
    }
    if (value.is_number_integer()) {
      out = value.get<int64_t>();
      return true;
    }
    return wrongType(label, value, "an integer");
  }

  /// Reads an optional integer; leaves `out` alone if the key is absent.
  bool readInt(const json &object, const char *key, const std::string &label,
               int64_t &out) {
    const json *value = get(object, key);
    return !value || toInt(*value, label, out);
  }

  bool readRequiredInt(const json &object, const char *key,
                       const std::string &label, int64_t &out) {
    const json *value = get(object, key);
    if (!value)
      return fail("missing key '" + label + "'");
    return toInt(*value, label, out);
  }

  bool readDouble(const json &object, const char *key,
                  const std::string &label, double &out, bool required) {
    const json *value = get(object, key);
    if (!value)
      return required ? fail("missing key '" + label + "'") : true;
    if (!value->is_number())
      return wrongType(label, *value, "a number");
    out = value->get<double>();
    return true;
  }

  bool readBool(const json &object, const char *key, bool &out) {
    const json *value = get(object, key);
    if (!value)
      return true;
    if (!value->is_boolean())
      return wrongType(key, *value, "a boolean");
    out = value->get<bool>();
    return true;
  }

  bool readString(const json &object, const char *key, const std::string &label,
                  std::optional<std::string> &out) {
    const json *value = get(object, key);
    if (!value)
      return true;
    if (!value->is_string())
      return wrongType(label, *value, "a string");
    out = value->get<std::string>();
    return true;
  }

  /// A size that must be in [1, limit].
  bool checkSize(const char *key, int64_t value, int64_t limit = kMaxSize) {
    if (value <= 0)
      return fail("key '" + std::string(key) + "' must be positive, got " +
                  std::to_string(value));
    if (value > limit)
      return fail("key '" + std::string(key) + "' value " +
                  std::to_string(value) + " is larger than the limit " +
                  std::to_string(limit));
    return true;
  }

  bool checkPositive(const std::string &label, double value) {
    if (!(value > 0) || !std::isfinite(value))
      return fail("key '" + label + "' must be a positive number, got " +
                  std::to_string(value));
    return true;
  }

private:
  const std::string &path;
  std::string *error;
  bool failed = false;
};
} // namespace

static std::string quoteName(const std::string &text) {
  return "'" + escapeForMessage(text) + "'";
}

static bool parseRope(ConfigReader &reader, const json &root,
                      ModelConfig &out) {
  const json *params = ConfigReader::get(root, "rope_parameters");
  if (params && !params->is_object())
    return reader.wrongType("rope_parameters", *params, "an object");
  const json *scaling = ConfigReader::get(root, "rope_scaling");
  if (scaling && !scaling->is_object())
    return reader.wrongType("rope_scaling", *scaling, "an object");

  // transformers 5 keeps theta in rope_parameters; older configs at the top.
  if (!reader.readDouble(root, "rope_theta", "rope_theta", out.ropeTheta,
                         /*required=*/false))
    return false;
  if (params && !reader.readDouble(*params, "rope_theta",
                                   "rope_parameters.rope_theta", out.ropeTheta,
                                   /*required=*/false))
    return false;
  if (!reader.checkPositive("rope_theta", out.ropeTheta))
    return false;

  // The legacy rope_scaling wins when both are given: it is explicit, while
  // rope_parameters may be just the default that transformers 5 writes.
  const json *source = scaling ? scaling : params;
  std::string prefix = scaling ? "rope_scaling." : "rope_parameters.";
  if (!source)
    return true;
  std::optional<std::string> type;
  if (!reader.readString(*source, "rope_type", prefix + "rope_type", type))
    return false;
  if (!type && !reader.readString(*source, "type", prefix + "type", type))
    return false;
  if (!type) {
    if (scaling)
      return reader.fail("rope_scaling has no 'rope_type'");
    return true; // rope_parameters with only a theta: default rope.
  }

  RopeScaling &rope = out.ropeScaling;
  if (*type == "default") {
    rope = RopeScaling();
    return true;
  }
  if (*type == "linear") {
    rope.kind = RopeScaling::Linear;
    return reader.readDouble(*source, "factor", prefix + "factor", rope.factor,
                             /*required=*/true) &&
           reader.checkPositive(prefix + "factor", rope.factor);
  }
  if (*type == "llama3") {
    rope.kind = RopeScaling::Llama3;
    if (!reader.readDouble(*source, "factor", prefix + "factor", rope.factor,
                           true) ||
        !reader.readDouble(*source, "low_freq_factor",
                           prefix + "low_freq_factor", rope.lowFreqFactor,
                           true) ||
        !reader.readDouble(*source, "high_freq_factor",
                           prefix + "high_freq_factor", rope.highFreqFactor,
                           true))
      return false;
    const json *original =
        ConfigReader::get(*source, "original_max_position_embeddings");
    std::string originalLabel = prefix + "original_max_position_embeddings";
    if (!original)
      return reader.fail("missing key '" + originalLabel + "'");
    if (!reader.toInt(*original, originalLabel,
                      rope.originalMaxPositionEmbeddings))
      return false;
    if (!reader.checkPositive(prefix + "factor", rope.factor) ||
        !reader.checkPositive(prefix + "low_freq_factor", rope.lowFreqFactor) ||
        !reader.checkPositive(prefix + "high_freq_factor",
                              rope.highFreqFactor))
      return false;
    // The llama3 formula divides by (high - low).
    if (!(rope.highFreqFactor > rope.lowFreqFactor))
      return reader.fail(prefix + "high_freq_factor " +
                         std::to_string(rope.highFreqFactor) +
                         " must be larger than low_freq_factor " +
                         std::to_string(rope.lowFreqFactor));
    if (rope.originalMaxPositionEmbeddings <= 0)
      return reader.fail("key '" + originalLabel + "' must be positive");
    return true;
  }
  return reader.fail("unsupported rope type " + quoteName(*type) +
                     " (supported: default, linear, llama3)");
}

/// Sliding-window attention: Mistral applies it to every layer; Qwen2 to the
/// layers from max_window_layers on (or as "layer_types" lists them), and only
/// when use_sliding_window is true.
static bool parseSlidingWindow(ConfigReader &reader, const json &root,
                               ModelConfig &out) {
  out.slidingLayers.assign(out.numLayers, false);
  if (out.architecture == Architecture::Llama)
    return true;

  bool enabled = true;
  if (out.architecture == Architecture::Qwen2) {
    enabled = false;
    if (!reader.readBool(root, "use_sliding_window", enabled))
      return false;
  }
  int64_t window = 0;
  if (!reader.readInt(root, "sliding_window", "sliding_window", window))
    return false;
  if (!enabled || !ConfigReader::get(root, "sliding_window"))
    return true;
  if (!reader.checkSize("sliding_window", window))
    return false;

  if (out.architecture == Architecture::Mistral) {
    out.slidingWindow = window;
    out.slidingLayers.assign(out.numLayers, true);
    return true;
  }

  if (const json *types = ConfigReader::get(root, "layer_types")) {
    if (!types->is_array())
      return reader.wrongType("layer_types", *types, "an array");
    if (static_cast<int64_t>(types->size()) != out.numLayers)
      return reader.fail("key 'layer_types' has " +
                         std::to_string(types->size()) + " entries, expected " +
                         std::to_string(out.numLayers) +
                         " (num_hidden_layers)");
    for (int64_t i = 0; i < out.numLayers; ++i) {
      const json &type = (*types)[i];
      if (type.is_string() && type.get_ref<const std::string &>() ==
                                  "sliding_attention")
        out.slidingLayers[i] = true;
      else if (!type.is_string() ||
               type.get_ref<const std::string &>() != "full_attention")
        return reader.fail("key 'layer_types' entry " + std::to_string(i) +
                           " must be \"full_attention\" or "
                           "\"sliding_attention\"");
    }
  } else {
    int64_t firstSliding = 28; // transformers' default max_window_layers.
    if (!reader.readInt(root, "max_window_layers", "max_window_layers",
                        firstSliding))
      return false;
    if (firstSliding < 0)
      return reader.fail("key 'max_window_layers' must not be negative");
    for (int64_t i = firstSliding; i < out.numLayers; ++i)
      out.slidingLayers[i] = true;
  }
  bool any = false;
  for (bool sliding : out.slidingLayers)
    any |= sliding;
  if (any)
    out.slidingWindow = window;
  return true;
}

static bool parseTokenIds(ConfigReader &reader, const json &root,
                          ModelConfig &out) {
  if (const json *bos = ConfigReader::get(root, "bos_token_id")) {
    int64_t id;
    if (!reader.toInt(*bos, "bos_token_id", id))
      return false;
    if (id < 0)
      return reader.fail("key 'bos_token_id' must not be negative");
    out.bosTokenId = id;
  }
  const json *eos = ConfigReader::get(root, "eos_token_id");
  if (!eos)
    return true;
  if (!eos->is_array()) {
    if (!eos->is_number_integer())
      return reader.wrongType("eos_token_id", *eos,
                              "an integer or a list of integers");
    int64_t id;
    if (!reader.toInt(*eos, "eos_token_id", id))
      return false;
    out.eosTokenIds.push_back(id);
  } else {
    for (const json &item : *eos) {
      int64_t id;
      if (!item.is_number_integer())
        return reader.wrongType("eos_token_id", item,
                                "an integer or a list of integers");
      if (!reader.toInt(item, "eos_token_id", id))
        return false;
      out.eosTokenIds.push_back(id);
    }
  }
  for (int64_t id : out.eosTokenIds)
    if (id < 0)
      return reader.fail("key 'eos_token_id' must not be negative");
  return true;
}

static bool parseDTypeKey(ConfigReader &reader, const json &root,
                          ModelConfig &out) {
  // transformers 5 writes "dtype"; older versions "torch_dtype".
  const char *key = "dtype";
  const json *value = ConfigReader::get(root, key);
  if (!value) {
    key = "torch_dtype";
    value = ConfigReader::get(root, key);
  }
  if (!value)
    return true;
  if (!value->is_string())
    return reader.wrongType(key, *value, "a string");
  const std::string &name = value->get_ref<const std::string &>();
  if (name == "bfloat16")
    out.dtype = DType::BF16;
  else if (name == "float16")
    out.dtype = DType::F16;
  else if (name == "float32")
    out.dtype = DType::F32;
  else
    return reader.fail("unknown " + std::string(key) + " " + quoteName(name) +
                       " (supported: bfloat16, float16, float32)");
  out.dtypeSpecified = true;
  return true;
}

bool optmlir::parseModelConfig(const std::string &jsonText,
                               const std::string &path, ModelConfig &out,
                               std::string *error) {
  ConfigReader reader(path, error);
  json root;
  std::string message;
  if (!hf::parseJsonText(jsonText, root, message))
    return reader.fail("not valid JSON: " + message);
  if (!root.is_object())
    return reader.fail(std::string("config is ") + root.type_name() +
                       ", expected a JSON object");

  ModelConfig config;
  const json *archs = ConfigReader::get(root, "architectures");
  if (!archs)
    return reader.fail("missing key 'architectures'");
  if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string())
    return reader.fail("key 'architectures' must be a non-empty list of "
                       "strings");
  const std::string &archName = (*archs)[0].get_ref<const std::string &>();
  const ArchitectureEntry *arch = nullptr;
  for (const ArchitectureEntry &entry : kArchitectures)
    if (archName == entry.name)
      arch = &entry;
  if (!arch) {
    std::string supported;
    for (const ArchitectureEntry &entry : kArchitectures)
      supported += (supported.empty() ? "" : ", ") + std::string(entry.name);
    return reader.fail("unknown architecture " + quoteName(archName) +
                       " (supported: " + supported + ")");
  }
  config.architecture = arch->arch;
  config.maxPositionEmbeddings = arch->defaultMaxPositions;

  if (!reader.readRequiredInt(root, "vocab_size", "vocab_size",
                              config.vocabSize) ||
      !reader.readRequiredInt(root, "hidden_size", "hidden_size",
                              config.hiddenSize) ||
      !reader.readRequiredInt(root, "intermediate_size", "intermediate_size",
                              config.intermediateSize) ||
      !reader.readRequiredInt(root, "num_hidden_layers", "num_hidden_layers",
                              config.numLayers) ||
      !reader.readRequiredInt(root, "num_attention_heads",
                              "num_attention_heads", config.numHeads))
    return false;
  config.numKvHeads = config.numHeads;
  if (!reader.readInt(root, "num_key_value_heads", "num_key_value_heads",
                      config.numKvHeads) ||
      !reader.readInt(root, "max_position_embeddings",
                      "max_position_embeddings",
                      config.maxPositionEmbeddings))
    return false;
  if (!reader.checkSize("vocab_size", config.vocabSize) ||
      !reader.checkSize("hidden_size", config.hiddenSize) ||
      !reader.checkSize("intermediate_size", config.intermediateSize) ||
      !reader.checkSize("num_hidden_layers", config.numLayers, kMaxLayers) ||
      !reader.checkSize("num_attention_heads", config.numHeads) ||
      !reader.checkSize("num_key_value_heads", config.numKvHeads) ||
      !reader.checkSize("max_position_embeddings",
                        config.maxPositionEmbeddings))
    return false;
  if (config.numHeads % config.numKvHeads != 0)
    return reader.fail("num_attention_heads " +
                       std::to_string(config.numHeads) +
                       " is not a multiple of num_key_value_heads " +
                       std::to_string(config.numKvHeads));

  if (ConfigReader::get(root, "head_dim")) {
    if (!reader.readInt(root, "head_dim", "head_dim", config.headDim) ||
        !reader.checkSize("head_dim", config.headDim))
      return false;
  } else {
    if (config.hiddenSize % config.numHeads != 0)
      return reader.fail("hidden_size " + std::to_string(config.hiddenSize) +
                         " is not divisible by num_attention_heads " +
                         std::to_string(config.numHeads) +
                         " and no head_dim is given");
    config.headDim = config.hiddenSize / config.numHeads;
  }

  if (!reader.readDouble(root, "rms_norm_eps", "rms_norm_eps",
                         config.rmsNormEps, /*required=*/false) ||
      !reader.checkPositive("rms_norm_eps", config.rmsNormEps))
    return false;

  std::optional<std::string> act;
  if (!reader.readString(root, "hidden_act", "hidden_act", act))
    return false;
  if (act && *act != "silu")
    return reader.fail("hidden_act " + quoteName(*act) +
                       " is not supported (expected 'silu')");

  if (!reader.readBool(root, "tie_word_embeddings", config.tieWordEmbeddings))
    return false;

  switch (config.architecture) {
  case Architecture::Llama: {
    bool attentionBias = false;
    if (!reader.readBool(root, "attention_bias", attentionBias) ||
        !reader.readBool(root, "mlp_bias", config.mlpBias))
      return false;
    config.qkvBias = config.oBias = attentionBias;
    break;
  }
  case Architecture::Qwen2:
    config.qkvBias = true;
    break;
  case Architecture::Mistral:
    break;
  }

  if (!parseRope(reader, root, config) ||
      !parseSlidingWindow(reader, root, config) ||
      !parseDTypeKey(reader, root, config) ||
      !parseTokenIds(reader, root, config))
    return false;

  out = std::move(config);
  return true;
}

bool optmlir::loadModelConfig(const std::string &path, ModelConfig &out,
                              std::string *error) {
  std::string file = path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    file = (std::filesystem::path(path) / "config.json").string();
  std::unique_ptr<MappedFile> mapped = MappedFile::open(file, error);
  if (!mapped)
    return false;
  std::string text(reinterpret_cast<const char *>(mapped->data()),
                   mapped->size());
  return parseModelConfig(text, file, out, error);
}

//===----------------------------------------------------------------------===//
// Tensor names
//===----------------------------------------------------------------------===//

bool optmlir::isPerLayer(WeightRole role) {
  switch (role) {
  case WeightRole::Embed:
  case WeightRole::FinalNorm:
  case WeightRole::LmHead:
    return false;
  default:
    return true;
  }
}

/// The part of a per-layer name after "model.layers.N.".
static const char *layerSuffix(WeightRole role) {
  switch (role) {
  case WeightRole::InputNorm:
    return "input_layernorm.weight";
  case WeightRole::PostAttentionNorm:
    return "post_attention_layernorm.weight";
  case WeightRole::QProj:
    return "self_attn.q_proj.weight";
  case WeightRole::KProj:
    return "self_attn.k_proj.weight";
  case WeightRole::VProj:
    return "self_attn.v_proj.weight";
  case WeightRole::OProj:
    return "self_attn.o_proj.weight";
  case WeightRole::QBias:
    return "self_attn.q_proj.bias";
  case WeightRole::KBias:
    return "self_attn.k_proj.bias";
  case WeightRole::VBias:
    return "self_attn.v_proj.bias";
  case WeightRole::OBias:
    return "self_attn.o_proj.bias";
  case WeightRole::GateProj:
    return "mlp.gate_proj.weight";
  case WeightRole::UpProj:
    return "mlp.up_proj.weight";
  case WeightRole::DownProj:
    return "mlp.down_proj.weight";
  case WeightRole::GateBias:
    return "mlp.gate_proj.bias";
  case WeightRole::UpBias:
    return "mlp.up_proj.bias";
  case WeightRole::DownBias:
    return "mlp.down_proj.bias";
  default:
    return "";
  }
}

std::string optmlir::weightName(WeightRole role, int64_t layer) {
  switch (role) {
  case WeightRole::Embed:
    return "model.embed_tokens.weight";
  case WeightRole::FinalNorm:
    return "model.norm.weight";
  case WeightRole::LmHead:
    return "lm_head.weight";
  default:
    break;
  }
  if (layer < 0)
    return "";
  return "model.layers." + std::to_string(layer) + "." + layerSuffix(role);
}

std::vector<ExpectedTensor> optmlir::expectedTensors(const ModelConfig &c) {
  std::vector<ExpectedTensor> result;
  auto add = [&](WeightRole role, int64_t layer, std::vector<int64_t> shape) {
    result.push_back({weightName(role, layer), std::move(shape), role, layer});
  };
  int64_t qDim = c.numHeads * c.headDim;
  int64_t kvDim = c.numKvHeads * c.headDim;

  add(WeightRole::Embed, -1, {c.vocabSize, c.hiddenSize});
  add(WeightRole::FinalNorm, -1, {c.hiddenSize});
  if (!c.tieWordEmbeddings)
    add(WeightRole::LmHead, -1, {c.vocabSize, c.hiddenSize});

  for (int64_t l = 0; l < c.numLayers; ++l) {
    add(WeightRole::InputNorm, l, {c.hiddenSize});
    add(WeightRole::PostAttentionNorm, l, {c.hiddenSize});
    add(WeightRole::QProj, l, {qDim, c.hiddenSize});
    add(WeightRole::KProj, l, {kvDim, c.hiddenSize});
    add(WeightRole::VProj, l, {kvDim, c.hiddenSize});
    add(WeightRole::OProj, l, {c.hiddenSize, qDim});
    if (c.qkvBias) {
      add(WeightRole::QBias, l, {qDim});
      add(WeightRole::KBias, l, {kvDim});
      add(WeightRole::VBias, l, {kvDim});
    }
    if (c.oBias)
      add(WeightRole::OBias, l, {c.hiddenSize});
    add(WeightRole::GateProj, l, {c.intermediateSize, c.hiddenSize});
    add(WeightRole::UpProj, l, {c.intermediateSize, c.hiddenSize});
    add(WeightRole::DownProj, l, {c.hiddenSize, c.intermediateSize});
    if (c.mlpBias) {
      add(WeightRole::GateBias, l, {c.intermediateSize});
      add(WeightRole::UpBias, l, {c.intermediateSize});
      add(WeightRole::DownBias, l, {c.hiddenSize});
    }
  }
  return result;
}
