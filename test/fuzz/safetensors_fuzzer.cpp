//===- safetensors_fuzzer.cpp - libFuzzer target for SafeTensorsFile ------===//
//
// Any input must either parse into tensors whose data lies inside the buffer,
// or fail with a one-line message naming the file; never crash or hang.
//
// Inputs starting with '{' are "JSON header, NUL, data": the fuzzer gets the
// 8-byte length right for free and spends its time on the header. Other
// inputs are whole files, length prefix included.
//
//===----------------------------------------------------------------------===//

#include "optmlir/Support/SafeTensors.h"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

using namespace optmlir;

static int checkFile(const uint8_t *data, size_t size) {
  std::string error;
  std::unique_ptr<SafeTensorsFile> file =
      SafeTensorsFile::parse(data, size, "fuzz.safetensors", &error);
  if (!file) {
    if (error.rfind("fuzz.safetensors: ", 0) != 0 ||
        error.find('\n') != std::string::npos)
      abort();
    return 0;
  }
  // Touch the first and last byte of every tensor so that ASan checks the
  // validated ranges, and check the invariants the parser promises.
  unsigned sum = 0;
  for (const TensorInfo &info : file->tensors()) {
    int64_t count = info.numElements();
    if (count < 0 || info.end < info.begin || info.end > file->dataSize() ||
        static_cast<uint64_t>(count) * dtypeSize(info.dtype) != info.byteSize())
      abort();
    if (file->find(info.name) == nullptr)
      abort();
    if (info.byteSize() == 0)
      continue;
    const uint8_t *bytes = file->tensorData(info);
    if (bytes < data || bytes + info.byteSize() > data + size)
      abort();
    sum += bytes[0] + bytes[info.byteSize() - 1];
  }
  for (const auto &[key, value] : file->metadata())
    sum += key.size() + value.size();
  volatile unsigned sink = sum;
  (void)sink;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0 || data[0] != '{')
    return checkFile(data, size);
  size_t headerSize = 0;
  while (headerSize < size && data[headerSize] != 0)
    ++headerSize;
  std::vector<uint8_t> file(8);
  for (int i = 0; i < 8; ++i)
    file[i] = static_cast<uint8_t>((uint64_t(headerSize) >> (8 * i)) & 0xff);
  file.insert(file.end(), data, data + headerSize);
  if (headerSize < size)
    file.insert(file.end(), data + headerSize + 1, data + size);
  return checkFile(file.data(), file.size());
}
