/* Drivers layer: conv2d (im2col-free segments over the GEMM driver, zero-bordered copies for
 * padding) and depthwise conv (the context's DWCONV micro-kernel). Strict C99. */
#include <string.h>

#include "internal/txk_gemm_driver.h"

#define TXK_MAX_SEGMENTS 1024
/* Depthwise: bytes of input rows (kh rows x in_w pixels x chunk channels) a
 * channel chunk may span, so that the band stays in L2 while rows sweep it. An
 * L1-sized band (24 KiB: 16 channels of a 112-wide image) was slower: each pass
 * over a chunk used one cache line of every pixel, and the pixel's other lines
 * came from L3 again on the next pass (efficientnet_b0's 112x112x96 stride-2
 * conv: 0.59 -> 0.41 ms with the whole pixel per pass). */
#define TXK_DW_BAND_BYTES (256u * 1024u)

static int is_dw(const txk_conv2d_desc* d) {
  return d->groups == d->in_c && d->in_c == d->out_c;
}

int txk_conv2d_check(const txk_conv2d_desc* d) {
  long eh, ew;
  if (d == NULL) return TXK_EINVAL;
  if (d->n < 0 || d->in_h < 1 || d->in_w < 1 || d->in_c < 1 || d->out_c < 1 || d->kh < 1 ||
      d->kw < 1 || d->stride_h < 1 || d->stride_w < 1 || d->dil_h < 1 || d->dil_w < 1 ||
      d->groups < 1 || d->pad_top < 0 || d->pad_left < 0 || d->pad_bottom < 0 || d->pad_right < 0)
    return TXK_EINVAL;
  if (d->in_c % d->groups || d->out_c % d->groups) return TXK_EINVAL;
  if (d->x_stride < 0 || d->y_stride < 0 || d->r_stride < 0) return TXK_EINVAL;
  if ((d->x_stride && d->x_stride < d->in_c) || (d->y_stride && d->y_stride < d->out_c) ||
      (d->r_stride && d->r_stride < d->out_c))
    return TXK_EINVAL;
  eh = (long)d->in_h + d->pad_top + d->pad_bottom - (long)d->dil_h * (d->kh - 1) - 1;
  ew = (long)d->in_w + d->pad_left + d->pad_right - (long)d->dil_w * (d->kw - 1) - 1;
  if (eh < 0 || ew < 0) return TXK_EINVAL;
  if (d->out_h != eh / d->stride_h + 1 || d->out_w != ew / d->stride_w + 1) return TXK_EINVAL;
  if ((unsigned)d->epilogue.act >= TXK_ACT_COUNT || (unsigned)d->epilogue.residual > 2)
    return TXK_EINVAL;
  if (d->algo != TXK_CONV_DIRECT && d->algo != TXK_CONV_WINOGRAD) return TXK_EINVAL;
  if (d->algo == TXK_CONV_WINOGRAD &&
      (d->kh != 3 || d->kw != 3 || d->stride_h != 1 || d->stride_w != 1 || d->dil_h != 1 ||
       d->dil_w != 1 || d->groups != 1 || is_dw(d)))
    return TXK_EINVAL;
  return TXK_OK;
}

size_t txk_conv2d_packed_size(const txk_conv2d_desc* d) {
  size_t g, ocg, icg;
  if (d == NULL || d->groups < 1 || d->out_c < 1) return 0;
  if (d->algo == TXK_CONV_WINOGRAD) return txk_winograd_packed_floats(d) * 4;
  if (is_dw(d)) return txk_round_up((size_t)d->out_c, 16) * (1 + (size_t)d->kh * d->kw) * 4;
  g = (size_t)d->groups;
  ocg = (size_t)d->out_c / g;
  icg = (size_t)d->in_c / g;
  return g * txk_round_up(ocg, 16) * (1 + (size_t)d->kh * d->kw * icg) * 4;
}

static int has_pad(const txk_conv2d_desc* d) {
  return d->pad_top || d->pad_left || d->pad_bottom || d->pad_right;
}

size_t txk_conv2d_scratch_size(const txk_conv2d_desc* d) {
  size_t hp, wp;
  if (txk_conv2d_check(d) != TXK_OK) return 0;
  if (d->algo == TXK_CONV_WINOGRAD) return txk_winograd_scratch_floats(d) * 4;
  if (is_dw(d) || !has_pad(d)) return 0;
  hp = (size_t)d->in_h + d->pad_top + d->pad_bottom;
  wp = (size_t)d->in_w + d->pad_left + d->pad_right;
  return txk_round_up(hp * wp * (size_t)d->in_c * 4, TXK_ALIGN);
}

/* Rows of the OC-chunk loop: number of 16-blocks of weights kept hot in L2. */

/* Depthwise: tasks are (batch item, channel chunk, range of output rows); a row is never
 * split (the kernel's path for a pixel depends on its place in the row). */
typedef struct dw_job {
  txk_dwconv_ukernel_fn fn;
  txk_dw_params p; /* c, x, w set per task */
  const float* x;
  const float* w;
  float* y;
  const float* r;
  size_t in_c, out_h, chunk, nchunks, nrow_tasks;
} dw_job;

static void dw_task(void* arg, size_t t) {
  const dw_job* j = (const dw_job*)arg;
  const size_t per_n = j->nchunks * j->nrow_tasks;
  const size_t n = t / per_n, ic = t % per_n / j->nrow_tasks, ir = t % j->nrow_tasks;
  const size_t c0 = ic * j->chunk;
  const size_t oh0 = ir * j->out_h / j->nrow_tasks, oh1 = (ir + 1) * j->out_h / j->nrow_tasks;
  txk_dw_params p = j->p;
  size_t oh;
  p.c = j->in_c - c0 < j->chunk ? j->in_c - c0 : j->chunk;
  p.x = j->x + n * p.in_h * p.in_w * p.xs + c0;
  p.w = j->w + (c0 / 16) * 16 * (1 + p.kh * p.kw);
  for (oh = oh0; oh < oh1; oh++) {
    const size_t row = n * j->out_h + oh;
    j->fn(&p, oh, j->y + row * p.out_w * p.ys + c0, j->r ? j->r + row * p.out_w * p.rs + c0 : NULL);
  }
}

void txk_dw_params_of(const txk_conv2d_desc* d, txk_dw_params* p) {
  memset(p, 0, sizeof *p);
  p->in_h = (size_t)d->in_h;
  p->in_w = (size_t)d->in_w;
  p->xs = (size_t)(d->x_stride ? d->x_stride : d->in_c);
  p->c = (size_t)d->in_c;
  p->out_w = (size_t)d->out_w;
  p->ys = (size_t)(d->y_stride ? d->y_stride : d->out_c);
  p->rs = (size_t)(d->r_stride ? d->r_stride : d->out_c);
  p->kh = (size_t)d->kh;
  p->kw = (size_t)d->kw;
  p->sh = (size_t)d->stride_h;
  p->sw = (size_t)d->stride_w;
  p->pt = (size_t)d->pad_top;
  p->pl = (size_t)d->pad_left;
  p->dh = (size_t)d->dil_h;
  p->dw = (size_t)d->dil_w;
  p->ep = &d->epilogue;
}

static int conv_dw(const txk_context* ctx, const txk_conv2d_desc* d, const float* x,
                   const float* w, float* y, const float* r) {
  dw_job j;
  size_t want, ntasks_cn;
  memset(&j, 0, sizeof j);
  j.fn = txk_ctx_dwconv(ctx);
  txk_dw_params_of(d, &j.p);
  j.x = x;
  j.w = w;
  j.y = y;
  j.r = r;
  j.in_c = (size_t)d->in_c;
  j.out_h = (size_t)d->out_h;
  {
    /* Channel chunks (multiples of 16) outside, rows inside: the kh input rows of one
     * chunk (the band the kernel sweeps) stay in L2 and each input line is fetched from L3
     * once instead of kh times. */
    const size_t band = j.p.kh * j.p.in_w * sizeof(float);
    j.chunk = (TXK_DW_BAND_BYTES / (band ? band : 1)) / 16 * 16;
    if (j.chunk < 16) j.chunk = 16;
  }
  j.nchunks = (j.in_c + j.chunk - 1) / j.chunk;
  ntasks_cn = (size_t)d->n * j.nchunks;
  if (ntasks_cn == 0) return TXK_OK;
  want = txk_want_tasks(ctx,
                        (double)d->n * d->out_h * d->out_w * (double)d->out_c * d->kh * d->kw,
                        TXK_MIN_TASK_MACS / 4);
  /* One part per thread: contiguous bands of rows, so that each thread mostly reads the rows
   * it wrote in the step before (usually split the same way; the first part usually goes to the
   * caller, which claims first).
   * With 4 parts per thread, claimed in any order, half the input came from the other core's
   * cache: at 2 threads the depthwise convs of mobilenetv3_large_100, efficientnet_b0 and
   * convnext_tiny took 0.634-0.656, 1.148-1.160 and 2.01-2.06 ms, and 0.507-0.514, 0.933-0.951
   * and 1.53-1.55 with one part per thread (sums of fastest calls, alternating builds). */
  if (want > (size_t)txk_context_threads(ctx)) want = (size_t)txk_context_threads(ctx);
  j.nrow_tasks = 1;
  if (want > ntasks_cn) {
    j.nrow_tasks = (want + ntasks_cn - 1) / ntasks_cn;
    if (j.nrow_tasks > j.out_h) j.nrow_tasks = j.out_h;
  }
  if (want <= 1) {
    size_t t;
    for (t = 0; t < ntasks_cn; t++) dw_task(&j, t);
  } else {
    txk_parallel(ctx, dw_task, &j, ntasks_cn * j.nrow_tasks);
  }
  return TXK_OK;
}

/* Zero-bordered copy of one input image into scratch: tasks are ranges of padded rows. */
typedef struct pad_job {
  const float* img;
  float* sp;
  size_t xs, c, in_h, in_w, wp, hp, pt, pl, pr, ntasks;
} pad_job;

static void pad_task(void* arg, size_t t) {
  const pad_job* j = (const pad_job*)arg;
  const size_t r0 = t * j->hp / j->ntasks, r1 = (t + 1) * j->hp / j->ntasks;
  const size_t c = j->c;
  size_t hr, iw;
  for (hr = r0; hr < r1; hr++) {
    float* row = j->sp + hr * j->wp * c;
    if (hr < j->pt || hr >= j->pt + j->in_h) {
      memset(row, 0, j->wp * c * sizeof(float));
    } else {
      /* zero only the border columns: the interior is written once, by the copy */
      float* dst = row + j->pl * c;
      const float* src = j->img + (hr - j->pt) * j->in_w * j->xs;
      if (j->pl) memset(row, 0, j->pl * c * sizeof(float));
      if (j->pr) memset(dst + j->in_w * c, 0, j->pr * c * sizeof(float));
      if (j->xs == c) {
        memcpy(dst, src, j->in_w * c * sizeof(float));
      } else {
        for (iw = 0; iw < j->in_w; iw++) memcpy(dst + iw * c, src + iw * j->xs, c * sizeof(float));
      }
    }
  }
}

int txk_conv2d(const txk_context* ctx, const txk_conv2d_desc* d, const float* x,
               const float* w_packed, float* y, const float* residual, void* scratch) {
  size_t xs, ys, rs, icg, ocg, nb, block_floats, wp, n, ks, kc, s;
  ptrdiff_t off[TXK_MAX_SEGMENTS];
  if (!txk_ctx_ok(ctx) || txk_conv2d_check(d) != TXK_OK || x == NULL || w_packed == NULL ||
      y == NULL)
    return TXK_EINVAL;
  if ((d->epilogue.residual != TXK_RESIDUAL_NONE) != (residual != NULL)) return TXK_EINVAL;
  if (!TXK_IS_ALIGNED(w_packed)) return TXK_EALIGN;
  if (d->algo == TXK_CONV_WINOGRAD) {
    if (txk_conv2d_scratch_size(d) != 0) {
      if (scratch == NULL) return TXK_EINVAL;
      if (!TXK_IS_ALIGNED(scratch)) return TXK_EALIGN;
    }
    return txk_conv2d_winograd(ctx, d, x, w_packed, y, residual, scratch);
  }
  if (is_dw(d)) return conv_dw(ctx, d, x, w_packed, y, residual);
  if (txk_conv2d_scratch_size(d) != 0) {
    if (scratch == NULL) return TXK_EINVAL;
    if (!TXK_IS_ALIGNED(scratch)) return TXK_EALIGN;
  }
  xs = (size_t)(d->x_stride ? d->x_stride : d->in_c);
  ys = (size_t)(d->y_stride ? d->y_stride : d->out_c);
  rs = (size_t)(d->r_stride ? d->r_stride : d->out_c);
  icg = (size_t)(d->in_c / d->groups);
  ocg = (size_t)(d->out_c / d->groups);
  nb = (ocg + 15) / 16;
  block_floats = 16 * (1 + (size_t)d->kh * d->kw * icg);
  wp = (size_t)d->in_w + d->pad_left + d->pad_right;
  for (n = 0; n < (size_t)d->n; n++) {
    const float* img = x + n * (size_t)d->in_h * d->in_w * xs;
    size_t bxs = xs, bw = (size_t)d->in_w;
    gemm_job j;
    if (has_pad(d)) {
      pad_job pj;
      pj.img = img;
      pj.sp = (float*)scratch;
      pj.xs = xs;
      pj.c = (size_t)d->in_c;
      pj.in_h = (size_t)d->in_h;
      pj.in_w = (size_t)d->in_w;
      pj.wp = wp;
      pj.hp = (size_t)d->in_h + d->pad_top + d->pad_bottom;
      pj.pt = (size_t)d->pad_top;
      pj.pl = (size_t)d->pad_left;
      pj.pr = (size_t)d->pad_right;
      pj.ntasks = txk_want_tasks(ctx, (double)pj.hp * wp * pj.c, TXK_MIN_TASK_FLOATS * 4);
      if (pj.ntasks > pj.hp) pj.ntasks = pj.hp;
      txk_parallel(ctx, pad_task, &pj, pj.ntasks);
      img = pj.sp;
      bxs = pj.c;
      bw = wp;
    }
    if (d->dil_w == 1 && d->groups == 1 && bxs == (size_t)d->in_c) {
      /* kw taps x channels are contiguous per kernel row: one segment per ky */
      ks = (size_t)d->kh;
      kc = (size_t)d->kw * icg;
      if (ks > TXK_MAX_SEGMENTS) return TXK_EUNSUPPORTED;
      for (s = 0; s < ks; s++) off[s] = (ptrdiff_t)(s * (size_t)d->dil_h * bw * bxs);
    } else {
      size_t ky, kx;
      ks = (size_t)d->kh * d->kw;
      kc = icg;
      if (ks > TXK_MAX_SEGMENTS) return TXK_EUNSUPPORTED;
      for (ky = 0; ky < (size_t)d->kh; ky++)
        for (kx = 0; kx < (size_t)d->kw; kx++)
          off[ky * d->kw + kx] =
              (ptrdiff_t)((ky * (size_t)d->dil_h * bw + kx * (size_t)d->dil_w) * bxs);
    }
    memset(&j, 0, sizeof j);
    j.ctx = ctx;
    j.rd.base = img;
    j.rd.m = (size_t)d->out_h * d->out_w;
    j.rd.row_w = (size_t)d->out_w;
    j.rd.step_h = (size_t)d->stride_h * bw * bxs;
    j.rd.step_w = (size_t)d->stride_w * bxs;
    j.kc = kc;
    j.ks = ks;
    j.off = off;
    j.w = w_packed;
    j.block_floats = block_floats;
    j.ncols = ocg;
    j.y = y + n * j.rd.m * ys;
    j.ys = ys;
    j.r = residual ? residual + n * j.rd.m * rs : NULL;
    j.rs = rs;
    j.ep = &d->epilogue;
    j.groups = (size_t)d->groups;
    j.a_gs = (ptrdiff_t)icg;
    j.w_gs = (ptrdiff_t)(nb * block_floats);
    j.y_gs = (ptrdiff_t)ocg;
    j.r_gs = (ptrdiff_t)ocg;
    txk_run_gemm_job(&j);
  }
  return TXK_OK;
}
