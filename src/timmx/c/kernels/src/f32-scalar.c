/* Portable scalar kernels on packed weights (fallback for any CPU). Strict C99.
 * Contracts: see txk_internal.h and ../README.md. */
#include "txk_internal.h"

static void store_row(const float* acc, size_t nc, float* c, const float* r,
                      const txk_epilogue* ep) {
  size_t j;
  for (j = 0; j < nc; j++) {
    float v = acc[j];
    if (ep->residual == TXK_RESIDUAL_BEFORE_ACT) v += r[j];
    v = txk_act_scalar((int)ep->act, v, ep->act_min, ep->act_max);
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

void txk_f32_dwconv_ukernel_row__scalar(const txk_dw_params* p, size_t oh, float* y_row,
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
      v = txk_act_scalar((int)p->ep->act, v, p->ep->act_min, p->ep->act_max);
      if (p->ep->residual == TXK_RESIDUAL_AFTER_ACT) v += r_row[ow * p->rs + ch];
      y_row[ow * p->ys + ch] = v;
    }
  }
}

void txk_f32_vunary__scalar(int op, float lo, float hi, size_t n, const float* x, float* y) {
  size_t i;
  for (i = 0; i < n; i++) y[i] = txk_act_scalar(op, x[i], lo, hi);
}
