//===- Checkpoint.h - A Hugging Face safetensors checkpoint -----*- C++ -*-===//
//
// The weights of a checkpoint directory (one model.safetensors, or shards
// listed by model.safetensors.index.json), mapped once and checked against
// the tensors a ModelConfig implies. Weights stay in the files: callers get
// pointers into the mappings.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_IMPORT_CHECKPOINT_H
#define OPTMLIR_IMPORT_CHECKPOINT_H

#include "optmlir/Import/ModelConfig.h"
#include "optmlir/Support/SafeTensors.h"

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace optmlir {

class Checkpoint {
public:
  /// Opens the checkpoint in `dir`: model.safetensors if present, else the
  /// shards named by model.safetensors.index.json. Every tensor of
  /// expectedTensors(config) must be present with the config's shape and,
  /// when config.dtypeSpecified, its dtype (otherwise all must share one
  /// dtype). Other tensors are allowed and ignored. On failure returns
  /// nullptr and sets `*error` (if non-null) to one line naming the file.
  static std::unique_ptr<Checkpoint> open(const std::string &dir,
                                          const ModelConfig &config,
                                          std::string *error);

  /// The tensor called `name`, or nullptr; `*file` (if non-null) is set to
  /// the file holding it. With an index, only the tensors it lists are found
  /// (in the shard it names).
  const TensorInfo *find(std::string_view name,
                         const SafeTensorsFile **file = nullptr) const;
  /// Pointer to the data of `name` inside its mapping, or nullptr.
  const uint8_t *tensorData(std::string_view name) const;

  /// The mapped files, sorted by path.
  const std::vector<std::unique_ptr<SafeTensorsFile>> &files() const {
    return fileList;
  }
  const std::string &directory() const { return dir; }
  /// The index file, or "" for a single-file checkpoint.
  const std::string &indexPath() const { return index; }
  /// Element type shared by the model's weights.
  DType dtype() const { return weightType; }

private:
  Checkpoint() = default;

  struct Location {
    const SafeTensorsFile *file;
    const TensorInfo *info;
  };

  std::string dir;
  std::string index;
  DType weightType = DType::F32;
  std::vector<std::unique_ptr<SafeTensorsFile>> fileList;
  std::unordered_map<std::string, Location> tensorsByName;
};

} // namespace optmlir

#endif // OPTMLIR_IMPORT_CHECKPOINT_H
