/* Test fixture for HostModuleTest: a shared object with the same entry-point
 * shape as generated kernels (_mlir_ciface_NAME over memref descriptors). */
#include <stdint.h>

typedef struct {
  float *allocated;
  float *aligned;
  int64_t offset;
  int64_t sizes[1];
  int64_t strides[1];
} MemRef1DF32;

static int counter = 0;

int fixture_counter(void) { return ++counter; }

void _mlir_ciface_scale(MemRef1DF32 *in, MemRef1DF32 *out, float factor) {
  for (int64_t i = 0; i < in->sizes[0]; ++i)
    out->aligned[out->offset + i * out->strides[0]] =
        factor * in->aligned[in->offset + i * in->strides[0]];
}
