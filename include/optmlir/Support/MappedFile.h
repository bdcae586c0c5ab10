//===- MappedFile.h - Read-only memory map of a whole file ------*- C++ -*-===//
//
// Checkpoints are gigabytes: they are mapped, never read into memory, so that
// the page cache is shared between processes and nothing is copied.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_SUPPORT_MAPPEDFILE_H
#define OPTMLIR_SUPPORT_MAPPEDFILE_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace optmlir {

/// A read-only, private mapping of a whole regular file, unmapped on
/// destruction. An empty file maps to a non-null pointer with size 0.
/// If another process truncates the file while it is mapped, reads past the
/// new end fault (SIGBUS): checkpoints are treated as immutable.
class MappedFile {
public:
  /// Maps `path`. On failure returns nullptr and sets `*error` (if non-null)
  /// to one line naming the path and the system's reason.
  static std::unique_ptr<MappedFile> open(const std::string &path,
                                          std::string *error);

  ~MappedFile();
  MappedFile(const MappedFile &) = delete;
  MappedFile &operator=(const MappedFile &) = delete;

  const uint8_t *data() const { return bytes; }
  size_t size() const { return length; }
  const std::string &path() const { return filePath; }

private:
  MappedFile(std::string path, const uint8_t *bytes, size_t length,
             bool mapped);

  std::string filePath;
  const uint8_t *bytes;
  size_t length;
  bool mapped; // false for empty files, which mmap refuses.
};

} // namespace optmlir

#endif // OPTMLIR_SUPPORT_MAPPEDFILE_H
