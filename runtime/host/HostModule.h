//===- HostModule.h - Loaded host (x86-64) kernel code ----------*- C++ -*-===//
//
// Loads the ELF shared object that the compiler's host code generation puts
// in an artifact, straight from memory: the bytes go to an anonymous memfd
// that is dlopen'ed through /proc/self/fd, so nothing is written to the
// working directory (when memfd_create is unavailable, a private temporary
// file is used and unlinked right after loading). No MLIR or LLVM here.
//
//===----------------------------------------------------------------------===//

#ifndef OPTMLIR_RUNTIME_HOST_HOSTMODULE_H
#define OPTMLIR_RUNTIME_HOST_HOSTMODULE_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace optrt {

class HostModule {
public:
  /// Loads `size` bytes of an x86-64 ELF shared object (the caller may free
  /// them afterwards). Symbols are resolved now (RTLD_NOW) and stay local to
  /// this module. Returns null and sets `*error` (when not null) to one line
  /// on failure: not ELF, wrong class or machine, not a shared object, or the
  /// dynamic loader's message.
  static std::unique_ptr<HostModule> load(const uint8_t *data, size_t size,
                                          std::string *error);

  /// Unloads the code: pointers from lookup() are invalid afterwards.
  ~HostModule();

  HostModule(const HostModule &) = delete;
  HostModule &operator=(const HostModule &) = delete;

  /// Address of an exported symbol, or null when there is none. Kernels with
  /// `llvm.emit_c_interface` are exported as `_mlir_ciface_NAME` and take
  /// MemRefDescriptor pointers (runtime/host/MemRef.h).
  void *lookup(const std::string &symbol) const;

  /// lookup() cast to a function pointer type, e.g.
  /// `lookupFunction<void(MemRefDescriptor<float, 1> *)>("_mlir_ciface_f")`.
  template <typename F> F *lookupFunction(const std::string &symbol) const {
    return reinterpret_cast<F *>(lookup(symbol));
  }

private:
  HostModule(void *handle, int fd) : handle(handle), fd(fd) {}

  void *handle;
  // Kept open while loaded (and for good if the object cannot be unloaded):
  // the loader knows the module by the name /proc/self/fd/N, and a reused N
  // would make a later dlopen return this one.
  int fd;
};

} // namespace optrt

#endif // OPTMLIR_RUNTIME_HOST_HOSTMODULE_H
