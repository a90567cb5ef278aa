/* Internal declarations of the timmx kernel library, shared by the layers
 * (dispatch.c, ref.c, the drivers conv.c / ops.c, the ISA files f32-<isa>.c):
 * one signature per micro-kernel family (the contracts are in ../../README.md),
 * the micro-kernel declarations (generated from the list, txk_ukernels.h), the
 * context accessors and small helpers. */
#ifndef TXK_INTERNAL_H
#define TXK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "timmx_kernels.h"
#include "txk_ukernels.h"

/* Internal vunary ops beyond txk_act (the transcendentals themselves). */
#define TXK_OP_EXP 100
#define TXK_OP_ERF 101

/* Each family F has a function type txk_F_ukernel (used to declare the list's
 * kernels, so definitions are checked against it) and its pointer txk_F_ukernel_fn. */

/* ---- GEMM / direct-conv micro-kernel (family TXK_FAMILY_GEMM) ----------
 * Computes an mr x nc tile (mr <= MR, nc <= NR) of
 *   C[i][j] = epi( bias[j] + sum_{s<ks} sum_{t<kc} A_i[a_off[s] + t] * W[s][t][j] )
 * where A_i = a[i] (row base pointers; the caller fills all MR entries, rows
 * >= mr repeat a valid row), W is the packed gemm layout: w points at a
 * block {bias[16], w[ks*kc][16]}, the next 16 columns are w + w_stride
 * floats further. c/r: row i at c + i*c_stride (r likewise; r may be NULL
 * when ep->residual == NONE). Only the mr x nc tile is written. */
typedef void txk_gemm_ukernel(size_t mr, size_t nc, size_t kc, size_t ks, const float* const* a,
                              const ptrdiff_t* a_off, const float* w, size_t w_stride, float* c,
                              size_t c_stride, const float* r, size_t r_stride,
                              const txk_epilogue* ep);
typedef txk_gemm_ukernel* txk_gemm_ukernel_fn;

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
typedef void txk_dwconv_ukernel(const txk_dw_params* p, size_t oh, float* y_row,
                                const float* r_row);
/* SE gate values g[i] = act(s[i]) for i < n (ops.c): the context's vunary kernel, or a copy
 * for TXK_ACT_NONE; shared by txk_channel_scale and txk_gate_weights. */
void txk_gate_values(const txk_context* ctx, txk_act act, size_t n, const float* s, float* g);
/* The params of a depthwise txk_conv2d_desc (conv.c): all channels, x and w unset. */
void txk_dw_params_of(const txk_conv2d_desc* d, txk_dw_params* p);
typedef txk_dwconv_ukernel* txk_dwconv_ukernel_fn;

/* ---- elementwise unary (family TXK_FAMILY_VUNARY) -----------------------
 * y[i] = op(x[i]) for i < n; op is a txk_act or TXK_OP_EXP / TXK_OP_ERF. */
typedef void txk_vunary_ukernel(int op, float lo, float hi, size_t n, const float* x, float* y);
typedef txk_vunary_ukernel* txk_vunary_ukernel_fn;

/* ---- row operations (family TXK_FAMILY_ROWOP) ----------------------------
 * One call = one contiguous row of n >= 1 floats:
 *   TXK_ROW_LAYERNORM  y = (a - mean) / sqrt(var + eps) [* gamma] [+ beta]  (y == a allowed)
 *   TXK_ROW_SOFTMAX    y = exp(a - max) / sum                              (y == a allowed)
 *   TXK_ROW_ACC        y += a
 *   TXK_ROW_MUL        y = a * b                                           (y == a allowed)
 *   TXK_ROW_BINARY     y = act(a op b); a/b element stride asc/bsc is 0 (broadcast a[0])
 *                      or 1; act none/relu/clamp or any txk_act (y == a or y == b allowed) */
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
typedef void txk_rowop_ukernel(int op, size_t n, const float* a, const float* b, float* y,
                               const txk_rowop_params* q);
typedef txk_rowop_ukernel* txk_rowop_ukernel_fn;

/* ---- Winograd F(4x4, 3x3) tile transforms (family TXK_FAMILY_WINO) --------
 * One call = one 4x4 output tile (6x6 input tile), channels [0, cp), cp a multiple of 16;
 * element (i, j) of a tile at base + i * row + j * px, transform position xi (0..35) at
 * base + xi * xi_stride (matrices B^T, A^T: winograd.c):
 *   TXK_WINO_IN   dst[xi] = (B^T d B)[xi], d = the 6x6 input tile at src (s_row, s_px)
 *   TXK_WINO_OUT  o = A^T m A + bias, m[xi] at src (s_xi); then the epilogue (ep->act must be
 *                 TXK_ACT_IS_CHEAP; residual tile at r) and the 4x4 result stored at dst
 *                 (d_row, d_px).
 * src, dst and r need no alignment; every element of the tiles is read or written. */
#define TXK_WINO_IN 0
#define TXK_WINO_OUT 1
typedef struct txk_wino_params {
  size_t cp;
  const float* src;
  size_t s_row, s_px, s_xi;
  float* dst;
  size_t d_row, d_px, d_xi;
  const float* bias; /* OUT: cp floats */
  const float* r;    /* OUT: residual tile (NULL when ep->residual == NONE) */
  size_t r_row, r_px;
  const txk_epilogue* ep;
} txk_wino_params;
typedef void txk_wino_ukernel(int op, const txk_wino_params* p);
typedef txk_wino_ukernel* txk_wino_ukernel_fn;

/* The micro-kernels: one declaration per entry of the list, with its family's
 * function type (e.g. txk_gemm_ukernel txk_f32_gemm_ukernel_6x16__avx2;). */
#define TXK_UKERNEL_DECLARE_(family, mr, nr, isa) \
  TXK_IF_ISA_##isa(txk_##family##_ukernel TXK_UKERNEL_NAME(family, mr, nr, isa);)
TXK_UKERNELS(TXK_UKERNEL_DECLARE_)
#undef TXK_UKERNEL_DECLARE_

/* 1 if the act needs the row pass (not none / relu / clamp). */
static inline int txk_act_is_complex(int act) {
  return act != TXK_ACT_NONE && act != TXK_ACT_RELU && act != TXK_ACT_CLAMP;
}

/* Context accessors used by the drivers, one per family:
 * txk_ctx_gemm, txk_ctx_dwconv, txk_ctx_vunary, txk_ctx_rowop (ctx) -> txk_F_ukernel_fn. */
#define TXK_CTX_ACCESSOR_(family, family_enum)                                     \
  static inline txk_##family##_ukernel_fn txk_ctx_##family(const txk_context* ctx) { \
    return (txk_##family##_ukernel_fn)ctx->ukernel[family_enum]->fn;               \
  }
TXK_UKERNEL_FAMILIES(TXK_CTX_ACCESSOR_)
#undef TXK_CTX_ACCESSOR_
int txk_ctx_ok(const txk_context* ctx);

/* ---- parallel loops (threadpool.c) ---------------------------------------
 * txk_parallel runs fn(arg, t) for every t in [0, ntasks) and returns when all
 * are done: on ctx's pool, or on the calling thread (no pool, one thread, one
 * task, or the pool is busy). Tasks must write disjoint memory and compute
 * every output the same way whoever runs them (so results never depend on the
 * thread count). */
typedef void txk_task_fn(void* arg, size_t task);
void txk_parallel(const txk_context* ctx, txk_task_fn* fn, void* arg, size_t ntasks);
/* How many tasks a call of `work` units (multiply-adds, floats) should be split into on
 * ctx's threads: about TXK_TASKS_PER_THREAD per thread (dynamic claiming evens out
 * threads that get less of the CPU), none smaller than `min_work`; 1 with one thread. */
#define TXK_TASKS_PER_THREAD 4
#define TXK_MIN_TASK_MACS 65536.0  /* ~1 us of GEMM */
#define TXK_MIN_TASK_FLOATS 16384.0 /* elementwise floats per task */
size_t txk_want_tasks(const txk_context* ctx, double work, double min_work);
/* fn(arg, begin, end) over [0, n) split into ranges that start at multiples of `unit`
 * (txk_want_tasks of n * work_per_item); one call fn(arg, 0, n) with one thread. */
typedef void txk_range_fn(const void* arg, size_t begin, size_t end);
void txk_parallel_range(const txk_context* ctx, txk_range_fn* fn, const void* arg, size_t n,
                        size_t unit, double work_per_item, double min_work);
/* As txk_parallel_range, in at most one range per thread: contiguous bands (the first usually
 * taken by the caller, which claims first). For steps that read rows the step before wrote
 * split the same way (a depthwise conv's row bands), so that each thread mostly reads what it
 * wrote itself. */
void txk_parallel_bands(const txk_context* ctx, txk_range_fn* fn, const void* arg, size_t n,
                        size_t unit, double work_per_item, double min_work);
/* Winograd F(4x4, 3x3) conv (winograd.c): packed floats, scratch floats, the call
 * (descriptor checked and buffers aligned by txk_conv2d). */
size_t txk_winograd_packed_floats(const txk_conv2d_desc* d);
size_t txk_winograd_scratch_floats(const txk_conv2d_desc* d);
int txk_conv2d_winograd(const txk_context* ctx, const txk_conv2d_desc* d, const float* x,
                        const float* w, float* y, const float* r, void* scratch);
/* Softmax of `rows` rows on the calling thread (txk_softmax splits rows over the pool). */
void txk_softmax_rows(const txk_context* ctx, size_t rows, size_t c, const float* x,
                      size_t x_stride, float* y, size_t y_stride);

#define TXK_MAX_MR 16
/* Activations without a transcendental (a few vector ops): GEMM kernels apply them straight
 * from the accumulators; the others go through a stored tile. */
#define TXK_ACT_IS_CHEAP(op)                                                  \
  ((op) == TXK_ACT_NONE || (op) == TXK_ACT_RELU || (op) == TXK_ACT_CLAMP || \
   (op) == TXK_ACT_HARDSWISH || (op) == TXK_ACT_HARDSIGMOID)
#define TXK_IS_ALIGNED(p) ((((uintptr_t)(const void*)(p)) & (TXK_ALIGN - 1)) == 0)

static inline size_t txk_round_up(size_t a, size_t b) { return (a + b - 1) / b * b; }

#endif
