/* Drivers layer: Winograd F(4x4, 3x3) convolution (stride 1, dilation 1, groups 1). Strict C99.
 *
 * y = A^T [ (G g G^T) . (B^T d B) ] A for every 4x4 output tile (6x6 input tile d), with the
 * matrices of Lavin & Gray (2016):
 *
 *   B^T = | 4  0 -5  0  1  0 |   G = |  1/4     0     0  |   A^T = | 1  1  1  1  1  0 |
 *         | 0 -4 -4  1  1  0 |       | -1/6  -1/6  -1/6  |         | 0  1 -1  2 -2  0 |
 *         | 0  4 -4 -1  1  0 |       | -1/6   1/6  -1/6  |         | 0  1  1  4  4  0 |
 *         | 0 -2 -1  2  1  0 |       |  1/24  1/12  1/6  |         | 0  1 -1  8 -8  1 |
 *         | 0  2 -1 -2  1  0 |       |  1/24 -1/12  1/6  |
 *         | 0  4  0 -5  0  1 |       |  0     0     1    |
 *
 * Packed weights ("winograd" layout, written by packing.pack_conv2d_winograd): bias[ocp], then
 * for each of the 36 transform positions xi the gemm layout of U_xi[ic][oc] = (G g G^T)[xi]
 * (ocp / 16 blocks of {zero bias[16], U[ic][16]}). ocp = out_c rounded up to 16.
 *
 * Three passes, each split over the context's pool with results independent of the split:
 *   1. input transform: V[xi][tile][icp] (tiles over the batch, padding read as zeros);
 *   2. 36 GEMMs M[xi][tile][ocp] = V[xi] @ U_xi (the conv's GEMM micro-kernel, txk_gemm_groups);
 *   3. output transform, bias, epilogue (act, residual), stores of the in-image pixels.
 * Scratch: V and M, 36 * tiles * (icp + ocp) floats (+ 64 of slack).
 *
 * Status: correct (tests/c/test_c_winograd.py: max abs error ~1e-5 on unit-scale data, a few
 * times the direct conv's) but not yet faster than the direct conv at batch 1, so the
 * generator does not select it. Measured on resnet50's 3x3 shapes (1 thread, AVX-512 direct
 * kernels at ~140 GFLOP/s): 0.55x (56x56x64) to 0.89x (14x14x256) of the direct conv's speed.
 * The transforms here are portable C (baseline SIMD only) and take half the time; the 36 GEMMs
 * have few rows (tiles) per 4x larger transformed weight matrix and run at ~70 GFLOP/s. Next:
 * the transforms in the ISA files, fused per tile with the GEMM's rows, F(6x6) for 7x7/14x14. */
#include <string.h>

#include "internal/txk_internal.h"

#define WC 16 /* channels per transform chunk */

typedef struct wino_job {
  const txk_context* ctx;
  const txk_conv2d_desc* d;
  const float* x;
  const float* w; /* packed: bias[ocp], then the 36 U blocks */
  float* y;
  const float* r;
  float* v;
  float* m;
  size_t tw, tpi, tiles, icp, ocp, xs, ys, rs;
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

/* Rows of B^T applied along stride `s` of the 6 inputs at p[c + k * s] (c < WC). */
#define BT_ROWS(in, out, s, o)                                           \
  for (c = 0; c < WC; c++) {                                             \
    const float d0 = in[0 * (s) + c], d1 = in[1 * (s) + c];              \
    const float d2 = in[2 * (s) + c], d3 = in[3 * (s) + c];              \
    const float d4 = in[4 * (s) + c], d5 = in[5 * (s) + c];              \
    out[0 * (o) + c] = 4.0f * d0 - 5.0f * d2 + d4;                       \
    out[1 * (o) + c] = -4.0f * d1 - 4.0f * d2 + d3 + d4;                 \
    out[2 * (o) + c] = 4.0f * d1 - 4.0f * d2 - d3 + d4;                  \
    out[3 * (o) + c] = -2.0f * d1 - d2 + 2.0f * d3 + d4;                 \
    out[4 * (o) + c] = 2.0f * d1 - d2 - 2.0f * d3 + d4;                  \
    out[5 * (o) + c] = 4.0f * d1 - 5.0f * d3 + d5;                       \
  }

/* Rows of A^T applied along stride `s` of the 6 inputs. */
#define AT_ROWS(in, out, s, o)                                           \
  for (c = 0; c < WC; c++) {                                             \
    const float m0 = in[0 * (s) + c], m1 = in[1 * (s) + c];              \
    const float m2 = in[2 * (s) + c], m3 = in[3 * (s) + c];              \
    const float m4 = in[4 * (s) + c], m5 = in[5 * (s) + c];              \
    out[0 * (o) + c] = m0 + m1 + m2 + m3 + m4;                           \
    out[1 * (o) + c] = m1 - m2 + 2.0f * (m3 - m4);                       \
    out[2 * (o) + c] = m1 + m2 + 4.0f * (m3 + m4);                       \
    out[3 * (o) + c] = m1 - m2 + 8.0f * (m3 - m4) + m5;                  \
  }

/* Pass 1 over tiles [t0, t1). */
static void wino_in(const void* arg, size_t t0, size_t t1) {
  const wino_job* j = (const wino_job*)arg;
  const txk_conv2d_desc* d = j->d;
  const ptrdiff_t in_h = d->in_h, in_w = d->in_w;
  float dt[36 * WC], tmp[36 * WC], vt[36 * WC];
  size_t t, c0, c, k;
  for (t = t0; t < t1; t++) {
    const size_t n = t / j->tpi, ty = t % j->tpi / j->tw, tx = t % j->tw;
    const ptrdiff_t ih0 = (ptrdiff_t)(ty * 4) - d->pad_top;
    const ptrdiff_t iw0 = (ptrdiff_t)(tx * 4) - d->pad_left;
    const float* xn = j->x + n * (size_t)in_h * (size_t)in_w * j->xs;
    for (c0 = 0; c0 < (size_t)d->in_c; c0 += WC) {
      const size_t nc = (size_t)d->in_c - c0 < WC ? (size_t)d->in_c - c0 : WC;
      for (k = 0; k < 36; k++) {
        const ptrdiff_t ih = ih0 + (ptrdiff_t)(k / 6), iw = iw0 + (ptrdiff_t)(k % 6);
        float* dst = dt + k * WC;
        if (ih >= 0 && ih < in_h && iw >= 0 && iw < in_w) {
          const float* src = xn + ((size_t)ih * (size_t)in_w + (size_t)iw) * j->xs + c0;
          memcpy(dst, src, nc * sizeof(float));
          if (nc < WC) memset(dst + nc, 0, (WC - nc) * sizeof(float));
        } else {
          memset(dst, 0, WC * sizeof(float));
        }
      }
      for (k = 0; k < 6; k++) { /* columns: B^T d */
        const float* in = dt + k * WC;
        float* out = tmp + k * WC;
        BT_ROWS(in, out, 6 * WC, 6 * WC)
      }
      for (k = 0; k < 6; k++) { /* rows: (B^T d) B */
        const float* in = tmp + k * 6 * WC;
        float* out = vt + k * 6 * WC;
        BT_ROWS(in, out, WC, WC)
      }
      for (k = 0; k < 36; k++)
        memcpy(j->v + (k * j->tiles + t) * j->icp + c0, vt + k * WC, nc * sizeof(float));
    }
  }
}

/* Pass 3 over tiles [t0, t1). */
static void wino_out(const void* arg, size_t t0, size_t t1) {
  const wino_job* j = (const wino_job*)arg;
  const txk_conv2d_desc* d = j->d;
  const txk_epilogue* ep = &d->epilogue;
  const int act = (int)ep->act, res = (int)ep->residual, complex_act = txk_act_is_complex(act);
  const txk_vunary_ukernel_fn vun = txk_ctx_vunary(j->ctx);
  const size_t out_h = (size_t)d->out_h, out_w = (size_t)d->out_w;
  float mt[36 * WC], tmp[24 * WC], ot[16 * WC];
  size_t t, c0, c, k;
  for (t = t0; t < t1; t++) {
    const size_t n = t / j->tpi, ty = t % j->tpi / j->tw, tx = t % j->tw;
    for (c0 = 0; c0 < (size_t)d->out_c; c0 += WC) {
      const size_t nc = (size_t)d->out_c - c0 < WC ? (size_t)d->out_c - c0 : WC;
      const float* bias = j->w + c0;
      size_t oy, ox;
      for (k = 0; k < 36; k++)
        memcpy(mt + k * WC, j->m + (k * j->tiles + t) * j->ocp + c0, WC * sizeof(float));
      for (k = 0; k < 6; k++) { /* columns: A^T m */
        const float* in = mt + k * WC;
        float* out = tmp + k * WC;
        AT_ROWS(in, out, 6 * WC, 6 * WC)
      }
      for (k = 0; k < 4; k++) { /* rows: (A^T m) A */
        const float* in = tmp + k * 6 * WC;
        float* out = ot + k * 4 * WC;
        AT_ROWS(in, out, WC, WC)
      }
      for (oy = 0; oy < 4 && ty * 4 + oy < out_h; oy++) {
        for (ox = 0; ox < 4 && tx * 4 + ox < out_w; ox++) {
          const size_t pix = (n * out_h + ty * 4 + oy) * out_w + tx * 4 + ox;
          const float* o = ot + (oy * 4 + ox) * WC;
          float* yp = j->y + pix * j->ys + c0;
          const float* rp = j->r ? j->r + pix * j->rs + c0 : NULL;
          for (c = 0; c < nc; c++) {
            float v = o[c] + bias[c];
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
            vun(act, ep->act_min, ep->act_max, nc, yp, yp);
            if (res == TXK_RESIDUAL_AFTER_ACT)
              for (c = 0; c < nc; c++) yp[c] += rp[c];
          }
        }
      }
    }
  }
}

int txk_conv2d_winograd(const txk_context* ctx, const txk_conv2d_desc* d, const float* x,
                        const float* w, float* y, const float* r, void* scratch) {
  wino_job j;
  const size_t ic = (size_t)d->in_c, oc = (size_t)d->out_c;
  double work;
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
  work = 36.0 * 12.0 * (double)j.icp; /* flops of one tile's input transform */
  txk_parallel_range(ctx, wino_in, &j, j.tiles, 1, work, TXK_MIN_TASK_MACS);
  txk_gemm_groups(ctx, 36, j.tiles, ic, oc, j.v, j.icp, w + j.ocp, j.ocp * (1 + ic), j.m,
                  j.ocp);
  work = 36.0 * 8.0 * (double)j.ocp;
  txk_parallel_range(ctx, wino_out, &j, j.tiles, 1, work, TXK_MIN_TASK_MACS);
  return TXK_OK;
}
