//===- ImportModel.cpp - Hugging Face checkpoint to tfm -------------------===//

#include "optmlir/Import/ImportModel.h"

#include "dialects/Tfm/IR/TfmOps.h"
#include "optmlir/Import/Checkpoint.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

using namespace mlir;
using namespace optmlir;

namespace {
Type elementTypeOf(MLIRContext &context, DType dtype) {
  switch (dtype) {
  case DType::BF16:
    return BFloat16Type::get(&context);
  case DType::F16:
    return Float16Type::get(&context);
  default:
    return Float32Type::get(&context);
  }
}

/// Emits the ops of @forward; one method per block of the model.
class ForwardBuilder {
public:
  ForwardBuilder(ModuleOp module, const ModelConfig &config)
      : config(config), context(*module.getContext()),
        builder(module.getBodyRegion()),
        activation(elementTypeOf(context, config.dtype)) {}

  void declareWeights() {
    for (const ExpectedTensor &tensor : expectedTensors(config))
      tfm::WeightOp::create(
          builder, loc(tensor.name), builder.getStringAttr(tensor.name),
          TypeAttr::get(RankedTensorType::get(tensor.shape, activation)),
          ArrayAttr(), IntegerAttr(), FlatSymbolRefAttr());
  }

  void buildForward() {
    auto ids = RankedTensorType::get({ShapedType::kDynamic},
                                     builder.getI32Type());
    auto logits = RankedTensorType::get(
        {ShapedType::kDynamic, config.vocabSize}, builder.getF32Type());
    auto func = func::FuncOp::create(
        builder, loc("forward"), "forward",
        builder.getFunctionType({ids, ids}, {logits}));
    func.setArgAttr(0, "tfm.name", builder.getStringAttr("input_ids"));
    func.setArgAttr(1, "tfm.name", builder.getStringAttr("positions"));
    Block *body = func.addEntryBlock();
    builder.setInsertionPointToStart(body);
    positions = body->getArgument(1);

    Value hidden = tfm::EmbedOp::create(
        builder, loc("model.embed_tokens"), hiddenType(config.hiddenSize),
        body->getArgument(0), weight(WeightRole::Embed));
    for (int64_t layer = 0; layer < config.numLayers; ++layer) {
      std::string prefix = "model.layers." + std::to_string(layer);
      Value normed = rmsNorm(prefix + ".input_layernorm", hidden,
                             weight(WeightRole::InputNorm, layer));
      hidden = tfm::AddOp::create(builder, loc(prefix + ".residual"),
                                  hidden.getType(), hidden,
                                  selfAttention(prefix + ".self_attn", normed,
                                                layer));
      normed = rmsNorm(prefix + ".post_attention_layernorm", hidden,
                       weight(WeightRole::PostAttentionNorm, layer));
      hidden = tfm::AddOp::create(builder, loc(prefix + ".residual"),
                                  hidden.getType(), hidden,
                                  mlp(prefix + ".mlp", normed, layer));
    }
    hidden = rmsNorm("model.norm", hidden, weight(WeightRole::FinalNorm));
    Value head = weight(config.tieWordEmbeddings ? WeightRole::Embed
                                                 : WeightRole::LmHead);
    Value out = linear("lm_head", hidden, head, Value(), config.vocabSize);
    out = tfm::CastOp::create(builder, loc("lm_head"), logits, out);
    func::ReturnOp::create(builder, loc("forward"), out);
  }

private:
  Location loc(StringRef name) {
    return NameLoc::get(builder.getStringAttr(name));
  }

  RankedTensorType hiddenType(ArrayRef<int64_t> innerShape) {
    SmallVector<int64_t> shape = {ShapedType::kDynamic};
    shape.append(innerShape.begin(), innerShape.end());
    return RankedTensorType::get(shape, activation);
  }

  /// Reads the weight of `role`, or null for an absent optional bias.
  Value weight(WeightRole role, int64_t layer = -1) {
    std::string name = weightName(role, layer);
    auto decl = SymbolTable::lookupNearestSymbolFrom<tfm::WeightOp>(
        builder.getBlock()->getParentOp(), builder.getStringAttr(name));
    if (!decl)
      return {};
    return tfm::GetWeightOp::create(builder, loc(name), decl.getTensorType(),
                                    FlatSymbolRefAttr::get(decl.getSymNameAttr()));
  }

  Value rmsNorm(StringRef name, Value input, Value scale) {
    return tfm::RMSNormOp::create(builder, loc(name), input.getType(), input,
                                  scale,
                                  builder.getF64FloatAttr(config.rmsNormEps));
  }

  Value linear(StringRef name, Value input, Value w, Value bias,
               int64_t outFeatures) {
    return tfm::LinearOp::create(builder, loc(name), hiddenType(outFeatures),
                                 input, w, bias);
  }

  /// A linear layer of `layer` whose weight (and bias, where the checkpoint
  /// has one) play the given roles; the weight is read first.
  Value projection(StringRef name, Value input, WeightRole weightRole,
                   WeightRole biasRole, int64_t layer, int64_t outFeatures) {
    Value w = weight(weightRole, layer);
    Value bias = weight(biasRole, layer);
    return linear(name, input, w, bias, outFeatures);
  }

  /// Splits [tokens, heads * D] into [tokens, heads, D], or back.
  Value reshape(StringRef name, Value input, ArrayRef<int64_t> innerShape) {
    return tfm::ReshapeOp::create(builder, loc(name), hiddenType(innerShape),
                                  input);
  }

  Value rope(StringRef name, Value input) {
    tfm::RopeScalingAttr scaling;
    const RopeScaling &rs = config.ropeScaling;
    if (rs.kind != RopeScaling::None)
      scaling = tfm::RopeScalingAttr::get(
          &context,
          rs.kind == RopeScaling::Linear ? tfm::RopeScalingKind::Linear
                                         : tfm::RopeScalingKind::Llama3,
          APFloat(rs.factor), APFloat(rs.lowFreqFactor),
          APFloat(rs.highFreqFactor), rs.originalMaxPositionEmbeddings);
    return tfm::RopeOp::create(builder, loc(name), input.getType(), input,
                               positions,
                               builder.getF64FloatAttr(config.ropeTheta),
                               scaling);
  }

  Value selfAttention(const std::string &prefix, Value input, int64_t layer) {
    int64_t heads = config.numHeads, kvHeads = config.numKvHeads;
    int64_t headDim = config.headDim;
    Value q = projection(prefix + ".q_proj", input, WeightRole::QProj,
                      WeightRole::QBias, layer, heads * headDim);
    Value k = projection(prefix + ".k_proj", input, WeightRole::KProj,
                      WeightRole::KBias, layer, kvHeads * headDim);
    Value v = projection(prefix + ".v_proj", input, WeightRole::VProj,
                      WeightRole::VBias, layer, kvHeads * headDim);
    q = rope(prefix + ".rotary",
             reshape(prefix + ".q_heads", q, {heads, headDim}));
    k = rope(prefix + ".rotary",
             reshape(prefix + ".k_heads", k, {kvHeads, headDim}));
    v = reshape(prefix + ".v_heads", v, {kvHeads, headDim});
    std::optional<int64_t> window = config.slidingWindowForLayer(layer);
    Value attended = tfm::AttentionOp::create(
        builder, loc(prefix + ".attention"), q.getType(), q, k, v,
        builder.getF64FloatAttr(1.0 / std::sqrt(double(headDim))),
        builder.getUnitAttr(),
        window ? builder.getI64IntegerAttr(*window) : IntegerAttr(),
        /*kv_cache=*/TypeAttr());
    attended = reshape(prefix + ".merge_heads", attended, {heads * headDim});
    return projection(prefix + ".o_proj", attended, WeightRole::OProj,
                      WeightRole::OBias, layer, config.hiddenSize);
  }

  Value mlp(const std::string &prefix, Value input, int64_t layer) {
    int64_t inner = config.intermediateSize;
    Value gate = projection(prefix + ".gate_proj", input, WeightRole::GateProj,
                      WeightRole::GateBias, layer, inner);
    Value up = projection(prefix + ".up_proj", input, WeightRole::UpProj,
                      WeightRole::UpBias, layer, inner);
    Value act = tfm::SwiGLUOp::create(builder, loc(prefix + ".act_fn"),
                                      gate.getType(), gate, up);
    return projection(prefix + ".down_proj", act, WeightRole::DownProj,
                      WeightRole::DownBias, layer, config.hiddenSize);
  }

  const ModelConfig &config;
  MLIRContext &context;
  OpBuilder builder;
  Type activation;
  Value positions;
};

/// The model's hyperparameters as a module attribute: what later stages and
/// the artifact's metadata read without re-deriving them from the graph.
DictionaryAttr configAttr(Builder &b, const ModelConfig &config) {
  SmallVector<NamedAttribute> entries = {
      b.getNamedAttr("architecture",
                     b.getStringAttr(architectureName(config.architecture))),
      b.getNamedAttr("vocab_size", b.getI64IntegerAttr(config.vocabSize)),
      b.getNamedAttr("hidden_size", b.getI64IntegerAttr(config.hiddenSize)),
      b.getNamedAttr("intermediate_size",
                     b.getI64IntegerAttr(config.intermediateSize)),
      b.getNamedAttr("num_hidden_layers", b.getI64IntegerAttr(config.numLayers)),
      b.getNamedAttr("num_attention_heads", b.getI64IntegerAttr(config.numHeads)),
      b.getNamedAttr("num_key_value_heads",
                     b.getI64IntegerAttr(config.numKvHeads)),
      b.getNamedAttr("head_dim", b.getI64IntegerAttr(config.headDim)),
      b.getNamedAttr("max_position_embeddings",
                     b.getI64IntegerAttr(config.maxPositionEmbeddings)),
      b.getNamedAttr("tie_word_embeddings",
                     b.getBoolAttr(config.tieWordEmbeddings)),
  };
  if (config.bosTokenId)
    entries.push_back(
        b.getNamedAttr("bos_token_id", b.getI64IntegerAttr(*config.bosTokenId)));
  entries.push_back(b.getNamedAttr(
      "eos_token_ids", b.getI64ArrayAttr(config.eosTokenIds)));
  return b.getDictionaryAttr(entries);
}

/// Reads a JSON file; null with `error` set when it is absent or malformed.
std::optional<llvm::json::Value> readJson(const std::string &path,
                                          std::string &error) {
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/true);
  if (!buffer) {
    error = path + ": " + buffer.getError().message();
    return std::nullopt;
  }
  llvm::Expected<llvm::json::Value> value =
      llvm::json::parse((*buffer)->getBuffer());
  if (!value) {
    error = path + ": invalid JSON: " + llvm::toString(value.takeError());
    return std::nullopt;
  }
  return std::move(*value);
}

/// The token text of a tokenizer_config.json entry: a string, or an object
/// with "content".
std::optional<StringRef> tokenText(const llvm::json::Object &object,
                                   StringRef key) {
  const llvm::json::Value *value = object.get(key);
  if (!value)
    return std::nullopt;
  if (std::optional<StringRef> text = value->getAsString())
    return text;
  if (const llvm::json::Object *token = value->getAsObject())
    return token->getString("content");
  return std::nullopt;
}

/// Summarises tokenizer.json (and tokenizer_config.json) as a module
/// attribute, checking that every token id fits the model's vocabulary.
/// The tokenizer itself is compiled into the artifact later.
FailureOr<DictionaryAttr> tokenizerAttr(Builder &b, const std::string &dir,
                                        const ModelConfig &config,
                                        std::string &error) {
  std::string path = dir + "/tokenizer.json";
  std::optional<llvm::json::Value> json = readJson(path, error);
  if (!json)
    return failure();
  const llvm::json::Object *root = json->getAsObject();
  const llvm::json::Object *model = root ? root->getObject("model") : nullptr;
  std::optional<StringRef> type = model ? model->getString("type") : std::nullopt;
  const llvm::json::Object *vocab = model ? model->getObject("vocab") : nullptr;
  if (!type || !vocab) {
    error = path + ": expected an object with \"model\": {\"type\", \"vocab\"}";
    return failure();
  }
  int64_t maxId = -1;
  auto noteId = [&](const llvm::json::Value &id, StringRef what) {
    std::optional<int64_t> value = id.getAsInteger();
    if (!value || *value < 0 || *value >= config.vocabSize) {
      error = path + ": " + what.str() + " has id " +
              (value ? std::to_string(*value) : std::string("<not an int>")) +
              ", outside the model's vocab_size " +
              std::to_string(config.vocabSize);
      return false;
    }
    maxId = std::max(maxId, *value);
    return true;
  };
  for (const auto &entry : *vocab)
    if (!noteId(entry.second, "token '" + entry.first.str() + "'"))
      return failure();
  if (const llvm::json::Array *added = root->getArray("added_tokens"))
    for (const llvm::json::Value &token : *added)
      if (const llvm::json::Object *object = token.getAsObject())
        if (const llvm::json::Value *id = object->get("id"))
          if (!noteId(*id, "added token"))
            return failure();

  SmallVector<NamedAttribute> entries = {
      b.getNamedAttr("file", b.getStringAttr("tokenizer.json")),
      b.getNamedAttr("model", b.getStringAttr(*type)),
      b.getNamedAttr("num_tokens", b.getI64IntegerAttr(maxId + 1)),
  };
  std::string configPath = dir + "/tokenizer_config.json";
  if (llvm::sys::fs::exists(configPath)) {
    std::optional<llvm::json::Value> tokenizerConfig =
        readJson(configPath, error);
    if (!tokenizerConfig)
      return failure();
    if (const llvm::json::Object *object = tokenizerConfig->getAsObject()) {
      for (StringRef key : {"bos_token", "eos_token"})
        if (std::optional<StringRef> text = tokenText(*object, key))
          entries.push_back(b.getNamedAttr(key, b.getStringAttr(*text)));
      if (object->get("chat_template"))
        entries.push_back(b.getNamedAttr("chat_template", b.getUnitAttr()));
    }
  }
  return b.getDictionaryAttr(entries);
}
} // namespace

OwningOpRef<ModuleOp> optmlir::buildModelModule(MLIRContext &context,
                                                const ModelConfig &config,
                                                StringRef checkpointDir) {
  context.loadDialect<tfm::TfmDialect, func::FuncDialect>();
  OwningOpRef<ModuleOp> module = ModuleOp::create(UnknownLoc::get(&context));
  Builder b(&context);
  (*module)->setAttr("tfm.model_config", configAttr(b, config));
  if (!checkpointDir.empty())
    (*module)->setAttr("tfm.checkpoint", b.getStringAttr(checkpointDir));
  ForwardBuilder forward(*module, config);
  forward.declareWeights();
  forward.buildForward();
  return module;
}

OwningOpRef<ModuleOp> optmlir::importCheckpoint(MLIRContext &context,
                                                StringRef dir,
                                                std::string &error) {
  SmallString<256> absolute(dir);
  if (std::error_code ec = llvm::sys::fs::make_absolute(absolute)) {
    error = dir.str() + ": " + ec.message();
    return nullptr;
  }
  llvm::sys::path::remove_dots(absolute, /*remove_dot_dot=*/true);
  std::string directory = absolute.str().str();
  if (!llvm::sys::fs::is_directory(directory)) {
    error = directory + ": not a checkpoint directory";
    return nullptr;
  }

  ModelConfig config;
  if (!loadModelConfig(directory + "/config.json", config, &error))
    return nullptr;
  std::unique_ptr<Checkpoint> checkpoint =
      Checkpoint::open(directory, config, &error);
  if (!checkpoint)
    return nullptr;
  // Weights are typed as the checkpoint stores them; the activations follow.
  config.dtype = checkpoint->dtype();

  OwningOpRef<ModuleOp> module = buildModelModule(context, config, directory);
  Builder b(&context);
  FailureOr<DictionaryAttr> tokenizer = tokenizerAttr(b, directory, config, error);
  if (failed(tokenizer))
    return nullptr;
  (*module)->setAttr("tfm.tokenizer", *tokenizer);
  if (failed(verify(*module))) {
    error = directory + ": the imported module does not verify";
    return nullptr;
  }
  return module;
}
