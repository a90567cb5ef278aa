/* Drivers layer: conv2d / linear / bmm / attention: tiling, padding and calls
 * into the context's GEMM and DWCONV micro-kernels. Strict C99. */
#include <string.h>

#include "internal/txk_internal.h"

#define TXK_MAX_SEGMENTS 1024
/* Weights of one OC chunk are kept below this many bytes (L2 blocking). */
#define TXK_L2_WEIGHT_BYTES (384u * 1024u)
/* Depthwise: bytes of input rows (kh rows x in_w pixels x chunk channels) a
 * channel chunk may span, so that the band stays in L1 while rows sweep it. */
#define TXK_DW_L1_BAND_BYTES (24u * 1024u)

static int is_dw(const txk_conv2d_desc* d) {
  return d->groups == d->in_c && d->in_c == d->out_c;
}

int txk_conv2d_check(const txk_conv2d_desc* d) {
  long eh, ew;
  if (d == NULL) return TXK_EINVAL;
  if (d->n < 0 || d->in_h < 1 || d->in_w < 1 || d->in_c < 1 || d->out_c < 1 || d->kh < 1 ||
      d->kw < 1 || d->stride_h < 1 || d->stride_w < 1 || d->dil_h < 1 || d->dil_w < 1 ||
      d->groups < 1 || d->pad_top < 0 || d->pad_left < 0 || d->pad_bottom < 0 || d->pad_right < 0)
    return TXK_EINVAL;
  if (d->in_c % d->groups || d->out_c % d->groups) return TXK_EINVAL;
  if (d->x_stride < 0 || d->y_stride < 0 || d->r_stride < 0) return TXK_EINVAL;
  if ((d->x_stride && d->x_stride < d->in_c) || (d->y_stride && d->y_stride < d->out_c) ||
      (d->r_stride && d->r_stride < d->out_c))
    return TXK_EINVAL;
  eh = (long)d->in_h + d->pad_top + d->pad_bottom - (long)d->dil_h * (d->kh - 1) - 1;
  ew = (long)d->in_w + d->pad_left + d->pad_right - (long)d->dil_w * (d->kw - 1) - 1;
  if (eh < 0 || ew < 0) return TXK_EINVAL;
  if (d->out_h != eh / d->stride_h + 1 || d->out_w != ew / d->stride_w + 1) return TXK_EINVAL;
  if ((unsigned)d->epilogue.act >= TXK_ACT_COUNT || (unsigned)d->epilogue.residual > 2)
    return TXK_EINVAL;
  return TXK_OK;
}

size_t txk_conv2d_packed_size(const txk_conv2d_desc* d) {
  size_t g, ocg, icg;
  if (d == NULL || d->groups < 1 || d->out_c < 1) return 0;
  if (is_dw(d)) return txk_round_up((size_t)d->out_c, 16) * (1 + (size_t)d->kh * d->kw) * 4;
  g = (size_t)d->groups;
  ocg = (size_t)d->out_c / g;
  icg = (size_t)d->in_c / g;
  return g * txk_round_up(ocg, 16) * (1 + (size_t)d->kh * d->kw * icg) * 4;
}

static int has_pad(const txk_conv2d_desc* d) {
  return d->pad_top || d->pad_left || d->pad_bottom || d->pad_right;
}

size_t txk_conv2d_scratch_size(const txk_conv2d_desc* d) {
  size_t hp, wp;
  if (txk_conv2d_check(d) != TXK_OK || is_dw(d) || !has_pad(d)) return 0;
  hp = (size_t)d->in_h + d->pad_top + d->pad_bottom;
  wp = (size_t)d->in_w + d->pad_left + d->pad_right;
  return txk_round_up(hp * wp * (size_t)d->in_c * 4, TXK_ALIGN);
}

/* Rows of the OC-chunk loop: number of 16-blocks of weights kept hot in L2. */
static size_t chunk_blocks(size_t block_floats, size_t nr_blocks) {
  size_t nb = TXK_L2_WEIGHT_BYTES / (block_floats * 4);
  nb = nb / nr_blocks * nr_blocks;
  return nb < nr_blocks ? nr_blocks : nb;
}

/* Generic "rows x packed weights" driver: rows are given by a callback-free
 * description: row p (0 <= p < m) starts at row_base(p). */
typedef struct rows_desc {
  const float* base; /* row base for p = 0 */
  size_t m;
  size_t row_w;      /* output pixels per output row (conv) or m (gemm) */
  size_t step_h;     /* floats between output rows' first input  */
  size_t step_w;     /* floats between consecutive pixels in a row */
} rows_desc;

static void run_gemm(const txk_context* ctx, const rows_desc* rd, size_t kc, size_t ks,
                     const ptrdiff_t* off, const float* w, size_t block_floats, size_t ncols,
                     float* y, size_t ys, const float* r, size_t rs, const txk_epilogue* ep) {
  const txk_ukernel_info* info = ctx->ukernel[TXK_FAMILY_GEMM];
  const txk_gemm_ukernel_fn fn = (txk_gemm_ukernel_fn)info->fn;
  const size_t mr_max = (size_t)info->mr, nr = (size_t)info->nr;
  const size_t nr_blocks = nr / 16;
  const size_t nb = (ncols + 15) / 16;
  const size_t cb = chunk_blocks(block_floats, nr_blocks);
  const float* a[TXK_MAX_MR];
  size_t b0, p0, b, i;
  for (b0 = 0; b0 < nb; b0 += cb) {
    const size_t b1 = b0 + cb < nb ? b0 + cb : nb;
    size_t oh = 0, ow = 0; /* (row, column) of pixel p0: no division per row pointer */
    for (p0 = 0; p0 < rd->m; p0 += mr_max) {
      const size_t mr = rd->m - p0 < mr_max ? rd->m - p0 : mr_max;
      for (i = 0; i < mr_max; i++) {
        a[i] = rd->base + oh * rd->step_h + ow * rd->step_w;
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
        const size_t nc = ncols - oc < nr ? ncols - oc : nr;
        fn(mr, nc, kc, ks, a, off, w + b * block_floats, block_floats, y + p0 * ys + oc, ys,
           r ? r + p0 * rs + oc : NULL, rs, ep);
      }
    }
  }
}

static int conv_dw(const txk_context* ctx, const txk_conv2d_desc* d, const float* x,
                   const float* w, float* y, const float* r) {
  const txk_dwconv_ukernel_fn fn = txk_ctx_dwconv(ctx);
  txk_dw_params p;
  size_t n, oh;
  const size_t xs = (size_t)(d->x_stride ? d->x_stride : d->in_c);
  p.in_h = (size_t)d->in_h;
  p.in_w = (size_t)d->in_w;
  p.xs = xs;
  p.c = (size_t)d->in_c;
  p.out_w = (size_t)d->out_w;
  p.ys = (size_t)(d->y_stride ? d->y_stride : d->out_c);
  p.rs = (size_t)(d->r_stride ? d->r_stride : d->out_c);
  p.kh = (size_t)d->kh;
  p.kw = (size_t)d->kw;
  p.sh = (size_t)d->stride_h;
  p.sw = (size_t)d->stride_w;
  p.pt = (size_t)d->pad_top;
  p.pl = (size_t)d->pad_left;
  p.dh = (size_t)d->dil_h;
  p.dw = (size_t)d->dil_w;
  p.ep = &d->epilogue;
  {
    /* Channel chunks (multiples of 16) outside, rows inside: the kh input rows
     * of one chunk (the band the kernel sweeps) stay in L1 and each input line
     * is fetched from L2 once instead of kh times. */
    const size_t band = p.kh * p.in_w * sizeof(float);
    size_t chunk = (TXK_DW_L1_BAND_BYTES / (band ? band : 1)) / 16 * 16;
    size_t c0;
    if (chunk < 16) chunk = 16;
    for (n = 0; n < (size_t)d->n; n++) {
      const float* xn = x + n * p.in_h * p.in_w * xs;
      for (c0 = 0; c0 < (size_t)d->in_c; c0 += chunk) {
        p.c = (size_t)d->in_c - c0 < chunk ? (size_t)d->in_c - c0 : chunk;
        p.x = xn + c0;
        p.w = w + (c0 / 16) * 16 * (1 + p.kh * p.kw);
        for (oh = 0; oh < (size_t)d->out_h; oh++) {
          const size_t row = n * (size_t)d->out_h + oh;
          fn(&p, oh, y + row * p.out_w * p.ys + c0, r ? r + row * p.out_w * p.rs + c0 : NULL);
        }
      }
    }
  }
  return TXK_OK;
}

int txk_conv2d(const txk_context* ctx, const txk_conv2d_desc* d, const float* x,
               const float* w_packed, float* y, const float* residual, void* scratch) {
  size_t xs, ys, rs, icg, ocg, nb, block_floats, wp, n, g, ks, kc, s;
  ptrdiff_t off[TXK_MAX_SEGMENTS];
  if (!txk_ctx_ok(ctx) || txk_conv2d_check(d) != TXK_OK || x == NULL || w_packed == NULL ||
      y == NULL)
    return TXK_EINVAL;
  if ((d->epilogue.residual != TXK_RESIDUAL_NONE) != (residual != NULL)) return TXK_EINVAL;
  if (!TXK_IS_ALIGNED(w_packed)) return TXK_EALIGN;
  if (is_dw(d)) return conv_dw(ctx, d, x, w_packed, y, residual);
  if (txk_conv2d_scratch_size(d) != 0) {
    if (scratch == NULL) return TXK_EINVAL;
    if (!TXK_IS_ALIGNED(scratch)) return TXK_EALIGN;
  }
  xs = (size_t)(d->x_stride ? d->x_stride : d->in_c);
  ys = (size_t)(d->y_stride ? d->y_stride : d->out_c);
  rs = (size_t)(d->r_stride ? d->r_stride : d->out_c);
  icg = (size_t)(d->in_c / d->groups);
  ocg = (size_t)(d->out_c / d->groups);
  nb = (ocg + 15) / 16;
  block_floats = 16 * (1 + (size_t)d->kh * d->kw * icg);
  wp = (size_t)d->in_w + d->pad_left + d->pad_right;
  for (n = 0; n < (size_t)d->n; n++) {
    const float* img = x + n * (size_t)d->in_h * d->in_w * xs;
    size_t bxs = xs, bw = (size_t)d->in_w;
    rows_desc rd;
    if (has_pad(d)) {
      float* sp = (float*)scratch;
      const size_t c = (size_t)d->in_c;
      size_t ih, iw;
      /* zero only the border (top/bottom rows, left/right columns): the
       * interior is overwritten by the copy, so it is written once, not twice */
      memset(sp, 0, (size_t)d->pad_top * wp * c * sizeof(float));
      memset(sp + ((size_t)d->pad_top + d->in_h) * wp * c, 0,
             (size_t)d->pad_bottom * wp * c * sizeof(float));
      for (ih = 0; ih < (size_t)d->in_h; ih++) {
        float* row = sp + (ih + d->pad_top) * wp * c;
        float* dst = row + (size_t)d->pad_left * c;
        const float* src = img + ih * (size_t)d->in_w * xs;
        if (d->pad_left) memset(row, 0, (size_t)d->pad_left * c * sizeof(float));
        if (d->pad_right)
          memset(dst + (size_t)d->in_w * c, 0, (size_t)d->pad_right * c * sizeof(float));
        if (xs == c) {
          memcpy(dst, src, (size_t)d->in_w * c * sizeof(float));
        } else {
          for (iw = 0; iw < (size_t)d->in_w; iw++)
            memcpy(dst + iw * c, src + iw * xs, c * sizeof(float));
        }
      }
      img = sp;
      bxs = c;
      bw = wp;
    }
    if (d->dil_w == 1 && d->groups == 1 && bxs == (size_t)d->in_c) {
      /* kw taps x channels are contiguous per kernel row: one segment per ky */
      ks = (size_t)d->kh;
      kc = (size_t)d->kw * icg;
      if (ks > TXK_MAX_SEGMENTS) return TXK_EUNSUPPORTED;
      for (s = 0; s < ks; s++) off[s] = (ptrdiff_t)(s * (size_t)d->dil_h * bw * bxs);
    } else {
      size_t ky, kx;
      ks = (size_t)d->kh * d->kw;
      kc = icg;
      if (ks > TXK_MAX_SEGMENTS) return TXK_EUNSUPPORTED;
      for (ky = 0; ky < (size_t)d->kh; ky++)
        for (kx = 0; kx < (size_t)d->kw; kx++)
          off[ky * d->kw + kx] =
              (ptrdiff_t)((ky * (size_t)d->dil_h * bw + kx * (size_t)d->dil_w) * bxs);
    }
    rd.m = (size_t)d->out_h * d->out_w;
    rd.row_w = (size_t)d->out_w;
    rd.step_h = (size_t)d->stride_h * bw * bxs;
    rd.step_w = (size_t)d->stride_w * bxs;
    for (g = 0; g < (size_t)d->groups; g++) {
      const size_t po = n * rd.m;
      rd.base = img + g * icg;
      run_gemm(ctx, &rd, kc, ks, off, w_packed + g * nb * block_floats, block_floats, ocg,
               y + po * ys + g * ocg, ys, residual ? residual + po * rs + g * ocg : NULL, rs,
               &d->epilogue);
    }
  }
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
  run_gemm(ctx, &rd, (size_t)d->k, 1, &off0, w_packed, 16 * (1 + (size_t)d->k), (size_t)d->n, y,
           ldy, residual, ldr, &d->epilogue);
  return TXK_OK;
}

/* ---- batched matmul ---------------------------------------------------- */
static size_t bmm_bpack_floats(size_t n, size_t k) { return txk_round_up(n, 16) * (1 + k); }

size_t txk_bmm_scratch_size(const txk_bmm_desc* d) {
  size_t f;
  if (d == NULL || d->m < 0 || d->n < 0 || d->k < 0) return 0;
  f = bmm_bpack_floats((size_t)d->n, (size_t)d->k);
  if (d->a_sk != 1) f += txk_round_up((size_t)d->m * d->k, 16);
  return f * 4;
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

int txk_bmm(const txk_context* ctx, const txk_bmm_desc* d, const float* a, const float* b,
            float* c, void* scratch) {
  long bi;
  float* bp = (float*)scratch;
  float* ap;
  ptrdiff_t off0 = 0;
  if (!txk_ctx_ok(ctx) || d == NULL || a == NULL || b == NULL || c == NULL || d->batch < 0 ||
      d->m < 0 || d->n < 0 || d->k < 0)
    return TXK_EINVAL;
  if (d->batch == 0 || d->m == 0 || d->n == 0) return TXK_OK;
  if (scratch == NULL) return TXK_EINVAL;
  if (!TXK_IS_ALIGNED(scratch)) return TXK_EALIGN;
  ap = bp + bmm_bpack_floats((size_t)d->n, (size_t)d->k);
  for (bi = 0; bi < d->batch; bi++) {
    rows_desc rd;
    pack_b((size_t)d->n, (size_t)d->k, b + bi * d->b_sb, d->b_sk, d->b_sn, d->alpha, bp);
    if (d->a_sk == 1) {
      rd.base = a + bi * d->a_sb;
      rd.step_w = (size_t)d->a_sm;
    } else {
      long i, t;
      for (i = 0; i < d->m; i++)
        for (t = 0; t < d->k; t++) ap[i * d->k + t] = a[bi * d->a_sb + i * d->a_sm + t * d->a_sk];
      rd.base = ap;
      rd.step_w = (size_t)d->k;
    }
    rd.m = (size_t)d->m;
    rd.row_w = (size_t)d->m;
    rd.step_h = 0;
    run_gemm(ctx, &rd, (size_t)d->k, 1, &off0, bp, 16 * (1 + (size_t)d->k), (size_t)d->n,
             c + bi * d->c_sb, (size_t)d->c_sm, NULL, 0, &no_epilogue);
  }
  return TXK_OK;
}

/* ---- fused attention --------------------------------------------------- */
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
  return (s_f + k_f + v_f) * 4;
}

int txk_attention(const txk_context* ctx, const txk_attention_desc* d, const float* q,
                  const float* k, const float* v, float* out, void* scratch) {
  size_t s_f, k_f, v_f, h, seq, hd, qs, os, lds;
  float *sbuf, *kp, *vp;
  ptrdiff_t off0 = 0;
  if (!txk_ctx_ok(ctx) || d == NULL || q == NULL || k == NULL || v == NULL || out == NULL ||
      d->seq < 1 || d->heads < 1 || d->head_dim < 1 || d->qkv_stride < 0 || d->out_stride < 0)
    return TXK_EINVAL;
  if (scratch == NULL) return TXK_EINVAL;
  if (!TXK_IS_ALIGNED(scratch)) return TXK_EALIGN;
  attn_sizes(d, &s_f, &k_f, &v_f);
  sbuf = (float*)scratch;
  kp = sbuf + s_f;
  vp = kp + k_f;
  seq = (size_t)d->seq;
  hd = (size_t)d->head_dim;
  lds = txk_round_up(seq, 16);
  qs = (size_t)(d->qkv_stride ? d->qkv_stride : d->heads * d->head_dim);
  os = (size_t)(d->out_stride ? d->out_stride : d->heads * d->head_dim);
  for (h = 0; h < (size_t)d->heads; h++) {
    rows_desc rd;
    /* S = scale * Q_h K_h^T : B[t][j] = K[j][h*hd + t] */
    pack_b(seq, hd, k + h * hd, 1, (long)qs, d->scale, kp);
    rd.base = q + h * hd;
    rd.m = seq;
    rd.row_w = seq;
    rd.step_h = 0;
    rd.step_w = qs;
    run_gemm(ctx, &rd, hd, 1, &off0, kp, 16 * (1 + hd), seq, sbuf, lds, NULL, 0, &no_epilogue);
    txk_softmax(ctx, seq, seq, sbuf, lds, sbuf, lds);
    /* O_h = P V_h : B[j][t] = V[j][h*hd + t] */
    pack_b(hd, seq, v + h * hd, (long)qs, 1, 1.0f, vp);
    rd.base = sbuf;
    rd.step_w = lds;
    run_gemm(ctx, &rd, seq, 1, &off0, vp, 16 * (1 + seq), hd, out + h * hd, os, NULL, 0,
             &no_epilogue);
  }
  return TXK_OK;
}
