//===- MappedFile.cpp - Read-only memory map of a whole file --------------===//

#include "optmlir/Support/MappedFile.h"

#include <cerrno>
#include <fcntl.h>
#include <limits>
#include <sys/mman.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

using namespace optmlir;

static bool fail(std::string *error, const std::string &message) {
  if (error)
    *error = message;
  return false;
}

// std::generic_category().message is thread-safe, unlike strerror.
static std::string errnoText(int err) {
  return std::generic_category().message(err);
}

MappedFile::MappedFile(std::string path, const uint8_t *bytes, size_t length,
                       bool mapped)
    : filePath(std::move(path)), bytes(bytes), length(length), mapped(mapped) {}

MappedFile::~MappedFile() {
  if (mapped)
    ::munmap(const_cast<uint8_t *>(bytes), length);
}

std::unique_ptr<MappedFile> MappedFile::open(const std::string &path,
                                             std::string *error) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    fail(error, path + ": cannot open: " + errnoText(errno));
    return nullptr;
  }

  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail(error, path + ": cannot stat: " + errnoText(err));
    return nullptr;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(error, path + ": not a regular file");
    return nullptr;
  }
  if (st.st_size < 0 ||
      static_cast<uint64_t>(st.st_size) > std::numeric_limits<size_t>::max()) {
    ::close(fd);
    fail(error, path + ": file size " + std::to_string(st.st_size) +
                    " cannot be mapped");
    return nullptr;
  }

  size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    static const uint8_t emptyByte = 0;
    return std::unique_ptr<MappedFile>(
        new MappedFile(path, &emptyByte, 0, /*mapped=*/false));
  }

  void *addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  // The mapping keeps its own reference to the file.
  ::close(fd);
  if (addr == MAP_FAILED) {
    fail(error, path + ": cannot map " + std::to_string(size) +
                    " bytes: " + errnoText(err));
    return nullptr;
  }
  return std::unique_ptr<MappedFile>(new MappedFile(
      path, static_cast<const uint8_t *>(addr), size, /*mapped=*/true));
}
