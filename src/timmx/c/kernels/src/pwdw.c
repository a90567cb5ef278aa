/* Drivers layer: a 1x1 conv fused with the depthwise conv that reads its output
 * (txk_conv2d_pw_dw, the expansion of an inverted residual). Strict C99.
 *
 * The expanded tensor e = pw(x) never goes to memory. The output rows of each image are split
 * into at most TXK_PWDW_SLOTS tasks (ranges of output rows); task t owns slot t of the
 * scratch, room for `cap` rows of e (in_w pixels x c channels each, ~TXK_PWDW_SLOT_BYTES, so
 * the slot stays in L2). A task walks its range in bands of `band` output rows. For each band
 * it keeps the rows of e that the previous band also needed (moved to the front of the slot),
 * computes the missing rows with the GEMM micro-kernel (the pw conv's rows with its epilogue),
 * then runs the depthwise micro-kernel on each output row, pointed at the slot as at an image
 * of those rows only (in_h = rows held, pad_top shifted by the first row held).
 *
 * Every row of e is computed by the GEMM micro-kernel with the same k order as txk_conv2d's
 * 1x1 path, and every output row by the same depthwise row kernel with the same valid taps,
 * so y is bitwise the result of the two separate calls, whatever the split or thread count. */
#include <stdint.h>
#include <string.h>

#include "internal/txk_gemm_driver.h"

#define TXK_PWDW_SLOTS 8
#define TXK_PWDW_SLOT_BYTES (256u * 1024u)

/* Shape of the slots: floats per row of e, output rows per band, rows per slot, slots. */
typedef struct pwdw_geom {
  size_t row_floats, band, cap, slot_floats, slots;
} pwdw_geom;

int txk_pwdw_check(const txk_pwdw_desc* d) {
  const txk_conv2d_desc *pw, *dw;
  if (d == NULL) return TXK_EINVAL;
  pw = &d->pw;
  dw = &d->dw;
  if (txk_conv2d_check(pw) != TXK_OK || txk_conv2d_check(dw) != TXK_OK) return TXK_EINVAL;
  if (pw->kh != 1 || pw->kw != 1 || pw->stride_h != 1 || pw->stride_w != 1 || pw->pad_top ||
      pw->pad_left || pw->pad_bottom || pw->pad_right || pw->groups != 1 ||
      pw->algo != TXK_CONV_DIRECT || pw->epilogue.residual != TXK_RESIDUAL_NONE ||
      pw->y_stride != 0)
    return TXK_EINVAL;
  if (dw->groups != dw->in_c || dw->in_c != dw->out_c || dw->dil_h != 1 || dw->dil_w != 1 ||
      dw->algo != TXK_CONV_DIRECT || (dw->x_stride != 0 && dw->x_stride != dw->in_c))
    return TXK_EINVAL;
  if (dw->n != pw->n || dw->in_h != pw->out_h || dw->in_w != pw->out_w || dw->in_c != pw->out_c)
    return TXK_EINVAL;
  return TXK_OK;
}

/* 0 when d is invalid or the scratch size would not fit in a size_t. */
static int geom_of(const txk_pwdw_desc* d, pwdw_geom* g) {
  const size_t c = (size_t)d->dw.in_c, w = (size_t)d->dw.in_w, in_h = (size_t)d->dw.in_h;
  const size_t kh = (size_t)d->dw.kh, sh = (size_t)d->dw.stride_h;
  const size_t out_h = (size_t)d->dw.out_h;
  size_t fit;
  if (txk_pwdw_check(d) != TXK_OK) return 0;
  if (w > SIZE_MAX / 4 / c) return 0;
  g->row_floats = w * c;
  /* band output rows need (band - 1) * sh + kh rows of e */
  fit = TXK_PWDW_SLOT_BYTES / 4 / g->row_floats;
  g->band = fit >= kh ? (fit - kh) / sh + 1 : 1;
  if (g->band > out_h) g->band = out_h;
  g->cap = (g->band - 1) * sh + kh;
  if (g->cap > in_h) g->cap = in_h; /* the slot only holds rows inside the image */
  g->slots = out_h < TXK_PWDW_SLOTS ? out_h : TXK_PWDW_SLOTS;
  if (g->cap > (SIZE_MAX / 4 / TXK_PWDW_SLOTS - 16) / g->row_floats) return 0;
  g->slot_floats = txk_round_up(g->cap * g->row_floats, 16);
  return 1;
}

size_t txk_pwdw_scratch_size(const txk_pwdw_desc* d) {
  pwdw_geom g;
  if (!geom_of(d, &g)) return 0;
  return g.slots * g.slot_floats * 4;
}

typedef struct pwdw_job {
  const txk_context* ctx;
  const txk_pwdw_desc* d;
  pwdw_geom g;
  const float* x;
  const float* w_pw;
  const float* w_dw;
  float* y;
  const float* r;
  float* scratch;
  size_t ntasks;
} pwdw_job;

/* Rows [lo, hi) of e (clipped to the image) that output rows [ob, oe) read. */
static void rows_needed(const txk_conv2d_desc* dw, size_t ob, size_t oe, size_t* lo, size_t* hi) {
  const ptrdiff_t sh = dw->stride_h, pt = dw->pad_top, in_h = dw->in_h;
  ptrdiff_t a = (ptrdiff_t)ob * sh - pt, b = (ptrdiff_t)(oe - 1) * sh - pt + dw->kh;
  if (a < 0) a = 0;
  if (b > in_h) b = in_h;
  if (b < a) b = a;
  *lo = (size_t)a;
  *hi = (size_t)b;
}

static void pwdw_task(void* arg, size_t t) {
  static const ptrdiff_t off0[1] = {0};
  const pwdw_job* j = (const pwdw_job*)arg;
  const txk_conv2d_desc* pw = &j->d->pw;
  const txk_conv2d_desc* dw = &j->d->dw;
  const txk_ukernel_info* info = j->ctx->ukernel[TXK_FAMILY_GEMM];
  const txk_dwconv_ukernel_fn dwfn = txk_ctx_dwconv(j->ctx);
  const size_t out_h = (size_t)dw->out_h, out_w = (size_t)dw->out_w;
  const size_t in_h = (size_t)dw->in_h, in_w = (size_t)dw->in_w, c = (size_t)dw->in_c;
  const size_t xs = (size_t)(pw->x_stride ? pw->x_stride : pw->in_c);
  const size_t rf = j->g.row_floats;
  const size_t oh0 = t * out_h / j->ntasks, oh1 = (t + 1) * out_h / j->ntasks;
  float* slot = j->scratch + t * j->g.slot_floats;
  gemm_job gj;
  txk_dw_params p;
  size_t n, ob, oh;
  memset(&gj, 0, sizeof gj);
  gj.ctx = j->ctx;
  gj.rd.step_w = xs;
  gj.kc = (size_t)pw->in_c;
  gj.ks = 1;
  gj.off = off0;
  gj.w = j->w_pw;
  gj.block_floats = 16 * (1 + (size_t)pw->in_c);
  gj.ncols = c;
  gj.ys = c;
  gj.rs = c;
  gj.ep = &pw->epilogue;
  gj.groups = 1;
  txk_dw_params_of(dw, &p); /* in_h and pt are set per band */
  p.x = slot;
  p.w = j->w_dw;
  for (n = 0; n < (size_t)dw->n; n++) {
    const float* img = j->x + n * in_h * in_w * xs;
    size_t lo_prev = 0, hi_prev = 0; /* rows of e in the slot: [lo_prev, hi_prev) */
    for (ob = oh0; ob < oh1; ob += j->g.band) {
      const size_t oe = ob + j->g.band < oh1 ? ob + j->g.band : oh1;
      size_t lo, hi, from;
      rows_needed(dw, ob, oe, &lo, &hi);
      from = lo;
      if (hi_prev > lo) { /* rows lo .. hi_prev - 1 are held: move them to the front */
        from = hi_prev < hi ? hi_prev : hi;
        if (lo > lo_prev) memmove(slot, slot + (lo - lo_prev) * rf, (from - lo) * rf * 4);
      }
      if (hi > from) {
        gj.rd.base = img + from * in_w * xs;
        gj.rd.m = (hi - from) * in_w;
        gj.rd.row_w = gj.rd.m;
        gj.y = slot + (from - lo) * rf;
        txk_gemm_range(&gj, 0, 0, (c + (size_t)info->nr - 1) / (size_t)info->nr, 0,
                       (gj.rd.m + (size_t)info->mr - 1) / (size_t)info->mr);
      }
      lo_prev = lo;
      hi_prev = hi;
      /* the slot as an image of rows lo .. hi - 1: in_h shrinks, pad_top grows by lo */
      p.in_h = hi - lo;
      p.pt = (size_t)dw->pad_top + lo;
      for (oh = ob; oh < oe; oh++) {
        const size_t row = n * out_h + oh;
        dwfn(&p, oh, j->y + row * out_w * p.ys, j->r ? j->r + row * out_w * p.rs : NULL);
      }
    }
  }
}

int txk_conv2d_pw_dw(const txk_context* ctx, const txk_pwdw_desc* d, const float* x,
                     const float* w_pw, const float* w_dw, float* y, const float* residual,
                     void* scratch) {
  pwdw_job j;
  double macs;
  size_t want;
  if (!txk_ctx_ok(ctx) || txk_pwdw_check(d) != TXK_OK || x == NULL || w_pw == NULL ||
      w_dw == NULL || y == NULL || scratch == NULL)
    return TXK_EINVAL;
  if ((d->dw.epilogue.residual != TXK_RESIDUAL_NONE) != (residual != NULL)) return TXK_EINVAL;
  if (!TXK_IS_ALIGNED(w_pw) || !TXK_IS_ALIGNED(w_dw) || !TXK_IS_ALIGNED(scratch))
    return TXK_EALIGN;
  memset(&j, 0, sizeof j);
  if (!geom_of(d, &j.g)) return TXK_EINVAL;
  if (d->dw.n == 0) return TXK_OK;
  j.ctx = ctx;
  j.d = d;
  j.x = x;
  j.w_pw = w_pw;
  j.w_dw = w_dw;
  j.y = y;
  j.r = residual;
  j.scratch = (float*)scratch;
  macs = (double)d->pw.n * d->pw.in_h * d->pw.in_w * (double)d->pw.out_c * d->pw.in_c +
         (double)d->dw.n * d->dw.out_h * d->dw.out_w * (double)d->dw.out_c * d->dw.kh * d->dw.kw;
  /* half the usual task count: each task recomputes the rows of e its first band shares
   * with the task before it */
  want = (txk_want_tasks(ctx, macs, TXK_MIN_TASK_MACS) + 1) / 2;
  j.ntasks = want < j.g.slots ? want : j.g.slots;
  if (j.ntasks < 1) j.ntasks = 1;
  if (j.ntasks == 1)
    pwdw_task(&j, 0);
  else
    txk_parallel(ctx, pwdw_task, &j, j.ntasks);
  return TXK_OK;
}
