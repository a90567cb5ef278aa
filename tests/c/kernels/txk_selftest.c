/* Standalone self-test of the timmx kernel library, for sanitizer and
 * alternative-compiler builds: every enumerated kernel this CPU supports is
 * run against the reference kernels on tile-edge shapes (exact-size heap
 * buffers so AddressSanitizer sees any overrun), and every other op is
 * exercised once. Threads: every parallel driver at 2, 3 and 7 threads must give the
 * bytes it gives on one thread (and two threads sharing one pool must too). Exit status 0
 * iff all checks pass. `txk_selftest threads` runs only the threads part (ThreadSanitizer).
 *   cc -std=c99 -Iinclude src/ALL.c txk_selftest.c -lm -pthread   (ALL = every source) */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#ifndef TXK_NO_THREADS
#include <pthread.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timmx_kernels.h"

static int failures = 0;
static unsigned rng_state = 12345u;

static float frand(void) {
  rng_state = rng_state * 1664525u + 1013904223u;
  return (float)((rng_state >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

static float* falloc(size_t n) {
  void* p = NULL;
  size_t i;
  if (n == 0) n = 1;
  if (posix_memalign(&p, 64, n * sizeof(float)) != 0) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  for (i = 0; i < n; i++) ((float*)p)[i] = frand();
  return (float*)p;
}

static void expect(int cond, const char* what) {
  if (!cond) {
    failures++;
    fprintf(stderr, "FAIL: %s\n", what);
  }
}

static void compare(const float* got, const float* want, size_t rows, size_t cols, size_t gs,
                    size_t ws, float tol, const char* what) {
  size_t r, j;
  for (r = 0; r < rows; r++)
    for (j = 0; j < cols; j++) {
      const float g = got[r * gs + j], w = want[r * ws + j];
      if (!(fabsf(g - w) <= tol * (1.0f + fabsf(w)))) {
        failures++;
        fprintf(stderr, "FAIL: %s at [%zu][%zu]: %g vs %g\n", what, r, j, (double)g, (double)w);
        return;
      }
    }
}

/* C mirror of packing.pack_conv2d (both layouts). */
static float* pack_conv(const txk_conv2d_desc* d, const float* w, const float* b) {
  const size_t bytes = txk_conv2d_packed_size(d);
  float* p = falloc(bytes / 4);
  const int kk = d->kh * d->kw;
  memset(p, 0, bytes);
  if (d->groups == d->in_c && d->in_c == d->out_c) {
    int c, t;
    for (c = 0; c < d->out_c; c++) {
      float* blk = p + (size_t)(c / 16) * 16 * (1 + kk);
      blk[c % 16] = b[c];
      for (t = 0; t < kk; t++) blk[16 + t * 16 + c % 16] = w[(size_t)c * kk + t];
    }
  } else {
    const int icg = d->in_c / d->groups, ocg = d->out_c / d->groups;
    const int nb = (ocg + 15) / 16;
    const size_t bsz = 16 * (1 + (size_t)kk * icg);
    int oc, ic, t;
    for (oc = 0; oc < d->out_c; oc++) {
      const int g = oc / ocg, j = oc % ocg;
      float* blk = p + ((size_t)g * nb + j / 16) * bsz;
      blk[j % 16] = b[oc];
      for (t = 0; t < kk; t++)
        for (ic = 0; ic < icg; ic++)
          blk[16 + ((size_t)t * icg + ic) * 16 + j % 16] = w[((size_t)oc * icg + ic) * kk + t];
    }
  }
  return p;
}

/* The winograd layout (README.md): bias[ocp], then per transform position xi the gemm layout
 * of U_xi[oc][ic] = (G w[oc][ic] G^T)[xi], G of F(4x4, 3x3). */
static float* pack_winograd(const txk_conv2d_desc* d, const float* w, const float* b) {
  static const double g[6][3] = {{1, 0, 0},
                                 {-1.0 / 3, 1.0 / 3, -1.0 / 3},
                                 {1.0 / 3, 1.0 / 3, 1.0 / 3},
                                 {-16.0 / 15, -8.0 / 15, -4.0 / 15},
                                 {1.0 / 15, -2.0 / 15, 4.0 / 15},
                                 {0, 0, 1}};
  const size_t bytes = txk_conv2d_packed_size(d);
  const int ic_n = d->in_c, oc_n = d->out_c, ocp = (oc_n + 15) / 16 * 16;
  const size_t bsz = 16 * (1 + (size_t)ic_n), xi_floats = (size_t)ocp / 16 * bsz;
  float* p = falloc(bytes / 4);
  int oc, ic, a, c, i, j;
  memset(p, 0, bytes);
  for (oc = 0; oc < oc_n; oc++) {
    p[oc] = b[oc];
    for (ic = 0; ic < ic_n; ic++) {
      const float* k = w + ((size_t)oc * ic_n + ic) * 9;
      for (a = 0; a < 6; a++)
        for (c = 0; c < 6; c++) {
          double u = 0.0;
          for (i = 0; i < 3; i++)
            for (j = 0; j < 3; j++) u += g[a][i] * k[i * 3 + j] * g[c][j];
          p[ocp + (size_t)(a * 6 + c) * xi_floats + (size_t)(oc / 16) * bsz + 16 +
            (size_t)ic * 16 + oc % 16] = (float)u;
        }
    }
  }
  return p;
}

static void conv_case_algo(const txk_context* ctx, int h, int w, int ic, int oc, int k, int s,
                           int pad, int dil, int groups, int act, int res, int xs, int ys,
                           int algo, const char* kname) {
  txk_conv2d_desc d;
  float *x, *wt, *b, *r, *y, *yref, *packed, *scratch;
  size_t npix, ss;
  char what[256];
  memset(&d, 0, sizeof d);
  d.n = 1;
  d.in_h = h;
  d.in_w = w;
  d.in_c = ic;
  d.out_c = oc;
  d.kh = d.kw = k;
  d.stride_h = d.stride_w = s;
  d.pad_top = d.pad_left = d.pad_bottom = d.pad_right = pad;
  d.dil_h = d.dil_w = dil;
  d.groups = groups;
  d.out_h = (h + 2 * pad - dil * (k - 1) - 1) / s + 1;
  d.out_w = (w + 2 * pad - dil * (k - 1) - 1) / s + 1;
  d.x_stride = xs;
  d.y_stride = ys;
  d.epilogue.act = (txk_act)act;
  d.epilogue.act_min = -0.5f;
  d.epilogue.act_max = 0.5f;
  d.epilogue.residual = (txk_residual)res;
  d.algo = algo;
  npix = (size_t)d.out_h * d.out_w;
  x = falloc((size_t)h * w * (xs ? xs : ic));
  wt = falloc((size_t)oc * (ic / groups) * k * k);
  b = falloc((size_t)oc);
  r = falloc(npix * oc);
  y = falloc(npix * (ys ? ys : oc));
  yref = falloc(npix * (ys ? ys : oc));
  packed = algo == TXK_CONV_WINOGRAD ? pack_winograd(&d, wt, b) : pack_conv(&d, wt, b);
  ss = txk_conv2d_scratch_size(&d);
  scratch = ss ? falloc(ss / 4) : NULL;
  snprintf(what, sizeof what, "%s conv h%d w%d ic%d oc%d k%d s%d p%d d%d g%d act%d res%d algo%d",
           kname, h, w, ic, oc, k, s, pad, dil, groups, act, res, algo);
  expect(txk_ref_conv2d(&d, x, wt, b, yref, res ? r : NULL) == TXK_OK, what);
  expect(txk_conv2d(ctx, &d, x, packed, y, res ? r : NULL, scratch) == TXK_OK, what);
  compare(y, yref, npix, (size_t)oc, ys ? ys : oc, ys ? ys : oc, 2e-4f, what);
  free(x);
  free(wt);
  free(b);
  free(r);
  free(y);
  free(yref);
  free(packed);
  free(scratch);
}

static void conv_case(const txk_context* ctx, int h, int w, int ic, int oc, int k, int s, int pad,
                      int dil, int groups, int act, int res, int xs, int ys, const char* kname) {
  conv_case_algo(ctx, h, w, ic, oc, k, s, pad, dil, groups, act, res, xs, ys, TXK_CONV_DIRECT,
                 kname);
}

/* NaN / signed-zero agreement with the reference (whose semantics tests/c checks against
 * PyTorch): NaN where the reference has NaN, a zero of the same sign where it has a zero
 * (denormal tails of the vector transcendentals count as zero), else close. */
static int same_special(float got, float want) {
  if (want != want) return got != got;
  if (want == 0.0f || fabsf(want) < 1e-37f)
    return fabsf(got) < 1e-37f && signbit(got) == signbit(want);
  if (isinf(want)) return got == want;
  return fabsf(got - want) <= 1e-5f * (1.0f + fabsf(want));
}

static void special_values_unary(const txk_context* ctx, const char* kname) {
  static const int acts[] = {TXK_ACT_NONE,  TXK_ACT_RELU, TXK_ACT_CLAMP,     TXK_ACT_HARDSWISH,
                             TXK_ACT_HARDSIGMOID, TXK_ACT_SILU, TXK_ACT_GELU,
                             TXK_ACT_GELU_TANH, TXK_ACT_SIGMOID, TXK_ACT_TANH};
  float x[12], y[12], yr[12];
  size_t a, i;
  x[0] = NAN, x[1] = -NAN, x[2] = -0.0f, x[3] = 0.0f, x[4] = -3.0f, x[5] = 3.0f, x[6] = -4.0f;
  x[7] = -1e-30f, x[8] = 1e-30f, x[9] = -100.0f, x[10] = 100.0f, x[11] = 0.5f;
  for (a = 0; a < sizeof acts / sizeof acts[0]; a++) {
    char what[160];
    expect(txk_unary(ctx, (txk_act)acts[a], 0.0f, 6.0f, 12, x, y) == TXK_OK, "unary special");
    expect(txk_ref_unary((txk_act)acts[a], 0.0f, 6.0f, 12, x, yr) == TXK_OK, "ref unary");
    for (i = 0; i < 12; i++)
      if (!same_special(y[i], yr[i])) {
        snprintf(what, sizeof what, "%s act %d of %g: %g, reference %g", kname, acts[a],
                 (double)x[i], (double)y[i], (double)yr[i]);
        expect(0, what);
      }
  }
}

/* max / min of every pair of special values, through the context's row kernel (contiguous
 * operands) and the portable strided loop (channel stride 2), vs the reference. */
static void special_values_binary(const txk_context* ctx, const char* kname) {
  static const float v[6] = {NAN, -0.0f, 0.0f, 1.0f, -1.0f, INFINITY};
  float a[36], b[36], y[36], yr[36];
  txk_binary_desc d;
  int op, strided;
  size_t i;
  for (i = 0; i < 36; i++) {
    b[i] = v[i % 6];
    a[i] = v[i / 6];
  }
  for (op = TXK_BIN_MAX; op <= TXK_BIN_MIN; op++)
    for (strided = 0; strided < 2; strided++) {
      char what[160];
      float as[72] = {0};
      memset(&d, 0, sizeof d);
      d.op = (txk_binop)op;
      d.n = d.p = 1;
      d.c = 36;
      d.a_sc = strided ? 2 : 1;
      d.b_sc = 1;
      for (i = 0; i < 36; i++) as[i * d.a_sc] = a[i];
      expect(txk_binary(ctx, &d, as, b, y) == TXK_OK, "binary special");
      expect(txk_ref_binary(&d, as, b, yr) == TXK_OK, "ref binary special");
      for (i = 0; i < 36; i++)
        if (!same_special(y[i], yr[i])) {
          snprintf(what, sizeof what, "%s binop %d (strided %d) of (%g, %g): %g, reference %g",
                   kname, op, strided, (double)a[i], (double)b[i], (double)y[i], (double)yr[i]);
          expect(0, what);
        }
    }
}

static void test_family(txk_family fam) {
  size_t i, n = txk_ukernel_count(fam);
  for (i = 0; i < n; i++) {
    const txk_ukernel_info* k = txk_ukernel_get(fam, i);
    txk_context ctx;
    int m, c;
    if (!txk_isa_supported(k->isa)) continue;
    expect(txk_context_init(&ctx, TXK_ISA_AUTO) == TXK_OK, "context init");
    expect(txk_context_set_ukernel(&ctx, fam, i) == TXK_OK, "set ukernel");
    if (fam == TXK_FAMILY_GEMM) {
      /* tile edges in M (pixels) and N (output channels) */
      for (m = 1; m <= 2 * k->mr + 1; m += (m < k->mr - 1 || m > k->mr + 1) ? 3 : 1)
        for (c = 1; c <= 2 * k->nr + 1; c += (c < k->nr - 1 || c > k->nr + 1) ? 5 : 1)
          conv_case(&ctx, 1, m, 7, c, 1, 1, 0, 1, 1, c % 10, c % 3, (m % 2) ? 9 : 0,
                    (c % 2) ? c + 3 : 0, k->name);
      conv_case(&ctx, 9, 11, 5, 33, 3, 2, 1, 1, 1, TXK_ACT_RELU, 1, 0, 0, k->name);
      conv_case(&ctx, 10, 10, 6, 20, 3, 1, 2, 2, 1, TXK_ACT_GELU, 2, 0, 0, k->name);
      conv_case(&ctx, 8, 8, 12, 24, 3, 1, 1, 1, 3, TXK_ACT_SILU, 0, 15, 0, k->name);
      conv_case(&ctx, 32, 32, 3, 19, 16, 16, 0, 1, 1, TXK_ACT_NONE, 0, 0, 0, k->name);
      conv_case(&ctx, 11, 11, 3, 24, 7, 2, 3, 1, 1, TXK_ACT_CLAMP, 0, 0, 0, k->name);
    } else if (fam == TXK_FAMILY_DWCONV) {
      for (c = 1; c <= 40; c += 3) {
        conv_case(&ctx, 9, 10, c, c, 3, 1, 1, 1, c, TXK_ACT_HARDSWISH, 2, 0, 0, k->name);
        conv_case(&ctx, 11, 9, c, c, 5, 2, 2, 1, c, TXK_ACT_RELU, 1, c + 2, 0, k->name);
      }
      conv_case(&ctx, 9, 10, 24, 24, 3, 1, 2, 2, 24, TXK_ACT_SILU, 0, 0, 30, k->name);
      conv_case(&ctx, 5, 20, 8, 8, 3, 1, 0, 1, 8, TXK_ACT_NONE, 0, 0, 0, k->name);
      /* interior tiles of 8/4/2 pixels and pairs of channel vectors */
      for (c = 15; c <= 50; c += 7) {
        conv_case(&ctx, 4, 29, c, c, 3, 1, 1, 1, c, TXK_ACT_CLAMP, 2, 0, 0, k->name);
        conv_case(&ctx, 5, 27, c, c, 7, 1, 3, 1, c, TXK_ACT_SILU, 1, 0, c + 1, k->name);
        conv_case(&ctx, 5, 31, c, c, 5, 2, 2, 1, c, TXK_ACT_NONE, 0, c + 4, 0, k->name);
        conv_case(&ctx, 3, 22, c, c, 5, 1, 2, 1, c, TXK_ACT_RELU, 0, 0, 0, k->name);
      }
    } else if (fam == TXK_FAMILY_WINO) {
      /* Winograd convs: edge tiles (sizes not a multiple of 4), channels below, at and above
       * 16 and its multiples (the in-place interior path), strided x / y, every residual */
      for (c = 1; c <= 49; c += 8) {
        conv_case_algo(&ctx, 9, 10, c, c + 3, 3, 1, 1, 1, 1, TXK_ACT_RELU, c % 3, 0, 0,
                       TXK_CONV_WINOGRAD, k->name);
        conv_case_algo(&ctx, 13, 8, 16 * (1 + c % 3), 32, 3, 1, c % 2, 1, 1, TXK_ACT_CLAMP,
                       (c + 1) % 3, c % 2 ? 56 : 0, c % 2 ? 40 : 0, TXK_CONV_WINOGRAD, k->name);
      }
      conv_case_algo(&ctx, 12, 12, 32, 16, 3, 1, 1, 1, 1, TXK_ACT_SILU, 2, 0, 0,
                     TXK_CONV_WINOGRAD, k->name);
    } else if (fam == TXK_FAMILY_ROWOP) {
      size_t len;
      for (len = 1; len < 70; len += 3) { /* exact-size rows: overruns are caught by ASan */
        float *x = falloc(3 * len), *y = falloc(3 * len), *yr = falloc(3 * len);
        float *g = falloc(len), *bb = falloc(len);
        txk_binary_desc bd;
        txk_context sc;
        expect(txk_context_init(&sc, TXK_ISA_SCALAR) == TXK_OK, "scalar context");
        expect(txk_layernorm(&ctx, 3, len, x, 0, y, 0, g, bb, 1e-5f) == TXK_OK, "layernorm");
        expect(txk_ref_layernorm(3, len, x, 0, yr, 0, g, bb, 1e-5f) == TXK_OK, "ref layernorm");
        compare(y, yr, 3, len, len, len, 1e-4f, k->name);
        expect(txk_softmax(&ctx, 3, len, x, 0, y, 0) == TXK_OK, "softmax");
        expect(txk_ref_softmax(3, len, x, 0, yr, 0) == TXK_OK, "ref softmax");
        compare(y, yr, 3, len, len, len, 1e-5f, k->name);
        expect(txk_global_avgpool(&ctx, 1, 3, len, x, y) == TXK_OK, "gap");
        expect(txk_global_avgpool(&sc, 1, 3, len, x, yr) == TXK_OK, "scalar gap");
        compare(y, yr, 1, len, len, len, 1e-5f, k->name);
        expect(txk_channel_scale(&ctx, 1, 3, len, x, g, TXK_ACT_SIGMOID, y) == TXK_OK, "se");
        expect(txk_channel_scale(&sc, 1, 3, len, x, g, TXK_ACT_SIGMOID, yr) == TXK_OK, "se");
        compare(y, yr, 3, len, len, len, 1e-5f, k->name);
        memset(&bd, 0, sizeof bd);
        bd.op = TXK_BIN_ADD;
        bd.n = 1;
        bd.p = 3;
        bd.c = len;
        bd.a_sp = bd.y_sp = len;
        bd.a_sc = bd.b_sc = 1;
        bd.epilogue.act = TXK_ACT_GELU;
        expect(txk_binary(&ctx, &bd, x, g, y) == TXK_OK, "binary");
        expect(txk_ref_binary(&bd, x, g, yr) == TXK_OK, "ref binary");
        compare(y, yr, 3, len, len, len, 1e-5f, k->name);
        free(x);
        free(y);
        free(yr);
        free(g);
        free(bb);
      }
    } else if (fam == TXK_FAMILY_VUNARY) {
      size_t len;
      for (len = 1; len < 40; len += 5) {
        float* xv = falloc(len);
        float* yv = falloc(len);
        float* yr = falloc(len);
        int a;
        for (a = 0; a < TXK_ACT_COUNT; a++) {
          expect(txk_unary(&ctx, (txk_act)a, -1.0f, 1.0f, len, xv, yv) == TXK_OK, "unary");
          expect(txk_ref_unary((txk_act)a, -1.0f, 1.0f, len, xv, yr) == TXK_OK, "ref unary");
          compare(yv, yr, 1, len, 0, 0, 1e-5f, k->name);
        }
        expect(txk_vexp(&ctx, len, xv, yv) == TXK_OK, "vexp");
        expect(txk_verf(&ctx, len, xv, yv) == TXK_OK, "verf");
        expect(txk_vtanh(&ctx, len, xv, yv) == TXK_OK, "vtanh");
        expect(txk_vsigmoid(&ctx, len, xv, yv) == TXK_OK, "vsigmoid");
        free(xv);
        free(yv);
        free(yr);
      }
      special_values_unary(&ctx, k->name);
    } else {
      fprintf(stderr, "FAIL: family %d (%s) has no self-test case: add one\n", (int)fam, k->name);
      failures++;
    }
    if (fam == TXK_FAMILY_ROWOP) special_values_binary(&ctx, k->name);
  }
}

static void test_other_ops(void) {
  txk_context ctx;
  size_t i;
  expect(txk_context_init(&ctx, TXK_ISA_AUTO) == TXK_OK, "context");
  { /* linear */
    txk_linear_desc d = {13, 37, 45, 0, 0, 0, {TXK_ACT_GELU_TANH, 0, 0, TXK_RESIDUAL_AFTER_ACT}};
    txk_conv2d_desc cd;
    float *a = falloc(13 * 37), *w = falloc(45 * 37), *b = falloc(45), *r = falloc(13 * 45);
    float *y = falloc(13 * 45), *yr = falloc(13 * 45), *p;
    memset(&cd, 0, sizeof cd);
    cd.n = 1;
    cd.in_h = cd.in_w = cd.kh = cd.kw = cd.out_h = cd.out_w = 1;
    cd.stride_h = cd.stride_w = cd.dil_h = cd.dil_w = cd.groups = 1;
    cd.in_c = 37;
    cd.out_c = 45;
    p = pack_conv(&cd, w, b);
    expect(txk_linear_packed_size(&d) == txk_conv2d_packed_size(&cd), "linear packed size");
    expect(txk_linear(&ctx, &d, a, p, y, r) == TXK_OK, "linear");
    expect(txk_ref_linear(&d, a, w, b, yr, r) == TXK_OK, "ref linear");
    compare(y, yr, 13, 45, 45, 45, 2e-4f, "linear");
    free(a), free(w), free(b), free(r), free(y), free(yr), free(p);
  }
  { /* attention and bmm */
    const int seq = 21, heads = 2, hd = 17, dim = heads * hd;
    txk_attention_desc d = {21, 2, 17, 3 * 34, 0, 0.25f};
    txk_bmm_desc bd = {2, 21, 21, 17, 17, 3 * 34, 1, 17, 1, 3 * 34, 21 * 21, 21, 0.5f};
    float *qkv = falloc((size_t)seq * 3 * dim), *o = falloc((size_t)seq * dim);
    float *orf = falloc((size_t)seq * dim);
    float* s = falloc(txk_attention_scratch_size(&d) / 4);
    float *c = falloc(2 * 21 * 21), *cr = falloc(2 * 21 * 21);
    float* bs = falloc(txk_bmm_scratch_size(&bd) / 4);
    expect(txk_attention(&ctx, &d, qkv, qkv + dim, qkv + 2 * dim, o, s) == TXK_OK, "attention");
    expect(txk_ref_attention(&d, qkv, qkv + dim, qkv + 2 * dim, orf) == TXK_OK, "ref attention");
    compare(o, orf, (size_t)seq, (size_t)dim, (size_t)dim, (size_t)dim, 1e-4f, "attention");
    expect(txk_bmm(&ctx, &bd, qkv, qkv + dim, c, bs) == TXK_OK, "bmm");
    expect(txk_ref_bmm(&bd, qkv, qkv + dim, cr) == TXK_OK, "ref bmm");
    compare(c, cr, 42, 21, 21, 21, 1e-4f, "bmm");
    free(qkv), free(o), free(orf), free(s), free(c), free(cr), free(bs);
  }
  { /* norms, softmax, reductions, pools, elementwise, data movement */
    float *x = falloc(2 * 7 * 9 * 19), *y = falloc(2 * 7 * 9 * 19), *yr = falloc(2 * 7 * 9 * 19);
    float *g = falloc(19), *b = falloc(19), *s = falloc(2 * 19);
    txk_pool2d_desc pd;
    txk_binary_desc bd;
    size_t shape[4] = {2, 7, 9, 19}, perm[4] = {0, 3, 1, 2};
    const float* xs[2];
    size_t ch[2] = {19, 19};
    expect(txk_layernorm(&ctx, 126, 19, x, 0, y, 0, g, b, 1e-5f) == TXK_OK, "layernorm");
    expect(txk_ref_layernorm(126, 19, x, 0, yr, 0, g, b, 1e-5f) == TXK_OK, "ref layernorm");
    compare(y, yr, 126, 19, 19, 19, 1e-4f, "layernorm");
    expect(txk_groupnorm(&ctx, 2, 63, 19, 19, x, y, g, b, 1e-5f) == TXK_OK, "groupnorm");
    expect(txk_ref_groupnorm(2, 63, 19, 19, x, yr, g, b, 1e-5f) == TXK_OK, "ref groupnorm");
    compare(y, yr, 126, 19, 19, 19, 1e-3f, "groupnorm");
    expect(txk_softmax(&ctx, 126, 19, x, 0, y, 0) == TXK_OK, "softmax");
    expect(txk_ref_softmax(126, 19, x, 0, yr, 0) == TXK_OK, "ref softmax");
    compare(y, yr, 126, 19, 19, 19, 1e-5f, "softmax");
    expect(txk_global_avgpool(&ctx, 2, 63, 19, x, y) == TXK_OK, "gap");
    expect(txk_mean_channels(&ctx, 126, 19, x, y) == TXK_OK, "mean channels");
    memset(&pd, 0, sizeof pd);
    pd.n = 2, pd.in_h = 7, pd.in_w = 9, pd.c = 19, pd.kh = pd.kw = 3, pd.stride_h = 2;
    pd.stride_w = 2, pd.pad_h = pd.pad_w = 1, pd.out_h = 4, pd.out_w = 5;
    expect(txk_maxpool2d(&ctx, &pd, x, y) == TXK_OK, "maxpool");
    expect(txk_avgpool2d(&ctx, &pd, x, y) == TXK_OK, "avgpool");
    pd.out_h = 3, pd.out_w = 4;
    expect(txk_adaptive_avgpool2d(&ctx, &pd, x, y) == TXK_OK, "adaptive");
    memset(&bd, 0, sizeof bd);
    bd.op = TXK_BIN_DIV, bd.n = 2, bd.p = 63, bd.c = 19, bd.a_sn = 63 * 19, bd.a_sp = 19;
    bd.a_sc = 1, bd.b_sn = 19, bd.b_sc = 1, bd.y_sn = 63 * 19, bd.y_sp = 19;
    bd.epilogue.act = TXK_ACT_SILU;
    expect(txk_binary(&ctx, &bd, x, s, y) == TXK_OK, "binary");
    expect(txk_ref_binary(&bd, x, s, yr) == TXK_OK, "ref binary");
    compare(y, yr, 126, 19, 19, 19, 1e-4f, "binary");
    expect(txk_channel_scale(&ctx, 2, 63, 19, x, s, TXK_ACT_SIGMOID, y) == TXK_OK, "se gate");
    { /* the gate folded into a 1x1 conv's weights: the conv of the gated image */
      txk_conv2d_desc cd;
      float *w = falloc(21 * 19), *cb = falloc(21), *pk, *gw, *y1 = falloc(63 * 21);
      float* y2 = falloc(63 * 21);
      memset(&cd, 0, sizeof cd);
      cd.n = 1, cd.in_h = 7, cd.in_w = 9, cd.in_c = 19, cd.out_h = 7, cd.out_w = 9;
      cd.out_c = 21, cd.kh = cd.kw = 1, cd.stride_h = cd.stride_w = 1, cd.dil_h = cd.dil_w = 1;
      cd.groups = 1;
      pk = pack_conv(&cd, w, cb);
      gw = falloc(txk_conv2d_packed_size(&cd) / 4);
      expect(txk_gate_weights(&ctx, 19, 21, pk, s, TXK_ACT_SIGMOID, gw) == TXK_OK, "gate w");
      expect(txk_conv2d(&ctx, &cd, x, gw, y1, NULL, NULL) == TXK_OK, "gated conv");
      expect(txk_conv2d(&ctx, &cd, y, pk, y2, NULL, NULL) == TXK_OK, "conv of gated x");
      compare(y1, y2, 63, 21, 21, 21, 1e-5f, "gate folded into weights");
      expect(txk_gate_weights(&ctx, 19, 0, pk, s, TXK_ACT_SIGMOID, gw) == TXK_EINVAL,
             "gate weights: no outputs");
      free(w), free(cb), free(pk), free(gw), free(y1), free(y2);
    }
    expect(txk_permute(4, shape, perm, x, y) == TXK_OK, "permute");
    for (i = 0; i < 3; i++) expect(y[i * 63] == x[i], "permute values");
    free(y);
    y = falloc(2 * 9 * 12 * 19);
    expect(txk_pad_nhwc(2, 7, 9, 19, 1, 1, 2, 1, 0.0f, x, y) == TXK_OK, "pad");
    free(y);
    y = falloc(2 * 63 * 38);
    xs[0] = x, xs[1] = x;
    expect(txk_concat_channels(126, 2, xs, ch, y) == TXK_OK, "concat");
    expect(txk_copy2d(126, 19, x, 19, y + 19, 38) == TXK_OK, "copy2d");
    free(x), free(y), free(yr), free(g), free(b), free(s);
  }
}


/* ---- threads ------------------------------------------------------------------------ */
/* One run of every parallel driver on shapes that do not divide evenly (tasks of unequal
 * size, partial tiles, tails); outputs go to out[0..n) in a fixed order. */
#define TH_OUT (1u << 20)
typedef struct th_data {
  float *x, *x2, *w1, *w3, *wg, *wd, *wl, *wp, *b, *r, *pk1, *pk3, *pkg, *pkd, *pkl, *pkp;
  float *ww, *pkw, *pkw2, *big, *scratch; /* big: a pool image the pool splits (2.4 M floats) */
  txk_conv2d_desc c1, c3, cg, cd;
  txk_conv2d_desc cw, cw2; /* Winograd: tile blocks at 1-3 threads, three passes at 7 */
  txk_pwdw_desc pd; /* 37 -> 57 channels, then t->cd with 7 tasks' worth of rows */
  txk_linear_desc ld;
  txk_attention_desc ad;
  txk_bmm_desc bd, bd2;
} th_data;

static void th_conv(txk_conv2d_desc* d, int h, int w, int ic, int oc, int k, int s, int pad,
                    int groups, int act, int res) {
  memset(d, 0, sizeof *d);
  d->n = 1;
  d->in_h = h;
  d->in_w = w;
  d->in_c = ic;
  d->out_c = oc;
  d->kh = d->kw = k;
  d->stride_h = d->stride_w = s;
  d->pad_top = d->pad_left = d->pad_bottom = d->pad_right = pad;
  d->dil_h = d->dil_w = 1;
  d->groups = groups;
  d->out_h = (h + 2 * pad - k) / s + 1;
  d->out_w = (w + 2 * pad - k) / s + 1;
  d->epilogue.act = (txk_act)act;
  d->epilogue.act_min = -0.5f;
  d->epilogue.act_max = 0.5f;
  d->epilogue.residual = (txk_residual)res;
}

/* txk_conv2d_pw_dw against txk_conv2d(pw) then txk_conv2d(dw) on ctx: bitwise equal. */
static void pwdw_case(const txk_context* ctx, int n, int h, int w, int ic, int c, int k, int s,
                      int pad, int res, const char* what) {
  txk_pwdw_desc d;
  float *x, *wp, *wd, *b, *pkp, *pkd, *e, *y, *yr, *r, *scr;
  size_t ny;
  char msg[128];
  th_conv(&d.pw, h, w, ic, c, 1, 1, 0, 1, TXK_ACT_SILU, TXK_RESIDUAL_NONE);
  th_conv(&d.dw, h, w, c, c, k, s, pad, c, TXK_ACT_HARDSWISH, res);
  d.pw.n = d.dw.n = n;
  ny = (size_t)n * d.dw.out_h * d.dw.out_w * c;
  x = falloc((size_t)n * h * w * ic);
  wp = falloc((size_t)c * ic);
  wd = falloc((size_t)c * k * k);
  b = falloc((size_t)c);
  e = falloc((size_t)n * h * w * c);
  y = falloc(ny);
  yr = falloc(ny);
  r = falloc(ny);
  pkp = pack_conv(&d.pw, wp, b);
  pkd = pack_conv(&d.dw, wd, b);
  scr = falloc(txk_pwdw_scratch_size(&d) / 4);
  snprintf(msg, sizeof msg, "pw_dw %s: check and scratch", what);
  expect(txk_pwdw_check(&d) == TXK_OK && txk_pwdw_scratch_size(&d) > 0, msg);
  expect(txk_conv2d(ctx, &d.pw, x, pkp, e, NULL, NULL) == TXK_OK, "pw_dw: separate pw");
  expect(txk_conv2d(ctx, &d.dw, e, pkd, yr, res ? r : NULL, NULL) == TXK_OK, "pw_dw: dw");
  snprintf(msg, sizeof msg, "pw_dw %s: call", what);
  expect(txk_conv2d_pw_dw(ctx, &d, x, pkp, pkd, y, res ? r : NULL, scr) == TXK_OK, msg);
  snprintf(msg, sizeof msg, "pw_dw %s: not bitwise the separate calls", what);
  expect(memcmp(y, yr, ny * sizeof(float)) == 0, msg);
  free(x), free(wp), free(wd), free(b), free(e), free(y), free(yr), free(r), free(pkp);
  free(pkd), free(scr);
}

/* The fused 1x1 -> depthwise conv: one band per task, several bands (rows carried between
 * them), bands of one row (rows wider than a slot), stride 2, 5x5, channel tails, batches;
 * then the descriptor rules. */
static void test_pw_dw(const txk_context* ctx) {
  txk_pwdw_desc d;
  pwdw_case(ctx, 1, 9, 11, 5, 19, 3, 1, 1, TXK_RESIDUAL_NONE, "small 3x3");
  pwdw_case(ctx, 2, 37, 64, 24, 160, 3, 1, 1, TXK_RESIDUAL_AFTER_ACT, "bands 3x3 s1");
  pwdw_case(ctx, 1, 40, 56, 16, 144, 5, 2, 2, TXK_RESIDUAL_NONE, "bands 5x5 s2");
  pwdw_case(ctx, 1, 13, 250, 8, 300, 3, 2, 1, TXK_RESIDUAL_NONE, "one-row bands s2");
  pwdw_case(ctx, 1, 12, 260, 8, 264, 3, 1, 0, TXK_RESIDUAL_NONE, "one-row bands, no pad");
  th_conv(&d.pw, 8, 8, 4, 16, 1, 1, 0, 1, TXK_ACT_NONE, TXK_RESIDUAL_NONE);
  th_conv(&d.dw, 8, 8, 16, 16, 3, 1, 1, 16, TXK_ACT_NONE, TXK_RESIDUAL_NONE);
  expect(txk_pwdw_check(&d) == TXK_OK, "pw_dw rules: valid");
  d.dw.in_c = d.dw.out_c = d.dw.groups = 32;
  expect(txk_pwdw_check(&d) == TXK_EINVAL, "pw_dw rules: channels differ");
  d.dw.in_c = d.dw.out_c = d.dw.groups = 16;
  d.pw.pad_top = 1, d.pw.out_h = 10;
  expect(txk_pwdw_check(&d) == TXK_EINVAL && txk_pwdw_scratch_size(&d) == 0,
         "pw_dw rules: padded pw");
  d.pw.pad_top = 0, d.pw.out_h = 8, d.pw.epilogue.residual = TXK_RESIDUAL_BEFORE_ACT;
  expect(txk_pwdw_check(&d) == TXK_EINVAL, "pw_dw rules: residual on pw");
  d.pw.epilogue.residual = TXK_RESIDUAL_NONE, d.dw.dil_h = 2, d.dw.pad_top = d.dw.pad_bottom = 2;
  expect(txk_pwdw_check(&d) == TXK_EINVAL, "pw_dw rules: dilated dw");
  expect(txk_pwdw_check(NULL) == TXK_EINVAL, "pw_dw rules: NULL");
}

static void th_setup(th_data* t) {
  memset(t, 0, sizeof *t);
  t->x = falloc(65536);
  t->x2 = falloc(65536);
  t->b = falloc(512);
  t->r = falloc(65536);
  th_conv(&t->c1, 19, 23, 37, 45, 1, 1, 0, 1, TXK_ACT_RELU, TXK_RESIDUAL_BEFORE_ACT);
  th_conv(&t->c3, 17, 13, 21, 35, 3, 1, 1, 1, TXK_ACT_SILU, TXK_RESIDUAL_NONE);
  th_conv(&t->cg, 15, 11, 24, 36, 3, 2, 1, 3, TXK_ACT_CLAMP, TXK_RESIDUAL_AFTER_ACT);
  th_conv(&t->cd, 21, 19, 57, 57, 3, 1, 1, 57, TXK_ACT_HARDSWISH, TXK_RESIDUAL_NONE);
  t->w1 = falloc(45 * 37);
  t->w3 = falloc(35 * 21 * 9);
  t->wg = falloc(36 * 8 * 9);
  t->wd = falloc(57 * 9);
  t->pk1 = pack_conv(&t->c1, t->w1, t->b);
  t->pk3 = pack_conv(&t->c3, t->w3, t->b);
  t->pkg = pack_conv(&t->cg, t->wg, t->b);
  t->pkd = pack_conv(&t->cd, t->wd, t->b);
  th_conv(&t->cw, 25, 23, 32, 32, 3, 1, 1, 1, TXK_ACT_RELU, TXK_RESIDUAL_BEFORE_ACT);
  th_conv(&t->cw2, 19, 23, 37, 45, 3, 1, 1, 1, TXK_ACT_SILU, TXK_RESIDUAL_AFTER_ACT);
  t->cw.algo = t->cw2.algo = TXK_CONV_WINOGRAD;
  t->ww = falloc(45 * 37 * 9);
  t->big = falloc(1201 * 2001);
  t->pkw = pack_winograd(&t->cw, t->ww, t->b);
  t->pkw2 = pack_winograd(&t->cw2, t->ww, t->b);
  th_conv(&t->pd.pw, 21, 19, 37, 57, 1, 1, 0, 1, TXK_ACT_SILU, TXK_RESIDUAL_NONE);
  t->pd.dw = t->cd;
  t->wp = falloc(57 * 37);
  t->pkp = pack_conv(&t->pd.pw, t->wp, t->b);
  {
    txk_linear_desc ld = {53, 41, 131, 0, 0, 0, {TXK_ACT_GELU, 0, 0, TXK_RESIDUAL_NONE}};
    txk_attention_desc ad = {37, 3, 19, 3 * 57, 0, 0.3f};
    txk_bmm_desc bd = {5, 13, 11, 9, 9 * 13, 9, 1, 9 * 11, 11, 1, 13 * 11, 11, 0.5f};
    txk_bmm_desc bd2 = {3, 7, 11, 9, 9, 1, 7, 11 * 9, 11, 1, 7 * 11, 11, 1.0f};
    txk_conv2d_desc cl;
    t->ld = ld;
    t->ad = ad;
    t->bd = bd;
    t->bd2 = bd2;
    th_conv(&cl, 1, 1, 41, 131, 1, 1, 0, 1, 0, 0);
    t->wl = falloc(131 * 41);
    t->pkl = pack_conv(&cl, t->wl, t->b);
  }
  t->scratch = falloc(1u << 18);
}

static void th_free(th_data* t) {
  free(t->x), free(t->x2), free(t->b), free(t->r), free(t->w1), free(t->w3), free(t->wg);
  free(t->wd), free(t->wl), free(t->pk1), free(t->pk3), free(t->pkg), free(t->pkd);
  free(t->pkl), free(t->wp), free(t->pkp), free(t->ww), free(t->pkw), free(t->pkw2), free(t->big);
  free(t->scratch);
}

static size_t th_run(const txk_context* ctx, const th_data* t, float* out) {
  size_t o = 0;
  txk_pool2d_desc pd;
  txk_binary_desc bn;
  expect(txk_conv2d(ctx, &t->c1, t->x, t->pk1, out + o, t->r, NULL) == TXK_OK, "th conv1x1");
  o += 19 * 23 * 45;
  expect(txk_conv2d(ctx, &t->c3, t->x, t->pk3, out + o, NULL, t->scratch) == TXK_OK, "th conv3");
  o += 17 * 13 * 35;
  expect(txk_conv2d(ctx, &t->cg, t->x, t->pkg, out + o, t->r, t->scratch) == TXK_OK, "th grp");
  o += 8 * 6 * 36;
  expect(txk_conv2d(ctx, &t->cd, t->x, t->pkd, out + o, NULL, NULL) == TXK_OK, "th dw");
  o += 21 * 19 * 57;
  expect(txk_conv2d(ctx, &t->cw, t->x, t->pkw, out + o, t->r, t->scratch) == TXK_OK, "th wino");
  o += 25 * 23 * 32;
  expect(txk_conv2d(ctx, &t->cw2, t->x, t->pkw2, out + o, t->r, t->scratch) == TXK_OK,
         "th wino 3 passes");
  o += 19 * 23 * 45;
  expect(txk_conv2d_pw_dw(ctx, &t->pd, t->x, t->pkp, t->pkd, out + o, NULL, t->scratch) ==
             TXK_OK,
         "th pw_dw");
  o += 21 * 19 * 57;
  expect(txk_linear(ctx, &t->ld, t->x, t->pkl, out + o, NULL) == TXK_OK, "th linear");
  o += 53 * 131;
  expect(txk_attention(ctx, &t->ad, t->x, t->x + 57, t->x + 114, out + o, t->scratch) == TXK_OK,
         "th attention");
  o += 37 * 57;
  expect(txk_bmm(ctx, &t->bd, t->x, t->x2, out + o, t->scratch) == TXK_OK, "th bmm");
  o += 5 * 13 * 11;
  expect(txk_bmm(ctx, &t->bd2, t->x, t->x2, out + o, t->scratch) == TXK_OK, "th bmm a_sk");
  o += 3 * 7 * 11;
  expect(txk_layernorm(ctx, 301, 67, t->x, 0, out + o, 0, t->b, t->r, 1e-5f) == TXK_OK, "th ln");
  o += 301 * 67;
  expect(txk_softmax(ctx, 301, 67, t->x, 0, out + o, 0) == TXK_OK, "th softmax");
  o += 301 * 67;
  expect(txk_groupnorm(ctx, 2, 301, 36, 4, t->x, out + o, t->b, NULL, 1e-5f) == TXK_OK, "th gn");
  o += 2 * 301 * 36;
  expect(txk_global_avgpool(ctx, 2, 29, 1001, t->x, out + o) == TXK_OK, "th gap");
  o += 2 * 1001;
  expect(txk_global_avgpool(ctx, 1, 1201, 2001, t->big, out + o) == TXK_OK, "th gap split");
  o += 2001;
  memset(&pd, 0, sizeof pd);
  pd.n = 2, pd.in_h = 29, pd.in_w = 31, pd.c = 33, pd.kh = pd.kw = 3, pd.stride_h = 2;
  pd.stride_w = 2, pd.pad_h = pd.pad_w = 1, pd.out_h = 15, pd.out_w = 16;
  expect(txk_maxpool2d(ctx, &pd, t->x, out + o) == TXK_OK, "th maxpool");
  o += 2 * 15 * 16 * 33;
  expect(txk_avgpool2d(ctx, &pd, t->x, out + o) == TXK_OK, "th avgpool");
  o += 2 * 15 * 16 * 33;
  pd.out_h = 7, pd.out_w = 5;
  expect(txk_adaptive_avgpool2d(ctx, &pd, t->x, out + o) == TXK_OK, "th adaptive");
  o += 2 * 7 * 5 * 33;
  memset(&bn, 0, sizeof bn);
  bn.op = TXK_BIN_ADD, bn.n = 3, bn.p = 301, bn.c = 67, bn.a_sn = 301 * 67, bn.a_sp = 67;
  bn.a_sc = 1, bn.b_sn = 67, bn.b_sc = 1, bn.y_sn = 301 * 67, bn.y_sp = 67;
  bn.epilogue.act = TXK_ACT_GELU;
  expect(txk_binary(ctx, &bn, t->x, t->x2, out + o) == TXK_OK, "th binary rows");
  o += 3 * 301 * 67;
  memset(&bn, 0, sizeof bn); /* one long row, a broadcast: column pieces */
  bn.op = TXK_BIN_SUB, bn.n = 1, bn.p = 1, bn.c = 60001, bn.a_sc = 0, bn.b_sc = 1;
  bn.epilogue.act = TXK_ACT_RELU;
  expect(txk_binary(ctx, &bn, t->x, t->x2, out + o) == TXK_OK, "th binary long row");
  o += 60001;
  bn.b_sc = 2, bn.c = 30001; /* strided: the portable loop */
  bn.p = 2, bn.a_sp = 1, bn.b_sp = 1, bn.y_sp = 30001, bn.a_sc = 1;
  expect(txk_binary(ctx, &bn, t->x, t->x2, out + o) == TXK_OK, "th binary strided");
  o += 60002;
  expect(txk_unary(ctx, TXK_ACT_SILU, 0, 0, 60001, t->x, out + o) == TXK_OK, "th unary");
  o += 60001;
  expect(txk_vexp(ctx, 50001, t->x, out + o) == TXK_OK, "th vexp");
  o += 50001;
  expect(txk_channel_scale(ctx, 2, 97, 300, t->x, t->x2, TXK_ACT_SIGMOID, out + o) == TXK_OK,
         "th se gate");
  o += 2 * 97 * 300;
  /* 45 outputs x 37 inputs: 3 blocks of 16 x (1 + 37) floats, at an aligned offset */
  o = (o + 15) / 16 * 16;
  expect(txk_gate_weights(ctx, 37, 45, t->pk1, t->x2, TXK_ACT_HARDSIGMOID, out + o) == TXK_OK,
         "th gate weights");
  o += 3 * 16 * 38;
  expect(o <= TH_OUT, "threads test buffer size");
  return o;
}

#ifndef TXK_NO_THREADS
typedef struct th_arg {
  const txk_context* ctx;
  const th_data* t;
  float* out;
} th_arg;

static void* th_thread(void* p) {
  th_arg* a = (th_arg*)p;
  th_run(a->ctx, a->t, a->out);
  return NULL;
}
#endif

static void test_threads(void) {
  static const int counts[] = {2, 3, 7};
  txk_context one, ctx;
  txk_threadpool pool;
  th_data t;
  float *want = falloc(TH_OUT), *got = falloc(TH_OUT);
  size_t n, i, k;
  char what[96];
  expect(txk_context_init(&one, TXK_ISA_AUTO) == TXK_OK, "threads: context");
  expect(txk_context_threads(&one) == 1, "threads: no pool = 1 thread");
  expect(txk_threadpool_init(NULL, 2) == TXK_EINVAL, "threads: NULL pool");
  expect(txk_threadpool_init(&pool, -1) == TXK_EINVAL, "threads: negative count");
  expect(txk_threadpool_init(&pool, 0) == TXK_OK && txk_threadpool_threads(&pool) >= 1,
         "threads: 0 = online cores");
  txk_threadpool_destroy(&pool);
  txk_threadpool_destroy(&pool); /* twice: a no-op */
  th_setup(&t);
  memset(want, 0, TH_OUT * sizeof(float));
  n = th_run(&one, &t, want);
  for (k = 0; k < sizeof counts / sizeof counts[0]; k++) {
    expect(txk_threadpool_init(&pool, counts[k]) == TXK_OK, "threads: pool init");
#ifdef TXK_NO_THREADS
    expect(txk_threadpool_threads(&pool) == 1, "threads: TXK_NO_THREADS runs one thread");
#else
    expect(txk_threadpool_threads(&pool) == counts[k], "threads: pool size");
#endif
    ctx = one;
    txk_context_set_threadpool(&ctx, &pool);
    for (i = 0; i < 2; i++) { /* twice: workers asleep, then awake */
      memset(got, 0, TH_OUT * sizeof(float));
      th_run(&ctx, &t, got);
      snprintf(what, sizeof what, "threads: %d threads, run %zu: not bitwise equal", counts[k],
               i);
      expect(memcmp(got, want, n * sizeof(float)) == 0, what);
    }
#ifndef TXK_NO_THREADS
    if (counts[k] == 2) { /* two callers share the pool: one runs alone, same bytes */
      float* got2 = falloc(TH_OUT);
      th_data t2;
      th_arg a;
      pthread_t th;
      th_setup(&t2); /* its own scratch; same inputs (the generator is reseeded) */
      memcpy(t2.x, t.x, 65536 * sizeof(float));
      memcpy(t2.x2, t.x2, 65536 * sizeof(float));
      memcpy(t2.r, t.r, 65536 * sizeof(float));
      memset(got, 0, TH_OUT * sizeof(float));
      memset(got2, 0, TH_OUT * sizeof(float));
      a.ctx = &ctx, a.t = &t2, a.out = got2;
      expect(pthread_create(&th, NULL, th_thread, &a) == 0, "threads: second caller");
      th_run(&ctx, &t, got);
      pthread_join(th, NULL);
      expect(memcmp(got, want, n * sizeof(float)) == 0, "threads: shared pool, caller 1");
      th_free(&t2);
      free(got2);
    }
#endif
    txk_threadpool_destroy(&pool);
  }
  th_free(&t);
  free(want);
  free(got);
}

/* txk_weights_check: a valid 64 + 40 byte blob in an exact-size heap buffer (ASan sees any
 * read past it), then every rejection, including header fields that would make a naive
 * `header + payload` wrap. */
static void put_le(unsigned char* p, unsigned long long v, int bytes) {
  int i;
  for (i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static int weights_case(const unsigned char* blob, size_t n, const txk_weights_expect* e) {
  unsigned char* copy = (unsigned char*)malloc(n ? n : 1);
  int s;
  if (copy == NULL) exit(2);
  if (n) memcpy(copy, blob, n);
  s = txk_weights_check(copy, n, e);
  free(copy);
  return s;
}

static void test_weights_check(void) {
  enum { PAYLOAD = 40, SIZE = 64 + PAYLOAD };
  unsigned char good[SIZE + 8], bad[SIZE + 8];
  txk_weights_expect e;
  unsigned a = 0, b = 0;
  int i;
  memset(good, 0, sizeof good);
  memcpy(good, "TIMMXWT", 8);
  put_le(good + 8, 1, 4);
  put_le(good + 12, 64, 4);
  put_le(good + 16, PAYLOAD, 8);
  for (i = 0; i < PAYLOAD; i++) good[64 + i] = (unsigned char)(i * 37 + 11);
  for (i = 0; i < PAYLOAD; i += 4) {
    a += (unsigned)good[64 + i] | (unsigned)good[65 + i] << 8 | (unsigned)good[66 + i] << 16 |
         (unsigned)good[67 + i] << 24;
    b += a;
  }
  put_le(good + 24, ((unsigned long long)b << 32) | a, 8);
  put_le(good + 32, 0x0123456789abcdefULL, 8);
  e.version = TXK_WEIGHTS_VERSION;
  e.header_size = TXK_WEIGHTS_HEADER_SIZE;
  e.payload_size = PAYLOAD;
  e.layout_id = 0x0123456789abcdefULL;
  expect(txk_weights_fletcher64(good + 64, PAYLOAD) == (((unsigned long long)b << 32) | a),
         "weights: fletcher64");
  expect(weights_case(good, SIZE, &e) == TXK_OK, "weights: valid blob accepted");
  expect(txk_weights_check(NULL, SIZE, &e) == TXK_EINVAL, "weights: NULL blob");
  expect(txk_weights_check(good, SIZE, NULL) == TXK_EINVAL, "weights: NULL expect");
  e.header_size = 39;
  expect(weights_case(good, SIZE, &e) == TXK_EINVAL, "weights: expect header < 40");
  e.header_size = 64, e.payload_size = 6;
  expect(weights_case(good, SIZE, &e) == TXK_EINVAL, "weights: payload not a multiple of 4");
  e.payload_size = PAYLOAD;
  for (i = 0; i < 64; i++)
    expect(weights_case(good, (size_t)i, &e) == TXK_EWEIGHTS_SIZE, "weights: short header");
  expect(weights_case(good, SIZE - 4, &e) == TXK_EWEIGHTS_SIZE, "weights: truncated payload");
  expect(weights_case(good, SIZE - 1, &e) == TXK_EWEIGHTS_SIZE, "weights: truncated by 1");
  expect(weights_case(good, SIZE + 1, &e) == TXK_EWEIGHTS_SIZE, "weights: 1 trailing byte");
  expect(weights_case(good, SIZE + 8, &e) == TXK_EWEIGHTS_SIZE, "weights: trailing bytes");
  for (i = 0; i < 8; i++) {
    memcpy(bad, good, SIZE);
    bad[i] ^= 0x20;
    expect(weights_case(bad, SIZE, &e) == TXK_EWEIGHTS_MAGIC, "weights: magic");
  }
  memcpy(bad, good, SIZE);
  put_le(bad + 8, 2, 4);
  expect(weights_case(bad, SIZE, &e) == TXK_EWEIGHTS_VERSION, "weights: version");
  memcpy(bad, good, SIZE);
  put_le(bad + 12, 72, 4);
  expect(weights_case(bad, SIZE, &e) == TXK_EWEIGHTS_VERSION, "weights: header size");
  {
    static const unsigned long long sizes[] = {0, 36, 44, 0xffffffffffffffc0ULL,
                                               0xfffffffffffffffcULL, 0x8000000000000000ULL};
    for (i = 0; i < (int)(sizeof sizes / sizeof sizes[0]); i++) {
      memcpy(bad, good, SIZE);
      put_le(bad + 16, sizes[i], 8);
      expect(weights_case(bad, SIZE, &e) == TXK_EWEIGHTS_MODEL, "weights: payload size field");
      /* Trusting the field (expect taken from the header) must still not read past the blob. */
      e.payload_size = sizes[i];
      expect(weights_case(bad, SIZE, &e) ==
                 (sizes[i] == PAYLOAD ? TXK_OK : TXK_EWEIGHTS_SIZE),
             "weights: huge payload size from the header");
      e.payload_size = PAYLOAD;
    }
  }
  for (i = 40; i < 64; i++) {
    memcpy(bad, good, SIZE);
    bad[i] = 1;
    expect(weights_case(bad, SIZE, &e) == TXK_EWEIGHTS_CHECKSUM, "weights: reserved byte");
  }
  memcpy(bad, good, SIZE);
  bad[32] ^= 1;
  expect(weights_case(bad, SIZE, &e) == TXK_EWEIGHTS_MODEL, "weights: layout id");
  memcpy(bad, good, SIZE);
  bad[24] ^= 1;
  expect(weights_case(bad, SIZE, &e) == TXK_EWEIGHTS_CHECKSUM, "weights: checksum field");
  for (i = 64; i < SIZE; i++) {
    memcpy(bad, good, SIZE);
    bad[i] ^= 0x80;
    expect(weights_case(bad, SIZE, &e) == TXK_EWEIGHTS_CHECKSUM, "weights: payload byte");
  }
  e.version = 2;
  expect(weights_case(good, SIZE, &e) == TXK_EWEIGHTS_VERSION, "weights: expected version");
  e.version = 1, e.layout_id = 7;
  expect(weights_case(good, SIZE, &e) == TXK_EWEIGHTS_MODEL, "weights: expected layout");
  expect(strstr(txk_status_string(TXK_EWEIGHTS_SIZE), "weights") != NULL, "weights: status");
}

int main(int argc, char** argv) {
  txk_context ctx;
  int f;
  if (argc > 1 && strcmp(argv[1], "threads") == 0) {
    test_threads();
    if (failures) {
      fprintf(stderr, "%d failure(s)\n", failures);
      return 1;
    }
    printf("txk_selftest threads: all checks passed\n");
    return 0;
  }
  expect(txk_context_init(&ctx, TXK_ISA_AUTO) == TXK_OK, "context init");
  printf("selected isa: %s\n", txk_isa_name(ctx.isa));
  for (f = 0; f < TXK_FAMILY_COUNT; f++) test_family((txk_family)f);
  test_other_ops();
  test_pw_dw(&ctx);
  {
    txk_context scalar;
    expect(txk_context_init(&scalar, TXK_ISA_SCALAR) == TXK_OK, "scalar context");
    test_pw_dw(&scalar);
  }
  test_weights_check();
  test_threads();
  if (failures) {
    fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  printf("txk_selftest: all checks passed\n");
  return 0;
}
