/*
 * timmx_kernels_gen.h - generic strided kernels used by the timmx C code
 * generator for the ops the main kernel library (timmx_kernels.h) does not
 * cover: N-d strided copies (layout changes, concat, pad), broadcasting
 * binary ops, unary math and reductions over arbitrary axes.
 *
 * Conventions: float32; shapes and strides are in elements (floats), rank
 * <= TXG_MAX_DIMS; a stride of 0 broadcasts. All memory is caller-owned, no
 * function allocates or keeps state. Functions return 0 (TXK_OK) or
 * TXK_EINVAL. These are portable C99 loops: the generator only uses them off
 * the hot path (layout fix-ups, rare ops).
 */
#ifndef TIMMX_KERNELS_GEN_H
#define TIMMX_KERNELS_GEN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TXG_MAX_DIMS 8

/* y[idx] = x[idx] over `shape` (y and x strided; must not overlap). */
int txg_copy(int ndim, const long* shape, const float* x, const long* xs, float* y,
             const long* ys);

/* y[i] = value for i < count. */
int txg_fill(size_t count, float value, float* y);

typedef enum txg_binop {
  TXG_ADD = 0,
  TXG_SUB = 1,
  TXG_MUL = 2,
  TXG_DIV = 3,
  TXG_MAX = 4,
  TXG_MIN = 5,
  TXG_POW = 6
} txg_binop;

/* y[idx] = a[idx] op b[idx] (broadcast through 0 strides). y may equal a or b
 * exactly (same strides). */
int txg_binary(int op, int ndim, const long* shape, const float* a, const long* as,
               const float* b, const long* bs, float* y, const long* ys);

typedef enum txg_unop {
  TXG_IDENTITY = 0,
  TXG_RELU = 1,
  TXG_CLAMP = 2, /* min(max(x, p0), p1) */
  TXG_HARDSWISH = 3,
  TXG_HARDSIGMOID = 4,
  TXG_SILU = 5,
  TXG_GELU = 6,
  TXG_GELU_TANH = 7,
  TXG_SIGMOID = 8,
  TXG_TANH = 9,
  TXG_SQRT = 20,
  TXG_RSQRT = 21,
  TXG_EXP = 22,
  TXG_LOG = 23,
  TXG_NEG = 24,
  TXG_ABS = 25,
  TXG_RECIPROCAL = 26,
  TXG_POW_SCALAR = 27, /* x ** p0 */
  TXG_ERF = 28,
  TXG_AFFINE = 29,     /* x * p0 + p1 */
  TXG_RSUB = 30,       /* p0 - x */
  TXG_RDIV = 31,       /* p0 / x */
  TXG_FLOOR = 32,
  TXG_CEIL = 33,
  TXG_SIN = 34,
  TXG_COS = 35,
  TXG_SOFTPLUS = 36,
  TXG_MISH = 37,
  TXG_ELU = 38,        /* alpha = p0 */
  TXG_LEAKY_RELU = 39, /* slope = p0 */
  TXG_GELU_SIGMOID = 40
} txg_unop;

/* y[idx] = f(x[idx]; p0, p1). y may equal x exactly (same strides). */
int txg_unary(int op, float p0, float p1, int ndim, const long* shape, const float* x,
              const long* xs, float* y, const long* ys);

typedef enum txg_redop {
  TXG_RED_SUM = 0,
  TXG_RED_MEAN = 1,
  TXG_RED_MAX = 2,
  TXG_RED_MIN = 3,
  TXG_RED_VAR = 4 /* variance with `correction` (p0) like torch.var */
} txg_redop;

/* y[o] = reduce_{r} x[o . xs + r . rxs] for o over `shape` (y strided by ys)
 * and r over `rshape` (rank rdim). */
int txg_reduce(int op, float p0, int ndim, const long* shape, const float* x, const long* xs,
               float* y, const long* ys, int rdim, const long* rshape, const long* rxs);

#ifdef __cplusplus
}
#endif

#endif /* TIMMX_KERNELS_GEN_H */
