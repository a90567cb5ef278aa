/* Drivers layer: the GEMM driver (rows x packed weights over the context's GEMM
 * micro-kernel, L2 blocking, the split over the thread pool), txk_gate_weights and linear.
 * Strict C99. */
#include <string.h>

#include "internal/txk_gemm_driver.h"

/* Weights of one OC chunk are kept below this many bytes (L2 blocking). */
#define TXK_L2_WEIGHT_BYTES (384u * 1024u)

static size_t chunk_blocks(size_t block_floats, size_t nr_blocks) {
  size_t nb = TXK_L2_WEIGHT_BYTES / (block_floats * 4);
  nb = nb / nr_blocks * nr_blocks;
  return nb < nr_blocks ? nr_blocks : nb;
}

/* Columns [oc_u0, oc_u1) (units of NR) x rows [px_u0, px_u1) (units of MR) of group g. */
void txk_gemm_range(const gemm_job* j, size_t g, size_t oc_u0, size_t oc_u1, size_t px_u0,
                       size_t px_u1) {
  const txk_ukernel_info* info = j->ctx->ukernel[TXK_FAMILY_GEMM];
  const txk_gemm_ukernel_fn fn = (txk_gemm_ukernel_fn)info->fn;
  const size_t mr_max = (size_t)info->mr, nr = (size_t)info->nr;
  const size_t nr_blocks = nr / 16;
  const size_t nb = (j->ncols + 15) / 16;
  const size_t cb = chunk_blocks(j->block_floats, nr_blocks);
  const rows_desc* rd = &j->rd;
  const float* base = rd->base + (ptrdiff_t)g * j->a_gs;
  const float* w = j->w + (ptrdiff_t)g * j->w_gs;
  float* y = j->y + (ptrdiff_t)g * j->y_gs;
  const float* r = j->r ? j->r + (ptrdiff_t)g * j->r_gs : NULL;
  const size_t bb = oc_u0 * nr_blocks;
  const size_t be = oc_u1 * nr_blocks < nb ? oc_u1 * nr_blocks : nb;
  const size_t pb = px_u0 * mr_max;
  const size_t pe = px_u1 * mr_max < rd->m ? px_u1 * mr_max : rd->m;
  const float* a[TXK_MAX_MR];
  size_t b0, p0, b, i;
  for (b0 = bb; b0 < be; b0 += cb) {
    const size_t b1 = b0 + cb < be ? b0 + cb : be;
    /* (row, column) of pixel p0: one division per range, then stepped */
    size_t oh = pb / rd->row_w, ow = pb % rd->row_w;
    for (p0 = pb; p0 < pe; p0 += mr_max) {
      const size_t mr = pe - p0 < mr_max ? pe - p0 : mr_max;
      for (i = 0; i < mr_max; i++) {
        a[i] = base + oh * rd->step_h + ow * rd->step_w;
        /* rows >= mr repeat the last valid row; a full tile steps on to the next p0 */
        if (i + 1 < mr || (i + 1 == mr_max && mr == mr_max)) {
          if (++ow == rd->row_w) {
            ow = 0;
            oh++;
          }
        }
      }
      for (b = b0; b < b1; b += nr_blocks) {
        const size_t oc = b * 16;
        const size_t nc = j->ncols - oc < nr ? j->ncols - oc : nr;
        fn(mr, nc, j->kc, j->ks, a, j->off, w + b * j->block_floats, j->block_floats,
           y + p0 * j->ys + oc, j->ys, r ? r + p0 * j->rs + oc : NULL, j->rs, j->ep);
      }
    }
  }
}

static void gemm_task(void* arg, size_t t) {
  const gemm_job* j = (const gemm_job*)arg;
  const size_t per_group = j->n_oc * j->n_px;
  const size_t g = t / per_group, io = t % per_group / j->n_px, ip = t % j->n_px;
  txk_gemm_range(j, g, io * j->oc_units / j->n_oc, (io + 1) * j->oc_units / j->n_oc,
             ip * j->px_units / j->n_px, (ip + 1) * j->px_units / j->n_px);
}

/* Share of the threads' time a split keeps busy when its parts are dealt in rounds of
 * `threads`, each round lasting as long as the largest part. */
static double split_eff(size_t units_a, size_t units_b, size_t groups, size_t threads, size_t a,
                        size_t b) {
  const size_t size = ((units_a + a - 1) / a) * ((units_b + b - 1) / b);
  const size_t rounds = (groups * a * b + threads - 1) / threads;
  return (double)groups * (double)units_a * (double)units_b /
         ((double)rounds * (double)threads * (double)size);
}

/* Split `units_a` x `units_b` (x `groups` independent problems) into na x nb parts per group
 * for `threads` threads, at most 2 `want` parts per group (and 128). Among the splits within
 * 3% of the best split_eff, the one with the most parts along `a` when prefer_a (else along
 * `b`: each part then streams its own share of the larger operand), then the one nearest `want`
 * parts. The old split (min(units, want) parts along the preferred side) gave vit_tiny's 192-
 * and 576-column linears (3 and 9 column tiles) 9 and 8 parts at 2 threads: 5 parts' time on
 * one thread and 4 on the other. */
static void split2(size_t units_a, size_t units_b, size_t groups, size_t want, size_t threads,
                   int prefer_a, size_t* na, size_t* nb) {
  const size_t max_parts = 2 * want < 128 ? 2 * want : 128;
  double best = 0.0;
  size_t a, b, pass;
  *na = *nb = 0; /* none chosen yet */
  for (pass = 0; pass < 2; pass++) {
    for (a = 1; a <= units_a && a <= max_parts; a++) {
      for (b = 1; b <= units_b && a * b <= max_parts; b++) {
        const double eff = split_eff(units_a, units_b, groups, threads, a, b);
        const size_t side = prefer_a ? a : b, chosen_side = prefer_a ? *na : *nb;
        const size_t dist = a * b > want ? a * b - want : want - a * b;
        const size_t chosen_dist = *na * *nb > want ? *na * *nb - want : want - *na * *nb;
        if (pass == 0) {
          if (eff > best) best = eff;
        } else if (eff >= 0.97 * best &&
                   (side > chosen_side || (side == chosen_side && dist < chosen_dist))) {
          *na = a;
          *nb = b;
        }
      }
    }
  }
  if (*na == 0) *na = *nb = 1;
}

void txk_run_gemm_job(gemm_job* j) {
  const txk_ukernel_info* info = j->ctx->ukernel[TXK_FAMILY_GEMM];
  const size_t mr = (size_t)info->mr, nr = (size_t)info->nr;
  const double macs = (double)j->groups * (double)j->rd.m * (double)j->ncols *
                      (double)j->kc * (double)j->ks;
  size_t want = txk_want_tasks(j->ctx, macs, TXK_MIN_TASK_MACS);
  j->oc_units = (j->ncols + nr - 1) / nr;
  j->px_units = (j->rd.m + mr - 1) / mr;
  if (j->rd.m == 0 || j->ncols == 0) return;
  if (want <= 1) {
    size_t g;
    for (g = 0; g < j->groups; g++) txk_gemm_range(j, g, 0, j->oc_units, 0, j->px_units);
    return;
  }
  want = (want + j->groups - 1) / j->groups;
  /* weights larger than the activations: split output channels first (each thread streams
   * its own part of the weights), else split pixels */
  split2(j->oc_units, j->px_units, j->groups, want, (size_t)txk_context_threads(j->ctx),
         j->ncols >= j->rd.m, &j->n_oc, &j->n_px);
  txk_parallel(j->ctx, gemm_task, j, j->groups * j->n_oc * j->n_px);
}

void txk_run_gemm(const txk_context* ctx, const rows_desc* rd, size_t kc, size_t ks,
                     const ptrdiff_t* off, const float* w, size_t block_floats, size_t ncols,
                     float* y, size_t ys, const float* r, size_t rs, const txk_epilogue* ep) {
  gemm_job j;
  memset(&j, 0, sizeof j);
  j.ctx = ctx;
  j.rd = *rd;
  j.kc = kc;
  j.ks = ks;
  j.off = off;
  j.w = w;
  j.block_floats = block_floats;
  j.ncols = ncols;
  j.y = y;
  j.ys = ys;
  j.r = r;
  j.rs = rs;
  j.ep = ep;
  j.groups = 1;
  txk_run_gemm_job(&j);
}

/* SE gate into packed weights: tasks are ranges of 16-column blocks; each block copies its
 * bias row and scales its k weight rows by the gates, computed GATE_CHUNK at a time by
 * txk_gate_values (the values txk_channel_scale multiplies by). */
#define GATE_CHUNK 256
typedef struct gate_job {
  const txk_context* ctx;
  size_t k;
  const float *w, *s;
  txk_act act;
  float* y;
} gate_job;

static void gate_range(const void* arg, size_t b0, size_t b1) {
  const gate_job* j = (const gate_job*)arg;
  const size_t bf = 16 * (1 + j->k);
  float g[GATE_CHUNK];
  size_t k0, b, kk, q;
  for (b = b0; b < b1; b++) memcpy(j->y + b * bf, j->w + b * bf, 16 * sizeof(float));
  for (k0 = 0; k0 < j->k; k0 += GATE_CHUNK) {
    const size_t kc = j->k - k0 < GATE_CHUNK ? j->k - k0 : GATE_CHUNK;
    txk_gate_values(j->ctx, j->act, kc, j->s + k0, g);
    for (b = b0; b < b1; b++) {
      const float* src = j->w + b * bf + 16 + k0 * 16;
      float* dst = j->y + b * bf + 16 + k0 * 16;
      for (kk = 0; kk < kc; kk++)
        for (q = 0; q < 16; q++) dst[kk * 16 + q] = src[kk * 16 + q] * g[kk];
    }
  }
}

int txk_gate_weights(const txk_context* ctx, size_t k, size_t n, const float* w_packed,
                     const float* s, txk_act gate_act, float* w_out) {
  gate_job j;
  if (!txk_ctx_ok(ctx) || w_packed == NULL || s == NULL || w_out == NULL || n == 0 ||
      (unsigned)gate_act >= TXK_ACT_COUNT)
    return TXK_EINVAL;
  if (!TXK_IS_ALIGNED(w_packed) || !TXK_IS_ALIGNED(w_out)) return TXK_EALIGN;
  j.ctx = ctx;
  j.k = k;
  j.w = w_packed;
  j.s = s;
  j.act = gate_act;
  j.y = w_out;
  txk_parallel_range(ctx, gate_range, &j, (n + 15) / 16, 1, 16.0 * (double)(k + 1),
                     TXK_MIN_TASK_FLOATS);
  return TXK_OK;
}

size_t txk_linear_packed_size(const txk_linear_desc* d) {
  if (d == NULL || d->n < 1 || d->k < 0) return 0;
  return txk_round_up((size_t)d->n, 16) * (1 + (size_t)d->k) * 4;
}

int txk_linear(const txk_context* ctx, const txk_linear_desc* d, const float* a,
               const float* w_packed, float* y, const float* residual) {
  rows_desc rd;
  ptrdiff_t off0 = 0;
  size_t lda, ldy, ldr;
  if (!txk_ctx_ok(ctx) || d == NULL || a == NULL || w_packed == NULL || y == NULL || d->m < 0 ||
      d->n < 1 || d->k < 0 || d->lda < 0 || d->ldy < 0 || d->ldr < 0 ||
      (unsigned)d->epilogue.act >= TXK_ACT_COUNT || (unsigned)d->epilogue.residual > 2)
    return TXK_EINVAL;
  if ((d->epilogue.residual != TXK_RESIDUAL_NONE) != (residual != NULL)) return TXK_EINVAL;
  if (!TXK_IS_ALIGNED(w_packed)) return TXK_EALIGN;
  lda = (size_t)(d->lda ? d->lda : d->k);
  ldy = (size_t)(d->ldy ? d->ldy : d->n);
  ldr = (size_t)(d->ldr ? d->ldr : d->n);
  if (d->m == 0) return TXK_OK;
  rd.base = a;
  rd.m = (size_t)d->m;
  rd.row_w = (size_t)d->m;
  rd.step_h = 0;
  rd.step_w = lda;
  txk_run_gemm(ctx, &rd, (size_t)d->k, 1, &off0, w_packed, 16 * (1 + (size_t)d->k), (size_t)d->n, y,
           ldy, residual, ldr, &d->epilogue);
  return TXK_OK;
}
