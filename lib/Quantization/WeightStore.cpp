//===- WeightStore.cpp - Where the data of a model's weights live ---------===//

#include "optmlir/Quantization/WeightStore.h"

#include "optmlir/Import/Checkpoint.h"
#include "optmlir/Import/ModelConfig.h"
#include "runtime/artifact/ArtifactFormat.h"
#include "runtime/core/NumberFormats.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace optmlir {

WeightStore::WeightStore() = default;
WeightStore::~WeightStore() = default;

std::unique_ptr<WeightStore> WeightStore::empty() {
  return std::unique_ptr<WeightStore>(new WeightStore());
}

std::unique_ptr<WeightStore> WeightStore::open(const std::string &dir,
                                               std::string &error) {
  std::unique_ptr<WeightStore> store(new WeightStore());
  store->config = std::make_unique<ModelConfig>();
  if (!loadModelConfig(dir + "/config.json", *store->config, &error))
    return nullptr;
  store->checkpoint = Checkpoint::open(dir, *store->config, &error);
  if (!store->checkpoint)
    return nullptr;

  optrt::artifact::StreamingChecksum hash;
  std::ifstream configFile(dir + "/config.json", std::ios::binary);
  std::stringstream configText;
  configText << configFile.rdbuf();
  std::string text = configText.str();
  hash.update(text.data(), text.size());
  std::vector<std::string> names;
  for (const auto &file : store->checkpoint->files())
    for (const TensorInfo &t : file->tensors())
      names.push_back(t.name);
  std::sort(names.begin(), names.end());
  for (const std::string &name : names) {
    const TensorInfo *t = store->checkpoint->find(name);
    const uint8_t *data = store->checkpoint->tensorData(name);
    if (!t || !data)
      continue; // a tensor of a shard that the index does not list
    std::string head = name + ":" + dtypeName(t->dtype) + formatShape(t->shape);
    hash.update(head.data(), head.size());
    hash.update(data, std::min<uint64_t>(t->byteSize(), 64 * 1024));
  }
  char digest[24];
  std::snprintf(digest, sizeof(digest), "xxh3:%016llx",
                static_cast<unsigned long long>(hash.digest()));
  store->modelFingerprint = digest;
  return store;
}

bool WeightStore::readF32(const std::string &name, std::vector<float> &out,
                          std::string &error) const {
  if (const std::vector<float> *values = computedF32(name)) {
    out = *values;
    return true;
  }
  const TensorInfo *t = checkpoint ? checkpoint->find(name) : nullptr;
  const uint8_t *data = checkpoint ? checkpoint->tensorData(name) : nullptr;
  if (!t || !data) {
    error = checkpoint ? "weight '" + name + "' is not in the checkpoint"
                       : "weight '" + name + "' has no data (random weights)";
    return false;
  }
  int64_t count = t->numElements();
  out.resize(count);
  for (int64_t i = 0; i < count; ++i) {
    uint16_t half;
    switch (t->dtype) {
    case DType::BF16:
      std::memcpy(&half, data + 2 * i, 2);
      out[i] = optrt::bf16ToFloat(half);
      break;
    case DType::F16:
      std::memcpy(&half, data + 2 * i, 2);
      out[i] = optrt::f16ToFloat(half);
      break;
    case DType::F32:
      std::memcpy(&out[i], data + 4 * i, 4);
      break;
    default:
      error = "weight '" + name + "' is " + dtypeName(t->dtype) +
              ", not a float type";
      return false;
    }
  }
  return true;
}

void WeightStore::putComputed(const std::string &name,
                              std::vector<uint8_t> bytes) {
  computedBytes[name] = std::move(bytes);
}

void WeightStore::putComputedF32(const std::string &name,
                                 std::vector<float> values) {
  computedValues[name] = std::move(values);
}

const std::vector<uint8_t> *
WeightStore::computed(const std::string &name) const {
  auto it = computedBytes.find(name);
  return it == computedBytes.end() ? nullptr : &it->second;
}

const std::vector<float> *
WeightStore::computedF32(const std::string &name) const {
  auto it = computedValues.find(name);
  return it == computedValues.end() ? nullptr : &it->second;
}

} // namespace optmlir
