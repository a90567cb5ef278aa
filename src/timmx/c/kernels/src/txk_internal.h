/* Internal declarations of the timmx kernel library: micro-kernel types,
 * enumerator tables and helpers shared by the portable drivers and the
 * ISA-specific files. See ../README.md for the per-kernel contracts. */
#ifndef TXK_INTERNAL_H
#define TXK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "timmx_kernels.h"

/* Internal vunary ops beyond txk_act (the transcendentals themselves). */
#define TXK_OP_EXP 100
#define TXK_OP_ERF 101

/* ---- GEMM / direct-conv micro-kernel (family TXK_FAMILY_GEMM) ----------
 * Computes an mr x nc tile (mr <= MR, nc <= NR) of
 *   C[i][j] = epi( bias[j] + sum_{s<ks} sum_{t<kc} A_i[a_off[s] + t] * W[s][t][j] )
 * where A_i = a[i] (row base pointers; the caller fills all MR entries, rows
 * >= mr repeat a valid row), W is the packed gemm layout: w points at a
 * block {bias[16], w[ks*kc][16]}, the next 16 columns are w + w_stride
 * floats further. c/r: row i at c + i*c_stride (r likewise; r may be NULL
 * when ep->residual == NONE). Only the mr x nc tile is written. */
typedef void (*txk_gemm_ukernel_fn)(size_t mr, size_t nc, size_t kc, size_t ks,
                                    const float* const* a, const ptrdiff_t* a_off, const float* w,
                                    size_t w_stride, float* c, size_t c_stride, const float* r,
                                    size_t r_stride, const txk_epilogue* ep);

/* ---- depthwise conv micro-kernel (family TXK_FAMILY_DWCONV) -------------
 * Computes one output row oh of a depthwise conv (all out_w pixels, all c
 * channels) reading the UNPADDED input image (padding by bounds), packed
 * dwconv weights, fused epilogue. */
typedef struct txk_dw_params {
  const float* x; /* image base (one batch item) */
  size_t in_h, in_w, xs;
  size_t c, out_w, ys, rs;
  size_t kh, kw, sh, sw, pt, pl, dh, dw;
  const float* w; /* packed dwconv weights */
  const txk_epilogue* ep;
} txk_dw_params;
typedef void (*txk_dwconv_ukernel_fn)(const txk_dw_params* p, size_t oh, float* y_row,
                                      const float* r_row);

/* ---- elementwise unary (family TXK_FAMILY_VUNARY) -----------------------
 * y[i] = op(x[i]) for i < n; op is a txk_act or TXK_OP_EXP / TXK_OP_ERF. */
typedef void (*txk_vunary_fn)(int op, float lo, float hi, size_t n, const float* x, float* y);

/* ---- row operations (family TXK_FAMILY_ROWOP) ----------------------------
 * One call = one contiguous row of n >= 1 floats:
 *   TXK_ROW_LAYERNORM  y = (a - mean) / sqrt(var + eps) [* gamma] [+ beta]  (y == a allowed)
 *   TXK_ROW_SOFTMAX    y = exp(a - max) / sum                              (y == a allowed)
 *   TXK_ROW_ACC        y += a
 *   TXK_ROW_MUL        y = a * b                                           (y == a allowed)
 *   TXK_ROW_BINARY     y = act(a op b); a/b element stride asc/bsc is 0 (broadcast a[0])
 *                      or 1; act none/relu/clamp or any txk_act           (y == a allowed) */
#define TXK_ROW_LAYERNORM 0
#define TXK_ROW_SOFTMAX 1
#define TXK_ROW_ACC 2
#define TXK_ROW_MUL 3
#define TXK_ROW_BINARY 4
typedef struct txk_rowop_params {
  const float* gamma; /* layernorm affine (NULL = 1 / 0) */
  const float* beta;
  float eps;
  int bop;          /* binary: txk_binop */
  size_t asc, bsc;  /* binary: 0 or 1 */
  int act;          /* binary: txk_act applied to the result */
  float lo, hi;
} txk_rowop_params;
typedef void (*txk_rowop_fn)(int op, size_t n, const float* a, const float* b, float* y,
                             const txk_rowop_params* q);

/* Kernels (names encode op, tile, ISA). */
void txk_f32_gemm_ukernel_4x16__scalar(size_t, size_t, size_t, size_t, const float* const*,
                                       const ptrdiff_t*, const float*, size_t, float*, size_t,
                                       const float*, size_t, const txk_epilogue*);
void txk_f32_dwconv_ukernel_row__scalar(const txk_dw_params*, size_t, float*, const float*);
void txk_f32_vunary__scalar(int, float, float, size_t, const float*, float*);
void txk_f32_rowop__scalar(int, size_t, const float*, const float*, float*,
                           const txk_rowop_params*);

#if defined(__x86_64__) || defined(_M_X64)
#define TXK_X86 1
void txk_f32_gemm_ukernel_8x32__avx512(size_t, size_t, size_t, size_t, const float* const*,
                                       const ptrdiff_t*, const float*, size_t, float*, size_t,
                                       const float*, size_t, const txk_epilogue*);
void txk_f32_gemm_ukernel_12x32__avx512(size_t, size_t, size_t, size_t, const float* const*,
                                        const ptrdiff_t*, const float*, size_t, float*, size_t,
                                        const float*, size_t, const txk_epilogue*);
void txk_f32_gemm_ukernel_6x16__avx2(size_t, size_t, size_t, size_t, const float* const*,
                                     const ptrdiff_t*, const float*, size_t, float*, size_t,
                                     const float*, size_t, const txk_epilogue*);
void txk_f32_dwconv_ukernel_row16c__avx512(const txk_dw_params*, size_t, float*, const float*);
void txk_f32_dwconv_ukernel_row8c__avx2(const txk_dw_params*, size_t, float*, const float*);
void txk_f32_vunary_16__avx512(int, float, float, size_t, const float*, float*);
void txk_f32_vunary_8__avx2(int, float, float, size_t, const float*, float*);
void txk_f32_rowop_16__avx512(int, size_t, const float*, const float*, float*,
                              const txk_rowop_params*);
void txk_f32_rowop_8__avx2(int, size_t, const float*, const float*, float*,
                           const txk_rowop_params*);
#endif

#if defined(__aarch64__)
#define TXK_ARM64 1
void txk_f32_gemm_ukernel_6x16__neon(size_t, size_t, size_t, size_t, const float* const*,
                                     const ptrdiff_t*, const float*, size_t, float*, size_t,
                                     const float*, size_t, const txk_epilogue*);
void txk_f32_dwconv_ukernel_row4c__neon(const txk_dw_params*, size_t, float*, const float*);
void txk_f32_vunary_4__neon(int, float, float, size_t, const float*, float*);
#endif

/* Scalar activation (libm based); shared by scalar kernels and drivers. */
float txk_act_scalar(int op, float x, float lo, float hi);
/* 1 if the act needs the row pass (not none / relu / clamp). */
static inline int txk_act_is_complex(int act) {
  return act != TXK_ACT_NONE && act != TXK_ACT_RELU && act != TXK_ACT_CLAMP;
}

/* Context accessors used by the drivers. */
static inline txk_gemm_ukernel_fn txk_ctx_gemm(const txk_context* ctx) {
  return (txk_gemm_ukernel_fn)ctx->ukernel[TXK_FAMILY_GEMM]->fn;
}
static inline txk_dwconv_ukernel_fn txk_ctx_dwconv(const txk_context* ctx) {
  return (txk_dwconv_ukernel_fn)ctx->ukernel[TXK_FAMILY_DWCONV]->fn;
}
static inline txk_vunary_fn txk_ctx_vunary(const txk_context* ctx) {
  return (txk_vunary_fn)ctx->ukernel[TXK_FAMILY_VUNARY]->fn;
}
static inline txk_rowop_fn txk_ctx_rowop(const txk_context* ctx) {
  return (txk_rowop_fn)ctx->ukernel[TXK_FAMILY_ROWOP]->fn;
}
int txk_ctx_ok(const txk_context* ctx);

#define TXK_MAX_MR 16
#define TXK_IS_ALIGNED(p) ((((uintptr_t)(const void*)(p)) & (TXK_ALIGN - 1)) == 0)

static inline size_t txk_round_up(size_t a, size_t b) { return (a + b - 1) / b * b; }

#endif
