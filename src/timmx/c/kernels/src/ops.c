/* Drivers layer: norms, softmax, pooling, elementwise and data movement, on the
 * context's micro-kernels (transcendentals through VUNARY, rows through ROWOP);
 * element math of the portable loops from internal/txk_scalar_math.h. Strict C99. */
#include <math.h>
#include <string.h>

#include "internal/txk_internal.h"
#include "internal/txk_scalar_math.h"

#define TXK_CHUNK 256

int txk_layernorm(const txk_context* ctx, size_t rows, size_t c, const float* x, size_t x_stride,
                  float* y, size_t y_stride, const float* gamma, const float* beta, float eps) {
  txk_rowop_params q;
  txk_rowop_ukernel_fn fn;
  size_t r;
  if (!txk_ctx_ok(ctx) || x == NULL || y == NULL || c == 0) return TXK_EINVAL;
  if (x_stride == 0) x_stride = c;
  if (y_stride == 0) y_stride = c;
  fn = txk_ctx_rowop(ctx);
  memset(&q, 0, sizeof q);
  q.gamma = gamma;
  q.beta = beta;
  q.eps = eps;
  for (r = 0; r < rows; r++) fn(TXK_ROW_LAYERNORM, c, x + r * x_stride, NULL, y + r * y_stride, &q);
  return TXK_OK;
}

int txk_groupnorm(const txk_context* ctx, size_t n, size_t hw, size_t c, size_t groups,
                  const float* x, float* y, const float* gamma, const float* beta, float eps) {
  size_t b, g, p, j, cg;
  if (!txk_ctx_ok(ctx) || x == NULL || y == NULL || groups == 0 || c % groups != 0 || hw == 0)
    return TXK_EINVAL;
  cg = c / groups;
  for (b = 0; b < n; b++)
    for (g = 0; g < groups; g++) {
      const float* xb = x + b * hw * c + g * cg;
      float* yb = y + b * hw * c + g * cg;
      const double cnt = (double)(hw * cg);
      double mean = 0.0, var = 0.0;
      float fm, inv;
      for (p = 0; p < hw; p++) {
        float s = 0.0f;
        for (j = 0; j < cg; j++) s += xb[p * c + j];
        mean += s;
      }
      mean /= cnt;
      fm = (float)mean;
      for (p = 0; p < hw; p++) {
        float s = 0.0f;
        for (j = 0; j < cg; j++) s += (xb[p * c + j] - fm) * (xb[p * c + j] - fm);
        var += s;
      }
      var /= cnt;
      inv = (float)(1.0 / sqrt(var + eps));
      for (p = 0; p < hw; p++)
        for (j = 0; j < cg; j++) {
          float v = (xb[p * c + j] - fm) * inv;
          if (gamma) v *= gamma[g * cg + j];
          if (beta) v += beta[g * cg + j];
          yb[p * c + j] = v;
        }
    }
  return TXK_OK;
}

int txk_softmax(const txk_context* ctx, size_t rows, size_t c, const float* x, size_t x_stride,
                float* y, size_t y_stride) {
  txk_rowop_params q;
  txk_rowop_ukernel_fn fn;
  size_t r;
  if (!txk_ctx_ok(ctx) || x == NULL || y == NULL || c == 0) return TXK_EINVAL;
  if (x_stride == 0) x_stride = c;
  if (y_stride == 0) y_stride = c;
  fn = txk_ctx_rowop(ctx);
  memset(&q, 0, sizeof q);
  for (r = 0; r < rows; r++) fn(TXK_ROW_SOFTMAX, c, x + r * x_stride, NULL, y + r * y_stride, &q);
  return TXK_OK;
}

int txk_global_avgpool(const txk_context* ctx, size_t n, size_t hw, size_t c, const float* x,
                       float* y) {
  txk_rowop_params q;
  txk_rowop_ukernel_fn fn;
  size_t b, p, j;
  float inv;
  if (!txk_ctx_ok(ctx) || x == NULL || y == NULL || hw == 0) return TXK_EINVAL;
  if (c == 0) return TXK_OK;
  fn = txk_ctx_rowop(ctx);
  memset(&q, 0, sizeof q);
  q.bop = TXK_BIN_MUL;
  q.asc = 1;
  q.bsc = 0;
  q.act = TXK_ACT_NONE;
  inv = 1.0f / (float)hw;
  for (b = 0; b < n; b++) {
    float* yb = y + b * c;
    const float* xb = x + b * hw * c;
    for (j = 0; j < c; j++) yb[j] = 0.0f;
    for (p = 0; p < hw; p++) fn(TXK_ROW_ACC, c, xb + p * c, NULL, yb, &q);
    fn(TXK_ROW_BINARY, c, yb, &inv, yb, &q);
  }
  return TXK_OK;
}

int txk_mean_channels(const txk_context* ctx, size_t pixels, size_t c, const float* x, float* y) {
  size_t p, j;
  if (!txk_ctx_ok(ctx) || x == NULL || y == NULL || c == 0) return TXK_EINVAL;
  for (p = 0; p < pixels; p++) {
    float s = 0.0f;
    for (j = 0; j < c; j++) s += x[p * c + j];
    y[p] = s / (float)c;
  }
  return TXK_OK;
}

static int pool_check(const txk_pool2d_desc* d, const float* x, const float* y) {
  if (d == NULL || x == NULL || y == NULL || d->n < 0 || d->in_h < 1 || d->in_w < 1 || d->c < 1 ||
      d->out_h < 1 || d->out_w < 1 || d->x_stride < 0 || d->y_stride < 0 ||
      (d->x_stride && d->x_stride < d->c) || (d->y_stride && d->y_stride < d->c))
    return 0;
  return 1;
}

static int window_check(const txk_pool2d_desc* d) {
  return d->kh >= 1 && d->kw >= 1 && d->stride_h >= 1 && d->stride_w >= 1 && d->pad_h >= 0 &&
         d->pad_w >= 0 && 2 * d->pad_h <= d->kh && 2 * d->pad_w <= d->kw;
}

int txk_maxpool2d(const txk_context* ctx, const txk_pool2d_desc* d, const float* x, float* y) {
  size_t xs, ys;
  int n, oh, ow, ky, kx, dh, dw;
  size_t j, c;
  if (!txk_ctx_ok(ctx) || !pool_check(d, x, y) || !window_check(d) || d->dil_h < 0 ||
      d->dil_w < 0)
    return TXK_EINVAL;
  dh = d->dil_h ? d->dil_h : 1;
  dw = d->dil_w ? d->dil_w : 1;
  c = (size_t)d->c;
  xs = (size_t)(d->x_stride ? d->x_stride : d->c);
  ys = (size_t)(d->y_stride ? d->y_stride : d->c);
  for (n = 0; n < d->n; n++)
    for (oh = 0; oh < d->out_h; oh++)
      for (ow = 0; ow < d->out_w; ow++) {
        float* yp = y + (((size_t)n * d->out_h + oh) * d->out_w + ow) * ys;
        int first = 1;
        for (ky = 0; ky < d->kh; ky++) {
          const int ih = oh * d->stride_h - d->pad_h + ky * dh;
          if (ih < 0 || ih >= d->in_h) continue;
          for (kx = 0; kx < d->kw; kx++) {
            const int iw = ow * d->stride_w - d->pad_w + kx * dw;
            const float* xp;
            if (iw < 0 || iw >= d->in_w) continue;
            xp = x + (((size_t)n * d->in_h + ih) * d->in_w + iw) * xs;
            if (first) {
              memcpy(yp, xp, c * sizeof(float));
              first = 0;
            } else {
              /* max(new, running): NaN propagates, the first of equal values stays */
              for (j = 0; j < c; j++) yp[j] = txk_scalar_max(xp[j], yp[j]);
            }
          }
        }
        if (first)
          for (j = 0; j < c; j++) yp[j] = -HUGE_VALF;
      }
  return TXK_OK;
}

int txk_avgpool2d(const txk_context* ctx, const txk_pool2d_desc* d, const float* x, float* y) {
  size_t xs, ys, j, c;
  int n, oh, ow, ih, iw;
  if (!txk_ctx_ok(ctx) || !pool_check(d, x, y) || !window_check(d) || d->divisor_override < 0 ||
      (d->dil_h > 1 || d->dil_w > 1))
    return TXK_EINVAL;
  c = (size_t)d->c;
  xs = (size_t)(d->x_stride ? d->x_stride : d->c);
  ys = (size_t)(d->y_stride ? d->y_stride : d->c);
  for (n = 0; n < d->n; n++)
    for (oh = 0; oh < d->out_h; oh++)
      for (ow = 0; ow < d->out_w; ow++) {
        /* PyTorch: window clipped to the padded extent gives pool_size, then to the input */
        int hs = oh * d->stride_h - d->pad_h, ws = ow * d->stride_w - d->pad_w;
        int he = hs + d->kh, we = ws + d->kw;
        int pool, cnt;
        float* yp = y + (((size_t)n * d->out_h + oh) * d->out_w + ow) * ys;
        float inv;
        if (he > d->in_h + d->pad_h) he = d->in_h + d->pad_h;
        if (we > d->in_w + d->pad_w) we = d->in_w + d->pad_w;
        pool = (he - hs) * (we - ws);
        if (hs < 0) hs = 0;
        if (ws < 0) ws = 0;
        if (he > d->in_h) he = d->in_h;
        if (we > d->in_w) we = d->in_w;
        cnt = (he - hs) * (we - ws);
        for (j = 0; j < c; j++) yp[j] = 0.0f;
        for (ih = hs; ih < he; ih++)
          for (iw = ws; iw < we; iw++) {
            const float* xp = x + (((size_t)n * d->in_h + ih) * d->in_w + iw) * xs;
            for (j = 0; j < c; j++) yp[j] += xp[j];
          }
        if (d->divisor_override)
          inv = 1.0f / (float)d->divisor_override;
        else
          inv = 1.0f / (float)(d->count_include_pad ? pool : cnt);
        for (j = 0; j < c; j++) yp[j] *= inv;
      }
  return TXK_OK;
}

int txk_adaptive_avgpool2d(const txk_context* ctx, const txk_pool2d_desc* d, const float* x,
                           float* y) {
  size_t xs, ys, j, c;
  int n, oh, ow, ih, iw;
  if (!txk_ctx_ok(ctx) || !pool_check(d, x, y)) return TXK_EINVAL;
  c = (size_t)d->c;
  xs = (size_t)(d->x_stride ? d->x_stride : d->c);
  ys = (size_t)(d->y_stride ? d->y_stride : d->c);
  for (n = 0; n < d->n; n++)
    for (oh = 0; oh < d->out_h; oh++)
      for (ow = 0; ow < d->out_w; ow++) {
        const int hs = (int)(((long)oh * d->in_h) / d->out_h);
        const int he = (int)(((long)(oh + 1) * d->in_h + d->out_h - 1) / d->out_h);
        const int ws = (int)(((long)ow * d->in_w) / d->out_w);
        const int we = (int)(((long)(ow + 1) * d->in_w + d->out_w - 1) / d->out_w);
        float* yp = y + (((size_t)n * d->out_h + oh) * d->out_w + ow) * ys;
        const float inv = 1.0f / (float)((he - hs) * (we - ws));
        for (j = 0; j < c; j++) yp[j] = 0.0f;
        for (ih = hs; ih < he; ih++)
          for (iw = ws; iw < we; iw++) {
            const float* xp = x + (((size_t)n * d->in_h + ih) * d->in_w + iw) * xs;
            for (j = 0; j < c; j++) yp[j] += xp[j];
          }
        for (j = 0; j < c; j++) yp[j] *= inv;
      }
  return TXK_OK;
}

/* ---- elementwise ------------------------------------------------------- */
static void apply_act(const txk_context* ctx, const txk_epilogue* ep, float* y, size_t n) {
  size_t i;
  switch (ep->act) {
    case TXK_ACT_NONE: return;
    case TXK_ACT_RELU:
      for (i = 0; i < n; i++) y[i] = txk_scalar_relu(y[i]);
      return;
    case TXK_ACT_CLAMP:
      for (i = 0; i < n; i++) y[i] = txk_scalar_clamp(y[i], ep->act_min, ep->act_max);
      return;
    default: txk_ctx_vunary(ctx)((int)ep->act, ep->act_min, ep->act_max, n, y, y);
  }
}

#define TXK_BIN_LOOP(EXPR)                                               \
  do {                                                                   \
    if (bsc == 1)                                                        \
      for (k = 0; k < c; k++) {                                          \
        const float av = ar[k * asc], bv = br[k];                        \
        yr[k] = (EXPR);                                                  \
      }                                                                  \
    else                                                                 \
      for (k = 0; k < c; k++) {                                          \
        const float av = ar[k * asc], bv = br[k * bsc];                  \
        yr[k] = (EXPR);                                                  \
      }                                                                  \
  } while (0)

int txk_binary(const txk_context* ctx, const txk_binary_desc* d, const float* a, const float* b,
               float* y) {
  size_t i, j, k;
  if (!txk_ctx_ok(ctx) || d == NULL || a == NULL || b == NULL || y == NULL ||
      d->epilogue.residual != TXK_RESIDUAL_NONE || (unsigned)d->op > TXK_BIN_MIN ||
      (unsigned)d->epilogue.act >= TXK_ACT_COUNT)
    return TXK_EINVAL;
  if ((d->a_sc == 0 || d->a_sc == 1) && (d->b_sc == 0 || d->b_sc == 1)) {
    /* contiguous or broadcast channels: the context's vector row kernel */
    const txk_rowop_ukernel_fn fn = txk_ctx_rowop(ctx);
    txk_rowop_params q;
    memset(&q, 0, sizeof q);
    q.bop = (int)d->op;
    q.asc = d->a_sc;
    q.bsc = d->b_sc;
    q.act = (int)d->epilogue.act;
    q.lo = d->epilogue.act_min;
    q.hi = d->epilogue.act_max;
    if (d->c == 0) return TXK_OK;
    for (i = 0; i < d->n; i++)
      for (j = 0; j < d->p; j++)
        fn(TXK_ROW_BINARY, d->c, a + i * d->a_sn + j * d->a_sp, b + i * d->b_sn + j * d->b_sp,
           y + i * d->y_sn + j * d->y_sp, &q);
    return TXK_OK;
  }
  for (i = 0; i < d->n; i++)
    for (j = 0; j < d->p; j++) {
      const float* ar = a + i * d->a_sn + j * d->a_sp;
      const float* br = b + i * d->b_sn + j * d->b_sp;
      float* yr = y + i * d->y_sn + j * d->y_sp;
      const size_t c = d->c, asc = d->a_sc, bsc = d->b_sc;
      switch (d->op) {
        case TXK_BIN_ADD: TXK_BIN_LOOP(av + bv); break;
        case TXK_BIN_SUB: TXK_BIN_LOOP(av - bv); break;
        case TXK_BIN_MUL: TXK_BIN_LOOP(av * bv); break;
        case TXK_BIN_DIV: TXK_BIN_LOOP(av / bv); break;
        case TXK_BIN_MAX: TXK_BIN_LOOP(txk_scalar_max(av, bv)); break;
        case TXK_BIN_MIN: TXK_BIN_LOOP(txk_scalar_min(av, bv)); break;
      }
      apply_act(ctx, &d->epilogue, yr, c);
    }
  return TXK_OK;
}

int txk_unary(const txk_context* ctx, txk_act act, float act_min, float act_max, size_t count,
              const float* x, float* y) {
  if (!txk_ctx_ok(ctx) || (count && (x == NULL || y == NULL)) || (unsigned)act >= TXK_ACT_COUNT)
    return TXK_EINVAL;
  if (count) txk_ctx_vunary(ctx)((int)act, act_min, act_max, count, x, y);
  return TXK_OK;
}

int txk_channel_scale(const txk_context* ctx, size_t n, size_t p, size_t c, const float* x,
                      const float* s, txk_act gate_act, float* y) {
  float g[TXK_CHUNK];
  size_t b, c0, q;
  txk_rowop_params prm;
  txk_rowop_ukernel_fn rowop;
  if (!txk_ctx_ok(ctx) || x == NULL || s == NULL || y == NULL ||
      (unsigned)gate_act >= TXK_ACT_COUNT)
    return TXK_EINVAL;
  rowop = txk_ctx_rowop(ctx);
  memset(&prm, 0, sizeof prm);
  for (b = 0; b < n; b++)
    for (c0 = 0; c0 < c; c0 += TXK_CHUNK) {
      const size_t cc = c - c0 < TXK_CHUNK ? c - c0 : TXK_CHUNK;
      if (gate_act == TXK_ACT_NONE)
        memcpy(g, s + b * c + c0, cc * sizeof(float));
      else
        txk_ctx_vunary(ctx)((int)gate_act, 0.0f, 6.0f, cc, s + b * c + c0, g);
      for (q = 0; q < p; q++)
        rowop(TXK_ROW_MUL, cc, x + (b * p + q) * c + c0, g, y + (b * p + q) * c + c0, &prm);
    }
  return TXK_OK;
}

/* ---- data movement ----------------------------------------------------- */
int txk_copy2d(size_t rows, size_t cols, const float* x, size_t x_stride, float* y,
               size_t y_stride) {
  size_t r;
  if ((rows && cols) && (x == NULL || y == NULL)) return TXK_EINVAL;
  for (r = 0; r < rows; r++) memmove(y + r * y_stride, x + r * x_stride, cols * sizeof(float));
  return TXK_OK;
}

int txk_concat_channels(size_t pixels, size_t ninputs, const float* const* xs,
                        const size_t* channels, float* y) {
  size_t total = 0, i, off = 0;
  if (y == NULL || (ninputs && (xs == NULL || channels == NULL))) return TXK_EINVAL;
  for (i = 0; i < ninputs; i++) {
    if (xs[i] == NULL) return TXK_EINVAL;
    total += channels[i];
  }
  for (i = 0; i < ninputs; i++) {
    txk_copy2d(pixels, channels[i], xs[i], channels[i], y + off, total);
    off += channels[i];
  }
  return TXK_OK;
}

int txk_permute(size_t ndim, const size_t* shape, const size_t* perm, const float* x, float* y) {
  size_t ostr[TXK_MAX_DIMS], istr[TXK_MAX_DIMS], oshape[TXK_MAX_DIMS], idx[TXK_MAX_DIMS];
  size_t total = 1, i, d, seen = 0;
  if (ndim == 0 || ndim > TXK_MAX_DIMS || shape == NULL || perm == NULL || x == NULL || y == NULL)
    return TXK_EINVAL;
  for (d = 0; d < ndim; d++) {
    if (perm[d] >= ndim || (seen & ((size_t)1 << perm[d]))) return TXK_EINVAL;
    seen |= (size_t)1 << perm[d];
  }
  istr[ndim - 1] = 1;
  for (d = ndim - 1; d > 0; d--) istr[d - 1] = istr[d] * shape[d];
  for (d = 0; d < ndim; d++) {
    oshape[d] = shape[perm[d]];
    ostr[d] = istr[perm[d]]; /* input stride of output dim d */
    idx[d] = 0;
    total *= oshape[d];
  }
  if (total == 0) return TXK_OK;
  {
    const size_t last = oshape[ndim - 1], ls = ostr[ndim - 1];
    size_t off = 0;
    for (i = 0; i < total; i += last) {
      size_t t;
      for (t = 0; t < last; t++) y[i + t] = x[off + t * ls];
      /* advance the multi-index over dims 0..ndim-2 */
      for (d = ndim - 1; d > 0; d--) {
        idx[d - 1]++;
        off += ostr[d - 1];
        if (idx[d - 1] < oshape[d - 1]) break;
        off -= idx[d - 1] * ostr[d - 1];
        idx[d - 1] = 0;
      }
    }
  }
  return TXK_OK;
}

int txk_pad_nhwc(size_t n, size_t h, size_t w, size_t c, size_t top, size_t bottom, size_t left,
                 size_t right, float value, const float* x, float* y) {
  const size_t hp = h + top + bottom, wp = w + left + right;
  size_t b, i, j;
  if (x == NULL || y == NULL) return TXK_EINVAL;
  for (b = 0; b < n; b++) {
    float* yb = y + b * hp * wp * c;
    for (i = 0; i < hp * wp * c; i++) yb[i] = value;
    for (i = 0; i < h; i++)
      for (j = 0; j < w; j++)
        memcpy(yb + ((i + top) * wp + j + left) * c, x + ((b * h + i) * w + j) * c,
               c * sizeof(float));
  }
  return TXK_OK;
}

/* ---- vectorised transcendentals ---------------------------------------- */
static int vop(const txk_context* ctx, int op, size_t count, const float* x, float* y) {
  if (!txk_ctx_ok(ctx) || (count && (x == NULL || y == NULL))) return TXK_EINVAL;
  if (count) txk_ctx_vunary(ctx)(op, 0.0f, 0.0f, count, x, y);
  return TXK_OK;
}
int txk_vexp(const txk_context* ctx, size_t count, const float* x, float* y) {
  return vop(ctx, TXK_OP_EXP, count, x, y);
}
int txk_verf(const txk_context* ctx, size_t count, const float* x, float* y) {
  return vop(ctx, TXK_OP_ERF, count, x, y);
}
int txk_vtanh(const txk_context* ctx, size_t count, const float* x, float* y) {
  return vop(ctx, TXK_ACT_TANH, count, x, y);
}
int txk_vsigmoid(const txk_context* ctx, size_t count, const float* x, float* y) {
  return vop(ctx, TXK_ACT_SIGMOID, count, x, y);
}
