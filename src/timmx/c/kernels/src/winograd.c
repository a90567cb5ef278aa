/* Drivers layer: Winograd F(4x4, 3x3) convolution (stub). Strict C99. */
#include "internal/txk_internal.h"

size_t txk_winograd_packed_floats(const txk_conv2d_desc* d) {
  (void)d;
  return 0;
}

size_t txk_winograd_scratch_floats(const txk_conv2d_desc* d) {
  (void)d;
  return 0;
}

int txk_conv2d_winograd(const txk_context* ctx, const txk_conv2d_desc* d, const float* x,
                        const float* w, float* y, const float* r, void* scratch) {
  (void)ctx;
  (void)d;
  (void)x;
  (void)w;
  (void)y;
  (void)r;
  (void)scratch;
  return TXK_EUNSUPPORTED;
}
