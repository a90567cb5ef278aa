/* Drivers layer: batched matmul and attention over the GEMM driver. Strict C99. */
#include <string.h>

#include "internal/txk_gemm_driver.h"

/* ---- batched matmul ---------------------------------------------------- */
/* Batches are packed and multiplied TXK_BMM_SLOTS at a time (each has its own slot of
 * scratch, so the packing and the products of a group of batches run in parallel). */
#define TXK_BMM_SLOTS 32

static size_t bmm_bpack_floats(size_t n, size_t k) { return txk_round_up(n, 16) * (1 + k); }

static size_t bmm_slot_floats(const txk_bmm_desc* d) {
  size_t f = bmm_bpack_floats((size_t)d->n, (size_t)d->k);
  if (d->a_sk != 1) f += txk_round_up((size_t)d->m * d->k, 16);
  return f;
}

static size_t bmm_slots(const txk_bmm_desc* d) {
  return d->batch < TXK_BMM_SLOTS ? (size_t)(d->batch > 0 ? d->batch : 1) : TXK_BMM_SLOTS;
}

size_t txk_bmm_scratch_size(const txk_bmm_desc* d) {
  if (d == NULL || d->m < 0 || d->n < 0 || d->k < 0 || d->batch < 0) return 0;
  return bmm_slots(d) * bmm_slot_floats(d) * 4;
}

/* Pack B[k][j] = src[k*sk + j*sn] * alpha into the gemm layout (zero bias). */
static void pack_b(size_t n, size_t k, const float* src, long sk, long sn, float alpha,
                   float* dst) {
  size_t jb, t, j;
  for (jb = 0; jb < n; jb += 16) {
    const size_t nn = n - jb < 16 ? n - jb : 16;
    for (j = 0; j < 16; j++) dst[j] = 0.0f;
    dst += 16;
    for (t = 0; t < k; t++) {
      const float* s = src + (long)t * sk + (long)jb * sn;
      for (j = 0; j < nn; j++) dst[j] = s[(long)j * sn] * alpha;
      for (; j < 16; j++) dst[j] = 0.0f;
      dst += 16;
    }
  }
}

static const txk_epilogue no_epilogue = {TXK_ACT_NONE, 0.0f, 0.0f, TXK_RESIDUAL_NONE};

typedef struct bmm_pack_job {
  const txk_bmm_desc* d;
  const float* a;
  const float* b;
  float* scratch;
  size_t b0, slot_floats;
} bmm_pack_job;

static void bmm_pack_task(void* arg, size_t t) {
  const bmm_pack_job* j = (const bmm_pack_job*)arg;
  const txk_bmm_desc* d = j->d;
  const long bi = (long)(j->b0 + t);
  float* bp = j->scratch + t * j->slot_floats;
  pack_b((size_t)d->n, (size_t)d->k, j->b + bi * d->b_sb, d->b_sk, d->b_sn, d->alpha, bp);
  if (d->a_sk != 1) {
    float* ap = bp + bmm_bpack_floats((size_t)d->n, (size_t)d->k);
    long i, q;
    for (i = 0; i < d->m; i++)
      for (q = 0; q < d->k; q++) ap[i * d->k + q] = j->a[bi * d->a_sb + i * d->a_sm + q * d->a_sk];
  }
}

int txk_bmm(const txk_context* ctx, const txk_bmm_desc* d, const float* a, const float* b,
            float* c, void* scratch) {
  size_t b0, slots, slot_floats;
  ptrdiff_t off0 = 0;
  if (!txk_ctx_ok(ctx) || d == NULL || a == NULL || b == NULL || c == NULL || d->batch < 0 ||
      d->m < 0 || d->n < 0 || d->k < 0)
    return TXK_EINVAL;
  if (d->batch == 0 || d->m == 0 || d->n == 0) return TXK_OK;
  if (scratch == NULL) return TXK_EINVAL;
  if (!TXK_IS_ALIGNED(scratch)) return TXK_EALIGN;
  slots = bmm_slots(d);
  slot_floats = bmm_slot_floats(d);
  for (b0 = 0; b0 < (size_t)d->batch; b0 += slots) {
    const size_t nbat = (size_t)d->batch - b0 < slots ? (size_t)d->batch - b0 : slots;
    bmm_pack_job pj;
    gemm_job j;
    pj.d = d;
    pj.a = a;
    pj.b = b;
    pj.scratch = (float*)scratch;
    pj.b0 = b0;
    pj.slot_floats = slot_floats;
    if (txk_want_tasks(ctx, (double)nbat * d->n * d->k, TXK_MIN_TASK_FLOATS) > 1) {
      txk_parallel(ctx, bmm_pack_task, &pj, nbat);
    } else {
      size_t t;
      for (t = 0; t < nbat; t++) bmm_pack_task(&pj, t);
    }
    memset(&j, 0, sizeof j);
    j.ctx = ctx;
    if (d->a_sk == 1) {
      j.rd.base = a + (long)b0 * d->a_sb;
      j.rd.step_w = (size_t)d->a_sm;
      j.a_gs = (ptrdiff_t)d->a_sb;
    } else {
      j.rd.base = (const float*)scratch + bmm_bpack_floats((size_t)d->n, (size_t)d->k);
      j.rd.step_w = (size_t)d->k;
      j.a_gs = (ptrdiff_t)slot_floats;
    }
    j.rd.m = (size_t)d->m;
    j.rd.row_w = (size_t)d->m;
    j.kc = (size_t)d->k;
    j.ks = 1;
    j.off = &off0;
    j.w = (const float*)scratch;
    j.w_gs = (ptrdiff_t)slot_floats;
    j.block_floats = 16 * (1 + (size_t)d->k);
    j.ncols = (size_t)d->n;
    j.y = c + (long)b0 * d->c_sb;
    j.y_gs = (ptrdiff_t)d->c_sb;
    j.ys = (size_t)d->c_sm;
    j.ep = &no_epilogue;
    j.groups = nbat;
    txk_run_gemm_job(&j);
  }
  return TXK_OK;
}

/* ---- fused attention --------------------------------------------------- */
/* Scratch: the score rows of every head (seq x round_up(seq, 16) each), then K^T and V of
 * every head packed in the gemm layout. Phase 1 packs K and V (a task per head and operand);
 * phase 2 runs a task per (head, block of query rows): S = scale Q K^T for the block,
 * softmax of its rows, O = P V for the block. */
static void attn_sizes(const txk_attention_desc* d, size_t* s_f, size_t* k_f, size_t* v_f) {
  const size_t seq = (size_t)d->seq, hd = (size_t)d->head_dim;
  *s_f = txk_round_up(seq * txk_round_up(seq, 16), 16);
  *k_f = bmm_bpack_floats(seq, hd);
  *v_f = bmm_bpack_floats(hd, seq);
}

size_t txk_attention_scratch_size(const txk_attention_desc* d) {
  size_t s_f, k_f, v_f;
  if (d == NULL || d->seq < 1 || d->heads < 1 || d->head_dim < 1) return 0;
  attn_sizes(d, &s_f, &k_f, &v_f);
  return (size_t)d->heads * (s_f + k_f + v_f) * 4;
}

typedef struct attn_job {
  const txk_context* ctx;
  const txk_attention_desc* d;
  const float *q, *k, *v;
  float* out;
  float *sbuf, *kp, *vp;
  size_t s_f, k_f, v_f, seq, hd, qs, os, lds, nqb, q_units;
} attn_job;

/* Column units (NR columns each) of ncols columns. */
static size_t nr_units(const txk_context* ctx, size_t ncols) {
  const size_t nr = (size_t)ctx->ukernel[TXK_FAMILY_GEMM]->nr;
  return (ncols + nr - 1) / nr;
}

static void attn_pack_task(void* arg, size_t t) {
  const attn_job* j = (const attn_job*)arg;
  const size_t h = t / 2;
  if (t % 2 == 0) /* B[t][j] = K[j][h*hd + t] * scale */
    pack_b(j->seq, j->hd, j->k + h * j->hd, 1, (long)j->qs, j->d->scale, j->kp + h * j->k_f);
  else /* B[j][t] = V[j][h*hd + t] */
    pack_b(j->hd, j->seq, j->v + h * j->hd, (long)j->qs, 1, 1.0f, j->vp + h * j->v_f);
}

static void attn_task(void* arg, size_t t) {
  const attn_job* j = (const attn_job*)arg;
  const size_t h = t / j->nqb, qb = t % j->nqb;
  const size_t u0 = qb * j->q_units / j->nqb, u1 = (qb + 1) * j->q_units / j->nqb;
  const size_t mr = (size_t)j->ctx->ukernel[TXK_FAMILY_GEMM]->mr;
  const size_t r0 = u0 * mr, r1 = u1 * mr < j->seq ? u1 * mr : j->seq;
  float* sbuf = j->sbuf + h * j->s_f;
  ptrdiff_t off0 = 0;
  gemm_job g;
  if (r1 <= r0) return;
  memset(&g, 0, sizeof g);
  g.ctx = j->ctx;
  g.groups = 1;
  g.ks = 1;
  g.off = &off0;
  g.ep = &no_epilogue;
  /* S rows [r0, r1) = Q_h K_h^T * scale */
  g.rd.base = j->q + h * j->hd;
  g.rd.m = j->seq;
  g.rd.row_w = j->seq;
  g.rd.step_w = j->qs;
  g.kc = j->hd;
  g.w = j->kp + h * j->k_f;
  g.block_floats = 16 * (1 + j->hd);
  g.ncols = j->seq;
  g.y = sbuf;
  g.ys = j->lds;
  txk_gemm_range(&g, 0, 0, nr_units(j->ctx, j->seq), u0, u1);
  txk_softmax_rows(j->ctx, r1 - r0, j->seq, sbuf + r0 * j->lds, j->lds, sbuf + r0 * j->lds,
                   j->lds);
  /* O rows [r0, r1) = P V_h */
  g.rd.base = sbuf;
  g.rd.step_w = j->lds;
  g.kc = j->seq;
  g.w = j->vp + h * j->v_f;
  g.block_floats = 16 * (1 + j->seq);
  g.ncols = j->hd;
  g.y = j->out + h * j->hd;
  g.ys = j->os;
  txk_gemm_range(&g, 0, 0, nr_units(j->ctx, j->hd), u0, u1);
}

int txk_attention(const txk_context* ctx, const txk_attention_desc* d, const float* q,
                  const float* k, const float* v, float* out, void* scratch) {
  attn_job j;
  size_t want, heads, t;
  if (!txk_ctx_ok(ctx) || d == NULL || q == NULL || k == NULL || v == NULL || out == NULL ||
      d->seq < 1 || d->heads < 1 || d->head_dim < 1 || d->qkv_stride < 0 || d->out_stride < 0)
    return TXK_EINVAL;
  if (scratch == NULL) return TXK_EINVAL;
  if (!TXK_IS_ALIGNED(scratch)) return TXK_EALIGN;
  memset(&j, 0, sizeof j);
  attn_sizes(d, &j.s_f, &j.k_f, &j.v_f);
  heads = (size_t)d->heads;
  j.ctx = ctx;
  j.d = d;
  j.q = q;
  j.k = k;
  j.v = v;
  j.out = out;
  j.sbuf = (float*)scratch;
  j.kp = j.sbuf + heads * j.s_f;
  j.vp = j.kp + heads * j.k_f;
  j.seq = (size_t)d->seq;
  j.hd = (size_t)d->head_dim;
  j.lds = txk_round_up(j.seq, 16);
  j.qs = (size_t)(d->qkv_stride ? d->qkv_stride : d->heads * d->head_dim);
  j.os = (size_t)(d->out_stride ? d->out_stride : d->heads * d->head_dim);
  j.q_units = (j.seq + (size_t)ctx->ukernel[TXK_FAMILY_GEMM]->mr - 1) /
              (size_t)ctx->ukernel[TXK_FAMILY_GEMM]->mr;
  want = txk_want_tasks(ctx, 2.0 * (double)heads * j.seq * j.seq * j.hd, TXK_MIN_TASK_MACS);
  if (want <= 1) {
    j.nqb = 1;
    for (t = 0; t < 2 * heads; t++) attn_pack_task(&j, t);
    for (t = 0; t < heads; t++) attn_task(&j, t);
    return TXK_OK;
  }
  txk_parallel(ctx, attn_pack_task, &j, 2 * heads);
  j.nqb = (want + heads - 1) / heads;
  if (j.nqb > j.q_units) j.nqb = j.q_units;
  {
    /* a multiple of the thread count where the query blocks allow: 3 heads x 3 blocks on 2
     * threads would leave one thread 5 of the 9 tasks (vit_tiny) */
    const size_t threads = (size_t)txk_context_threads(ctx);
    while ((heads * j.nqb) % threads != 0 && j.nqb < j.q_units) j.nqb++;
  }
  txk_parallel(ctx, attn_task, &j, heads * j.nqb);
  return TXK_OK;
}
