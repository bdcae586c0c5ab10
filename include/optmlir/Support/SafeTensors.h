//===- SafeTensors.h - Validated, zero-copy safetensors reader --*- C++ -*-===//
//
// Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON mapping
// tensor names to {"dtype", "shape", "data_offsets": [begin, end)} (offsets
// relative to the data section that follows the header), plus an optional
// "__metadata__" string-to-string map. Files come from outside, so every
// field is checked before anything points into the data.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_SUPPORT_SAFETENSORS_H
#define OPTMLIR_SUPPORT_SAFETENSORS_H

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace optmlir {

class MappedFile;

/// Element types of safetensors files that the project handles.
enum class DType {
  BF16,
  F16,
  F32,
  F64,
  I8,
  U8,
  I16,
  I32,
  I64,
  BOOL,
  F8_E4M3,
  F8_E5M2,
};

/// The safetensors spelling of `dtype` ("BF16", "F8_E4M3", ...).
const char *dtypeName(DType dtype);
/// Inverse of dtypeName; std::nullopt for names outside DType.
std::optional<DType> parseDType(std::string_view name);
/// Bytes per element.
size_t dtypeSize(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  /// Byte range [begin, end) relative to the start of the data section.
  uint64_t begin = 0, end = 0;

  /// Product of the dimensions (1 for a scalar); -1 if it would overflow,
  /// which never happens for tensors returned by SafeTensorsFile.
  int64_t numElements() const;
  uint64_t byteSize() const { return end - begin; }
};

/// Formats a shape as "[8192, 384]" for messages.
std::string formatShape(const std::vector<int64_t> &shape);

/// Makes untrusted text safe for a one-line message: non-printable bytes
/// become \xNN escapes and long text is cut with "...".
std::string escapeForMessage(std::string_view text, size_t maxLength = 160);

class SafeTensorsFile {
public:
  /// Memory-maps and validates `path`. On failure returns nullptr and sets
  /// `*error` (if non-null) to one line naming the file and the problem.
  static std::unique_ptr<SafeTensorsFile> open(const std::string &path,
                                               std::string *error);

  /// Validates a safetensors image in memory. The result points into
  /// `data` (nothing is copied), which must outlive it. `displayName`
  /// prefixes error messages.
  static std::unique_ptr<SafeTensorsFile> parse(const uint8_t *data,
                                                size_t size,
                                                const std::string &displayName,
                                                std::string *error);

  ~SafeTensorsFile();
  SafeTensorsFile(const SafeTensorsFile &) = delete;
  SafeTensorsFile &operator=(const SafeTensorsFile &) = delete;

  /// Tensors in the order the header lists them.
  const std::vector<TensorInfo> &tensors() const { return tensorList; }
  /// nullptr if there is no tensor called `name`.
  const TensorInfo *find(std::string_view name) const;
  /// First byte of `info`'s data; `info` must come from this file.
  const uint8_t *tensorData(const TensorInfo &info) const {
    return dataSection + info.begin;
  }
  /// The "__metadata__" map (empty if the header has none).
  const std::map<std::string, std::string> &metadata() const {
    return metadataMap;
  }

  /// The path given to open(), or the display name given to parse().
  const std::string &displayName() const { return name; }
  /// Length of the JSON header (the 8-byte length prefix not included).
  uint64_t headerSize() const { return headerLength; }
  /// Offset of the data section from the start of the file: 8 + headerSize().
  uint64_t dataOffset() const { return 8 + headerLength; }
  uint64_t dataSize() const { return dataLength; }

  /// Header length limit: a larger length is treated as a corrupt file.
  static constexpr uint64_t kMaxHeaderSize = 100u * 1000 * 1000;
  /// Rank limit: anything larger is a corrupt or hostile header.
  static constexpr size_t kMaxRank = 64;

private:
  SafeTensorsFile() = default;

  std::string name;
  std::unique_ptr<MappedFile> mapping; // Null when parse() was given a buffer.
  const uint8_t *dataSection = nullptr;
  uint64_t headerLength = 0;
  uint64_t dataLength = 0;
  std::vector<TensorInfo> tensorList;
  std::unordered_map<std::string, size_t> indexByName;
  std::map<std::string, std::string> metadataMap;
};

/// A tensor to write: its bytes (dtypeSize(dtype) * elements of shape).
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void *data = nullptr;
};

/// Writes a safetensors file with `tensors` (in that order, the data
/// section starting 8-byte aligned) and `metadata`, atomically: into a
/// temporary file next to `path`, renamed over it once complete. On failure
/// returns false with one line in `error` and leaves no file.
bool writeSafeTensors(const std::string &path,
                      const std::vector<TensorToWrite> &tensors,
                      const std::map<std::string, std::string> &metadata,
                      std::string &error);

} // namespace optmlir

#endif // OPTMLIR_SUPPORT_SAFETENSORS_H
