/* ISA file, AVX-512F: GEMM/direct-conv 8x32 and 12x32, depthwise 1x16, vunary
 * 1x16, rowop 1x16. Built without -m flags: every function carries
 * target("avx512f,avx2,fma") and is only called after
 * txk_isa_supported(TXK_ISA_AVX512). */
#include "internal/txk_internal.h"

#if defined(TXK_X86)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#define TXK_T __attribute__((target("avx512f,avx2,fma"), always_inline)) inline
#define TXK_K __attribute__((target("avx512f,avx2,fma")))
#define TXK_ALIGNED64 __attribute__((aligned(64)))

#define V __m512
#define M __mmask16
#define VN 16
#define SET1 _mm512_set1_ps
#define ADD _mm512_add_ps
#define SUB _mm512_sub_ps
#define MUL _mm512_mul_ps
#define DIV _mm512_div_ps
#define FMA _mm512_fmadd_ps
#define MINV _mm512_min_ps
#define MAXV _mm512_max_ps
#define ABS(x) _mm512_castsi512_ps(_mm512_and_epi32(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff)))
#define ORSIGN(v, x)                                                    \
  _mm512_castsi512_ps(_mm512_or_epi32(                                  \
      _mm512_castps_si512(v),                                           \
      _mm512_and_epi32(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u))))
#define LOADU _mm512_loadu_ps
#define STOREU _mm512_storeu_ps
#define LT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
#define GT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define ISNAN(x) _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q)
#define BLEND(m, a, b) _mm512_mask_blend_ps(m, a, b)
#define SFX(name) name##__avx512
#define EXP_SCALE(p, n, x) _mm512_scalef_ps(p, n)
/* 1/d: 14-bit estimate + one Newton step (~1 ulp; d in [1, 2] in vmath) */
static TXK_T V rcp_nr(V d) {
  const V r = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, SET1(1.0f)), r);
}
#define RCP_NR(d) rcp_nr(d)

#include "templates/txk_vmath.inc"

TXK_K void txk_f32_vunary_ukernel_1x16__avx512(int op, float lo, float hi, size_t n,
                                               const float* x, float* y) {
  SFX(vunary_impl)(op, lo, hi, n, x, y);
}

static TXK_T M tail_mask(size_t n) { return n >= 16 ? (M)0xFFFF : (M)((1u << n) - 1u); }

/* Epilogue of one 16-column vector of a row (its first n columns): acc holds bias + sum.
 * cheap (a constant at each call): the activation is TXK_ACT_IS_CHEAP, so only those are
 * inlined. */
static TXK_T void epi_vec(V acc, size_t n, float* c, const float* r, const txk_epilogue* ep,
                          int cheap) {
  const M m = tail_mask(n);
  if (ep->residual == TXK_RESIDUAL_BEFORE_ACT) acc = ADD(acc, _mm512_maskz_loadu_ps(m, r));
  if (ep->act != TXK_ACT_NONE) {
    const V lo = SET1(ep->act_min), hi = SET1(ep->act_max);
    acc = cheap ? SFX(vact_cheap)((int)ep->act, acc, lo, hi) : SFX(vact)((int)ep->act, acc, lo, hi);
  }
  if (ep->residual == TXK_RESIDUAL_AFTER_ACT) acc = ADD(acc, _mm512_maskz_loadu_ps(m, r));
  _mm512_mask_storeu_ps(c, m, acc);
}

/* Tile epilogue for the activations that are not cheap, out of line so that the accumulator
 * loop keeps all its registers: row i of the stored tile at tile + i * ld. */
static __attribute__((target("avx512f,avx2,fma"), noinline)) void epi_tile(
    const float* tile, size_t ld, size_t mr, size_t nc, float* c, size_t c_stride,
    const float* r, size_t r_stride, const txk_epilogue* ep) {
  size_t i, v;
  for (i = 0; i < mr; i++)
    for (v = 0; v * 16 < nc; v++)
      epi_vec(_mm512_load_ps(tile + ld * i + 16 * v), nc - 16 * v, c + i * c_stride + 16 * v,
              r ? r + i * r_stride + 16 * v : NULL, ep, 0);
}

#define R8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define R12(X) R8(X) X(8) X(9) X(10) X(11)

#define DECL2(i) V c##i##a = b0, c##i##b = b1; const float* a##i;
#define DECL1(i) V c##i##a = b0; const float* a##i;
#define SETP(i) a##i = a[i] + o;
#define FMA2(i)                               \
  {                                           \
    const V xv = _mm512_set1_ps(a##i[t + u]); \
    c##i##a = FMA(xv, v0, c##i##a);           \
    c##i##b = FMA(xv, v1, c##i##b);           \
  }
#define FMA1(i)                               \
  {                                           \
    const V xv = _mm512_set1_ps(a##i[t + u]); \
    c##i##a = FMA(xv, v0, c##i##a);           \
  }
/* one k step u (0..3) of the unrolled loop */
#define STEP2(ROWS, u_)                                                       \
  {                                                                           \
    const size_t u = u_;                                                      \
    const V v0 = _mm512_load_ps(w0 + 16 * u), v1 = _mm512_load_ps(w1 + 16 * u); \
    ROWS(FMA2)                                                                \
  }
#define STEP1(ROWS, u_)                          \
  {                                              \
    const size_t u = u_;                         \
    const V v0 = _mm512_load_ps(w0 + 16 * u);    \
    ROWS(FMA1)                                   \
  }
#define STORE2(i)                      \
  _mm512_store_ps(tile + 32 * i, c##i##a); \
  _mm512_store_ps(tile + 32 * i + 16, c##i##b);
#define STORE1(i) _mm512_store_ps(tile + 32 * i, c##i##a);
/* cheap activation: the epilogue straight from the accumulators, valid rows only */
#define EPI2(i)                                                                           \
  if (i < mr) {                                                                           \
    epi_vec(c##i##a, nc, c + i * c_stride, r ? r + i * r_stride : NULL, ep, 1);           \
    epi_vec(c##i##b, nc - 16, c + i * c_stride + 16, r ? r + i * r_stride + 16 : NULL, ep, \
            1);                                                                           \
  }
#define EPI1(i) \
  if (i < mr) epi_vec(c##i##a, nc, c + i * c_stride, r ? r + i * r_stride : NULL, ep, 1);

/* The tile's epilogue: cheap activations from the accumulators, the others from the tile
 * stored to the stack. */
#define FINISH(ROWS, EPI, STORE)                               \
  if (TXK_ACT_IS_CHEAP(ep->act)) {                             \
    ROWS(EPI)                                                  \
  } else {                                                     \
    ROWS(STORE)                                                \
    epi_tile(tile, 32, mr, nc, c, c_stride, r, r_stride, ep); \
  }

#define GEMM_AVX512(NAME, ROWS)                                                               \
  TXK_K void NAME(size_t mr, size_t nc, size_t kc, size_t ks, const float* const* a,          \
                  const ptrdiff_t* a_off, const float* w, size_t w_stride, float* c,          \
                  size_t c_stride, const float* r, size_t r_stride, const txk_epilogue* ep) { \
    size_t s, t;                                                                              \
    TXK_ALIGNED64 float tile[32 * 12];                                                        \
    if (nc > 16) {                                                                            \
      const float* w0 = w + 16;                                                               \
      const float* w1 = w + w_stride + 16;                                                    \
      const V b0 = _mm512_load_ps(w), b1 = _mm512_load_ps(w + w_stride);                     \
      ROWS(DECL2)                                                                             \
      for (s = 0; s < ks; s++) {                                                              \
        const ptrdiff_t o = a_off[s];                                                         \
        ROWS(SETP)                                                                            \
        for (t = 0; t + 4 <= kc; t += 4) {                                                    \
          STEP2(ROWS, 0) STEP2(ROWS, 1) STEP2(ROWS, 2) STEP2(ROWS, 3)                         \
          w0 += 64;                                                                           \
          w1 += 64;                                                                           \
        }                                                                                     \
        for (; t < kc; t++) {                                                                 \
          STEP2(ROWS, 0)                                                                      \
          w0 += 16;                                                                           \
          w1 += 16;                                                                           \
        }                                                                                     \
      }                                                                                       \
      FINISH(ROWS, EPI2, STORE2)                                                              \
    } else {                                                                                  \
      const float* w0 = w + 16;                                                               \
      const V b0 = _mm512_load_ps(w);                                                         \
      ROWS(DECL1)                                                                             \
      for (s = 0; s < ks; s++) {                                                              \
        const ptrdiff_t o = a_off[s];                                                         \
        ROWS(SETP)                                                                            \
        for (t = 0; t + 4 <= kc; t += 4) {                                                    \
          STEP1(ROWS, 0) STEP1(ROWS, 1) STEP1(ROWS, 2) STEP1(ROWS, 3)                         \
          w0 += 64;                                                                           \
        }                                                                                     \
        for (; t < kc; t++) {                                                                 \
          STEP1(ROWS, 0)                                                                      \
          w0 += 16;                                                                           \
        }                                                                                     \
      }                                                                                       \
      FINISH(ROWS, EPI1, STORE1)                                                              \
    }                                                                                         \
  }

GEMM_AVX512(txk_f32_gemm_ukernel_8x32__avx512, R8)
GEMM_AVX512(txk_f32_gemm_ukernel_12x32__avx512, R12)

#define R6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define G_DECL(i) V c##i##0 = b0, c##i##1 = b1, c##i##2 = b2, c##i##3 = b3; const float* a##i;
#define G_SETP(i) a##i = a[i] + o;
/* one row's broadcast and its nv FMAs (nv and rows are constants at each call of the body) */
#define G_ROW(i)                                     \
  if (i < rows) {                                    \
    const V x = _mm512_set1_ps(a##i[t]);             \
    c##i##0 = FMA(x, v0, c##i##0);                   \
    if (nv > 1) c##i##1 = FMA(x, v1, c##i##1);       \
    if (nv > 2) c##i##2 = FMA(x, v2, c##i##2);       \
    if (nv > 3) c##i##3 = FMA(x, v3, c##i##3);       \
  }
#define G_STASH(i)                                         \
  _mm512_store_ps(tile + 64 * i, c##i##0);                 \
  if (nv > 1) _mm512_store_ps(tile + 64 * i + 16, c##i##1); \
  if (nv > 2) _mm512_store_ps(tile + 64 * i + 32, c##i##2); \
  if (nv > 3) _mm512_store_ps(tile + 64 * i + 48, c##i##3);
#define G_EPI(i)                                                                     \
  if (i < mr) {                                                                      \
    float* ci = c + i * c_stride;                                                    \
    const float* ri = r ? r + i * r_stride : NULL;                                   \
    epi_vec(c##i##0, nc, ci, ri, ep, 1);                                             \
    if (nv > 1) epi_vec(c##i##1, nc - 16, ci + 16, ri ? ri + 16 : NULL, ep, 1);      \
    if (nv > 2) epi_vec(c##i##2, nc - 32, ci + 32, ri ? ri + 32 : NULL, ep, 1);      \
    if (nv > 3) epi_vec(c##i##3, nc - 48, ci + 48, ri ? ri + 48 : NULL, ep, 1);      \
  }

/* 6 x 64: 6 rows x 4 column vectors (24 accumulators, the 4 weight vectors of a k step and
 * one row's broadcast: 29 zmm). Per k step the 4 weight vectors are loaded first, then each
 * row's broadcast feeds its 4 FMAs (loading all 6 broadcasts first, then one weight vector at
 * a time, ran 2-8% slower on vit_tiny's and resnet50's shapes). nv = 1..4 column vectors and
 * rows = 2 or 6 are constants at each call of the body, so each variant keeps only its own
 * accumulators and FMAs, and it never reads a weight block past the last. */
static TXK_T void gemm6_body(const size_t nv, const size_t rows, size_t mr, size_t nc,
                             size_t kc, size_t ks, const float* const* a, const ptrdiff_t* a_off,
                             const float* w, size_t w_stride, float* c, size_t c_stride,
                             const float* r, size_t r_stride, const txk_epilogue* ep) {
  TXK_ALIGNED64 float tile[64 * 6];
  const float* w0 = w + 16;
  const float* w1 = w + w_stride + 16;
  const float* w2 = w + 2 * w_stride + 16;
  const float* w3 = w + 3 * w_stride + 16;
  const V b0 = _mm512_load_ps(w);
  const V b1 = nv > 1 ? _mm512_load_ps(w + w_stride) : b0;
  const V b2 = nv > 2 ? _mm512_load_ps(w + 2 * w_stride) : b0;
  const V b3 = nv > 3 ? _mm512_load_ps(w + 3 * w_stride) : b0;
  size_t s, t;
  R6(G_DECL)
  for (s = 0; s < ks; s++) {
    const ptrdiff_t o = a_off[s];
    R6(G_SETP)
#pragma GCC unroll 2
    for (t = 0; t < kc; t++) {
      const V v0 = _mm512_load_ps(w0);
      const V v1 = nv > 1 ? _mm512_load_ps(w1) : v0;
      const V v2 = nv > 2 ? _mm512_load_ps(w2) : v0;
      const V v3 = nv > 3 ? _mm512_load_ps(w3) : v0;
      R6(G_ROW)
      w0 += 16;
      w1 += 16;
      w2 += 16;
      w3 += 16;
    }
  }
  if (TXK_ACT_IS_CHEAP(ep->act)) {
    R6(G_EPI)
  } else {
    R6(G_STASH)
    epi_tile(tile, 64, mr, nc, c, c_stride, r, r_stride, ep);
  }
}

TXK_K void txk_f32_gemm_ukernel_6x64__avx512(size_t mr, size_t nc, size_t kc, size_t ks,
                                             const float* const* a, const ptrdiff_t* a_off,
                                             const float* w, size_t w_stride, float* c,
                                             size_t c_stride, const float* r, size_t r_stride,
                                             const txk_epilogue* ep) {
  /* a tile of 1 or 2 rows (49 = 8 x 6 + 1 pixels at 7x7) runs 2 rows' FMAs, not 6 */
#define G_CALL(NV, ROWS) \
  gemm6_body(NV, ROWS, mr, nc, kc, ks, a, a_off, w, w_stride, c, c_stride, r, r_stride, ep)
#define G_COLS(ROWS)     \
  if (nc > 48)           \
    G_CALL(4, ROWS);     \
  else if (nc > 32)      \
    G_CALL(3, ROWS);     \
  else if (nc > 16)      \
    G_CALL(2, ROWS);     \
  else                   \
    G_CALL(1, ROWS);
  if (mr <= 2) {
    G_COLS(2)
  } else {
    G_COLS(6)
  }
#undef G_COLS
#undef G_CALL
}

/* Depthwise: one output row, 16 channels per zmm (see templates/txk_dwconv.inc). */
#define DW_MASK M
#define DW_TAIL(n) tail_mask(n)
#define DW_LOADM(m, p) _mm512_maskz_loadu_ps(m, p)
#define DW_STOREM(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define DW_WOFF(cb) 0
#define DW_WO2(bsz) (bsz)
#define DW_REUSE_MAX_KW 7
#include "templates/txk_dwconv.inc"

TXK_K void txk_f32_dwconv_ukernel_1x16__avx512(const txk_dw_params* p, size_t oh, float* y_row,
                                               const float* r_row) {
  SFX(dw_row_impl)(p, oh, y_row, r_row);
}

/* Row operations: layernorm, softmax, accumulate, multiply, binary (see templates/txk_rowop.inc). */
#define RO_LOADT(p, n) _mm512_maskz_loadu_ps(tail_mask(n), p)
#define RO_STORET(p, n, v) _mm512_mask_storeu_ps(p, tail_mask(n), v)
#define RO_HSUM(v) _mm512_reduce_add_ps(v)
#define RO_HMAX(v) _mm512_reduce_max_ps(v)
#include "templates/txk_rowop.inc"

TXK_K void txk_f32_rowop_ukernel_1x16__avx512(int op, size_t n, const float* a, const float* b,
                                              float* y, const txk_rowop_params* q) {
  SFX(rowop_impl)(op, n, a, b, y, q);
}

/* Winograd F(4x4, 3x3) tile transforms (see templates/txk_wino.inc). */
#include "templates/txk_wino.inc"

TXK_K void txk_f32_wino_ukernel_1x16__avx512(int op, const txk_wino_params* p) {
  if (op == TXK_WINO_IN)
    SFX(wino_in)(p);
  else
    SFX(wino_out)(p);
}

#endif /* TXK_X86 */
