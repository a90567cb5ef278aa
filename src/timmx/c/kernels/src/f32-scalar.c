/* ISA file, scalar: portable C99 micro-kernels of every family (the fallback for
 * any CPU). Contracts: internal/txk_internal.h and ../README.md; element math:
 * internal/txk_scalar_math.h. */
#include <math.h>

#include "internal/txk_internal.h"
#include "internal/txk_scalar_math.h"

static void store_row(const float* acc, size_t nc, float* c, const float* r,
                      const txk_epilogue* ep) {
  size_t j;
  for (j = 0; j < nc; j++) {
    float v = acc[j];
    if (ep->residual == TXK_RESIDUAL_BEFORE_ACT) v += r[j];
    v = txk_scalar_act((int)ep->act, v, ep->act_min, ep->act_max);
    if (ep->residual == TXK_RESIDUAL_AFTER_ACT) v += r[j];
    c[j] = v;
  }
}

/* MR = 4 rows, NR = 16 columns (one packed block). */
void txk_f32_gemm_ukernel_4x16__scalar(size_t mr, size_t nc, size_t kc, size_t ks,
                                       const float* const* a, const ptrdiff_t* a_off,
                                       const float* w, size_t w_stride, float* c, size_t c_stride,
                                       const float* r, size_t r_stride, const txk_epilogue* ep) {
  float acc0[16], acc1[16], acc2[16], acc3[16];
  size_t s, t, j, i;
  (void)w_stride;
  for (j = 0; j < 16; j++) acc0[j] = acc1[j] = acc2[j] = acc3[j] = w[j];
  w += 16;
  for (s = 0; s < ks; s++) {
    const float* a0 = a[0] + a_off[s];
    const float* a1 = a[1] + a_off[s];
    const float* a2 = a[2] + a_off[s];
    const float* a3 = a[3] + a_off[s];
    for (t = 0; t < kc; t++) {
      const float x0 = a0[t], x1 = a1[t], x2 = a2[t], x3 = a3[t];
      for (j = 0; j < 16; j++) {
        acc0[j] += x0 * w[j];
        acc1[j] += x1 * w[j];
        acc2[j] += x2 * w[j];
        acc3[j] += x3 * w[j];
      }
      w += 16;
    }
  }
  for (i = 0; i < mr; i++) {
    const float* acc = i == 0 ? acc0 : i == 1 ? acc1 : i == 2 ? acc2 : acc3;
    store_row(acc, nc, c + i * c_stride, r ? r + i * r_stride : NULL, ep);
  }
}

void txk_f32_dwconv_ukernel_1x1__scalar(const txk_dw_params* p, size_t oh, float* y_row,
                                         const float* r_row) {
  const size_t bsz = 16 * (1 + p->kh * p->kw);
  size_t ow, ch, ky, kx;
  for (ow = 0; ow < p->out_w; ow++) {
    const ptrdiff_t iw0 = (ptrdiff_t)(ow * p->sw) - (ptrdiff_t)p->pl;
    const ptrdiff_t ih0 = (ptrdiff_t)(oh * p->sh) - (ptrdiff_t)p->pt;
    for (ch = 0; ch < p->c; ch++) {
      const float* wb = p->w + (ch / 16) * bsz;
      const size_t j = ch % 16;
      float acc = wb[j], v;
      for (ky = 0; ky < p->kh; ky++) {
        const ptrdiff_t ih = ih0 + (ptrdiff_t)(ky * p->dh);
        if (ih < 0 || ih >= (ptrdiff_t)p->in_h) continue;
        for (kx = 0; kx < p->kw; kx++) {
          const ptrdiff_t iw = iw0 + (ptrdiff_t)(kx * p->dw);
          if (iw < 0 || iw >= (ptrdiff_t)p->in_w) continue;
          acc += p->x[((size_t)ih * p->in_w + (size_t)iw) * p->xs + ch] *
                 wb[16 + (ky * p->kw + kx) * 16 + j];
        }
      }
      v = acc;
      if (p->ep->residual == TXK_RESIDUAL_BEFORE_ACT) v += r_row[ow * p->rs + ch];
      v = txk_scalar_act((int)p->ep->act, v, p->ep->act_min, p->ep->act_max);
      if (p->ep->residual == TXK_RESIDUAL_AFTER_ACT) v += r_row[ow * p->rs + ch];
      y_row[ow * p->ys + ch] = v;
    }
  }
}

void txk_f32_vunary_ukernel_1x1__scalar(int op, float lo, float hi, size_t n, const float* x,
                                        float* y) {
  size_t i;
  if (op == TXK_OP_EXP)
    for (i = 0; i < n; i++) y[i] = expf(x[i]);
  else if (op == TXK_OP_ERF)
    for (i = 0; i < n; i++) y[i] = erff(x[i]);
  else
    for (i = 0; i < n; i++) y[i] = txk_scalar_act(op, x[i], lo, hi);
}

/* Row operations (contract in txk_internal.h); the portable reference for the
 * vector versions. */
void txk_f32_rowop_ukernel_1x1__scalar(int op, size_t n, const float* a, const float* b, float* y,
                                       const txk_rowop_params* q) {
  size_t j;
  switch (op) {
    case TXK_ROW_LAYERNORM: {
      float s[8] = {0, 0, 0, 0, 0, 0, 0, 0}, d[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      float mean, var, inv;
      int l;
      for (j = 0; j + 8 <= n; j += 8)
        for (l = 0; l < 8; l++) s[l] += a[j + l];
      for (; j < n; j++) s[0] += a[j];
      mean = (((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))) / (float)n;
      for (j = 0; j + 8 <= n; j += 8)
        for (l = 0; l < 8; l++) d[l] += (a[j + l] - mean) * (a[j + l] - mean);
      for (; j < n; j++) d[0] += (a[j] - mean) * (a[j] - mean);
      var = (((d[0] + d[1]) + (d[2] + d[3])) + ((d[4] + d[5]) + (d[6] + d[7]))) / (float)n;
      inv = 1.0f / sqrtf(var + q->eps);
      for (j = 0; j < n; j++) {
        float v = (a[j] - mean) * inv;
        if (q->gamma) v *= q->gamma[j];
        if (q->beta) v += q->beta[j];
        y[j] = v;
      }
      return;
    }
    case TXK_ROW_SOFTMAX: {
      float mx = a[0], sum = 0.0f, inv;
      for (j = 1; j < n; j++) mx = a[j] > mx ? a[j] : mx;
      for (j = 0; j < n; j++) {
        y[j] = expf(a[j] - mx);
        sum += y[j];
      }
      inv = 1.0f / sum;
      for (j = 0; j < n; j++) y[j] *= inv;
      return;
    }
    case TXK_ROW_ACC:
      for (j = 0; j < n; j++) y[j] += a[j];
      return;
    case TXK_ROW_MUL:
      for (j = 0; j < n; j++) y[j] = a[j] * b[j];
      return;
    case TXK_ROW_BINARY:
      for (j = 0; j < n; j++)
        y[j] = txk_scalar_act(q->act, txk_scalar_binop(q->bop, a[j * q->asc], b[j * q->bsc]),
                              q->lo, q->hi);
      return;
    default: return;
  }
}

/* Winograd F(4x4, 3x3) tile transforms, one channel at a time (matrices: winograd.c). */
static void wino_bt(const float* d, float* o) {
  const float m31 = d[3] - d[1], m42 = d[4] - d[2];
  o[0] = (d[0] + d[4]) + 1.5f * m31 - 2.0f * d[2];
  o[1] = (d[1] + d[4]) - 2.5f * d[2] + 0.5f * d[3];
  o[2] = (d[4] - d[1]) + 0.5f * d[2] + 2.5f * d[3];
  o[3] = m42 + 2.0f * m31;
  o[4] = m42 - 0.5f * m31;
  o[5] = (d[5] + d[1]) + 1.5f * (d[4] - d[2]) - 2.0f * d[3];
}

static void wino_at(const float* m, float* o) {
  const float a12 = m[1] + m[2], s21 = m[2] - m[1];
  o[0] = m[0] + a12 + (m[3] + m[4]);
  o[1] = s21 + 0.5f * m[3] - 2.0f * m[4];
  o[2] = a12 + 0.25f * m[3] + 4.0f * m[4];
  o[3] = s21 + 0.125f * m[3] - 8.0f * m[4] + m[5];
}

void txk_f32_wino_ukernel_1x1__scalar(int op, const txk_wino_params* p) {
  float col[6], t[36], o[6];
  size_t ch, i, k;
  for (ch = 0; ch < p->cp; ch++) {
    if (op == TXK_WINO_IN) {
      for (k = 0; k < 6; k++) { /* column k of B^T d */
        for (i = 0; i < 6; i++) col[i] = p->src[i * p->s_row + k * p->s_px + ch];
        wino_bt(col, o);
        for (i = 0; i < 6; i++) t[i * 6 + k] = o[i];
      }
      for (k = 0; k < 6; k++) { /* row k of (B^T d) B */
        wino_bt(t + k * 6, o);
        for (i = 0; i < 6; i++) p->dst[(k * 6 + i) * p->d_xi + ch] = o[i];
      }
    } else {
      const txk_epilogue* ep = p->ep;
      for (k = 0; k < 6; k++) { /* column k of A^T m */
        for (i = 0; i < 6; i++) col[i] = p->src[(i * 6 + k) * p->s_xi + ch];
        wino_at(col, o);
        for (i = 0; i < 4; i++) t[i * 6 + k] = o[i];
      }
      for (i = 0; i < 4; i++) { /* row i of (A^T m) A */
        wino_at(t + i * 6, o);
        for (k = 0; k < 4; k++) {
          const float* rp = p->r ? p->r + i * p->r_row + k * p->r_px + ch : NULL;
          float v = o[k] + p->bias[ch];
          if (ep->residual == TXK_RESIDUAL_BEFORE_ACT) v += *rp;
          v = txk_scalar_act((int)ep->act, v, ep->act_min, ep->act_max);
          if (ep->residual == TXK_RESIDUAL_AFTER_ACT) v += *rp;
          p->dst[i * p->d_row + k * p->d_px + ch] = v;
        }
      }
    }
  }
}
