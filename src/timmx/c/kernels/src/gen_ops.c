/* gen_ops.c - drivers layer: the generic strided kernels of timmx_kernels_gen.h
 * (portable C99), written for the timmx C code generator; see the header for the
 * contract. Activations, max and min come from internal/txk_scalar_math.h, so
 * they agree with the reference and scalar kernels (and PyTorch) on NaN and -0. */
#include <math.h>
#include <stddef.h>

#include "internal/txk_scalar_math.h"
#include "timmx_kernels.h"
#include "timmx_kernels_gen.h"

/* Odometer over the outer ndim-1 dims: calls body for each row with the row
 * offsets of up to three operands; the innermost dim is looped by the body. */
typedef struct txg_iter {
  int nd;
  long idx[TXG_MAX_DIMS];
} txg_iter;

static int txg_check(int ndim, const long* shape) {
  int i;
  if (ndim < 0 || ndim > TXG_MAX_DIMS || (ndim > 0 && shape == NULL)) return 0;
  for (i = 0; i < ndim; i++)
    if (shape[i] < 0) return 0;
  return 1;
}

static long txg_count(int ndim, const long* shape) {
  long n = 1;
  int i;
  for (i = 0; i < ndim; i++) n *= shape[i];
  return n;
}

/* Advance the outer index (all dims but the last); returns 0 when done. */
static int txg_next(int ndim, const long* shape, long* idx) {
  int d;
  for (d = ndim - 2; d >= 0; d--) {
    if (++idx[d] < shape[d]) return 1;
    idx[d] = 0;
  }
  return 0;
}

static long txg_offset(int ndim, const long* idx, const long* s) {
  long o = 0;
  int d;
  for (d = 0; d < ndim - 1; d++) o += idx[d] * s[d];
  return o;
}

int txg_copy(int ndim, const long* shape, const float* x, const long* xs, float* y,
             const long* ys) {
  long idx[TXG_MAX_DIMS] = {0};
  long inner, sx, sy, j;
  if (!txg_check(ndim, shape) || x == NULL || y == NULL) return TXK_EINVAL;
  if (txg_count(ndim, shape) == 0) return TXK_OK;
  if (ndim == 0) {
    y[0] = x[0];
    return TXK_OK;
  }
  inner = shape[ndim - 1];
  sx = xs[ndim - 1];
  sy = ys[ndim - 1];
  if (ndim >= 2 && sy == 1 && sx != 1 && xs[ndim - 2] == 1) {
    /* a transpose of the last two dims (e.g. NCHW -> NHWC): copy in 16x16 tiles */
    const long rows = shape[ndim - 2], rx = xs[ndim - 2], ry = ys[ndim - 2];
    long outer_shape[TXG_MAX_DIMS], i0, j0, i, j;
    int d;
    for (d = 0; d < ndim - 1; d++) outer_shape[d] = shape[d];
    outer_shape[ndim - 2] = 1;
    do {
      const float* xb = x + txg_offset(ndim - 1, idx, xs);
      float* yb = y + txg_offset(ndim - 1, idx, ys);
      if (inner == 3 && rx == 1) { /* an RGB image to NHWC: no tiles, three input streams */
        const float *x0 = xb, *x1 = xb + sx, *x2 = xb + 2 * sx;
        for (i = 0; i < rows; i++) {
          yb[i * ry] = x0[i];
          yb[i * ry + 1] = x1[i];
          yb[i * ry + 2] = x2[i];
        }
        continue;
      }
      for (i0 = 0; i0 < rows; i0 += 16)
        for (j0 = 0; j0 < inner; j0 += 16) {
          const long i1 = i0 + 16 < rows ? i0 + 16 : rows, j1 = j0 + 16 < inner ? j0 + 16 : inner;
          for (i = i0; i < i1; i++)
            for (j = j0; j < j1; j++) yb[i * ry + j] = xb[i * rx + j * sx];
        }
    } while (txg_next(ndim - 1, outer_shape, idx));
    return TXK_OK;
  }
  do {
    const float* xr = x + txg_offset(ndim, idx, xs);
    float* yr = y + txg_offset(ndim, idx, ys);
    if (sx == 1 && sy == 1) {
      for (j = 0; j < inner; j++) yr[j] = xr[j];
    } else {
      for (j = 0; j < inner; j++) yr[j * sy] = xr[j * sx];
    }
  } while (txg_next(ndim, shape, idx));
  return TXK_OK;
}

int txg_fill(size_t count, float value, float* y) {
  size_t i;
  if (count && y == NULL) return TXK_EINVAL;
  for (i = 0; i < count; i++) y[i] = value;
  return TXK_OK;
}

static float txg_binop_apply(int op, float a, float b) {
  switch (op) {
    case TXG_ADD: return a + b;
    case TXG_SUB: return a - b;
    case TXG_MUL: return a * b;
    case TXG_DIV: return a / b;
    case TXG_MAX: return txk_scalar_max(a, b);
    case TXG_MIN: return txk_scalar_min(a, b);
    case TXG_POW: return powf(a, b);
    default: return 0.0f;
  }
}

int txg_binary(int op, int ndim, const long* shape, const float* a, const long* as,
               const float* b, const long* bs, float* y, const long* ys) {
  long idx[TXG_MAX_DIMS] = {0};
  long inner, sa, sb, sy, j;
  if (!txg_check(ndim, shape) || a == NULL || b == NULL || y == NULL || op < TXG_ADD ||
      op > TXG_POW)
    return TXK_EINVAL;
  if (txg_count(ndim, shape) == 0) return TXK_OK;
  if (ndim == 0) {
    y[0] = txg_binop_apply(op, a[0], b[0]);
    return TXK_OK;
  }
  inner = shape[ndim - 1];
  sa = as[ndim - 1];
  sb = bs[ndim - 1];
  sy = ys[ndim - 1];
  do {
    const float* ar = a + txg_offset(ndim, idx, as);
    const float* br = b + txg_offset(ndim, idx, bs);
    float* yr = y + txg_offset(ndim, idx, ys);
    switch (op) {
      case TXG_ADD:
        for (j = 0; j < inner; j++) yr[j * sy] = ar[j * sa] + br[j * sb];
        break;
      case TXG_SUB:
        for (j = 0; j < inner; j++) yr[j * sy] = ar[j * sa] - br[j * sb];
        break;
      case TXG_MUL:
        for (j = 0; j < inner; j++) yr[j * sy] = ar[j * sa] * br[j * sb];
        break;
      case TXG_DIV:
        for (j = 0; j < inner; j++) yr[j * sy] = ar[j * sa] / br[j * sb];
        break;
      default:
        for (j = 0; j < inner; j++) yr[j * sy] = txg_binop_apply(op, ar[j * sa], br[j * sb]);
        break;
    }
  } while (txg_next(ndim, shape, idx));
  return TXK_OK;
}

static float txg_unop_apply(int op, float x, float p0, float p1) {
  switch (op) {
    case TXG_IDENTITY: return x;
    case TXG_RELU: return txk_scalar_relu(x);
    case TXG_CLAMP: return txk_scalar_clamp(x, p0, p1);
    case TXG_HARDSWISH: return txk_scalar_hardswish(x);
    case TXG_HARDSIGMOID: return txk_scalar_hardsigmoid(x);
    case TXG_SILU: return txk_scalar_silu(x);
    case TXG_GELU: return txk_scalar_gelu(x);
    case TXG_GELU_TANH: return txk_scalar_gelu_tanh(x);
    case TXG_SIGMOID: return txk_scalar_sigmoid(x);
    case TXG_TANH: return tanhf(x);
    case TXG_SQRT: return sqrtf(x);
    case TXG_RSQRT: return 1.0f / sqrtf(x);
    case TXG_EXP: return expf(x);
    case TXG_LOG: return logf(x);
    case TXG_NEG: return -x;
    case TXG_ABS: return fabsf(x);
    case TXG_RECIPROCAL: return 1.0f / x;
    case TXG_POW_SCALAR: return p0 == 2.0f ? x * x : powf(x, p0);
    case TXG_ERF: return erff(x);
    case TXG_AFFINE: return x * p0 + p1;
    case TXG_RSUB: return p0 - x;
    case TXG_RDIV: return p0 / x;
    case TXG_FLOOR: return floorf(x);
    case TXG_CEIL: return ceilf(x);
    case TXG_SIN: return sinf(x);
    case TXG_COS: return cosf(x);
    case TXG_SOFTPLUS: return txk_scalar_softplus(x);
    case TXG_MISH: return txk_scalar_mish(x);
    case TXG_ELU: return txk_scalar_elu(x, p0);
    case TXG_LEAKY_RELU: return txk_scalar_leaky_relu(x, p0);
    case TXG_GELU_SIGMOID: return txk_scalar_gelu_sigmoid(x);
    default: return x;
  }
}

int txg_unary(int op, float p0, float p1, int ndim, const long* shape, const float* x,
              const long* xs, float* y, const long* ys) {
  long idx[TXG_MAX_DIMS] = {0};
  long inner, sx, sy, j;
  if (!txg_check(ndim, shape) || x == NULL || y == NULL) return TXK_EINVAL;
  if (txg_count(ndim, shape) == 0) return TXK_OK;
  if (ndim == 0) {
    y[0] = txg_unop_apply(op, x[0], p0, p1);
    return TXK_OK;
  }
  inner = shape[ndim - 1];
  sx = xs[ndim - 1];
  sy = ys[ndim - 1];
  do {
    const float* xr = x + txg_offset(ndim, idx, xs);
    float* yr = y + txg_offset(ndim, idx, ys);
    for (j = 0; j < inner; j++) yr[j * sy] = txg_unop_apply(op, xr[j * sx], p0, p1);
  } while (txg_next(ndim, shape, idx));
  return TXK_OK;
}

/* Reduce the rdim-dim window at x (strides rxs). */
static float txg_reduce_one(int op, float p0, const float* x, int rdim, const long* rshape,
                            const long* rxs, long count) {
  long idx[TXG_MAX_DIMS] = {0};
  long inner = rdim ? rshape[rdim - 1] : 1, s = rdim ? rxs[rdim - 1] : 0, j;
  double acc = 0.0, acc2 = 0.0;
  float best = 0.0f;
  int first = 1;
  do {
    const float* xr = x + (rdim ? txg_offset(rdim, idx, rxs) : 0);
    for (j = 0; j < inner; j++) {
      const float v = xr[j * s];
      if (op == TXG_RED_MAX || op == TXG_RED_MIN) {
        /* max(new, running): NaN propagates, the first of equal values stays */
        best = first ? v : (op == TXG_RED_MAX ? txk_scalar_max(v, best) : txk_scalar_min(v, best));
        first = 0;
      } else {
        acc += v;
        acc2 += (double)v * v;
      }
    }
  } while (rdim > 1 && txg_next(rdim, rshape, idx));
  switch (op) {
    case TXG_RED_SUM: return (float)acc;
    case TXG_RED_MEAN: return (float)(acc / (double)count);
    case TXG_RED_VAR: {
      const double mean = acc / (double)count;
      const double denom = (double)count - (double)p0;
      double var = (acc2 - mean * acc) / (denom > 0.0 ? denom : 0.0);
      return (float)(var < 0.0 ? 0.0 : var);
    }
    default: return best;
  }
}

int txg_reduce(int op, float p0, int ndim, const long* shape, const float* x, const long* xs,
               float* y, const long* ys, int rdim, const long* rshape, const long* rxs) {
  long idx[TXG_MAX_DIMS] = {0};
  long count, inner, j;
  if (!txg_check(ndim, shape) || !txg_check(rdim, rshape) || x == NULL || y == NULL ||
      op < TXG_RED_SUM || op > TXG_RED_VAR)
    return TXK_EINVAL;
  count = txg_count(rdim, rshape);
  if (txg_count(ndim, shape) == 0) return TXK_OK;
  if (count == 0) return TXK_EINVAL;
  if (ndim == 0) {
    y[0] = txg_reduce_one(op, p0, x, rdim, rshape, rxs, count);
    return TXK_OK;
  }
  inner = shape[ndim - 1];
  do {
    const float* xr = x + txg_offset(ndim, idx, xs);
    float* yr = y + txg_offset(ndim, idx, ys);
    for (j = 0; j < inner; j++)
      yr[j * ys[ndim - 1]] =
          txg_reduce_one(op, p0, xr + j * xs[ndim - 1], rdim, rshape, rxs, count);
  } while (txg_next(ndim, shape, idx));
  return TXK_OK;
}
