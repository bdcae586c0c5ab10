//===- ModelConfig.h - Hugging Face config.json for Llama-family models -*-===//
//
// The importer's view of a checkpoint's config.json, validated once so that
// nothing downstream re-checks sizes, and the one place that knows Hugging
// Face tensor names. No MLIR here: the runtime and tools use it too.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_IMPORT_MODELCONFIG_H
#define OPTMLIR_IMPORT_MODELCONFIG_H

#include "optmlir/Support/SafeTensors.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace optmlir {

/// Model classes we import: all are decoder-only, RMSNorm, RoPE, SwiGLU, GQA;
/// they differ in biases and sliding-window attention.
enum class Architecture { Llama, Mistral, Qwen2 };

/// The Hugging Face class name ("LlamaForCausalLM", ...).
const char *architectureName(Architecture arch);

struct RopeScaling {
  enum Kind { None, Linear, Llama3 };
  Kind kind = None;
  /// Linear: positions are divided by factor. Llama3: wavelength factor.
  double factor = 1.0;
  /// Llama3 only.
  double lowFreqFactor = 1.0;
  double highFreqFactor = 4.0;
  int64_t originalMaxPositionEmbeddings = 0;
};

struct ModelConfig {
  Architecture architecture = Architecture::Llama;
  int64_t vocabSize = 0;
  int64_t hiddenSize = 0;
  int64_t intermediateSize = 0;
  int64_t numLayers = 0;
  int64_t numHeads = 0;
  int64_t numKvHeads = 0;
  int64_t headDim = 0;
  int64_t maxPositionEmbeddings = 0;
  double rmsNormEps = 1e-6;
  double ropeTheta = 10000.0;
  RopeScaling ropeScaling;
  bool tieWordEmbeddings = false;
  std::string hiddenAct = "silu";

  /// Biases on q_proj, k_proj and v_proj.
  bool qkvBias = false;
  /// Bias on o_proj.
  bool oBias = false;
  /// Biases on gate_proj, up_proj and down_proj.
  bool mlpBias = false;

  /// Window size of sliding-window attention, if any layer uses it.
  std::optional<int64_t> slidingWindow;
  /// Per layer (numLayers entries): whether the layer uses slidingWindow.
  std::vector<bool> slidingLayers;

  /// Element type of the weights ("dtype", or the older "torch_dtype").
  DType dtype = DType::F32;
  /// False if config.json names no dtype (dtype is then F32, transformers'
  /// default, and checkpoints are not held to it).
  bool dtypeSpecified = false;

  std::optional<int64_t> bosTokenId;
  std::vector<int64_t> eosTokenIds;

  /// Window size for `layer`, or nullopt for full causal attention.
  std::optional<int64_t> slidingWindowForLayer(int64_t layer) const;
};

/// Parses config.json text. `path` names the file in error messages. On
/// failure returns false and sets `*error` (if non-null) to one line.
bool parseModelConfig(const std::string &jsonText, const std::string &path,
                      ModelConfig &out, std::string *error);

/// Reads and parses `path`: a config.json file, or a checkpoint directory
/// holding one.
bool loadModelConfig(const std::string &path, ModelConfig &out,
                     std::string *error);

/// The role a checkpoint tensor plays in the model.
enum class WeightRole {
  Embed,
  FinalNorm,
  LmHead,
  InputNorm,
  PostAttentionNorm,
  QProj,
  KProj,
  VProj,
  OProj,
  QBias,
  KBias,
  VBias,
  OBias,
  GateProj,
  UpProj,
  DownProj,
  GateBias,
  UpBias,
  DownBias,
};

/// True for roles that exist once per decoder layer.
bool isPerLayer(WeightRole role);

/// The Hugging Face tensor name of `role` ("model.embed_tokens.weight",
/// "model.layers.3.self_attn.q_proj.weight", ...). `layer` is ignored for
/// model-wide roles; for per-layer roles a negative layer gives "".
std::string weightName(WeightRole role, int64_t layer = -1);

struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
  WeightRole role;
  int64_t layer; // -1 for model-wide roles.
};

/// Every tensor the config implies, with its shape ([out, in] for linear
/// weights): no lm_head.weight with tied embeddings, biases only where the
/// config has them. Model-wide tensors first, then layer by layer.
std::vector<ExpectedTensor> expectedTensors(const ModelConfig &config);

} // namespace optmlir

#endif // OPTMLIR_IMPORT_MODELCONFIG_H
