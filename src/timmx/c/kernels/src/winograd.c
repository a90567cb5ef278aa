/* Drivers layer: Winograd F(4x4, 3x3) convolution (stride 1, dilation 1, groups 1). Strict C99.
 *
 * y = A^T [ (G g G^T) . (B^T d B) ] A for every 4x4 output tile (6x6 input tile d), with
 * interpolation points 0, -1, 1, 1/2, -2 and infinity (Lavin & Gray's 0, +-1, +-2 mixed with
 * 1/2, after Barabasz et al. 2020: about a third of their float32 error):
 *
 *   B^T = | 1  -3/2  -2    3/2  1    0 |   G = |  1      0      0    |
 *         | 0   1    -5/2  1/2  1    0 |       | -1/3    1/3   -1/3  |
 *         | 0  -1     1/2  5/2  1    0 |       |  1/3    1/3    1/3  |
 *         | 0  -2    -1    2    1    0 |       | -16/15 -8/15  -4/15 |
 *         | 0   1/2  -1   -1/2  1    0 |       |  1/15  -2/15   4/15 |
 *         | 0   1    -3/2 -2    3/2  1 |       |  0      0      1    |
 *
 *   A^T = | 1   1  1  1     1  0 |
 *         | 0  -1  1  1/2  -2  0 |
 *         | 0   1  1  1/4   4  0 |
 *         | 0  -1  1  1/8  -8  1 |
 *
 * Packed weights ("winograd" layout, written by packing.pack_conv2d_winograd): bias[ocp], then
 * for each of the 36 transform positions xi the gemm layout of U_xi[ic][oc] = (G g G^T)[xi]
 * (ocp / 16 blocks of {zero bias[16], U[ic][16]}). ocp = out_c rounded up to 16.
 *
 * Three steps per tile block: the input transform of its tiles (the context's wino
 * micro-kernel; edge tiles and channel counts that are not a multiple of 16 go through a
 * zero-filled patch), the 36 GEMMs of its rows (the GEMM micro-kernel), the output transform
 * with bias and epilogue. A block's V and M rows stay in L2. With few blocks per thread the
 * three steps run as three parallel passes instead (every tile, then every GEMM, then every
 * tile): each output value is computed the same way either way, so results do not depend on
 * the thread count. */
#include <string.h>

#include "internal/txk_gemm_driver.h"

#define WINO_CHUNK 64                  /* channels per zero-filled patch (stack buffers) */
#define WINO_BLOCK_BYTES (512u * 1024u) /* V and M rows of one tile block */
#define WINO_BLOCK_U_BYTES (1024u * 1024u) /* transformed weights reused across blocks */

typedef struct wino_job {
  const txk_context* ctx;
  const txk_conv2d_desc* d;
  const float* x;
  const float* w; /* packed: bias[ocp], then the 36 U blocks */
  float* y;
  const float* r;
  float* v; /* V[xi][tile][icp] */
  float* m; /* M[xi][tile][ocp] */
  size_t tw, tpi, tiles, icp, ocp, xs, ys, rs, tb;
  int fast_in, fast_out;
  gemm_job g; /* the 36 GEMMs M[xi] = V[xi] @ U_xi */
} wino_job;

static size_t r16(size_t v) { return (v + 15) / 16 * 16; }

static size_t tiles_of(const txk_conv2d_desc* d) {
  return (size_t)d->n * (((size_t)d->out_h + 3) / 4) * (((size_t)d->out_w + 3) / 4);
}

size_t txk_winograd_packed_floats(const txk_conv2d_desc* d) {
  const size_t ocp = r16((size_t)d->out_c);
  return ocp + 36 * ocp * (1 + (size_t)d->in_c);
}

size_t txk_winograd_scratch_floats(const txk_conv2d_desc* d) {
  return 36 * tiles_of(d) * (r16((size_t)d->in_c) + r16((size_t)d->out_c)) + 64;
}

/* V rows of tile t: straight from x when its 6x6 input tile is inside the image and in_c is a
 * multiple of 16, else from zero-filled patches of WINO_CHUNK channels. */
static void in_tile(const wino_job* j, size_t t) {
  const txk_conv2d_desc* d = j->d;
  const txk_wino_ukernel_fn fn = txk_ctx_wino(j->ctx);
  const ptrdiff_t in_h = d->in_h, in_w = d->in_w;
  const size_t n = t / j->tpi, ty = t % j->tpi / j->tw, tx = t % j->tw;
  const ptrdiff_t ih0 = (ptrdiff_t)(ty * 4) - d->pad_top;
  const ptrdiff_t iw0 = (ptrdiff_t)(tx * 4) - d->pad_left;
  const float* xn = j->x + n * (size_t)in_h * (size_t)in_w * j->xs;
  float patch[36 * WINO_CHUNK];
  txk_wino_params p;
  size_t c0, k;
  memset(&p, 0, sizeof p);
  p.dst = j->v + t * j->icp;
  p.d_xi = j->tiles * j->icp;
  if (j->fast_in && ih0 >= 0 && iw0 >= 0 && ih0 + 6 <= in_h && iw0 + 6 <= in_w) {
    p.cp = j->icp;
    p.src = xn + ((size_t)ih0 * (size_t)in_w + (size_t)iw0) * j->xs;
    p.s_row = (size_t)in_w * j->xs;
    p.s_px = j->xs;
    fn(TXK_WINO_IN, &p);
    return;
  }
  for (c0 = 0; c0 < j->icp; c0 += WINO_CHUNK) {
    const size_t nc = j->icp - c0 < WINO_CHUNK ? j->icp - c0 : WINO_CHUNK;
    const size_t valid = (size_t)d->in_c - c0 < nc ? (size_t)d->in_c - c0 : nc;
    for (k = 0; k < 36; k++) {
      const ptrdiff_t ih = ih0 + (ptrdiff_t)(k / 6), iw = iw0 + (ptrdiff_t)(k % 6);
      float* dst = patch + k * nc;
      if (ih >= 0 && ih < in_h && iw >= 0 && iw < in_w) {
        memcpy(dst, xn + ((size_t)ih * (size_t)in_w + (size_t)iw) * j->xs + c0,
               valid * sizeof(float));
        memset(dst + valid, 0, (nc - valid) * sizeof(float));
      } else {
        memset(dst, 0, nc * sizeof(float));
      }
    }
    p.cp = nc;
    p.src = patch;
    p.s_row = 6 * nc;
    p.s_px = nc;
    p.dst = j->v + t * j->icp + c0;
    fn(TXK_WINO_IN, &p);
  }
}

/* The epilogue of one stored pixel's `nc` channels (the slow path of out_tile). */
static void epi_pixel(const wino_job* j, const float* o, size_t nc, float* yp, const float* rp) {
  const txk_epilogue* ep = &j->d->epilogue;
  const int act = (int)ep->act, res = (int)ep->residual, complex_act = txk_act_is_complex(act);
  size_t c;
  for (c = 0; c < nc; c++) {
    float v = o[c];
    if (res == TXK_RESIDUAL_BEFORE_ACT) v += rp[c];
    if (act == TXK_ACT_RELU) v = v > 0.0f ? v : (v == v ? 0.0f : v);
    if (act == TXK_ACT_CLAMP) {
      v = v < ep->act_min ? ep->act_min : v;
      v = v > ep->act_max ? ep->act_max : v;
    }
    if (res == TXK_RESIDUAL_AFTER_ACT && !complex_act) v += rp[c];
    yp[c] = v;
  }
  if (complex_act) {
    txk_ctx_vunary(j->ctx)(act, ep->act_min, ep->act_max, nc, yp, yp);
    if (res == TXK_RESIDUAL_AFTER_ACT)
      for (c = 0; c < nc; c++) yp[c] += rp[c];
  }
}

/* Output pixels of tile t: straight to y when the tile is inside the image, out_c is a
 * multiple of 16 and the activation is cheap, else through a stack tile of WINO_CHUNK
 * channels (bias only) and epi_pixel. */
static void out_tile(const wino_job* j, size_t t) {
  const txk_conv2d_desc* d = j->d;
  const txk_wino_ukernel_fn fn = txk_ctx_wino(j->ctx);
  const size_t out_h = (size_t)d->out_h, out_w = (size_t)d->out_w;
  const size_t n = t / j->tpi, oy0 = t % j->tpi / j->tw * 4, ox0 = t % j->tw * 4;
  const size_t pix0 = (n * out_h + oy0) * out_w + ox0;
  float buf[16 * WINO_CHUNK];
  txk_epilogue none;
  txk_wino_params p;
  size_t c0, oy, ox;
  memset(&p, 0, sizeof p);
  p.s_xi = j->tiles * j->ocp;
  if (j->fast_out && oy0 + 4 <= out_h && ox0 + 4 <= out_w) {
    p.cp = j->ocp;
    p.src = j->m + t * j->ocp;
    p.bias = j->w;
    p.dst = j->y + pix0 * j->ys;
    p.d_row = out_w * j->ys;
    p.d_px = j->ys;
    p.r = j->r ? j->r + pix0 * j->rs : NULL;
    p.r_row = out_w * j->rs;
    p.r_px = j->rs;
    p.ep = &d->epilogue;
    fn(TXK_WINO_OUT, &p);
    return;
  }
  memset(&none, 0, sizeof none);
  for (c0 = 0; c0 < j->ocp; c0 += WINO_CHUNK) {
    const size_t nc = j->ocp - c0 < WINO_CHUNK ? j->ocp - c0 : WINO_CHUNK;
    const size_t valid = (size_t)d->out_c - c0 < nc ? (size_t)d->out_c - c0 : nc;
    p.cp = nc;
    p.src = j->m + t * j->ocp + c0;
    p.bias = j->w + c0;
    p.dst = buf;
    p.d_row = 4 * nc;
    p.d_px = nc;
    p.ep = &none;
    fn(TXK_WINO_OUT, &p);
    for (oy = 0; oy < 4 && oy0 + oy < out_h; oy++)
      for (ox = 0; ox < 4 && ox0 + ox < out_w; ox++) {
        const size_t pix = pix0 + oy * out_w + ox;
        epi_pixel(j, buf + (oy * 4 + ox) * nc, valid, j->y + pix * j->ys + c0,
                  j->r ? j->r + pix * j->rs + c0 : NULL);
      }
  }
}

static void in_range(const void* arg, size_t t0, size_t t1) {
  for (; t0 < t1; t0++) in_tile((const wino_job*)arg, t0);
}

static void out_range(const void* arg, size_t t0, size_t t1) {
  for (; t0 < t1; t0++) out_tile((const wino_job*)arg, t0);
}

/* Tile block b: its input transforms, its rows of the 36 GEMMs, its output transforms. */
static void block_task(void* arg, size_t b) {
  const wino_job* j = (const wino_job*)arg;
  const size_t mr = (size_t)j->ctx->ukernel[TXK_FAMILY_GEMM]->mr;
  const size_t t0 = b * j->tb, t1 = t0 + j->tb < j->tiles ? t0 + j->tb : j->tiles;
  size_t xi;
  in_range(j, t0, t1);
  for (xi = 0; xi < 36; xi++)
    txk_gemm_range(&j->g, xi, 0, j->g.oc_units, t0 / mr, (t1 + mr - 1) / mr);
  out_range(j, t0, t1);
}

int txk_conv2d_winograd(const txk_context* ctx, const txk_conv2d_desc* d, const float* x,
                        const float* w, float* y, const float* r, void* scratch) {
  static const ptrdiff_t off0[1] = {0};
  static const txk_epilogue no_ep = {TXK_ACT_NONE, 0.0f, 0.0f, TXK_RESIDUAL_NONE};
  const size_t ic = (size_t)d->in_c, oc = (size_t)d->out_c;
  const size_t mr = (size_t)ctx->ukernel[TXK_FAMILY_GEMM]->mr;
  const size_t nr = (size_t)ctx->ukernel[TXK_FAMILY_GEMM]->nr;
  const size_t threads = (size_t)txk_context_threads(ctx);
  size_t nblocks, tb_l2, tb_split;
  wino_job j;
  if (scratch == NULL) return TXK_EINVAL;
  memset(&j, 0, sizeof j);
  j.ctx = ctx;
  j.d = d;
  j.x = x;
  j.w = w;
  j.y = y;
  j.r = r;
  j.tw = ((size_t)d->out_w + 3) / 4;
  j.tpi = j.tw * (((size_t)d->out_h + 3) / 4);
  j.tiles = tiles_of(d);
  j.icp = r16(ic);
  j.ocp = r16(oc);
  j.xs = (size_t)(d->x_stride ? d->x_stride : d->in_c);
  j.ys = (size_t)(d->y_stride ? d->y_stride : d->out_c);
  j.rs = (size_t)(d->r_stride ? d->r_stride : d->out_c);
  j.v = (float*)scratch;
  j.m = j.v + 36 * j.tiles * j.icp;
  j.fast_in = ic == j.icp;
  j.fast_out = oc == j.ocp && TXK_ACT_IS_CHEAP(d->epilogue.act);
  j.g.ctx = ctx;
  j.g.rd.base = j.v;
  j.g.rd.m = j.tiles;
  j.g.rd.row_w = j.tiles;
  j.g.rd.step_w = j.icp;
  j.g.kc = ic;
  j.g.ks = 1;
  j.g.off = off0;
  j.g.w = w + j.ocp;
  j.g.block_floats = 16 * (1 + ic);
  j.g.ncols = oc;
  j.g.y = j.m;
  j.g.ys = j.ocp;
  j.g.rs = j.ocp;
  j.g.ep = &no_ep;
  j.g.groups = 36;
  j.g.a_gs = (ptrdiff_t)(j.tiles * j.icp);
  j.g.w_gs = (ptrdiff_t)(j.ocp * (1 + ic));
  j.g.y_gs = (ptrdiff_t)(j.tiles * j.ocp);
  j.g.oc_units = (oc + nr - 1) / nr;
  j.g.px_units = (j.tiles + mr - 1) / mr;
  /* blocks of whole GEMM row tiles whose V and M rows fit WINO_BLOCK_BYTES, and about
   * TXK_TASKS_PER_THREAD blocks per thread */
  tb_l2 = WINO_BLOCK_BYTES / (36 * (j.icp + j.ocp) * sizeof(float)) / mr * mr;
  tb_split = (j.tiles + threads * TXK_TASKS_PER_THREAD - 1) / (threads * TXK_TASKS_PER_THREAD);
  tb_split = (tb_split + mr - 1) / mr * mr;
  j.tb = tb_l2 < tb_split ? tb_l2 : tb_split;
  if (j.tb < mr) j.tb = mr;
  nblocks = (j.tiles + j.tb - 1) / j.tb;
  /* Blocks pay off when all of U stays in L2 across them (measured on resnet50's shapes: 10%
   * faster at 64 channels and 2 threads, up to 1.5x slower at 256, where every block
   * re-streams U); else three passes, each reading U once. */
  if (36 * ic * j.ocp * sizeof(float) <= WINO_BLOCK_U_BYTES &&
      (threads == 1 || nblocks >= 2 * threads)) {
    txk_parallel(ctx, block_task, &j, nblocks);
    return TXK_OK;
  }
  txk_parallel_range(ctx, in_range, &j, j.tiles, 1, 36.0 * 12.0 * (double)j.icp,
                     TXK_MIN_TASK_MACS);
  txk_run_gemm_job(&j.g);
  txk_parallel_range(ctx, out_range, &j, j.tiles, 1, 36.0 * 8.0 * (double)j.ocp,
                     TXK_MIN_TASK_MACS);
  return TXK_OK;
}
