/* Drivers layer: conv2d / linear / bmm / attention: tiling, padding and calls
 * into the context's GEMM and DWCONV micro-kernels. Strict C99. */
#include <string.h>

#include "internal/txk_internal.h"

#define TXK_MAX_SEGMENTS 1024
/* Weights of one OC chunk are kept below this many bytes (L2 blocking). */
#define TXK_L2_WEIGHT_BYTES (384u * 1024u)
/* Depthwise: bytes of input rows (kh rows x in_w pixels x chunk channels) a
 * channel chunk may span, so that the band stays in L1 while rows sweep it. */
#define TXK_DW_L1_BAND_BYTES (24u * 1024u)

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
static size_t chunk_blocks(size_t block_floats, size_t nr_blocks) {
  size_t nb = TXK_L2_WEIGHT_BYTES / (block_floats * 4);
  nb = nb / nr_blocks * nr_blocks;
  return nb < nr_blocks ? nr_blocks : nb;
}

/* Generic "rows x packed weights" driver: rows are given by a callback-free
 * description: row p (0 <= p < m) starts at row_base(p). */
typedef struct rows_desc {
  const float* base; /* row base for p = 0 */
  size_t m;
  size_t row_w;      /* output pixels per output row (conv) or m (gemm) */
  size_t step_h;     /* floats between output rows' first input  */
  size_t step_w;     /* floats between consecutive pixels in a row */
} rows_desc;

/* One GEMM call of the drivers: `groups` independent problems (group g reads rows at
 * base + g * a_gs, weights at w + g * w_gs, writes y + g * y_gs, r + g * y_gs) of m rows x
 * ncols columns. */
typedef struct gemm_job {
  const txk_context* ctx;
  rows_desc rd;
  size_t kc, ks;
  const ptrdiff_t* off;
  const float* w;
  size_t block_floats, ncols;
  float* y;
  size_t ys;
  const float* r;
  size_t rs;
  const txk_epilogue* ep;
  size_t groups;
  ptrdiff_t a_gs, w_gs, y_gs, r_gs; /* floats between groups */
  /* the split: tasks = groups x n_oc x n_px; oc ranges in units of NR columns, pixel
   * ranges in units of MR rows */
  size_t n_oc, n_px, oc_units, px_units;
} gemm_job;

/* Columns [oc_u0, oc_u1) (units of NR) x rows [px_u0, px_u1) (units of MR) of group g. */
static void gemm_range(const gemm_job* j, size_t g, size_t oc_u0, size_t oc_u1, size_t px_u0,
                       size_t px_u1) {
  const txk_ukernel_info* info = j->ctx->ukernel[TXK_FAMILY_GEMM];
  const txk_gemm_ukernel_fn fn = (txk_gemm_ukernel_fn)info->fn;
  const size_t mr_max = (size_t)info->mr, nr = (size_t)info->nr;
  const size_t nr_blocks = nr / 16;
  const size_t nb = (j->ncols + 15) / 16;
  const size_t cb = chunk_blocks(j->block_floats, nr_blocks);
  const rows_desc* rd = &j->rd;
  const float* base = rd->base + (ptrdiff_t)g * j->a_gs;
  const float* w = j->w + (ptrdiff_t)g * j->w_gs;
  float* y = j->y + (ptrdiff_t)g * j->y_gs;
  const float* r = j->r ? j->r + (ptrdiff_t)g * j->r_gs : NULL;
  const size_t bb = oc_u0 * nr_blocks;
  const size_t be = oc_u1 * nr_blocks < nb ? oc_u1 * nr_blocks : nb;
  const size_t pb = px_u0 * mr_max;
  const size_t pe = px_u1 * mr_max < rd->m ? px_u1 * mr_max : rd->m;
  const float* a[TXK_MAX_MR];
  size_t b0, p0, b, i;
  for (b0 = bb; b0 < be; b0 += cb) {
    const size_t b1 = b0 + cb < be ? b0 + cb : be;
    /* (row, column) of pixel p0: one division per range, then stepped */
    size_t oh = pb / rd->row_w, ow = pb % rd->row_w;
    for (p0 = pb; p0 < pe; p0 += mr_max) {
      const size_t mr = pe - p0 < mr_max ? pe - p0 : mr_max;
      for (i = 0; i < mr_max; i++) {
        a[i] = base + oh * rd->step_h + ow * rd->step_w;
        /* rows >= mr repeat the last valid row; a full tile steps on to the next p0 */
        if (i + 1 < mr || (i + 1 == mr_max && mr == mr_max)) {
          if (++ow == rd->row_w) {
            ow = 0;
            oh++;
          }
        }
      }
      for (b = b0; b < b1; b += nr_blocks) {
        const size_t oc = b * 16;
        const size_t nc = j->ncols - oc < nr ? j->ncols - oc : nr;
        fn(mr, nc, j->kc, j->ks, a, j->off, w + b * j->block_floats, j->block_floats,
           y + p0 * j->ys + oc, j->ys, r ? r + p0 * j->rs + oc : NULL, j->rs, j->ep);
      }
    }
  }
}

static void gemm_task(void* arg, size_t t) {
  const gemm_job* j = (const gemm_job*)arg;
  const size_t per_group = j->n_oc * j->n_px;
  const size_t g = t / per_group, io = t % per_group / j->n_px, ip = t % j->n_px;
  gemm_range(j, g, io * j->oc_units / j->n_oc, (io + 1) * j->oc_units / j->n_oc,
             ip * j->px_units / j->n_px, (ip + 1) * j->px_units / j->n_px);
}

/* Split `units_a` x `units_b` into about `want` parts, `a` first when prefer_a. */
static void split2(size_t units_a, size_t units_b, size_t want, int prefer_a, size_t* na,
                   size_t* nb) {
  if (prefer_a) {
    *na = units_a < want ? units_a : want;
    *nb = (want + *na - 1) / *na;
    if (*nb > units_b) *nb = units_b;
  } else {
    *nb = units_b < want ? units_b : want;
    *na = (want + *nb - 1) / *nb;
    if (*na > units_a) *na = units_a;
  }
  if (*na < 1) *na = 1;
  if (*nb < 1) *nb = 1;
}

static void run_gemm_job(gemm_job* j) {
  const txk_ukernel_info* info = j->ctx->ukernel[TXK_FAMILY_GEMM];
  const size_t mr = (size_t)info->mr, nr = (size_t)info->nr;
  const double macs = (double)j->groups * (double)j->rd.m * (double)j->ncols *
                      (double)j->kc * (double)j->ks;
  size_t want = txk_want_tasks(j->ctx, macs, TXK_MIN_TASK_MACS);
  j->oc_units = (j->ncols + nr - 1) / nr;
  j->px_units = (j->rd.m + mr - 1) / mr;
  if (j->rd.m == 0 || j->ncols == 0) return;
  if (want <= 1) {
    size_t g;
    for (g = 0; g < j->groups; g++) gemm_range(j, g, 0, j->oc_units, 0, j->px_units);
    return;
  }
  want = (want + j->groups - 1) / j->groups;
  /* weights larger than the activations: split output channels first (each thread streams
   * its own part of the weights), else split pixels */
  split2(j->oc_units, j->px_units, want, j->ncols >= j->rd.m, &j->n_oc, &j->n_px);
  txk_parallel(j->ctx, gemm_task, j, j->groups * j->n_oc * j->n_px);
}

static void run_gemm(const txk_context* ctx, const rows_desc* rd, size_t kc, size_t ks,
                     const ptrdiff_t* off, const float* w, size_t block_floats, size_t ncols,
                     float* y, size_t ys, const float* r, size_t rs, const txk_epilogue* ep) {
  gemm_job j;
  memset(&j, 0, sizeof j);
  j.ctx = ctx;
  j.rd = *rd;
  j.kc = kc;
  j.ks = ks;
  j.off = off;
  j.w = w;
  j.block_floats = block_floats;
  j.ncols = ncols;
  j.y = y;
  j.ys = ys;
  j.r = r;
  j.rs = rs;
  j.ep = ep;
  j.groups = 1;
  run_gemm_job(&j);
}

void txk_gemm_groups(const txk_context* ctx, size_t groups, size_t m, size_t k, size_t n,
                     const float* a, size_t lda, const float* w, size_t w_gs, float* y,
                     size_t ldy) {
  static const ptrdiff_t off0[1] = {0};
  txk_epilogue ep;
  gemm_job j;
  memset(&ep, 0, sizeof ep);
  memset(&j, 0, sizeof j);
  j.ctx = ctx;
  j.rd.base = a;
  j.rd.m = m;
  j.rd.row_w = m;
  j.rd.step_w = lda;
  j.kc = k;
  j.ks = 1;
  j.off = off0;
  j.w = w;
  j.block_floats = 16 * (1 + k);
  j.ncols = n;
  j.y = y;
  j.ys = ldy;
  j.rs = ldy;
  j.ep = &ep;
  j.groups = groups;
  j.a_gs = (ptrdiff_t)(m * lda);
  j.w_gs = (ptrdiff_t)w_gs;
  j.y_gs = (ptrdiff_t)(m * ldy);
  run_gemm_job(&j);
}

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

static int conv_dw(const txk_context* ctx, const txk_conv2d_desc* d, const float* x,
                   const float* w, float* y, const float* r) {
  dw_job j;
  size_t want, ntasks_cn;
  memset(&j, 0, sizeof j);
  j.fn = txk_ctx_dwconv(ctx);
  j.p.in_h = (size_t)d->in_h;
  j.p.in_w = (size_t)d->in_w;
  j.p.xs = (size_t)(d->x_stride ? d->x_stride : d->in_c);
  j.p.out_w = (size_t)d->out_w;
  j.p.ys = (size_t)(d->y_stride ? d->y_stride : d->out_c);
  j.p.rs = (size_t)(d->r_stride ? d->r_stride : d->out_c);
  j.p.kh = (size_t)d->kh;
  j.p.kw = (size_t)d->kw;
  j.p.sh = (size_t)d->stride_h;
  j.p.sw = (size_t)d->stride_w;
  j.p.pt = (size_t)d->pad_top;
  j.p.pl = (size_t)d->pad_left;
  j.p.dh = (size_t)d->dil_h;
  j.p.dw = (size_t)d->dil_w;
  j.p.ep = &d->epilogue;
  j.x = x;
  j.w = w;
  j.y = y;
  j.r = r;
  j.in_c = (size_t)d->in_c;
  j.out_h = (size_t)d->out_h;
  {
    /* Channel chunks (multiples of 16) outside, rows inside: the kh input rows of one
     * chunk (the band the kernel sweeps) stay in L1 and each input line is fetched from L2
     * once instead of kh times. */
    const size_t band = j.p.kh * j.p.in_w * sizeof(float);
    j.chunk = (TXK_DW_L1_BAND_BYTES / (band ? band : 1)) / 16 * 16;
    if (j.chunk < 16) j.chunk = 16;
  }
  j.nchunks = (j.in_c + j.chunk - 1) / j.chunk;
  ntasks_cn = (size_t)d->n * j.nchunks;
  if (ntasks_cn == 0) return TXK_OK;
  want = txk_want_tasks(ctx,
                        (double)d->n * d->out_h * d->out_w * (double)d->out_c * d->kh * d->kw,
                        TXK_MIN_TASK_MACS / 4);
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
    run_gemm_job(&j);
  }
  return TXK_OK;
}

size_t txk_linear_packed_size(const txk_linear_desc* d) {
  if (d == NULL || d->n < 1 || d->k < 0) return 0;
  return txk_round_up((size_t)d->n, 16) * (1 + (size_t)d->k) * 4;
}

int txk_linear(const txk_context* ctx, const txk_linear_desc* d, const float* a,
               const float* w_packed, float* y, const float* residual) {
  rows_desc rd;
  ptrdiff_t off0 = 0;
  size_t lda, ldy, ldr;
  if (!txk_ctx_ok(ctx) || d == NULL || a == NULL || w_packed == NULL || y == NULL || d->m < 0 ||
      d->n < 1 || d->k < 0 || d->lda < 0 || d->ldy < 0 || d->ldr < 0 ||
      (unsigned)d->epilogue.act >= TXK_ACT_COUNT || (unsigned)d->epilogue.residual > 2)
    return TXK_EINVAL;
  if ((d->epilogue.residual != TXK_RESIDUAL_NONE) != (residual != NULL)) return TXK_EINVAL;
  if (!TXK_IS_ALIGNED(w_packed)) return TXK_EALIGN;
  lda = (size_t)(d->lda ? d->lda : d->k);
  ldy = (size_t)(d->ldy ? d->ldy : d->n);
  ldr = (size_t)(d->ldr ? d->ldr : d->n);
  if (d->m == 0) return TXK_OK;
  rd.base = a;
  rd.m = (size_t)d->m;
  rd.row_w = (size_t)d->m;
  rd.step_h = 0;
  rd.step_w = lda;
  run_gemm(ctx, &rd, (size_t)d->k, 1, &off0, w_packed, 16 * (1 + (size_t)d->k), (size_t)d->n, y,
           ldy, residual, ldr, &d->epilogue);
  return TXK_OK;
}

/* ---- batched matmul ---------------------------------------------------- */
/* Batches are packed and multiplied TXK_BMM_SLOTS at a time (each has its own slot of
 * scratch, so the packing and the products of a group of batches run in parallel). */
#define TXK_BMM_SLOTS 32

static size_t bmm_bpack_floats(size_t n, size_t k) { return txk_round_up(n, 16) * (1 + k); }

static size_t bmm_slot_floats(const txk_bmm_desc* d) {
  size_t f = bmm_bpack_floats((size_t)d->n, (size_t)d->k);
  if (d->a_sk != 1) f += txk_round_up((size_t)d->m * d->k, 16);
  return f;
}

static size_t bmm_slots(const txk_bmm_desc* d) {
  return d->batch < TXK_BMM_SLOTS ? (size_t)(d->batch > 0 ? d->batch : 1) : TXK_BMM_SLOTS;
}

size_t txk_bmm_scratch_size(const txk_bmm_desc* d) {
  if (d == NULL || d->m < 0 || d->n < 0 || d->k < 0 || d->batch < 0) return 0;
  return bmm_slots(d) * bmm_slot_floats(d) * 4;
}

/* Pack B[k][j] = src[k*sk + j*sn] * alpha into the gemm layout (zero bias). */
static void pack_b(size_t n, size_t k, const float* src, long sk, long sn, float alpha,
                   float* dst) {
  size_t jb, t, j;
  for (jb = 0; jb < n; jb += 16) {
    const size_t nn = n - jb < 16 ? n - jb : 16;
    for (j = 0; j < 16; j++) dst[j] = 0.0f;
    dst += 16;
    for (t = 0; t < k; t++) {
      const float* s = src + (long)t * sk + (long)jb * sn;
      for (j = 0; j < nn; j++) dst[j] = s[(long)j * sn] * alpha;
      for (; j < 16; j++) dst[j] = 0.0f;
      dst += 16;
    }
  }
}

static const txk_epilogue no_epilogue = {TXK_ACT_NONE, 0.0f, 0.0f, TXK_RESIDUAL_NONE};

typedef struct bmm_pack_job {
  const txk_bmm_desc* d;
  const float* a;
  const float* b;
  float* scratch;
  size_t b0, slot_floats;
} bmm_pack_job;

static void bmm_pack_task(void* arg, size_t t) {
  const bmm_pack_job* j = (const bmm_pack_job*)arg;
  const txk_bmm_desc* d = j->d;
  const long bi = (long)(j->b0 + t);
  float* bp = j->scratch + t * j->slot_floats;
  pack_b((size_t)d->n, (size_t)d->k, j->b + bi * d->b_sb, d->b_sk, d->b_sn, d->alpha, bp);
  if (d->a_sk != 1) {
    float* ap = bp + bmm_bpack_floats((size_t)d->n, (size_t)d->k);
    long i, q;
    for (i = 0; i < d->m; i++)
      for (q = 0; q < d->k; q++) ap[i * d->k + q] = j->a[bi * d->a_sb + i * d->a_sm + q * d->a_sk];
  }
}

int txk_bmm(const txk_context* ctx, const txk_bmm_desc* d, const float* a, const float* b,
            float* c, void* scratch) {
  size_t b0, slots, slot_floats;
  ptrdiff_t off0 = 0;
  if (!txk_ctx_ok(ctx) || d == NULL || a == NULL || b == NULL || c == NULL || d->batch < 0 ||
      d->m < 0 || d->n < 0 || d->k < 0)
    return TXK_EINVAL;
  if (d->batch == 0 || d->m == 0 || d->n == 0) return TXK_OK;
  if (scratch == NULL) return TXK_EINVAL;
  if (!TXK_IS_ALIGNED(scratch)) return TXK_EALIGN;
  slots = bmm_slots(d);
  slot_floats = bmm_slot_floats(d);
  for (b0 = 0; b0 < (size_t)d->batch; b0 += slots) {
    const size_t nbat = (size_t)d->batch - b0 < slots ? (size_t)d->batch - b0 : slots;
    bmm_pack_job pj;
    gemm_job j;
    pj.d = d;
    pj.a = a;
    pj.b = b;
    pj.scratch = (float*)scratch;
    pj.b0 = b0;
    pj.slot_floats = slot_floats;
    if (txk_want_tasks(ctx, (double)nbat * d->n * d->k, TXK_MIN_TASK_FLOATS) > 1) {
      txk_parallel(ctx, bmm_pack_task, &pj, nbat);
    } else {
      size_t t;
      for (t = 0; t < nbat; t++) bmm_pack_task(&pj, t);
    }
    memset(&j, 0, sizeof j);
    j.ctx = ctx;
    if (d->a_sk == 1) {
      j.rd.base = a + (long)b0 * d->a_sb;
      j.rd.step_w = (size_t)d->a_sm;
      j.a_gs = (ptrdiff_t)d->a_sb;
    } else {
      j.rd.base = (const float*)scratch + bmm_bpack_floats((size_t)d->n, (size_t)d->k);
      j.rd.step_w = (size_t)d->k;
      j.a_gs = (ptrdiff_t)slot_floats;
    }
    j.rd.m = (size_t)d->m;
    j.rd.row_w = (size_t)d->m;
    j.kc = (size_t)d->k;
    j.ks = 1;
    j.off = &off0;
    j.w = (const float*)scratch;
    j.w_gs = (ptrdiff_t)slot_floats;
    j.block_floats = 16 * (1 + (size_t)d->k);
    j.ncols = (size_t)d->n;
    j.y = c + (long)b0 * d->c_sb;
    j.y_gs = (ptrdiff_t)d->c_sb;
    j.ys = (size_t)d->c_sm;
    j.ep = &no_epilogue;
    j.groups = nbat;
    run_gemm_job(&j);
  }
  return TXK_OK;
}

/* ---- fused attention --------------------------------------------------- */
/* Scratch: the score rows of every head (seq x round_up(seq, 16) each), then K^T and V of
 * every head packed in the gemm layout. Phase 1 packs K and V (a task per head and operand);
 * phase 2 runs a task per (head, block of query rows): S = scale Q K^T for the block,
 * softmax of its rows, O = P V for the block. */
static void attn_sizes(const txk_attention_desc* d, size_t* s_f, size_t* k_f, size_t* v_f) {
  const size_t seq = (size_t)d->seq, hd = (size_t)d->head_dim;
  *s_f = txk_round_up(seq * txk_round_up(seq, 16), 16);
  *k_f = bmm_bpack_floats(seq, hd);
  *v_f = bmm_bpack_floats(hd, seq);
}

size_t txk_attention_scratch_size(const txk_attention_desc* d) {
  size_t s_f, k_f, v_f;
  if (d == NULL || d->seq < 1 || d->heads < 1 || d->head_dim < 1) return 0;
  attn_sizes(d, &s_f, &k_f, &v_f);
  return (size_t)d->heads * (s_f + k_f + v_f) * 4;
}

typedef struct attn_job {
  const txk_context* ctx;
  const txk_attention_desc* d;
  const float *q, *k, *v;
  float* out;
  float *sbuf, *kp, *vp;
  size_t s_f, k_f, v_f, seq, hd, qs, os, lds, nqb, q_units;
} attn_job;

/* Column units (NR columns each) of ncols columns. */
static size_t nr_units(const txk_context* ctx, size_t ncols) {
  const size_t nr = (size_t)ctx->ukernel[TXK_FAMILY_GEMM]->nr;
  return (ncols + nr - 1) / nr;
}

static void attn_pack_task(void* arg, size_t t) {
  const attn_job* j = (const attn_job*)arg;
  const size_t h = t / 2;
  if (t % 2 == 0) /* B[t][j] = K[j][h*hd + t] * scale */
    pack_b(j->seq, j->hd, j->k + h * j->hd, 1, (long)j->qs, j->d->scale, j->kp + h * j->k_f);
  else /* B[j][t] = V[j][h*hd + t] */
    pack_b(j->hd, j->seq, j->v + h * j->hd, (long)j->qs, 1, 1.0f, j->vp + h * j->v_f);
}

static void attn_task(void* arg, size_t t) {
  const attn_job* j = (const attn_job*)arg;
  const size_t h = t / j->nqb, qb = t % j->nqb;
  const size_t u0 = qb * j->q_units / j->nqb, u1 = (qb + 1) * j->q_units / j->nqb;
  const size_t mr = (size_t)j->ctx->ukernel[TXK_FAMILY_GEMM]->mr;
  const size_t r0 = u0 * mr, r1 = u1 * mr < j->seq ? u1 * mr : j->seq;
  float* sbuf = j->sbuf + h * j->s_f;
  ptrdiff_t off0 = 0;
  gemm_job g;
  if (r1 <= r0) return;
  memset(&g, 0, sizeof g);
  g.ctx = j->ctx;
  g.groups = 1;
  g.ks = 1;
  g.off = &off0;
  g.ep = &no_epilogue;
  /* S rows [r0, r1) = Q_h K_h^T * scale */
  g.rd.base = j->q + h * j->hd;
  g.rd.m = j->seq;
  g.rd.row_w = j->seq;
  g.rd.step_w = j->qs;
  g.kc = j->hd;
  g.w = j->kp + h * j->k_f;
  g.block_floats = 16 * (1 + j->hd);
  g.ncols = j->seq;
  g.y = sbuf;
  g.ys = j->lds;
  gemm_range(&g, 0, 0, nr_units(j->ctx, j->seq), u0, u1);
  txk_softmax_rows(j->ctx, r1 - r0, j->seq, sbuf + r0 * j->lds, j->lds, sbuf + r0 * j->lds,
                   j->lds);
  /* O rows [r0, r1) = P V_h */
  g.rd.base = sbuf;
  g.rd.step_w = j->lds;
  g.kc = j->seq;
  g.w = j->vp + h * j->v_f;
  g.block_floats = 16 * (1 + j->seq);
  g.ncols = j->hd;
  g.y = j->out + h * j->hd;
  g.ys = j->os;
  gemm_range(&g, 0, 0, nr_units(j->ctx, j->hd), u0, u1);
}

int txk_attention(const txk_context* ctx, const txk_attention_desc* d, const float* q,
                  const float* k, const float* v, float* out, void* scratch) {
  attn_job j;
  size_t want, heads, t;
  if (!txk_ctx_ok(ctx) || d == NULL || q == NULL || k == NULL || v == NULL || out == NULL ||
      d->seq < 1 || d->heads < 1 || d->head_dim < 1 || d->qkv_stride < 0 || d->out_stride < 0)
    return TXK_EINVAL;
  if (scratch == NULL) return TXK_EINVAL;
  if (!TXK_IS_ALIGNED(scratch)) return TXK_EALIGN;
  memset(&j, 0, sizeof j);
  attn_sizes(d, &j.s_f, &j.k_f, &j.v_f);
  heads = (size_t)d->heads;
  j.ctx = ctx;
  j.d = d;
  j.q = q;
  j.k = k;
  j.v = v;
  j.out = out;
  j.sbuf = (float*)scratch;
  j.kp = j.sbuf + heads * j.s_f;
  j.vp = j.kp + heads * j.k_f;
  j.seq = (size_t)d->seq;
  j.hd = (size_t)d->head_dim;
  j.lds = txk_round_up(j.seq, 16);
  j.qs = (size_t)(d->qkv_stride ? d->qkv_stride : d->heads * d->head_dim);
  j.os = (size_t)(d->out_stride ? d->out_stride : d->heads * d->head_dim);
  j.q_units = (j.seq + (size_t)ctx->ukernel[TXK_FAMILY_GEMM]->mr - 1) /
              (size_t)ctx->ukernel[TXK_FAMILY_GEMM]->mr;
  want = txk_want_tasks(ctx, 2.0 * (double)heads * j.seq * j.seq * j.hd, TXK_MIN_TASK_MACS);
  if (want <= 1) {
    j.nqb = 1;
    for (t = 0; t < 2 * heads; t++) attn_pack_task(&j, t);
    for (t = 0; t < heads; t++) attn_task(&j, t);
    return TXK_OK;
  }
  txk_parallel(ctx, attn_pack_task, &j, 2 * heads);
  j.nqb = (want + heads - 1) / heads;
  if (j.nqb > j.q_units) j.nqb = j.q_units;
  txk_parallel(ctx, attn_task, &j, heads * j.nqb);
  return TXK_OK;
}
