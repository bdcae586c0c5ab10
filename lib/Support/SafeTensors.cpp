//===- SafeTensors.cpp - Validated, zero-copy safetensors reader ----------===//
//
// The header is read with a SAX handler rather than a DOM: it sees duplicate
// names (a DOM silently keeps the last), keeps header order, bounds memory on
// hostile headers, and needs no exceptions.
//
//===----------------------------------------------------------------------===//

#include "optmlir/Support/SafeTensors.h"
#include "optmlir/Support/MappedFile.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <numeric>
#include <unordered_set>

using namespace optmlir;

namespace {
struct DTypeEntry {
  DType dtype;
  const char *name;
  size_t size;
};
} // namespace

static constexpr DTypeEntry kDTypes[] = {
    {DType::BF16, "BF16", 2},       {DType::F16, "F16", 2},
    {DType::F32, "F32", 4},         {DType::F64, "F64", 8},
    {DType::I8, "I8", 1},           {DType::U8, "U8", 1},
    {DType::I16, "I16", 2},         {DType::I32, "I32", 4},
    {DType::I64, "I64", 8},         {DType::BOOL, "BOOL", 1},
    {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
};

static const DTypeEntry *lookup(DType dtype) {
  for (const DTypeEntry &entry : kDTypes)
    if (entry.dtype == dtype)
      return &entry;
  return nullptr;
}

const char *optmlir::dtypeName(DType dtype) {
  const DTypeEntry *entry = lookup(dtype);
  return entry ? entry->name : "<invalid dtype>";
}

std::optional<DType> optmlir::parseDType(std::string_view name) {
  for (const DTypeEntry &entry : kDTypes)
    if (name == entry.name)
      return entry.dtype;
  return std::nullopt;
}

size_t optmlir::dtypeSize(DType dtype) {
  const DTypeEntry *entry = lookup(dtype);
  return entry ? entry->size : 0;
}

/// Product of `shape`, or nullopt on a negative dimension or int64 overflow.
static std::optional<int64_t> checkedNumElements(const std::vector<int64_t> &shape) {
  int64_t count = 1;
  for (int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(count, dim, &count))
      return std::nullopt;
  }
  return count;
}

int64_t TensorInfo::numElements() const {
  return checkedNumElements(shape).value_or(-1);
}

std::string optmlir::formatShape(const std::vector<int64_t> &shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

std::string optmlir::escapeForMessage(std::string_view text, size_t maxLength) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : text) {
    if (out.size() >= maxLength) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
      continue;
    }
    out += "\\x";
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

static std::string quoteName(std::string_view text) {
  return "'" + escapeForMessage(text) + "'";
}

/// Returns the offset of the first byte that is not part of well-formed
/// UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
static std::optional<size_t> findInvalidUtf8(const uint8_t *data, size_t size) {
  size_t i = 0;
  while (i < size) {
    uint8_t c = data[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t length;
    uint8_t lo = 0x80, hi = 0xbf; // Allowed range of the second byte.
    if (c >= 0xc2 && c <= 0xdf) {
      length = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      length = 3;
      if (c == 0xe0)
        lo = 0xa0;
      else if (c == 0xed)
        hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      length = 4;
      if (c == 0xf0)
        lo = 0x90;
      else if (c == 0xf4)
        hi = 0x8f;
    } else {
      return i;
    }
    if (size - i < length)
      return i;
    if (data[i + 1] < lo || data[i + 1] > hi)
      return i;
    for (size_t k = 2; k < length; ++k)
      if (data[i + k] < 0x80 || data[i + k] > 0xbf)
        return i;
    i += length;
  }
  return std::nullopt;
}

namespace {
using json = nlohmann::json;

enum class ValueKind { Null, Bool, Integer, Float, String, Binary, Object, Array };

const char *kindName(ValueKind kind) {
  switch (kind) {
  case ValueKind::Null:
    return "null";
  case ValueKind::Bool:
    return "a boolean";
  case ValueKind::Integer:
    return "an integer";
  case ValueKind::Float:
    return "a floating-point number";
  case ValueKind::String:
    return "a string";
  case ValueKind::Binary:
    return "binary";
  case ValueKind::Object:
    return "an object";
  case ValueKind::Array:
    return "an array";
  }
  return "a value";
}

/// SAX handler for the safetensors header. Containers are tracked by depth:
/// 1 = the top-level object, 2 = a tensor entry or __metadata__, 3 = a shape
/// or data_offsets array. Errors go to `error`; the first one wins, except
/// that a JSON syntax error replaces any other.
class HeaderHandler {
public:
  explicit HeaderHandler(uint64_t dataSize) : dataSize(dataSize) {}

  std::string error;
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;

  // nlohmann SAX interface.
  bool null() { return failed || scalar(ValueKind::Null); }
  bool boolean(bool) { return failed || scalar(ValueKind::Bool); }
  bool number_integer(json::number_integer_t value) {
    if (failed)
      return true;
    if (inNumberArray())
      return arrayElement(value < 0, static_cast<uint64_t>(value), value);
    return scalar(ValueKind::Integer);
  }
  bool number_unsigned(json::number_unsigned_t value) {
    if (failed)
      return true;
    if (inNumberArray())
      return arrayElement(false, value, 0);
    return scalar(ValueKind::Integer);
  }
  bool number_float(json::number_float_t, const json::string_t &) {
    return failed || scalar(ValueKind::Float);
  }
  bool string(json::string_t &value) {
    if (failed)
      return true;
    if (skipDepth == 0 && depth == 2) {
      if (inMetadata) {
        if (!metadata.emplace(metadataKey, value).second)
          return fail("__metadata__ has duplicate key " + quoteName(metadataKey));
        return true;
      }
      if (field == Field::Dtype) {
        dtypeText = value;
        return true;
      }
    }
    return scalar(ValueKind::String);
  }
  bool binary(json::binary_t &) { return failed || scalar(ValueKind::Binary); }

  bool start_object(std::size_t) {
    return failed || startContainer(ValueKind::Object);
  }
  bool start_array(std::size_t) {
    return failed || startContainer(ValueKind::Array);
  }
  bool end_object() { return failed || endContainer(); }
  bool end_array() { return failed || endContainer(); }

  bool key(json::string_t &name) {
    if (failed || skipDepth > 0)
      return true;
    if (depth == 1) {
      entryName = name;
      if (!seenNames.insert(name).second)
        return fail(name == "__metadata__"
                        ? std::string("duplicate __metadata__")
                        : "duplicate tensor " + quoteName(name));
      return true;
    }
    // depth == 2: a key inside a tensor entry or __metadata__.
    if (inMetadata) {
      metadataKey = name;
      return true;
    }
    field = Field::Unknown;
    bool *seen = nullptr;
    if (name == "dtype") {
      field = Field::Dtype;
      seen = &hasDtype;
    } else if (name == "shape") {
      field = Field::Shape;
      seen = &hasShape;
    } else if (name == "data_offsets") {
      field = Field::Offsets;
      seen = &hasOffsets;
    }
    if (seen) {
      if (*seen)
        return fail("tensor " + quoteName(entryName) + " has duplicate key '" +
                    name + "'");
      *seen = true;
    }
    return true;
  }

  bool parse_error(std::size_t, const std::string &,
                   const nlohmann::detail::exception &ex) {
    // what() is "[json.exception.parse_error.101] parse error at ...".
    std::string_view text = ex.what();
    size_t bracket = text.find("] ");
    if (bracket != std::string_view::npos)
      text.remove_prefix(bracket + 2);
    // A syntax error outranks a semantic one found before it: a header
    // cut short is better reported as such than as a half-read entry.
    error = "header is not valid JSON: " + escapeForMessage(text, 240);
    failed = true;
    return false;
  }

  bool sawTopLevelObject() const { return sawTop; }

private:
  enum class Field { Unknown, Dtype, Shape, Offsets };

  /// Records the first semantic error but lets the parse run on (ignoring
  /// everything) so that a later syntax error can replace it.
  bool fail(std::string message) {
    if (!failed)
      error = std::move(message);
    failed = true;
    return true;
  }

  std::string entryLabel() const {
    return inMetadata ? std::string("__metadata__")
                      : "tensor " + quoteName(entryName);
  }

  const char *fieldName() const {
    switch (field) {
    case Field::Dtype:
      return "dtype";
    case Field::Shape:
      return "shape";
    case Field::Offsets:
      return "data_offsets";
    case Field::Unknown:
      break;
    }
    return "?";
  }

  bool inNumberArray() const {
    return skipDepth == 0 && depth == 3;
  }

  /// A scalar that no special case above consumed.
  bool scalar(ValueKind kind) {
    if (skipDepth > 0)
      return true;
    switch (depth) {
    case 0:
      return fail(std::string("header is ") + kindName(kind) +
                  ", expected a JSON object");
    case 1:
      return fail("entry " + quoteName(entryName) + " is " + kindName(kind) +
                  ", expected an object");
    case 2:
      if (inMetadata)
        return fail("__metadata__ value for key " + quoteName(metadataKey) +
                    " is " + kindName(kind) + ", expected a string");
      if (field == Field::Unknown)
        return true; // Unknown keys are allowed and ignored.
      return fail(entryLabel() + ": '" + fieldName() + "' is " +
                  kindName(kind) + ", expected " +
                  (field == Field::Dtype ? "a string" : "an array"));
    default:
      return fail(entryLabel() + ": '" + fieldName() + "' element is " +
                  kindName(kind) + ", expected an integer");
    }
  }

  bool arrayElement(bool negative, uint64_t value, int64_t signedValue) {
    if (field == Field::Shape) {
      if (negative)
        return fail(entryLabel() + " has negative dimension " +
                    std::to_string(signedValue) + " in its shape");
      if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return fail(entryLabel() + " has dimension " + std::to_string(value) +
                    " that overflows int64");
      if (shape.size() >= SafeTensorsFile::kMaxRank)
        return fail(entryLabel() + " has more than " +
                    std::to_string(SafeTensorsFile::kMaxRank) +
                    " dimensions");
      shape.push_back(static_cast<int64_t>(value));
      return true;
    }
    if (negative)
      return fail(entryLabel() + " has negative data offset " +
                  std::to_string(signedValue));
    if (offsets.size() >= 2)
      return fail(entryLabel() + ": 'data_offsets' has more than 2 entries");
    offsets.push_back(value);
    return true;
  }

  bool startContainer(ValueKind kind) {
    if (skipDepth > 0) {
      ++skipDepth;
      return true;
    }
    switch (depth) {
    case 0:
      if (kind != ValueKind::Object)
        return scalar(kind);
      sawTop = true;
      depth = 1;
      return true;
    case 1:
      if (kind != ValueKind::Object)
        return scalar(kind);
      depth = 2;
      beginEntry();
      return true;
    case 2:
      if (inMetadata || field == Field::Dtype)
        return scalar(kind);
      if (field == Field::Unknown) {
        skipDepth = 1;
        return true;
      }
      if (kind != ValueKind::Array)
        return scalar(kind);
      depth = 3;
      return true;
    default:
      return scalar(kind);
    }
  }

  bool endContainer() {
    if (skipDepth > 0) {
      --skipDepth;
      return true;
    }
    switch (depth) {
    case 3:
      depth = 2;
      if (field == Field::Offsets && offsets.size() != 2)
        return fail(entryLabel() + ": 'data_offsets' has " +
                    std::to_string(offsets.size()) + " entries, expected 2");
      return true;
    case 2:
      depth = 1;
      return finishEntry();
    default:
      depth = 0;
      return true;
    }
  }

  void beginEntry() {
    inMetadata = entryName == "__metadata__";
    field = Field::Unknown;
    hasDtype = hasShape = hasOffsets = false;
    dtypeText.clear();
    shape.clear();
    offsets.clear();
  }

  bool finishEntry() {
    if (inMetadata) {
      inMetadata = false;
      return true;
    }
    std::string label = entryLabel();
    if (!hasDtype)
      return fail(label + " has no 'dtype'");
    if (!hasShape)
      return fail(label + " has no 'shape'");
    if (!hasOffsets)
      return fail(label + " has no 'data_offsets'");
    std::optional<DType> dtype = parseDType(dtypeText);
    if (!dtype)
      return fail(label + " has unknown dtype " + quoteName(dtypeText));

    uint64_t begin = offsets[0], end = offsets[1];
    std::string range =
        "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
    if (end < begin)
      return fail(label + " has data_offsets " + range +
                  " that end before they begin");
    if (end > dataSize)
      return fail(label + " data " + range +
                  " is outside the data section of " +
                  std::to_string(dataSize) + " bytes");

    std::optional<int64_t> count = checkedNumElements(shape);
    uint64_t bytes;
    if (!count || __builtin_mul_overflow(static_cast<uint64_t>(*count),
                                         static_cast<uint64_t>(dtypeSize(*dtype)),
                                         &bytes))
      return fail(label + " shape " + formatShape(shape) +
                  " has too many elements");
    if (bytes != end - begin)
      return fail(label + " data " + range + " is " +
                  std::to_string(end - begin) + " bytes, but shape " +
                  formatShape(shape) + " of " + dtypeName(*dtype) + " needs " +
                  std::to_string(bytes));

    TensorInfo info;
    info.name = entryName;
    info.dtype = *dtype;
    info.shape = shape;
    info.begin = begin;
    info.end = end;
    tensors.push_back(std::move(info));
    return true;
  }

  uint64_t dataSize;
  bool failed = false;
  int depth = 0;
  int skipDepth = 0; // > 0 inside the nested value of an ignored key.
  bool sawTop = false;
  std::unordered_set<std::string> seenNames;

  // The entry being read.
  std::string entryName;
  bool inMetadata = false;
  std::string metadataKey;
  Field field = Field::Unknown;
  bool hasDtype = false, hasShape = false, hasOffsets = false;
  std::string dtypeText;
  std::vector<int64_t> shape;
  std::vector<uint64_t> offsets;
};
} // namespace

/// Returns an error naming two overlapping tensors, or "" if none overlap.
static std::string findOverlap(const std::vector<TensorInfo> &tensors) {
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (tensors[a].begin != tensors[b].begin)
      return tensors[a].begin < tensors[b].begin;
    return tensors[a].end < tensors[b].end;
  });
  // Empty tensors occupy no bytes and overlap nothing.
  const TensorInfo *reach = nullptr; // Non-empty tensor ending furthest.
  for (size_t index : order) {
    const TensorInfo &info = tensors[index];
    if (info.begin == info.end)
      continue;
    if (reach && info.begin < reach->end) {
      auto range = [](const TensorInfo &t) {
        return "[" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
               ")";
      };
      return "tensor " + quoteName(info.name) + " data " + range(info) +
             " overlaps tensor " + quoteName(reach->name) + " " + range(*reach);
    }
    if (!reach || info.end > reach->end)
      reach = &info;
  }
  return "";
}

SafeTensorsFile::~SafeTensorsFile() = default;

std::unique_ptr<SafeTensorsFile>
SafeTensorsFile::parse(const uint8_t *data, size_t size,
                       const std::string &displayName, std::string *error) {
  auto fail = [&](const std::string &message) {
    if (error)
      *error = displayName + ": " + message;
    return nullptr;
  };
  if (!data && size != 0)
    return fail("no data");
  if (size < 8)
    return fail("file is " + std::to_string(size) +
                " bytes, too short for the 8-byte header length");

  uint64_t headerLength = 0;
  for (int i = 7; i >= 0; --i)
    headerLength = (headerLength << 8) | data[i];
  uint64_t available = static_cast<uint64_t>(size) - 8;
  if (headerLength > available)
    return fail("header length " + std::to_string(headerLength) +
                " runs past the end of the file (" + std::to_string(size) +
                " bytes)");
  if (headerLength > kMaxHeaderSize)
    return fail("header length " + std::to_string(headerLength) +
                " is larger than the limit of " +
                std::to_string(kMaxHeaderSize) + " bytes");

  const uint8_t *header = data + 8;
  if (std::optional<size_t> bad = findInvalidUtf8(header, headerLength)) {
    static const char hex[] = "0123456789abcdef";
    uint8_t byte = header[*bad];
    return fail(std::string("header is not valid UTF-8 (byte 0x") +
                hex[byte >> 4] + hex[byte & 15] + " at file offset " +
                std::to_string(8 + *bad) + ")");
  }

  uint64_t dataLength = available - headerLength;
  HeaderHandler handler(dataLength);
  const char *text = reinterpret_cast<const char *>(header);
  bool ok = json::sax_parse(text, text + headerLength, &handler,
                            nlohmann::detail::input_format_t::json,
                            /*strict=*/true, /*ignore_comments=*/false);
  if (!handler.error.empty())
    return fail(handler.error);
  if (!ok || !handler.sawTopLevelObject())
    return fail("header is not a valid JSON object");
  std::string overlap = findOverlap(handler.tensors);
  if (!overlap.empty())
    return fail(overlap);

  std::unique_ptr<SafeTensorsFile> file(new SafeTensorsFile());
  file->name = displayName;
  file->dataSection = header + headerLength;
  file->headerLength = headerLength;
  file->dataLength = dataLength;
  file->tensorList = std::move(handler.tensors);
  file->metadataMap = std::move(handler.metadata);
  file->indexByName.reserve(file->tensorList.size());
  for (size_t i = 0; i < file->tensorList.size(); ++i)
    file->indexByName.emplace(file->tensorList[i].name, i);
  return file;
}

std::unique_ptr<SafeTensorsFile> SafeTensorsFile::open(const std::string &path,
                                                       std::string *error) {
  std::unique_ptr<MappedFile> mapping = MappedFile::open(path, error);
  if (!mapping)
    return nullptr;
  std::unique_ptr<SafeTensorsFile> file =
      parse(mapping->data(), mapping->size(), path, error);
  if (!file)
    return nullptr;
  file->mapping = std::move(mapping);
  return file;
}

const TensorInfo *SafeTensorsFile::find(std::string_view name) const {
  auto it = indexByName.find(std::string(name));
  return it == indexByName.end() ? nullptr : &tensorList[it->second];
}

bool optmlir::writeSafeTensors(
    const std::string &path, const std::vector<TensorToWrite> &tensors,
    const std::map<std::string, std::string> &metadata, std::string &error) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty())
    header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::vector<uint64_t> sizes;
  for (const TensorToWrite &t : tensors) {
    std::optional<int64_t> count = checkedNumElements(t.shape);
    if (!count || (*count > 0 && !t.data)) {
      error = path + ": tensor '" + t.name + "' has an invalid shape " +
              formatShape(t.shape) + " or no data";
      return false;
    }
    uint64_t bytes = uint64_t(*count) * dtypeSize(t.dtype);
    header[t.name] = {{"dtype", dtypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    sizes.push_back(bytes);
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' '); // data starts 8-aligned
  std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    uint64_t length = text.size();
    uint8_t prefix[8];
    for (int i = 0; i < 8; ++i)
      prefix[i] = uint8_t(length >> (8 * i));
    out.write(reinterpret_cast<const char *>(prefix), 8);
    out.write(text.data(), std::streamsize(text.size()));
    for (size_t i = 0; i < tensors.size(); ++i)
      out.write(static_cast<const char *>(tensors[i].data),
                std::streamsize(sizes[i]));
    out.close();
    if (!out) {
      std::remove(temporary.c_str());
      error = path + ": cannot write the file";
      return false;
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    error = path + ": cannot move the finished file into place";
    return false;
  }
  return true;
}
