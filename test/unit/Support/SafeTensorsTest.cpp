//===- SafeTensorsTest.cpp - Tests for the safetensors reader -------------===//

#include "optmlir/Support/MappedFile.h"
#include "optmlir/Support/SafeTensors.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

using namespace optmlir;

namespace {

/// 8-byte little-endian length, header, data. `length` overrides the length.
std::string buildFile(const std::string &header, const std::string &data = "",
                      std::optional<uint64_t> length = std::nullopt) {
  uint64_t n = length.value_or(header.size());
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i)
    bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return bytes + header + data;
}

std::unique_ptr<SafeTensorsFile> parseBytes(const std::string &bytes,
                                            std::string &error) {
  return SafeTensorsFile::parse(reinterpret_cast<const uint8_t *>(bytes.data()),
                                bytes.size(), "test.safetensors", &error);
}

/// Parses header + data and expects an error containing `expected`.
void expectError(const std::string &bytes, const std::string &expected) {
  std::string error;
  std::unique_ptr<SafeTensorsFile> file = parseBytes(bytes, error);
  EXPECT_EQ(file, nullptr) << "parsed, expected error: " << expected;
  EXPECT_NE(error.find(expected), std::string::npos)
      << "error: " << error << "\nexpected: " << expected;
  EXPECT_EQ(error.rfind("test.safetensors: ", 0), 0u) << error;
  EXPECT_EQ(error.find('\n'), std::string::npos) << error;
}

void expectHeaderError(const std::string &header, const std::string &data,
                       const std::string &expected) {
  SCOPED_TRACE(header);
  expectError(buildFile(header, data), expected);
}

/// A well-formed file: tensors packed in order, data bytes 0, 1, 2, ...
struct Writer {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::string data;

  Writer &metadata(const std::string &key, const std::string &value) {
    header["__metadata__"][key] = value;
    return *this;
  }
  Writer &tensor(const std::string &name, const std::string &dtype,
                 std::vector<int64_t> shape, size_t elementSize) {
    size_t count = 1;
    for (int64_t d : shape)
      count *= d;
    size_t begin = data.size();
    for (size_t i = 0; i < count * elementSize; ++i)
      data.push_back(static_cast<char>(i & 0xff));
    header[name] = {{"dtype", dtype},
                    {"shape", shape},
                    {"data_offsets", {begin, data.size()}}};
    return *this;
  }
  std::string bytes() const { return buildFile(header.dump(), data); }
};

class TempDir {
public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "optmlir-st-XXXXXX").string();
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    if (mkdtemp(buffer.data()))
      path = buffer.data();
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty())
      std::filesystem::remove_all(path, ec);
  }
  std::string write(const std::string &name, const std::string &bytes) const {
    std::string file = path + "/" + name;
    std::ofstream out(file, std::ios::binary);
    out.write(bytes.data(), bytes.size());
    return file;
  }
  std::string path;
};

} // namespace

TEST(DType, NamesAndSizes) {
  struct Case {
    DType dtype;
    const char *name;
    size_t size;
  } cases[] = {{DType::BF16, "BF16", 2},       {DType::F16, "F16", 2},
               {DType::F32, "F32", 4},         {DType::F64, "F64", 8},
               {DType::I8, "I8", 1},           {DType::U8, "U8", 1},
               {DType::I16, "I16", 2},         {DType::I32, "I32", 4},
               {DType::I64, "I64", 8},         {DType::BOOL, "BOOL", 1},
               {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1}};
  for (const Case &c : cases) {
    EXPECT_STREQ(dtypeName(c.dtype), c.name);
    EXPECT_EQ(dtypeSize(c.dtype), c.size) << c.name;
    EXPECT_EQ(parseDType(c.name), c.dtype) << c.name;
  }
  EXPECT_EQ(parseDType("bf16"), std::nullopt);
  EXPECT_EQ(parseDType("U16"), std::nullopt);
  EXPECT_EQ(parseDType(""), std::nullopt);
}

TEST(TensorInfo, NumElements) {
  TensorInfo info;
  EXPECT_EQ(info.numElements(), 1); // A scalar.
  info.shape = {3, 0, 5};
  EXPECT_EQ(info.numElements(), 0);
  info.shape = {8192, 384};
  EXPECT_EQ(info.numElements(), 8192 * 384);
  info.shape = {int64_t(1) << 40, int64_t(1) << 40};
  EXPECT_EQ(info.numElements(), -1);
  EXPECT_EQ(formatShape({8192, 384}), "[8192, 384]");
  EXPECT_EQ(formatShape({}), "[]");
}

TEST(SafeTensors, ValidFileParses) {
  Writer w;
  w.metadata("format", "pt")
      .tensor("b.weight", "BF16", {4, 3}, 2)
      .tensor("a.bias", "F32", {3}, 4)
      .tensor("scalar", "I64", {}, 8)
      .tensor("flags", "BOOL", {2}, 1)
      .tensor("fp8", "F8_E4M3", {2, 2}, 1);
  std::string bytes = w.bytes();
  std::string error;
  std::unique_ptr<SafeTensorsFile> file = parseBytes(bytes, error);
  ASSERT_NE(file, nullptr) << error;
  EXPECT_EQ(file->displayName(), "test.safetensors");
  ASSERT_EQ(file->tensors().size(), 5u);
  // Header order, not alphabetical.
  EXPECT_EQ(file->tensors()[0].name, "b.weight");
  EXPECT_EQ(file->tensors()[1].name, "a.bias");
  EXPECT_EQ(file->tensors()[4].name, "fp8");
  const TensorInfo *bias = file->find("a.bias");
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(bias->dtype, DType::F32);
  EXPECT_EQ(bias->shape, std::vector<int64_t>({3}));
  EXPECT_EQ(bias->begin, 24u);
  EXPECT_EQ(bias->end, 36u);
  EXPECT_EQ(bias->numElements(), 3);
  EXPECT_EQ(bias->byteSize(), 12u);
  const TensorInfo *scalar = file->find("scalar");
  ASSERT_NE(scalar, nullptr);
  EXPECT_EQ(scalar->numElements(), 1);
  EXPECT_EQ(file->find("missing"), nullptr);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_EQ(file->dataOffset(), 8 + file->headerSize());
  EXPECT_EQ(file->dataSize(), w.data.size());
  // Zero-copy: data pointers point into the buffer.
  const uint8_t *base = reinterpret_cast<const uint8_t *>(bytes.data());
  EXPECT_EQ(file->tensorData(*bias), base + file->dataOffset() + 24);
  EXPECT_EQ(file->tensorData(*bias)[1], 1);
}

TEST(SafeTensors, EdgeCasesThatAreValid) {
  std::string error;
  // No tensors at all.
  EXPECT_NE(parseBytes(buildFile("{}"), error), nullptr) << error;
  // Space padding after the JSON, as writers align the data section.
  EXPECT_NE(parseBytes(buildFile("{}      "), error), nullptr) << error;
  // Empty tensors occupy no bytes and may share an offset with others.
  EXPECT_NE(parseBytes(buildFile(R"({"e":{"dtype":"F32","shape":[0,4],"data_offsets":[2,2]},)"
                                 R"("x":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}})",
                                 "abcd"),
                       error),
            nullptr)
      << error;
  // Holes in the data section are tolerated; unknown keys are ignored, even
  // nested ones.
  // The buffer must outlive the parsed file, which points into it.
  std::string holey =
      buildFile(R"({"x":{"dtype":"U8","shape":[1],"data_offsets":[3,4],)"
                R"("extra":{"a":[[1,{"b":null}]]}}})",
                "abcd");
  auto file = parseBytes(holey, error);
  ASSERT_NE(file, nullptr) << error;
  EXPECT_EQ(file->tensorData(file->tensors()[0])[0], 'd');
  // UTF-8 names are fine.
  EXPECT_NE(parseBytes(buildFile("{\"caf\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[1],"
                                 "\"data_offsets\":[0,1]}}",
                                 "a"),
                       error),
            nullptr)
      << error;
}

TEST(SafeTensors, FileTooShort) {
  expectError("", "file is 0 bytes, too short");
  expectError(std::string(7, '\0'), "file is 7 bytes, too short");
  std::string error;
  EXPECT_EQ(SafeTensorsFile::parse(nullptr, 0, "null.safetensors", &error),
            nullptr);
  EXPECT_NE(error.find("too short"), std::string::npos) << error;
}

TEST(SafeTensors, HeaderLength) {
  expectError(buildFile("{}", "", 3), "header length 3 runs past the end of "
                                      "the file (10 bytes)");
  expectError(buildFile("{}", "", ~uint64_t(0)),
              "header length 18446744073709551615 runs past the end");
  // A length within the file but beyond the sanity limit.
  uint64_t big = SafeTensorsFile::kMaxHeaderSize + 1;
  std::string bytes = buildFile(std::string(big, ' '), "", big);
  expectError(bytes, "header length 100000001 is larger than the limit");
}

TEST(SafeTensors, HeaderNotJsonObject) {
  expectHeaderError("", "", "header is not valid JSON");
  expectHeaderError("{not json", "", "header is not valid JSON");
  expectHeaderError("{} x", "", "header is not valid JSON");
  expectHeaderError("{\"a\":{}", "", "header is not valid JSON");
  expectHeaderError("[1, 2]", "", "header is an array, expected a JSON object");
  expectHeaderError("42", "", "header is an integer, expected a JSON object");
  expectHeaderError("\"x\"", "", "header is a string, expected a JSON object");
}

TEST(SafeTensors, HeaderNotUtf8) {
  expectHeaderError("{\"\xff\":{}}", "", "header is not valid UTF-8 (byte 0xff at file offset 10)");
  // Overlong encoding of '/'.
  expectHeaderError("{\"\xc0\xaf\":{}}", "", "not valid UTF-8 (byte 0xc0");
  // UTF-16 surrogate encoded in UTF-8.
  expectHeaderError("{\"\xed\xa0\x80\":{}}", "", "not valid UTF-8 (byte 0xed");
  // Truncated sequence at the end.
  expectHeaderError("{}\xe2\x82", "", "not valid UTF-8");
}

TEST(SafeTensors, EntryFieldsMissingOrWrongType) {
  expectHeaderError(R"({"t":{"shape":[1],"data_offsets":[0,1]}})", "a",
                    "tensor 't' has no 'dtype'");
  expectHeaderError(R"({"t":{"dtype":"U8","data_offsets":[0,1]}})", "a",
                    "tensor 't' has no 'shape'");
  expectHeaderError(R"({"t":{"dtype":"U8","shape":[1]}})", "a",
                    "tensor 't' has no 'data_offsets'");
  expectHeaderError(R"({"t":[1]})", "", "entry 't' is an array, expected an object");
  expectHeaderError(R"({"t":"x"})", "", "entry 't' is a string, expected an object");
  expectHeaderError(R"({"t":{"dtype":5,"shape":[1],"data_offsets":[0,1]}})", "a",
                    "tensor 't': 'dtype' is an integer, expected a string");
  expectHeaderError(R"({"t":{"dtype":["U8"],"shape":[1],"data_offsets":[0,1]}})",
                    "a", "tensor 't': 'dtype' is an array, expected a string");
  expectHeaderError(R"({"t":{"dtype":"U8","shape":"1","data_offsets":[0,1]}})", "a",
                    "tensor 't': 'shape' is a string, expected an array");
  expectHeaderError(R"({"t":{"dtype":"U8","shape":{},"data_offsets":[0,1]}})", "a",
                    "tensor 't': 'shape' is an object, expected an array");
  expectHeaderError(R"({"t":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}})",
                    "a",
                    "tensor 't': 'shape' element is a floating-point number, "
                    "expected an integer");
  expectHeaderError(R"({"t":{"dtype":"U8","shape":[[1]],"data_offsets":[0,1]}})",
                    "a", "tensor 't': 'shape' element is an array");
  expectHeaderError(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,null]}})",
                    "a", "tensor 't': 'data_offsets' element is null");
  expectHeaderError(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "a",
                    "tensor 't': 'data_offsets' has 1 entries, expected 2");
  expectHeaderError(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}})",
                    "a", "'data_offsets' has more than 2 entries");
  expectHeaderError(R"({"t":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})",
                    "a", "tensor 't' has duplicate key 'dtype'");
}

TEST(SafeTensors, Metadata) {
  expectHeaderError(R"({"__metadata__":{"format":1}})", "",
                    "__metadata__ value for key 'format' is an integer, "
                    "expected a string");
  expectHeaderError(R"({"__metadata__":{"format":{"a":"b"}}})", "",
                    "__metadata__ value for key 'format' is an object");
  expectHeaderError(R"({"__metadata__":"pt"})", "",
                    "entry '__metadata__' is a string, expected an object");
  expectHeaderError(R"({"__metadata__":{"a":"1","a":"2"}})", "",
                    "__metadata__ has duplicate key 'a'");
  expectHeaderError(R"({"__metadata__":{},"__metadata__":{}})", "",
                    "duplicate __metadata__");
}

TEST(SafeTensors, DTypeAndShape) {
  expectHeaderError(R"({"t":{"dtype":"U16","shape":[1],"data_offsets":[0,2]}})",
                    "ab", "tensor 't' has unknown dtype 'U16'");
  expectHeaderError(R"({"t":{"dtype":"bf16","shape":[1],"data_offsets":[0,2]}})",
                    "ab", "unknown dtype 'bf16'");
  expectHeaderError(R"({"t":{"dtype":"U8","shape":[2,-1],"data_offsets":[0,2]}})",
                    "ab", "tensor 't' has negative dimension -1 in its shape");
  expectHeaderError(
      R"({"t":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,2]}})",
      "ab", "dimension 9223372036854775808 that overflows int64");
  expectHeaderError(
      R"({"t":{"dtype":"U8","shape":[99999999999999999999],"data_offsets":[0,2]}})",
      "ab", "'shape' element is a floating-point number");
  expectHeaderError(
      R"({"t":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,2]}})",
      "ab", "tensor 't' shape [4294967296, 4294967296] has too many elements");
  // Fits in int64 elements, but not in bytes.
  expectHeaderError(
      R"({"t":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,2]}})",
      "ab", "has too many elements");
  std::string rank = "[";
  for (int i = 0; i < 65; ++i)
    rank += i ? ",1" : "1";
  rank += "]";
  expectHeaderError(R"({"t":{"dtype":"U8","shape":)" + rank +
                        R"(,"data_offsets":[0,1]}})",
                    "a", "tensor 't' has more than 64 dimensions");
}

TEST(SafeTensors, Offsets) {
  expectHeaderError(R"({"t":{"dtype":"U8","shape":[2],"data_offsets":[-1,1]}})",
                    "ab", "tensor 't' has negative data offset -1");
  expectHeaderError(R"({"t":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})",
                    "ab",
                    "tensor 't' data [1, 3) is outside the data section of 2 bytes");
  expectHeaderError(
      R"({"t":{"dtype":"U8","shape":[2],"data_offsets":[0,18446744073709551615]}})",
      "ab", "is outside the data section");
  expectHeaderError(R"({"t":{"dtype":"U8","shape":[0],"data_offsets":[2,1]}})",
                    "ab", "tensor 't' has data_offsets [2, 1) that end before "
                          "they begin");
  expectHeaderError(R"({"t":{"dtype":"BF16","shape":[2],"data_offsets":[0,2]}})",
                    "ab",
                    "tensor 't' data [0, 2) is 2 bytes, but shape [2] of BF16 "
                    "needs 4");
  expectHeaderError(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,2]}})",
                    "ab", "is 2 bytes, but shape [1] of U8 needs 1");
}

TEST(SafeTensors, OverlapsAndDuplicates) {
  expectHeaderError(
      R"({"model.layers.3.mlp.up_proj.weight":{"dtype":"U8","shape":[1000],"data_offsets":[1024,2024]},)"
      R"("b":{"dtype":"U8","shape":[1500],"data_offsets":[1500,3000]}})",
      std::string(3000, 'x'),
      "tensor 'b' data [1500, 3000) overlaps tensor "
      "'model.layers.3.mlp.up_proj.weight' [1024, 2024)");
  // Containment counts, whatever the header order.
  expectHeaderError(
      R"({"inner":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)"
      R"("outer":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})",
      "abcdefgh", "tensor 'inner' data [2, 4) overlaps tensor 'outer' [0, 8)");
  // An identical range.
  expectHeaderError(
      R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
      R"("b":{"dtype":"I16","shape":[1],"data_offsets":[0,2]}})",
      "ab", "overlaps tensor");
  // A tensor overlapping an earlier, longer one that is not its neighbour.
  expectHeaderError(
      R"({"long":{"dtype":"U8","shape":[10],"data_offsets":[0,10]},)"
      R"("short":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},)"
      R"("late":{"dtype":"U8","shape":[2],"data_offsets":[8,10]}})",
      std::string(10, 'x'), "overlaps tensor 'long'");
  expectHeaderError(
      R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
      R"("t":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
      "ab", "duplicate tensor 't'");
}

TEST(SafeTensors, HostileNamesStayOnOneLine) {
  // A JSON-escaped newline and control byte in a tensor name.
  expectHeaderError(R"({"a\nb\u0001":{"dtype":"U16","shape":[1],"data_offsets":[0,2]}})",
                    "ab", "tensor 'a\\x0ab\\x01' has unknown dtype");
  std::string longName(1000, 'n');
  std::string bytes = buildFile("{\"" + longName + "\":5}");
  std::string error;
  EXPECT_EQ(parseBytes(bytes, error), nullptr);
  EXPECT_LT(error.size(), 300u) << error;
}

TEST(SafeTensors, DeepNestingIsNotACrash) {
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  std::string error;
  // Deep values under unknown keys are skipped.
  EXPECT_NE(parseBytes(buildFile(R"({"t":{"dtype":"U8","shape":[1],)"
                                 R"("data_offsets":[0,1],"x":)" +
                                     deep + "}}",
                                 "a"),
                       error),
            nullptr)
      << error;
  expectHeaderError(deep, "", "header is an array");
  expectHeaderError(R"({"t":{"dtype":"U8","shape":)" + deep + "}}", "",
                    "'shape' element is an array");
  // Unbalanced nesting is a syntax error, not a stack overflow.
  expectHeaderError("{\"t\":{\"x\":" + std::string(200000, '['), "",
                    "header is not valid JSON");
}

TEST(SafeTensors, OpenFromDisk) {
  TempDir dir;
  ASSERT_FALSE(dir.path.empty());
  Writer w;
  w.tensor("w", "F16", {2, 2}, 2);
  std::string path = dir.write("ok.safetensors", w.bytes());
  std::string error;
  std::unique_ptr<SafeTensorsFile> file = SafeTensorsFile::open(path, &error);
  ASSERT_NE(file, nullptr) << error;
  EXPECT_EQ(file->displayName(), path);
  ASSERT_NE(file->find("w"), nullptr);
  EXPECT_EQ(file->tensorData(*file->find("w"))[3], 3);

  std::string empty = dir.write("empty.safetensors", "");
  EXPECT_EQ(SafeTensorsFile::open(empty, &error), nullptr);
  EXPECT_EQ(error, empty + ": file is 0 bytes, too short for the 8-byte "
                           "header length");

  EXPECT_EQ(SafeTensorsFile::open(dir.path + "/nope.safetensors", &error),
            nullptr);
  EXPECT_EQ(error, dir.path + "/nope.safetensors: cannot open: No such file "
                              "or directory");

  EXPECT_EQ(SafeTensorsFile::open(dir.path, &error), nullptr);
  EXPECT_EQ(error, dir.path + ": not a regular file");

  std::string bad = dir.write("bad.safetensors", buildFile("{\"t\":1}"));
  EXPECT_EQ(SafeTensorsFile::open(bad, &error), nullptr);
  EXPECT_EQ(error, bad + ": entry 't' is an integer, expected an object");
  // A null error pointer is allowed.
  EXPECT_EQ(SafeTensorsFile::open(bad, nullptr), nullptr);
}

TEST(MappedFile, EmptyAndMissing) {
  TempDir dir;
  std::string empty = dir.write("empty", "");
  std::string error;
  std::unique_ptr<MappedFile> mapped = MappedFile::open(empty, &error);
  ASSERT_NE(mapped, nullptr) << error;
  EXPECT_EQ(mapped->size(), 0u);
  EXPECT_NE(mapped->data(), nullptr);
  EXPECT_EQ(mapped->path(), empty);

  std::string text = dir.write("text", "hello");
  mapped = MappedFile::open(text, &error);
  ASSERT_NE(mapped, nullptr) << error;
  ASSERT_EQ(mapped->size(), 5u);
  EXPECT_EQ(std::memcmp(mapped->data(), "hello", 5), 0);

  EXPECT_EQ(MappedFile::open(dir.path + "/missing", &error), nullptr);
  EXPECT_NE(error.find("missing: cannot open: No such file"),
            std::string::npos)
      << error;
}

TEST(SafeTensors, RealDraftCheckpoint) {
  std::string path =
      std::string(OPTMLIR_SHARED_MODELS_DIR) + "/draft/model.safetensors";
  if (!std::filesystem::exists(path))
    GTEST_SKIP() << "shared models not available at " << path;
  std::string error;
  std::unique_ptr<SafeTensorsFile> file = SafeTensorsFile::open(path, &error);
  ASSERT_NE(file, nullptr) << error;
  // 3 global tensors + 9 per layer, 2 layers.
  EXPECT_EQ(file->tensors().size(), 3u + 9u * 2u);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  const TensorInfo *embed = file->find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->dtype, DType::BF16);
  EXPECT_EQ(embed->shape, std::vector<int64_t>({8192, 192}));
  uint64_t total = 0;
  for (const TensorInfo &info : file->tensors())
    total += info.byteSize();
  EXPECT_EQ(total, file->dataSize());
  EXPECT_EQ(file->dataOffset() + file->dataSize(), 7868480u);
}
