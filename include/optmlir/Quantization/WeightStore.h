//===- WeightStore.h - Where the data of a model's weights live -*- C++ -*-===//
//
// The IR holds the types of weights, never their data (tfm.weight): the
// weight store does. It reads the checkpoint's tensors, and it keeps the
// data that passes compute (tfm-quantize's quantized arrays and smoothed
// norm weights, declared `derived_from` in the IR) until the artifact is
// written. A store without a checkpoint (a model compiled from a config
// with --random-weights) has no data: passes then rewrite shapes only and
// the artifact's weights are virtual.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_QUANTIZATION_WEIGHTSTORE_H
#define OPTMLIR_QUANTIZATION_WEIGHTSTORE_H

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace optmlir {

class Checkpoint;
struct ModelConfig;

class WeightStore {
public:
  /// A store over the checkpoint in `dir` (config.json and safetensors), or
  /// nullptr with `error` set.
  static std::unique_ptr<WeightStore> open(const std::string &dir,
                                           std::string &error);
  /// A store with no data (random weights).
  static std::unique_ptr<WeightStore> empty();
  ~WeightStore();

  bool hasData() const { return checkpoint != nullptr; }

  /// Weight `name` as f32: a tensor the pass computed, else the
  /// checkpoint's. False with `error` set when neither has it.
  bool readF32(const std::string &name, std::vector<float> &out,
               std::string &error) const;

  /// Data a pass computed for the weight `name` (raw bytes of its stored
  /// type, row-major).
  void putComputed(const std::string &name, std::vector<uint8_t> bytes);
  /// The same for f32 values that the store keeps (a smoothed norm weight:
  /// the writer converts them to the artifact's type).
  void putComputedF32(const std::string &name, std::vector<float> values);
  /// Null when no pass computed `name`.
  const std::vector<uint8_t> *computed(const std::string &name) const;
  const std::vector<float> *computedF32(const std::string &name) const;

  /// Names the model the data come from (config and weights), for files
  /// derived from it such as calibration statistics: xxh3 of config.json,
  /// the tensors' names, types and shapes, and the first 64 KiB of each
  /// tensor's data. Empty for a store without data.
  const std::string &fingerprint() const { return modelFingerprint; }

  const Checkpoint *source() const { return checkpoint.get(); }

private:
  WeightStore();
  std::unique_ptr<ModelConfig> config;
  std::unique_ptr<Checkpoint> checkpoint;
  std::string modelFingerprint;
  std::map<std::string, std::vector<uint8_t>> computedBytes;
  std::map<std::string, std::vector<float>> computedValues;
};

} // namespace optmlir

#endif // OPTMLIR_QUANTIZATION_WEIGHTSTORE_H
