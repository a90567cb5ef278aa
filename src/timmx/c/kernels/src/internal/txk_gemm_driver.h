/* The GEMM driver shared by conv2d (conv.c), linear (gemm.c), bmm and attention (matmul.c):
 * rows x packed weights, weights blocked for L2, the work split over the thread pool into
 * tasks that write disjoint outputs. Internal to the kernel library. Strict C99. */
#ifndef TXK_GEMM_DRIVER_H
#define TXK_GEMM_DRIVER_H

#include "txk_internal.h"

/* Generic "rows x packed weights" driver: rows are given by a callback-free
 * description: row p (0 <= p < m) starts at row_base(p). */
typedef struct rows_desc {
  const float* base; /* row base for p = 0 */
  size_t m;
  size_t row_w;      /* output pixels per output row (conv) or m (gemm) */
  size_t step_h;     /* floats between output rows' first input  */
  size_t step_w;     /* floats between consecutive pixels in a row */
} rows_desc;

/* One GEMM call of the drivers: `groups` independent problems (group g reads rows at
 * base + g * a_gs, weights at w + g * w_gs, writes y + g * y_gs, r + g * y_gs) of m rows x
 * ncols columns. */
typedef struct gemm_job {
  const txk_context* ctx;
  rows_desc rd;
  size_t kc, ks;
  const ptrdiff_t* off;
  const float* w;
  size_t block_floats, ncols;
  float* y;
  size_t ys;
  const float* r;
  size_t rs;
  const txk_epilogue* ep;
  size_t groups;
  ptrdiff_t a_gs, w_gs, y_gs, r_gs; /* floats between groups */
  /* the split: tasks = groups x n_oc x n_px; oc ranges in units of NR columns, pixel
   * ranges in units of MR rows */
  size_t n_oc, n_px, oc_units, px_units;
} gemm_job;

/* Columns [oc_u0, oc_u1) (units of NR) x rows [px_u0, px_u1) (units of MR) of group g. */
void txk_gemm_range(const gemm_job* j, size_t g, size_t oc_u0, size_t oc_u1, size_t px_u0,
                    size_t px_u1);
/* The whole job: split into groups x oc ranges x pixel ranges and run on the pool. */
void txk_run_gemm_job(gemm_job* j);
/* One group of rows x packed weights (kc x ks inputs per row at offsets off) -> y. */
void txk_run_gemm(const txk_context* ctx, const rows_desc* rd, size_t kc, size_t ks,
                  const ptrdiff_t* off, const float* w, size_t block_floats, size_t ncols,
                  float* y, size_t ys, const float* r, size_t rs, const txk_epilogue* ep);

#endif /* TXK_GEMM_DRIVER_H */
