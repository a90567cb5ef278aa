/* ISA file, NEON (aarch64 Advanced SIMD, baseline): GEMM/direct-conv 6x16 (24 q
 * accumulators), depthwise 1x4, vunary 1x4, Winograd transforms 1x4 (row ops use the scalar
 * kernel).
 * Compiled only on aarch64. */
#include "internal/txk_internal.h"

#if defined(TXK_ARM64)
#include <arm_neon.h>
#include <string.h>

#define TXK_T inline __attribute__((always_inline))

#define V float32x4_t
#define M uint32x4_t
#define VN 4
#define SET1 vdupq_n_f32
#define ADD vaddq_f32
#define SUB vsubq_f32
#define MUL vmulq_f32
#define DIV vdivq_f32
#define FMA(a, b, c) vfmaq_f32(c, a, b)
#define MINV vminq_f32 /* NaN-propagating */
#define MAXV vmaxq_f32
#define ABS vabsq_f32
#define ORSIGN(v, x)                                          \
  vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(v),   \
                                  vandq_u32(vreinterpretq_u32_f32(x), vdupq_n_u32(0x80000000u))))
#define LOADU vld1q_f32
#define STOREU vst1q_f32
#define LT vcltq_f32
#define GT vcgtq_f32
#define ISNAN(x) vmvnq_u32(vceqq_f32(x, x))
#define BLEND(m, a, b) vbslq_f32(m, b, a)
#define SFX(name) name##__neon

static TXK_T V exp_scale(V p, V n) {
  const int32x4_t ni = vcvtnq_s32_f32(n);
  const int32x4_t n1 = vshrq_n_s32(ni, 1);
  const int32x4_t n2 = vsubq_s32(ni, n1);
  const int32x4_t bias = vdupq_n_s32(127);
  const V s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, bias), 23));
  const V s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, bias), 23));
  return MUL(MUL(p, s1), s2);
}
#define EXP_SCALE(p, n, x) exp_scale(p, n)

#include "templates/txk_vmath.inc"

void txk_f32_vunary_ukernel_1x4__neon(int op, float lo, float hi, size_t n, const float* x,
                                      float* y) {
  SFX(vunary_impl)(op, lo, hi, n, x, y);
}

/* Epilogue of one 16-wide row held in 4 vectors. */
static void epi_row(const V* acc, size_t nc, float* c, const float* r, const txk_epilogue* ep) {
  float rb[16], out[16];
  const V lo = SET1(ep->act_min), hi = SET1(ep->act_max);
  int q;
  if (ep->residual != TXK_RESIDUAL_NONE) {
    memset(rb, 0, sizeof rb);
    memcpy(rb, r, nc * sizeof(float));
  }
  for (q = 0; q < 4; q++) {
    V v = acc[q];
    if (ep->residual == TXK_RESIDUAL_BEFORE_ACT) v = ADD(v, vld1q_f32(rb + 4 * q));
    if (ep->act != TXK_ACT_NONE) v = SFX(vact)((int)ep->act, v, lo, hi);
    if (ep->residual == TXK_RESIDUAL_AFTER_ACT) v = ADD(v, vld1q_f32(rb + 4 * q));
    vst1q_f32(out + 4 * q, v);
  }
  memcpy(c, out, nc * sizeof(float));
}

#define R6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define DECL(i) V c##i[4] = {b0, b1, b2, b3}; const float* a##i;
#define SETP(i) a##i = a[i] + o;
#define FMAS(i)                              \
  {                                          \
    const float xv = a##i[t];                \
    c##i[0] = vfmaq_n_f32(c##i[0], v0, xv);  \
    c##i[1] = vfmaq_n_f32(c##i[1], v1, xv);  \
    c##i[2] = vfmaq_n_f32(c##i[2], v2, xv);  \
    c##i[3] = vfmaq_n_f32(c##i[3], v3, xv);  \
  }
#define STORE(i) \
  if (i < mr) epi_row(c##i, nc, c + i * c_stride, r ? r + i * r_stride : NULL, ep);

void txk_f32_gemm_ukernel_6x16__neon(size_t mr, size_t nc, size_t kc, size_t ks,
                                     const float* const* a, const ptrdiff_t* a_off, const float* w,
                                     size_t w_stride, float* c, size_t c_stride, const float* r,
                                     size_t r_stride, const txk_epilogue* ep) {
  const V b0 = vld1q_f32(w), b1 = vld1q_f32(w + 4), b2 = vld1q_f32(w + 8), b3 = vld1q_f32(w + 12);
  size_t s, t;
  R6(DECL)
  (void)w_stride;
  w += 16;
  for (s = 0; s < ks; s++) {
    const ptrdiff_t o = a_off[s];
    R6(SETP)
    for (t = 0; t < kc; t++) {
      const V v0 = vld1q_f32(w), v1 = vld1q_f32(w + 4), v2 = vld1q_f32(w + 8),
              v3 = vld1q_f32(w + 12);
      w += 16;
      R6(FMAS)
    }
  }
  R6(STORE)
}

/* Depthwise: one output row, 4 channels per vector; channel tail in scalar. */
void txk_f32_dwconv_ukernel_1x4__neon(const txk_dw_params* p, size_t oh, float* y_row,
                                      const float* r_row) {
  const size_t bsz = 16 * (1 + p->kh * p->kw);
  const ptrdiff_t ih0 = (ptrdiff_t)(oh * p->sh) - (ptrdiff_t)p->pt;
  const int act = (int)p->ep->act;
  const V lo = SET1(p->ep->act_min), hi = SET1(p->ep->act_max);
  size_t ow, cb, ky, kx;
  for (ow = 0; ow < p->out_w; ow++) {
    const ptrdiff_t iw0 = (ptrdiff_t)(ow * p->sw) - (ptrdiff_t)p->pl;
    for (cb = 0; cb < p->c; cb += 4) {
      const size_t nch = p->c - cb < 4 ? p->c - cb : 4;
      const float* wb = p->w + (cb / 16) * bsz + (cb % 16);
      float xb[4] = {0, 0, 0, 0}, out[4], rb[4] = {0, 0, 0, 0};
      V acc = vld1q_f32(wb);
      for (ky = 0; ky < p->kh; ky++) {
        const ptrdiff_t ih = ih0 + (ptrdiff_t)(ky * p->dh);
        if (ih < 0 || ih >= (ptrdiff_t)p->in_h) continue;
        for (kx = 0; kx < p->kw; kx++) {
          const ptrdiff_t iw = iw0 + (ptrdiff_t)(kx * p->dw);
          const float* xp;
          if (iw < 0 || iw >= (ptrdiff_t)p->in_w) continue;
          xp = p->x + ((size_t)ih * p->in_w + (size_t)iw) * p->xs + cb;
          if (nch == 4) {
            acc = vfmaq_f32(acc, vld1q_f32(xp), vld1q_f32(wb + 16 + (ky * p->kw + kx) * 16));
          } else {
            memcpy(xb, xp, nch * sizeof(float));
            acc = vfmaq_f32(acc, vld1q_f32(xb), vld1q_f32(wb + 16 + (ky * p->kw + kx) * 16));
          }
        }
      }
      if (p->ep->residual != TXK_RESIDUAL_NONE)
        memcpy(rb, r_row + ow * p->rs + cb, nch * sizeof(float));
      if (p->ep->residual == TXK_RESIDUAL_BEFORE_ACT) acc = ADD(acc, vld1q_f32(rb));
      if (act != TXK_ACT_NONE) acc = SFX(vact)(act, acc, lo, hi);
      if (p->ep->residual == TXK_RESIDUAL_AFTER_ACT) acc = ADD(acc, vld1q_f32(rb));
      vst1q_f32(out, acc);
      memcpy(y_row + ow * p->ys + cb, out, nch * sizeof(float));
    }
  }
}

/* Winograd F(4x4, 3x3) tile transforms (see templates/txk_wino.inc). */
#include "templates/txk_wino.inc"

void txk_f32_wino_ukernel_1x4__neon(int op, const txk_wino_params* p) {
  if (op == TXK_WINO_IN)
    SFX(wino_in)(p);
  else
    SFX(wino_out)(p);
}

#endif /* TXK_ARM64 */
