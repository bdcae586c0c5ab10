//===- Checkpoint.cpp - A Hugging Face safetensors checkpoint -------------===//

#include "optmlir/Import/Checkpoint.h"
#include "optmlir/Support/MappedFile.h"

#include "JsonText.h"

#include <algorithm>
#include <filesystem>
#include <map>

using namespace optmlir;
using optmlir::hf::json;

namespace fs = std::filesystem;

static std::string quoteName(std::string_view text) {
  return "'" + escapeForMessage(text) + "'";
}

static bool fail(std::string *error, const std::string &message) {
  if (error)
    *error = message;
  return false;
}

static bool isRegularFile(const fs::path &path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

/// Shard names come from the index, which is input: keep them inside the
/// checkpoint directory.
static bool isPlainRelativePath(const std::string &name) {
  if (name.empty() || name.find('\0') != std::string::npos)
    return false;
  fs::path path(name);
  if (path.is_absolute() || path.has_root_name() || path.has_root_directory())
    return false;
  for (const fs::path &part : path)
    if (part == "..")
      return false;
  return true;
}

/// Reads the index's weight_map into tensor name -> shard name.
static bool readIndex(const std::string &indexPath,
                      std::map<std::string, std::string> &weightMap,
                      std::string *error) {
  std::unique_ptr<MappedFile> mapped = MappedFile::open(indexPath, error);
  if (!mapped)
    return false;
  std::string_view text(reinterpret_cast<const char *>(mapped->data()),
                        mapped->size());
  json root;
  std::string message;
  if (!hf::parseJsonText(text, root, message))
    return fail(error, indexPath + ": not valid JSON: " + message);
  if (!root.is_object())
    return fail(error, indexPath + ": index is " +
                           std::string(root.type_name()) +
                           ", expected a JSON object");
  auto it = root.find("weight_map");
  if (it == root.end())
    return fail(error, indexPath + ": missing key 'weight_map'");
  if (!it->is_object())
    return fail(error, indexPath + ": key 'weight_map' must be an object, got " +
                           it->type_name());
  for (auto entry = it->begin(); entry != it->end(); ++entry) {
    if (!entry->is_string())
      return fail(error, indexPath + ": weight_map entry for tensor " +
                             quoteName(entry.key()) + " must be a string, got " +
                             entry->type_name());
    const std::string &shard = entry->get_ref<const std::string &>();
    if (!isPlainRelativePath(shard))
      return fail(error, indexPath + ": shard " + quoteName(shard) +
                             " for tensor " + quoteName(entry.key()) +
                             " is not a path inside the checkpoint directory");
    weightMap.emplace(entry.key(), shard);
  }
  return true;
}

std::unique_ptr<Checkpoint> Checkpoint::open(const std::string &dir,
                                             const ModelConfig &config,
                                             std::string *error) {
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir = dir;
  fs::path root(dir);
  fs::path single = root / "model.safetensors";
  fs::path indexFile = root / "model.safetensors.index.json";

  // Where "missing tensor" errors point: the index, or the single file.
  std::string listing;
  if (isRegularFile(single)) {
    std::unique_ptr<SafeTensorsFile> file =
        SafeTensorsFile::open(single.string(), error);
    if (!file)
      return nullptr;
    for (const TensorInfo &info : file->tensors())
      ckpt->tensorsByName.emplace(info.name, Location{file.get(), &info});
    ckpt->fileList.push_back(std::move(file));
    listing = single.string();
  } else if (isRegularFile(indexFile)) {
    ckpt->index = indexFile.string();
    listing = ckpt->index;
    std::map<std::string, std::string> weightMap;
    if (!readIndex(ckpt->index, weightMap, error))
      return nullptr;
    // Map every shard once, in name order.
    std::map<std::string, SafeTensorsFile *> shards;
    for (const auto &[tensor, shard] : weightMap)
      shards.emplace(shard, nullptr);
    for (auto &[shard, file] : shards) {
      fs::path shardPath = root / shard;
      if (!isRegularFile(shardPath)) {
        fail(error, ckpt->index + ": shard " + quoteName(shard) +
                        " does not exist (" + shardPath.string() + ")");
        return nullptr;
      }
      std::unique_ptr<SafeTensorsFile> opened =
          SafeTensorsFile::open(shardPath.string(), error);
      if (!opened)
        return nullptr;
      file = opened.get();
      ckpt->fileList.push_back(std::move(opened));
    }
    // The index decides which shard holds a tensor.
    for (const auto &[tensor, shard] : weightMap) {
      SafeTensorsFile *file = shards[shard];
      const TensorInfo *info = file->find(tensor);
      if (!info) {
        fail(error, ckpt->index + ": tensor " + quoteName(tensor) +
                        " is mapped to shard " + quoteName(shard) +
                        ", which does not contain it");
        return nullptr;
      }
      ckpt->tensorsByName.emplace(tensor, Location{file, info});
    }
  } else {
    fail(error, dir + ": no model.safetensors or "
                      "model.safetensors.index.json");
    return nullptr;
  }

  std::optional<DType> sharedType;
  if (config.dtypeSpecified)
    sharedType = config.dtype;
  for (const ExpectedTensor &expected : expectedTensors(config)) {
    auto it = ckpt->tensorsByName.find(expected.name);
    if (it == ckpt->tensorsByName.end()) {
      fail(error, listing + ": missing tensor " + quoteName(expected.name));
      return nullptr;
    }
    const Location &loc = it->second;
    const std::string &fileName = loc.file->displayName();
    if (loc.info->shape != expected.shape) {
      fail(error, fileName + ": tensor " + quoteName(expected.name) +
                      " has shape " + formatShape(loc.info->shape) +
                      ", but the config implies " +
                      formatShape(expected.shape));
      return nullptr;
    }
    if (!sharedType) {
      sharedType = loc.info->dtype;
    } else if (loc.info->dtype != *sharedType) {
      fail(error, fileName + ": tensor " + quoteName(expected.name) +
                      " has dtype " + dtypeName(loc.info->dtype) + ", but " +
                      (config.dtypeSpecified
                           ? std::string("the config says ")
                           : std::string("the other weights are ")) +
                      dtypeName(*sharedType));
      return nullptr;
    }
  }
  ckpt->weightType = sharedType.value_or(config.dtype);
  return ckpt;
}

const TensorInfo *Checkpoint::find(std::string_view name,
                                   const SafeTensorsFile **file) const {
  auto it = tensorsByName.find(std::string(name));
  if (it == tensorsByName.end()) {
    if (file)
      *file = nullptr;
    return nullptr;
  }
  if (file)
    *file = it->second.file;
  return it->second.info;
}

const uint8_t *Checkpoint::tensorData(std::string_view name) const {
  const SafeTensorsFile *file;
  const TensorInfo *info = find(name, &file);
  return info ? file->tensorData(*info) : nullptr;
}
