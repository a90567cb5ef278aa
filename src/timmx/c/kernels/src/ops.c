/* Drivers layer: norms, softmax, pooling, elementwise and data movement, on the
 * context's micro-kernels (transcendentals through VUNARY, rows through ROWOP);
 * element math of the portable loops from internal/txk_scalar_math.h. Strict C99. */
#include <math.h>
#include <string.h>

#include "internal/txk_internal.h"
#include "internal/txk_scalar_math.h"

#define TXK_CHUNK 256

typedef struct rows_op {
  txk_rowop_ukernel_fn fn;
  int op;
  size_t c;
  const float* x;
  size_t xs;
  float* y;
  size_t ys;
  txk_rowop_params q;
} rows_op;

static void rows_op_range(const void* arg, size_t r0, size_t r1) {
  const rows_op* j = (const rows_op*)arg;
  size_t r;
  for (r = r0; r < r1; r++) j->fn(j->op, j->c, j->x + r * j->xs, NULL, j->y + r * j->ys, &j->q);
}

int txk_layernorm(const txk_context* ctx, size_t rows, size_t c, const float* x, size_t x_stride,
                  float* y, size_t y_stride, const float* gamma, const float* beta, float eps) {
  rows_op j;
  if (!txk_ctx_ok(ctx) || x == NULL || y == NULL || c == 0) return TXK_EINVAL;
  memset(&j, 0, sizeof j);
  j.fn = txk_ctx_rowop(ctx);
  j.op = TXK_ROW_LAYERNORM;
  j.c = c;
  j.x = x;
  j.xs = x_stride ? x_stride : c;
  j.y = y;
  j.ys = y_stride ? y_stride : c;
  j.q.gamma = gamma;
  j.q.beta = beta;
  j.q.eps = eps;
  txk_parallel_range(ctx, rows_op_range, &j, rows, 1, 3.0 * (double)c, TXK_MIN_TASK_FLOATS);
  return TXK_OK;
}

typedef struct gn_job {
  size_t groups, hw, c, cg;
  const float* x;
  float* y;
  const float *gamma, *beta;
  float eps;
} gn_job;

static void gn_range(const void* arg, size_t t0, size_t t1) {
  const gn_job* j = (const gn_job*)arg;
  const size_t hw = j->hw, c = j->c, cg = j->cg;
  size_t t, p, k;
  for (t = t0; t < t1; t++) {
    const size_t b = t / j->groups, g = t % j->groups;
    const float* xb = j->x + b * hw * c + g * cg;
    float* yb = j->y + b * hw * c + g * cg;
    const double cnt = (double)(hw * cg);
    double mean = 0.0, var = 0.0;
    float fm, inv;
    for (p = 0; p < hw; p++) {
      float s = 0.0f;
      for (k = 0; k < cg; k++) s += xb[p * c + k];
      mean += s;
    }
    mean /= cnt;
    fm = (float)mean;
    for (p = 0; p < hw; p++) {
      float s = 0.0f;
      for (k = 0; k < cg; k++) s += (xb[p * c + k] - fm) * (xb[p * c + k] - fm);
      var += s;
    }
    var /= cnt;
    inv = (float)(1.0 / sqrt(var + j->eps));
    for (p = 0; p < hw; p++)
      for (k = 0; k < cg; k++) {
        float v = (xb[p * c + k] - fm) * inv;
        if (j->gamma) v *= j->gamma[g * cg + k];
        if (j->beta) v += j->beta[g * cg + k];
        yb[p * c + k] = v;
      }
  }
}

int txk_groupnorm(const txk_context* ctx, size_t n, size_t hw, size_t c, size_t groups,
                  const float* x, float* y, const float* gamma, const float* beta, float eps) {
  gn_job j;
  if (!txk_ctx_ok(ctx) || x == NULL || y == NULL || groups == 0 || c % groups != 0 || hw == 0)
    return TXK_EINVAL;
  j.groups = groups;
  j.hw = hw;
  j.c = c;
  j.cg = c / groups;
  j.x = x;
  j.y = y;
  j.gamma = gamma;
  j.beta = beta;
  j.eps = eps;
  txk_parallel_range(ctx, gn_range, &j, n * groups, 1, 3.0 * (double)hw * (double)j.cg,
                     TXK_MIN_TASK_FLOATS);
  return TXK_OK;
}

void txk_softmax_rows(const txk_context* ctx, size_t rows, size_t c, const float* x,
                      size_t x_stride, float* y, size_t y_stride) {
  txk_rowop_params q;
  const txk_rowop_ukernel_fn fn = txk_ctx_rowop(ctx);
  size_t r;
  memset(&q, 0, sizeof q);
  for (r = 0; r < rows; r++) fn(TXK_ROW_SOFTMAX, c, x + r * x_stride, NULL, y + r * y_stride, &q);
}

int txk_softmax(const txk_context* ctx, size_t rows, size_t c, const float* x, size_t x_stride,
                float* y, size_t y_stride) {
  rows_op j;
  if (!txk_ctx_ok(ctx) || x == NULL || y == NULL || c == 0) return TXK_EINVAL;
  memset(&j, 0, sizeof j);
  j.fn = txk_ctx_rowop(ctx);
  j.op = TXK_ROW_SOFTMAX;
  j.c = c;
  j.x = x;
  j.xs = x_stride ? x_stride : c;
  j.y = y;
  j.ys = y_stride ? y_stride : c;
  txk_parallel_range(ctx, rows_op_range, &j, rows, 1, 4.0 * (double)c, TXK_MIN_TASK_FLOATS);
  return TXK_OK;
}

/* Global average pool: each image's pixels are summed in GAP_CHUNKS fixed chunks of pixels
 * (each in pixel order), and the chunks' sums added in chunk order, so the result does not
 * depend on the thread count. The chunks are split over the threads in contiguous bands: the
 * image usually comes from a step split over rows the same way, so each thread mostly reads
 * pixels it wrote itself. Split over channel ranges, every thread read every pixel, half of
 * them from the other core's cache: efficientnet_b0's 17 pools took 0.49-0.51 ms at 2 threads
 * that way, 0.33-0.35 on the calling thread alone, and in chunks 0.18-0.22 in 7 of 12 runs
 * (sums of fastest calls; 0.19-0.24 at 1 thread) and 0.31-0.34 in the other 5: the pool's tasks
 * go to whichever thread claims them first, and the worker sometimes takes the first band.
 * Channels go GAP_CB at a time (the chunks' sums live on the caller's stack: 8 KiB). */
#define GAP_CHUNKS 4
#define GAP_CB 512
typedef struct gap_job {
  txk_rowop_ukernel_fn fn;
  size_t hw, c, c0, cw;
  const float* x;
  float* part; /* [GAP_CHUNKS][GAP_CB]: each chunk's sums of channels [c0, c0 + cw) */
} gap_job;

static void gap_params(txk_rowop_params* q) {
  memset(q, 0, sizeof *q);
  q->bop = TXK_BIN_MUL;
  q->asc = 1;
  q->bsc = 0;
  q->act = TXK_ACT_NONE;
}

static void gap_chunks(const void* arg, size_t k0, size_t k1) {
  const gap_job* j = (const gap_job*)arg;
  txk_rowop_params q;
  size_t k, p, i;
  gap_params(&q);
  for (k = k0; k < k1; k++) {
    const size_t p0 = k * j->hw / GAP_CHUNKS, p1 = (k + 1) * j->hw / GAP_CHUNKS;
    float* acc = j->part + k * GAP_CB;
    for (i = 0; i < j->cw; i++) acc[i] = 0.0f;
    for (p = p0; p < p1; p++) j->fn(TXK_ROW_ACC, j->cw, j->x + p * j->c + j->c0, NULL, acc, &q);
  }
}

int txk_global_avgpool(const txk_context* ctx, size_t n, size_t hw, size_t c, const float* x,
                       float* y) {
  float part[GAP_CHUNKS * GAP_CB];
  txk_rowop_params q;
  gap_job j;
  size_t b, k;
  float inv;
  if (!txk_ctx_ok(ctx) || x == NULL || y == NULL || hw == 0) return TXK_EINVAL;
  if (c == 0) return TXK_OK;
  gap_params(&q);
  j.fn = txk_ctx_rowop(ctx);
  j.hw = hw;
  j.c = c;
  j.part = part;
  inv = 1.0f / (float)hw;
  for (b = 0; b < n; b++) {
    j.x = x + b * hw * c;
    for (j.c0 = 0; j.c0 < c; j.c0 += GAP_CB) {
      j.cw = c - j.c0 < GAP_CB ? c - j.c0 : GAP_CB;
      txk_parallel_bands(ctx, gap_chunks, &j, GAP_CHUNKS, 1,
                         (double)hw / GAP_CHUNKS * (double)j.cw, TXK_MIN_TASK_FLOATS);
      for (k = 1; k < GAP_CHUNKS; k++) j.fn(TXK_ROW_ACC, j.cw, part + k * GAP_CB, NULL, part, &q);
      j.fn(TXK_ROW_BINARY, j.cw, part, &inv, y + b * c + j.c0, &q);
    }
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

/* Pools: tasks are ranges of output rows (batch item x out_h). */
typedef struct pool_job {
  const txk_context* ctx;
  const txk_pool2d_desc* d;
  const float* x;
  float* y;
  size_t xs, ys, c;
  int dh, dw;
} pool_job;

/* Max pool: the running max of each output pixel is updated tap by tap with the row kernel's
 * binary max, y = max(tap, y) (NaN propagates, the first of equal values stays), vectorised and
 * without the data-dependent branch of a scalar NaN-aware max: that branch, mispredicted on real
 * activations, made resnet50's 3x3/2 maxpool 5.6 ms for 1.8 M compares. */
static void maxpool_range(const void* arg, size_t r0, size_t r1) {
  const pool_job* j = (const pool_job*)arg;
  const txk_pool2d_desc* d = j->d;
  const txk_rowop_ukernel_fn rowop = txk_ctx_rowop(j->ctx);
  const size_t c = j->c;
  size_t r, k;
  int ow, ky, kx;
  txk_rowop_params q;
  memset(&q, 0, sizeof q);
  q.bop = TXK_BIN_MAX;
  q.asc = q.bsc = 1;
  q.act = TXK_ACT_NONE;
  for (r = r0; r < r1; r++) {
    const int n = (int)(r / (size_t)d->out_h), oh = (int)(r % (size_t)d->out_h);
    for (ow = 0; ow < d->out_w; ow++) {
      float* yp = j->y + (((size_t)n * d->out_h + oh) * d->out_w + ow) * j->ys;
      int first = 1;
      for (ky = 0; ky < d->kh; ky++) {
        const int ih = oh * d->stride_h - d->pad_h + ky * j->dh;
        if (ih < 0 || ih >= d->in_h) continue;
        for (kx = 0; kx < d->kw; kx++) {
          const int iw = ow * d->stride_w - d->pad_w + kx * j->dw;
          const float* xp;
          if (iw < 0 || iw >= d->in_w) continue;
          xp = j->x + (((size_t)n * d->in_h + ih) * d->in_w + iw) * j->xs;
          if (first) {
            memcpy(yp, xp, c * sizeof(float));
            first = 0;
          } else {
            rowop(TXK_ROW_BINARY, c, xp, yp, yp, &q);
          }
        }
      }
      if (first)
        for (k = 0; k < c; k++) yp[k] = -HUGE_VALF;
    }
  }
}

static void pool_setup(pool_job* j, const txk_context* ctx, const txk_pool2d_desc* d,
                       const float* x, float* y) {
  j->ctx = ctx;
  j->d = d;
  j->x = x;
  j->y = y;
  j->c = (size_t)d->c;
  j->xs = (size_t)(d->x_stride ? d->x_stride : d->c);
  j->ys = (size_t)(d->y_stride ? d->y_stride : d->c);
  j->dh = d->dil_h ? d->dil_h : 1;
  j->dw = d->dil_w ? d->dil_w : 1;
}

static void pool_run(const txk_context* ctx, txk_range_fn* fn, const pool_job* j) {
  const txk_pool2d_desc* d = j->d;
  txk_parallel_range(ctx, fn, j, (size_t)d->n * (size_t)d->out_h, 1,
                     (double)d->out_w * d->kh * d->kw * (double)d->c, TXK_MIN_TASK_FLOATS);
}

int txk_maxpool2d(const txk_context* ctx, const txk_pool2d_desc* d, const float* x, float* y) {
  pool_job j;
  if (!txk_ctx_ok(ctx) || !pool_check(d, x, y) || !window_check(d) || d->dil_h < 0 ||
      d->dil_w < 0)
    return TXK_EINVAL;
  pool_setup(&j, ctx, d, x, y);
  pool_run(ctx, maxpool_range, &j);
  return TXK_OK;
}

static void avgpool_range(const void* arg, size_t r0, size_t r1) {
  const pool_job* j = (const pool_job*)arg;
  const txk_pool2d_desc* d = j->d;
  const size_t c = j->c;
  size_t r, k;
  int ow, ih, iw;
  for (r = r0; r < r1; r++) {
    const int n = (int)(r / (size_t)d->out_h), oh = (int)(r % (size_t)d->out_h);
    for (ow = 0; ow < d->out_w; ow++) {
      /* PyTorch: window clipped to the padded extent gives pool_size, then to the input */
      int hs = oh * d->stride_h - d->pad_h, ws = ow * d->stride_w - d->pad_w;
      int he = hs + d->kh, we = ws + d->kw;
      int pool, cnt;
      float* yp = j->y + (((size_t)n * d->out_h + oh) * d->out_w + ow) * j->ys;
      float inv;
      if (he > d->in_h + d->pad_h) he = d->in_h + d->pad_h;
      if (we > d->in_w + d->pad_w) we = d->in_w + d->pad_w;
      pool = (he - hs) * (we - ws);
      if (hs < 0) hs = 0;
      if (ws < 0) ws = 0;
      if (he > d->in_h) he = d->in_h;
      if (we > d->in_w) we = d->in_w;
      cnt = (he - hs) * (we - ws);
      for (k = 0; k < c; k++) yp[k] = 0.0f;
      for (ih = hs; ih < he; ih++)
        for (iw = ws; iw < we; iw++) {
          const float* xp = j->x + (((size_t)n * d->in_h + ih) * d->in_w + iw) * j->xs;
          for (k = 0; k < c; k++) yp[k] += xp[k];
        }
      if (d->divisor_override)
        inv = 1.0f / (float)d->divisor_override;
      else
        inv = 1.0f / (float)(d->count_include_pad ? pool : cnt);
      for (k = 0; k < c; k++) yp[k] *= inv;
    }
  }
}

int txk_avgpool2d(const txk_context* ctx, const txk_pool2d_desc* d, const float* x, float* y) {
  pool_job j;
  if (!txk_ctx_ok(ctx) || !pool_check(d, x, y) || !window_check(d) || d->divisor_override < 0 ||
      (d->dil_h > 1 || d->dil_w > 1))
    return TXK_EINVAL;
  pool_setup(&j, ctx, d, x, y);
  pool_run(ctx, avgpool_range, &j);
  return TXK_OK;
}

static void adaptive_range(const void* arg, size_t r0, size_t r1) {
  const pool_job* j = (const pool_job*)arg;
  const txk_pool2d_desc* d = j->d;
  const size_t c = j->c;
  size_t r, k;
  int ow, ih, iw;
  for (r = r0; r < r1; r++) {
    const int n = (int)(r / (size_t)d->out_h), oh = (int)(r % (size_t)d->out_h);
    for (ow = 0; ow < d->out_w; ow++) {
      const int hs = (int)(((long)oh * d->in_h) / d->out_h);
      const int he = (int)(((long)(oh + 1) * d->in_h + d->out_h - 1) / d->out_h);
      const int ws = (int)(((long)ow * d->in_w) / d->out_w);
      const int we = (int)(((long)(ow + 1) * d->in_w + d->out_w - 1) / d->out_w);
      float* yp = j->y + (((size_t)n * d->out_h + oh) * d->out_w + ow) * j->ys;
      const float inv = 1.0f / (float)((he - hs) * (we - ws));
      for (k = 0; k < c; k++) yp[k] = 0.0f;
      for (ih = hs; ih < he; ih++)
        for (iw = ws; iw < we; iw++) {
          const float* xp = j->x + (((size_t)n * d->in_h + ih) * d->in_w + iw) * j->xs;
          for (k = 0; k < c; k++) yp[k] += xp[k];
        }
      for (k = 0; k < c; k++) yp[k] *= inv;
    }
  }
}

int txk_adaptive_avgpool2d(const txk_context* ctx, const txk_pool2d_desc* d, const float* x,
                           float* y) {
  pool_job j;
  if (!txk_ctx_ok(ctx) || !pool_check(d, x, y)) return TXK_EINVAL;
  pool_setup(&j, ctx, d, x, y);
  txk_parallel_range(ctx, adaptive_range, &j, (size_t)d->n * (size_t)d->out_h, 1,
                     (double)d->in_h * d->in_w * (double)d->c / d->out_h, TXK_MIN_TASK_FLOATS);
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

typedef struct bin_job {
  const txk_context* ctx;
  const txk_binary_desc* d;
  const float *a, *b;
  float* y;
  txk_rowop_params q;
  size_t chunk, ncol; /* columns per task piece, pieces per row */
} bin_job;

/* Rows of the vector path, cut into column pieces: items are (row, piece). */
static void bin_vec_range(const void* arg, size_t t0, size_t t1) {
  const bin_job* j = (const bin_job*)arg;
  const txk_binary_desc* d = j->d;
  const txk_rowop_ukernel_fn fn = txk_ctx_rowop(j->ctx);
  size_t t;
  for (t = t0; t < t1; t++) {
    const size_t row = t / j->ncol, c0 = t % j->ncol * j->chunk;
    const size_t i = row / d->p, k = row % d->p;
    const size_t cc = d->c - c0 < j->chunk ? d->c - c0 : j->chunk;
    fn(TXK_ROW_BINARY, cc, j->a + i * d->a_sn + k * d->a_sp + c0 * d->a_sc,
       j->b + i * d->b_sn + k * d->b_sp + c0 * d->b_sc, j->y + i * d->y_sn + k * d->y_sp + c0,
       &j->q);
  }
}

static void bin_strided_range(const void* arg, size_t r0, size_t r1) {
  const bin_job* j = (const bin_job*)arg;
  const txk_binary_desc* d = j->d;
  size_t row, k;
  for (row = r0; row < r1; row++) {
    const size_t i = row / d->p, jj = row % d->p;
    const float* ar = j->a + i * d->a_sn + jj * d->a_sp;
    const float* br = j->b + i * d->b_sn + jj * d->b_sp;
    float* yr = j->y + i * d->y_sn + jj * d->y_sp;
    const size_t c = d->c, asc = d->a_sc, bsc = d->b_sc;
    switch (d->op) {
      case TXK_BIN_ADD: TXK_BIN_LOOP(av + bv); break;
      case TXK_BIN_SUB: TXK_BIN_LOOP(av - bv); break;
      case TXK_BIN_MUL: TXK_BIN_LOOP(av * bv); break;
      case TXK_BIN_DIV: TXK_BIN_LOOP(av / bv); break;
      case TXK_BIN_MAX: TXK_BIN_LOOP(txk_scalar_max(av, bv)); break;
      case TXK_BIN_MIN: TXK_BIN_LOOP(txk_scalar_min(av, bv)); break;
    }
    apply_act(j->ctx, &d->epilogue, yr, c);
  }
}

int txk_binary(const txk_context* ctx, const txk_binary_desc* d, const float* a, const float* b,
               float* y) {
  bin_job j;
  size_t rows;
  if (!txk_ctx_ok(ctx) || d == NULL || a == NULL || b == NULL || y == NULL ||
      d->epilogue.residual != TXK_RESIDUAL_NONE || (unsigned)d->op > TXK_BIN_MIN ||
      (unsigned)d->epilogue.act >= TXK_ACT_COUNT)
    return TXK_EINVAL;
  memset(&j, 0, sizeof j);
  j.ctx = ctx;
  j.d = d;
  j.a = a;
  j.b = b;
  j.y = y;
  rows = d->n * d->p;
  if (d->c == 0 || rows == 0) return TXK_OK;
  if ((d->a_sc == 0 || d->a_sc == 1) && (d->b_sc == 0 || d->b_sc == 1)) {
    /* contiguous or broadcast channels: the context's vector row kernel; few long rows are
     * cut into column pieces (multiples of 16) so that they split over the threads too */
    const size_t want = txk_want_tasks(ctx, (double)rows * d->c, TXK_MIN_TASK_FLOATS);
    j.q.bop = (int)d->op;
    j.q.asc = d->a_sc;
    j.q.bsc = d->b_sc;
    j.q.act = (int)d->epilogue.act;
    j.q.lo = d->epilogue.act_min;
    j.q.hi = d->epilogue.act_max;
    j.chunk = d->c;
    if (want > rows) {
      const size_t pieces = (want + rows - 1) / rows;
      j.chunk = txk_round_up((d->c + pieces - 1) / pieces, 16);
    }
    j.ncol = (d->c + j.chunk - 1) / j.chunk;
    txk_parallel_range(ctx, bin_vec_range, &j, rows * j.ncol, 1, (double)j.chunk,
                       TXK_MIN_TASK_FLOATS);
    return TXK_OK;
  }
  txk_parallel_range(ctx, bin_strided_range, &j, rows, 1, (double)d->c, TXK_MIN_TASK_FLOATS);
  return TXK_OK;
}

typedef struct unary_job {
  txk_vunary_ukernel_fn fn;
  int op;
  float lo, hi;
  const float* x;
  float* y;
} unary_job;

static void unary_range(const void* arg, size_t i0, size_t i1) {
  const unary_job* j = (const unary_job*)arg;
  j->fn(j->op, j->lo, j->hi, i1 - i0, j->x + i0, j->y + i0);
}

/* y = op(x) over count floats, in ranges of multiples of 16 over the pool. */
static void vunary_split(const txk_context* ctx, int op, float lo, float hi, size_t count,
                         const float* x, float* y) {
  unary_job j;
  j.fn = txk_ctx_vunary(ctx);
  j.op = op;
  j.lo = lo;
  j.hi = hi;
  j.x = x;
  j.y = y;
  txk_parallel_range(ctx, unary_range, &j, count, 16, 4.0, TXK_MIN_TASK_FLOATS);
}

int txk_unary(const txk_context* ctx, txk_act act, float act_min, float act_max, size_t count,
              const float* x, float* y) {
  if (!txk_ctx_ok(ctx) || (count && (x == NULL || y == NULL)) || (unsigned)act >= TXK_ACT_COUNT)
    return TXK_EINVAL;
  if (count) vunary_split(ctx, (int)act, act_min, act_max, count, x, y);
  return TXK_OK;
}

/* SE gate: tasks are ranges of pixels (batch item x p); each computes the gates it needs
 * (the same values whoever computes them). */
typedef struct cs_job {
  const txk_context* ctx;
  size_t p, c;
  const float *x, *s;
  txk_act gate_act;
  float* y;
} cs_job;

void txk_gate_values(const txk_context* ctx, txk_act act, size_t n, const float* s, float* g) {
  if (act == TXK_ACT_NONE)
    memcpy(g, s, n * sizeof(float));
  else
    txk_ctx_vunary(ctx)((int)act, 0.0f, 6.0f, n, s, g);
}

static void cs_range(const void* arg, size_t r0, size_t r1) {
  const cs_job* j = (const cs_job*)arg;
  const txk_rowop_ukernel_fn rowop = txk_ctx_rowop(j->ctx);
  float g[TXK_CHUNK];
  txk_rowop_params prm;
  size_t r = r0, c0, q;
  memset(&prm, 0, sizeof prm);
  while (r < r1) {
    const size_t b = r / j->p;
    const size_t q1 = (b + 1) * j->p < r1 ? (b + 1) * j->p : r1; /* rows of batch item b */
    for (c0 = 0; c0 < j->c; c0 += TXK_CHUNK) {
      const size_t cc = j->c - c0 < TXK_CHUNK ? j->c - c0 : TXK_CHUNK;
      txk_gate_values(j->ctx, j->gate_act, cc, j->s + b * j->c + c0, g);
      for (q = r; q < q1; q++) rowop(TXK_ROW_MUL, cc, j->x + q * j->c + c0, g, j->y + q * j->c + c0, &prm);
    }
    r = q1;
  }
}

int txk_channel_scale(const txk_context* ctx, size_t n, size_t p, size_t c, const float* x,
                      const float* s, txk_act gate_act, float* y) {
  cs_job j;
  if (!txk_ctx_ok(ctx) || x == NULL || s == NULL || y == NULL ||
      (unsigned)gate_act >= TXK_ACT_COUNT)
    return TXK_EINVAL;
  if (p == 0 || c == 0) return TXK_OK;
  j.ctx = ctx;
  j.p = p;
  j.c = c;
  j.x = x;
  j.s = s;
  j.gate_act = gate_act;
  j.y = y;
  /* one band of rows per thread: the image usually comes from a step split over rows the same
   * way (see txk_global_avgpool) */
  txk_parallel_bands(ctx, cs_range, &j, n * p, 1, (double)c, TXK_MIN_TASK_FLOATS);
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
  if (count) vunary_split(ctx, op, 0.0f, 0.0f, count, x, y);
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
