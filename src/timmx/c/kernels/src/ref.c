/* Reference layer (txk_ref_*): plain loops on UNPACKED weights, double
 * accumulation, element math of internal/txk_scalar_math.h (libm). The oracle
 * every fast kernel is tested against. Strict C99. */
#include <math.h>

#include "internal/txk_internal.h"
#include "internal/txk_scalar_math.h"

static float ref_epi(const txk_epilogue* ep, double acc, const float* r) {
  float v = (float)acc;
  if (ep->residual == TXK_RESIDUAL_BEFORE_ACT) v += *r;
  v = txk_scalar_act((int)ep->act, v, ep->act_min, ep->act_max);
  if (ep->residual == TXK_RESIDUAL_AFTER_ACT) v += *r;
  return v;
}

int txk_ref_conv2d(const txk_conv2d_desc* d, const float* x, const float* w, const float* bias,
                   float* y, const float* residual) {
  int n, oh, ow, oc, ic, ky, kx;
  int icg, ocg;
  size_t xs, ys, rs;
  if (txk_conv2d_check(d) != TXK_OK || x == NULL || w == NULL || y == NULL) return TXK_EINVAL;
  if (d->epilogue.residual != TXK_RESIDUAL_NONE && residual == NULL) return TXK_EINVAL;
  icg = d->in_c / d->groups;
  ocg = d->out_c / d->groups;
  xs = (size_t)(d->x_stride ? d->x_stride : d->in_c);
  ys = (size_t)(d->y_stride ? d->y_stride : d->out_c);
  rs = (size_t)(d->r_stride ? d->r_stride : d->out_c);
  for (n = 0; n < d->n; n++)
    for (oh = 0; oh < d->out_h; oh++)
      for (ow = 0; ow < d->out_w; ow++) {
        size_t opix = ((size_t)n * d->out_h + oh) * d->out_w + ow;
        for (oc = 0; oc < d->out_c; oc++) {
          int g = oc / ocg;
          double acc = bias ? bias[oc] : 0.0;
          for (ky = 0; ky < d->kh; ky++) {
            int ih = oh * d->stride_h - d->pad_top + ky * d->dil_h;
            if (ih < 0 || ih >= d->in_h) continue;
            for (kx = 0; kx < d->kw; kx++) {
              int iw = ow * d->stride_w - d->pad_left + kx * d->dil_w;
              const float* xp;
              if (iw < 0 || iw >= d->in_w) continue;
              xp = x + (((size_t)n * d->in_h + ih) * d->in_w + iw) * xs + (size_t)g * icg;
              for (ic = 0; ic < icg; ic++)
                acc += (double)xp[ic] *
                       w[(((size_t)oc * icg + ic) * d->kh + ky) * d->kw + kx];
            }
          }
          y[opix * ys + oc] =
              ref_epi(&d->epilogue, acc, residual ? residual + opix * rs + oc : NULL);
        }
      }
  return TXK_OK;
}

int txk_ref_linear(const txk_linear_desc* d, const float* a, const float* w, const float* bias,
                   float* y, const float* residual) {
  int i, j, k;
  size_t lda, ldy, ldr;
  if (d == NULL || a == NULL || w == NULL || y == NULL || d->m < 0 || d->n < 1 || d->k < 1)
    return TXK_EINVAL;
  if (d->epilogue.residual != TXK_RESIDUAL_NONE && residual == NULL) return TXK_EINVAL;
  lda = (size_t)(d->lda ? d->lda : d->k);
  ldy = (size_t)(d->ldy ? d->ldy : d->n);
  ldr = (size_t)(d->ldr ? d->ldr : d->n);
  for (i = 0; i < d->m; i++)
    for (j = 0; j < d->n; j++) {
      double acc = bias ? bias[j] : 0.0;
      for (k = 0; k < d->k; k++) acc += (double)a[i * lda + k] * w[(size_t)j * d->k + k];
      y[i * ldy + j] = ref_epi(&d->epilogue, acc, residual ? residual + i * ldr + j : NULL);
    }
  return TXK_OK;
}

int txk_ref_bmm(const txk_bmm_desc* d, const float* a, const float* b, float* c) {
  long bi, i, j, k;
  if (d == NULL || a == NULL || b == NULL || c == NULL || d->batch < 0 || d->m < 0 || d->n < 0 ||
      d->k < 0)
    return TXK_EINVAL;
  for (bi = 0; bi < d->batch; bi++)
    for (i = 0; i < d->m; i++)
      for (j = 0; j < d->n; j++) {
        double acc = 0.0;
        for (k = 0; k < d->k; k++)
          acc += (double)a[bi * d->a_sb + i * d->a_sm + k * d->a_sk] *
                 b[bi * d->b_sb + k * d->b_sk + j * d->b_sn];
        c[bi * d->c_sb + i * d->c_sm + j] = (float)(acc * d->alpha);
      }
  return TXK_OK;
}

int txk_ref_attention(const txk_attention_desc* d, const float* q, const float* k, const float* v,
                      float* out) {
  int h, i, j, t;
  size_t qs, os, dim;
  double s[4096];
  if (d == NULL || q == NULL || k == NULL || v == NULL || out == NULL || d->seq < 1 ||
      d->seq > 4096 || d->heads < 1 || d->head_dim < 1)
    return TXK_EINVAL;
  dim = (size_t)d->heads * d->head_dim;
  qs = (size_t)(d->qkv_stride ? d->qkv_stride : (int)dim);
  os = (size_t)(d->out_stride ? d->out_stride : (int)dim);
  for (h = 0; h < d->heads; h++)
    for (i = 0; i < d->seq; i++) {
      double mx = -HUGE_VAL, sum = 0.0;
      const float* qi = q + i * qs + (size_t)h * d->head_dim;
      for (j = 0; j < d->seq; j++) {
        const float* kj = k + j * qs + (size_t)h * d->head_dim;
        double acc = 0.0;
        for (t = 0; t < d->head_dim; t++) acc += (double)qi[t] * kj[t];
        s[j] = acc * d->scale;
        if (s[j] > mx) mx = s[j];
      }
      for (j = 0; j < d->seq; j++) {
        s[j] = exp(s[j] - mx);
        sum += s[j];
      }
      for (t = 0; t < d->head_dim; t++) {
        double acc = 0.0;
        for (j = 0; j < d->seq; j++) acc += s[j] * v[j * qs + (size_t)h * d->head_dim + t];
        out[i * os + (size_t)h * d->head_dim + t] = (float)(acc / sum);
      }
    }
  return TXK_OK;
}

int txk_ref_layernorm(size_t rows, size_t c, const float* x, size_t x_stride, float* y,
                      size_t y_stride, const float* gamma, const float* beta, float eps) {
  size_t r, j;
  if (x == NULL || y == NULL || c == 0) return TXK_EINVAL;
  if (x_stride == 0) x_stride = c;
  if (y_stride == 0) y_stride = c;
  for (r = 0; r < rows; r++) {
    const float* xr = x + r * x_stride;
    float* yr = y + r * y_stride;
    double mean = 0.0, var = 0.0, inv;
    for (j = 0; j < c; j++) mean += xr[j];
    mean /= (double)c;
    for (j = 0; j < c; j++) var += (xr[j] - mean) * (xr[j] - mean);
    var /= (double)c;
    inv = 1.0 / sqrt(var + eps);
    for (j = 0; j < c; j++) {
      double v = (xr[j] - mean) * inv;
      if (gamma) v *= gamma[j];
      if (beta) v += beta[j];
      yr[j] = (float)v;
    }
  }
  return TXK_OK;
}

int txk_ref_groupnorm(size_t n, size_t hw, size_t c, size_t groups, const float* x, float* y,
                      const float* gamma, const float* beta, float eps) {
  size_t b, g, p, j, cg;
  if (x == NULL || y == NULL || groups == 0 || c % groups != 0 || hw == 0) return TXK_EINVAL;
  cg = c / groups;
  for (b = 0; b < n; b++)
    for (g = 0; g < groups; g++) {
      double mean = 0.0, var = 0.0, inv, cnt = (double)(hw * cg);
      const float* xb = x + b * hw * c + g * cg;
      float* yb = y + b * hw * c + g * cg;
      for (p = 0; p < hw; p++)
        for (j = 0; j < cg; j++) mean += xb[p * c + j];
      mean /= cnt;
      for (p = 0; p < hw; p++)
        for (j = 0; j < cg; j++) var += (xb[p * c + j] - mean) * (xb[p * c + j] - mean);
      var /= cnt;
      inv = 1.0 / sqrt(var + eps);
      for (p = 0; p < hw; p++)
        for (j = 0; j < cg; j++) {
          double v = (xb[p * c + j] - mean) * inv;
          if (gamma) v *= gamma[g * cg + j];
          if (beta) v += beta[g * cg + j];
          yb[p * c + j] = (float)v;
        }
    }
  return TXK_OK;
}

int txk_ref_softmax(size_t rows, size_t c, const float* x, size_t x_stride, float* y,
                    size_t y_stride) {
  size_t r, j;
  if (x == NULL || y == NULL || c == 0) return TXK_EINVAL;
  if (x_stride == 0) x_stride = c;
  if (y_stride == 0) y_stride = c;
  for (r = 0; r < rows; r++) {
    const float* xr = x + r * x_stride;
    float* yr = y + r * y_stride;
    double mx = xr[0], sum = 0.0;
    for (j = 1; j < c; j++)
      if (xr[j] > mx) mx = xr[j];
    for (j = 0; j < c; j++) sum += exp(xr[j] - mx);
    for (j = 0; j < c; j++) yr[j] = (float)(exp(xr[j] - mx) / sum);
  }
  return TXK_OK;
}

int txk_ref_binary(const txk_binary_desc* d, const float* a, const float* b, float* y) {
  size_t i, j, k;
  if (d == NULL || a == NULL || b == NULL || y == NULL ||
      d->epilogue.residual != TXK_RESIDUAL_NONE || (unsigned)d->op > TXK_BIN_MIN)
    return TXK_EINVAL;
  for (i = 0; i < d->n; i++)
    for (j = 0; j < d->p; j++)
      for (k = 0; k < d->c; k++) {
        float v = txk_scalar_binop((int)d->op, a[i * d->a_sn + j * d->a_sp + k * d->a_sc],
                                   b[i * d->b_sn + j * d->b_sp + k * d->b_sc]);
        y[i * d->y_sn + j * d->y_sp + k] =
            txk_scalar_act((int)d->epilogue.act, v, d->epilogue.act_min, d->epilogue.act_max);
      }
  return TXK_OK;
}

int txk_ref_unary(txk_act act, float act_min, float act_max, size_t count, const float* x,
                  float* y) {
  size_t i;
  if ((count && (x == NULL || y == NULL)) || (unsigned)act >= TXK_ACT_COUNT) return TXK_EINVAL;
  for (i = 0; i < count; i++) y[i] = txk_scalar_act((int)act, x[i], act_min, act_max);
  return TXK_OK;
}
