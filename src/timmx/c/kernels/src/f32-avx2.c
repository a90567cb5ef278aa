/* ISA file, AVX2+FMA: GEMM/direct-conv 6x16 (12 ymm accumulators), depthwise
 * 1x8, vunary 1x8, rowop 1x8. Built without -m flags: every function carries
 * target("avx2,fma") and is only called after txk_isa_supported(TXK_ISA_AVX2). */
#include "internal/txk_internal.h"

#if defined(TXK_X86)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define TXK_T __attribute__((target("avx2,fma"), always_inline)) inline
#define TXK_K __attribute__((target("avx2,fma")))

#define V __m256
#define M __m256
#define VN 8
#define SET1 _mm256_set1_ps
#define ADD _mm256_add_ps
#define SUB _mm256_sub_ps
#define MUL _mm256_mul_ps
#define DIV _mm256_div_ps
#define FMA _mm256_fmadd_ps
#define MINV _mm256_min_ps
#define MAXV _mm256_max_ps
#define ABS(x) _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)))
#define ORSIGN(v, x) \
  _mm256_or_ps(v, _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u))))
#define LOADU _mm256_loadu_ps
#define STOREU _mm256_storeu_ps
#define LT(a, b) _mm256_cmp_ps(a, b, _CMP_LT_OQ)
#define GT(a, b) _mm256_cmp_ps(a, b, _CMP_GT_OQ)
#define ISNAN(x) _mm256_cmp_ps(x, x, _CMP_UNORD_Q)
#define BLEND(m, a, b) _mm256_blendv_ps(a, b, m)
#define SFX(name) name##__avx2

/* p * 2^n for integral n in [-150, 128], as two exact power-of-two factors. */
static TXK_T V exp_scale(V p, V n) {
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const V s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const V s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return MUL(MUL(p, s1), s2);
}
#define EXP_SCALE(p, n, x) exp_scale(p, n)
/* 1/d: 12-bit estimate + two Newton steps (d in [1, 2] in vmath) */
static TXK_T V rcp_nr(V d) {
  V r = _mm256_rcp_ps(d);
  r = _mm256_fmadd_ps(r, _mm256_fnmadd_ps(d, r, SET1(1.0f)), r);
  return _mm256_fmadd_ps(r, _mm256_fnmadd_ps(d, r, SET1(1.0f)), r);
}
#define RCP_NR(d) rcp_nr(d)

#include "templates/txk_vmath.inc"

TXK_K void txk_f32_vunary_ukernel_1x8__avx2(int op, float lo, float hi, size_t n, const float* x,
                                            float* y) {
  SFX(vunary_impl)(op, lo, hi, n, x, y);
}

static TXK_T __m256i tail_mask(size_t n) {
  const int k = n >= 8 ? 8 : (int)n;
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static TXK_T V epi_vec(V acc, const float* r, __m256i m, int act, V lo, V hi,
                       const txk_epilogue* ep) {
  if (ep->residual == TXK_RESIDUAL_BEFORE_ACT) acc = ADD(acc, _mm256_maskload_ps(r, m));
  if (act != TXK_ACT_NONE) acc = SFX(vact)(act, acc, lo, hi);
  if (ep->residual == TXK_RESIDUAL_AFTER_ACT) acc = ADD(acc, _mm256_maskload_ps(r, m));
  return acc;
}

static TXK_T void epi_row(V acc0, V acc1, size_t nc, float* c, const float* r,
                          const txk_epilogue* ep) {
  const int act = (int)ep->act;
  const V lo = SET1(ep->act_min), hi = SET1(ep->act_max);
  if (nc >= 16) {
    const __m256i all = _mm256_set1_epi32(-1);
    _mm256_storeu_ps(c, epi_vec(acc0, r, all, act, lo, hi, ep));
    _mm256_storeu_ps(c + 8, epi_vec(acc1, r ? r + 8 : r, all, act, lo, hi, ep));
  } else {
    const __m256i m0 = tail_mask(nc);
    _mm256_maskstore_ps(c, m0, epi_vec(acc0, r, m0, act, lo, hi, ep));
    if (nc > 8) {
      const __m256i m1 = tail_mask(nc - 8);
      _mm256_maskstore_ps(c + 8, m1, epi_vec(acc1, r ? r + 8 : r, m1, act, lo, hi, ep));
    }
  }
}

#define R6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define DECL(i) V c##i##a = b0, c##i##b = b1; const float* a##i;
#define SETP(i) a##i = a[i] + o;
#define FMA2(i)                              \
  {                                          \
    const V xv = _mm256_broadcast_ss(a##i + t); \
    c##i##a = FMA(xv, v0, c##i##a);          \
    c##i##b = FMA(xv, v1, c##i##b);          \
  }
#define STORE(i) \
  if (i < mr) epi_row(c##i##a, c##i##b, nc, c + i * c_stride, r ? r + i * r_stride : NULL, ep);

TXK_K void txk_f32_gemm_ukernel_6x16__avx2(size_t mr, size_t nc, size_t kc, size_t ks,
                                           const float* const* a, const ptrdiff_t* a_off,
                                           const float* w, size_t w_stride, float* c,
                                           size_t c_stride, const float* r, size_t r_stride,
                                           const txk_epilogue* ep) {
  const V b0 = _mm256_load_ps(w), b1 = _mm256_load_ps(w + 8);
  size_t s, t;
  R6(DECL)
  (void)w_stride;
  w += 16;
  for (s = 0; s < ks; s++) {
    const ptrdiff_t o = a_off[s];
    R6(SETP)
    for (t = 0; t < kc; t++) {
      const V v0 = _mm256_load_ps(w), v1 = _mm256_load_ps(w + 8);
      w += 16;
      R6(FMA2)
    }
  }
  R6(STORE)
}

/* Depthwise: one output row, 8 channels per ymm (see templates/txk_dwconv.inc). */
#define DW_MASK __m256i
#define DW_TAIL(n) tail_mask(n)
#define DW_LOADM(m, p) _mm256_maskload_ps(p, m)
#define DW_STOREM(p, m, v) _mm256_maskstore_ps(p, m, v)
#define DW_WOFF(cb) ((cb) % 16)
#define DW_WO2(bsz) 8
#define DW_REUSE_MAX_KW 3
#include "templates/txk_dwconv.inc"

TXK_K void txk_f32_dwconv_ukernel_1x8__avx2(const txk_dw_params* p, size_t oh, float* y_row,
                                            const float* r_row) {
  SFX(dw_row_impl)(p, oh, y_row, r_row);
}

/* Row operations: layernorm, softmax, accumulate, multiply, binary (see templates/txk_rowop.inc). */
static TXK_T float hsum8(V v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static TXK_T float hmax8(V v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#define RO_LOADT(p, n) _mm256_maskload_ps(p, tail_mask(n))
#define RO_STORET(p, n, v) _mm256_maskstore_ps(p, tail_mask(n), v)
#define RO_HSUM(v) hsum8(v)
#define RO_HMAX(v) hmax8(v)
#include "templates/txk_rowop.inc"

TXK_K void txk_f32_rowop_ukernel_1x8__avx2(int op, size_t n, const float* a, const float* b,
                                           float* y, const txk_rowop_params* q) {
  SFX(rowop_impl)(op, n, a, b, y, q);
}

/* Winograd F(4x4, 3x3) tile transforms (see templates/txk_wino.inc). */
#include "templates/txk_wino.inc"

TXK_K void txk_f32_wino_ukernel_1x8__avx2(int op, const txk_wino_params* p) {
  if (op == TXK_WINO_IN)
    SFX(wino_in)(p);
  else
    SFX(wino_out)(p);
}

#endif /* TXK_X86 */
