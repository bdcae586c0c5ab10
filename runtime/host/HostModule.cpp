//===- HostModule.cpp - Loaded host (x86-64) kernel code ------------------===//

#include "runtime/host/HostModule.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace optrt {

namespace {

void setError(std::string *error, const std::string &message) {
  if (error)
    *error = "cannot load host kernels: " + message;
}

/// Rejects what dlopen would reject with a less helpful message (or, for a
/// foreign architecture, accept and crash later).
bool checkElfHeader(const uint8_t *data, size_t size, std::string *error) {
  if (!data || size < sizeof(Elf64_Ehdr) ||
      std::memcmp(data, ELFMAG, SELFMAG) != 0) {
    setError(error, "not an ELF file (" + std::to_string(size) + " bytes)");
    return false;
  }
  Elf64_Ehdr header;
  std::memcpy(&header, data, sizeof(header));
  if (header.e_ident[EI_CLASS] != ELFCLASS64 ||
      header.e_ident[EI_DATA] != ELFDATA2LSB) {
    setError(error, "not a 64-bit little-endian ELF file");
    return false;
  }
  if (header.e_type != ET_DYN) {
    setError(error, "ELF file is not a shared object (e_type " +
                        std::to_string(header.e_type) + ")");
    return false;
  }
  if (header.e_machine != EM_X86_64) {
    setError(error, "ELF shared object is not for x86-64 (e_machine " +
                        std::to_string(header.e_machine) + ")");
    return false;
  }
  return true;
}

bool writeAll(int fd, const uint8_t *data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

std::string procPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

std::string lastDlError() {
  const char *message = ::dlerror();
  return message ? message : "unknown dlopen error";
}

constexpr int kDlopenFlags = RTLD_NOW | RTLD_LOCAL;

/// Loads through an anonymous memory file. Returns the handle and sets `fd`
/// (kept open), or null with `message` set.
void *loadFromMemfd(const uint8_t *data, size_t size, int &fd,
                    std::string &message) {
  fd = ::memfd_create("optmlir-host-kernels", MFD_CLOEXEC);
  if (fd < 0) {
    message = std::string("memfd_create: ") + std::strerror(errno);
    return nullptr;
  }
  if (!writeAll(fd, data, size)) {
    message = std::string("writing to memfd: ") + std::strerror(errno);
    ::close(fd);
    fd = -1;
    return nullptr;
  }
  void *handle = ::dlopen(procPath(fd).c_str(), kDlopenFlags);
  if (!handle) {
    message = lastDlError();
    ::close(fd);
    fd = -1;
  }
  return handle;
}

/// Loads through a private temporary file, unlinked as soon as it is loaded.
void *loadFromTempFile(const uint8_t *data, size_t size, int &fd,
                       std::string &message) {
  const char *tmpDir = std::getenv("TMPDIR");
  std::string path =
      std::string(tmpDir && *tmpDir ? tmpDir : "/tmp") + "/optmlir-host-XXXXXX";
  fd = ::mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) {
    message = "creating " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  void *handle = nullptr;
  if (!writeAll(fd, data, size)) {
    message = "writing " + path + ": " + std::strerror(errno);
  } else {
    // Prefer the fd path (unique while fd is open); without /proc, the
    // random file name.
    std::string loadPath = procPath(fd);
    if (::access(loadPath.c_str(), R_OK) != 0)
      loadPath = path;
    handle = ::dlopen(loadPath.c_str(), kDlopenFlags);
    if (!handle)
      message = lastDlError();
  }
  ::unlink(path.c_str());
  if (!handle) {
    ::close(fd);
    fd = -1;
  }
  return handle;
}

} // namespace

std::unique_ptr<HostModule> HostModule::load(const uint8_t *data, size_t size,
                                             std::string *error) {
  if (!checkElfHeader(data, size, error))
    return nullptr;
  int fd = -1;
  std::string memfdMessage;
  void *handle = loadFromMemfd(data, size, fd, memfdMessage);
  if (!handle) {
    // memfd can be missing (old kernels) or not executable (sandboxes,
    // vm.memfd_noexec): try a file before giving up.
    std::string fileMessage;
    handle = loadFromTempFile(data, size, fd, fileMessage);
    if (!handle) {
      // The loader's verdict on the bytes is the same either way; report the
      // file attempt only when there was no memfd to try.
      bool noMemfd = memfdMessage.rfind("memfd_create", 0) == 0;
      setError(error, noMemfd ? fileMessage : memfdMessage);
      return nullptr;
    }
  }
  return std::unique_ptr<HostModule>(new HostModule(handle, fd));
}

HostModule::~HostModule() {
  if (handle)
    ::dlclose(handle);
  if (fd < 0)
    return;
  // An object linked with -z nodelete (LLVM's CMake adds it to every shared
  // library) stays loaded under its name /proc/self/fd/N after dlclose; if N
  // were reused by a later load, dlopen would match that name and hand back
  // the stale object. So the fd is released only when the object is gone.
  std::string path = procPath(fd);
  if (void *resident = ::dlopen(path.c_str(), RTLD_LAZY | RTLD_NOLOAD)) {
    ::dlclose(resident);
    return; // keep fd reserved for the life of the process
  }
  ::close(fd);
}

void *HostModule::lookup(const std::string &symbol) const {
  return ::dlsym(handle, symbol.c_str());
}

} // namespace optrt
