/*
 * timmx_kernels.h - public API of the timmx C kernel library.
 *
 * API changes: (any signature change after the first commit is listed here)
 *   - 0.2: new kernel family TXK_FAMILY_ROWOP (TXK_FAMILY_COUNT 3 -> 4, so txk_context
 *     grows by one pointer; no existing signature or semantics changed).
 *   - 0.3: txk_weights_check (the weights-blob validation every generated model
 *     used to carry a copy of) and its status codes TXK_EWEIGHTS_*; additions only.
 *   - 0.4: threads. txk_threadpool (caller-owned, threads created by
 *     txk_threadpool_init, joined by txk_threadpool_destroy), TXK_ETHREAD, and
 *     txk_context gains a `pool` pointer (set by txk_context_set_threadpool; NULL
 *     after txk_context_init = one thread, as before). txk_conv2d_desc gains
 *     `algo` (0 = direct, the old behaviour) after `epilogue`. The scratch of
 *     txk_bmm and txk_attention is larger (query the size functions as before).
 *   - 0.5: txk_conv2d_pw_dw (a 1x1 conv fused with the depthwise conv after it),
 *     its descriptor txk_pwdw_desc, txk_pwdw_check and txk_pwdw_scratch_size;
 *     txk_gate_weights (an SE gate folded into the next 1x1 conv's weights);
 *     additions only.
 *   - 0.6: new kernel family TXK_FAMILY_WINO (Winograd F(4x4, 3x3) tile
 *     transforms; TXK_FAMILY_COUNT 4 -> 5, so txk_context grows by one pointer);
 *     TXK_CONV_WINOGRAD is now faster than the direct conv on most 3x3 stride-1
 *     shapes and the generator selects it; no signature or semantics changed.
 *
 * Conventions (hold for every function below):
 *   - float32, NHWC activations ("pixel-major": element (n, h, w, c) lives at
 *     x[((n * H + h) * W + w) * pixel_stride + c]). A pixel stride of 0 in a
 *     descriptor means "dense" (= the channel count of that tensor), so channel
 *     slices of a wider buffer (concat without copy) can be read and written.
 *   - All memory is caller-owned. No function allocates, keeps state between
 *     calls, or exits; errors are returned as txk_status codes.
 *   - Weights of conv2d / linear are PACKED at export time (see
 *     src/timmx/c/packing.py and README.md) with BatchNorm already folded and the
 *     bias attached. Packed buffers and scratch buffers must be 64-byte aligned.
 *   - A txk_context selects the kernels (ISA) once; it is plain data, filled
 *     by txk_context_init() and then read-only (safe to share across threads).
 *   - Input and output buffers must not overlap unless a function says so
 *     (elementwise ops allow y == x exactly, i.e. in place).
 */
#ifndef TIMMX_KERNELS_H
#define TIMMX_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TXK_VERSION_MAJOR 0
#define TXK_VERSION_MINOR 6

/* Packed weight layouts use blocks of TXK_BLOCK output channels (zero padded),
 * and every packed / scratch buffer must be aligned to TXK_ALIGN bytes. */
#define TXK_BLOCK 16
#define TXK_ALIGN 64

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */
typedef enum txk_status {
  TXK_OK = 0,
  TXK_EINVAL = -1,       /* inconsistent descriptor / shapes / NULL pointer */
  TXK_EUNSUPPORTED = -2, /* valid request the library does not implement    */
  TXK_EALIGN = -3,       /* a packed or scratch buffer is not TXK_ALIGN-aligned */
  TXK_ETHREAD = -4,      /* txk_threadpool_init could not create its threads */
  /* txk_weights_check (the generated models return the same values as <P>_EWEIGHTS_*) */
  TXK_EWEIGHTS_SIZE = -10,     /* blob shorter or longer than header + payload      */
  TXK_EWEIGHTS_MAGIC = -11,    /* not a timmx weights blob                          */
  TXK_EWEIGHTS_VERSION = -12,  /* another format version or header size             */
  TXK_EWEIGHTS_CHECKSUM = -13, /* corrupted: payload checksum or reserved header bytes */
  TXK_EWEIGHTS_MODEL = -14     /* another model's weights (payload size, layout id) */
} txk_status;

const char* txk_status_string(int status);

/* ------------------------------------------------------------------------ */
/* ISA and run-time dispatch                                                 */
/* ------------------------------------------------------------------------ */
typedef enum txk_isa {
  TXK_ISA_SCALAR = 0, /* portable C99, any CPU                         */
  TXK_ISA_AVX2 = 1,   /* x86-64 AVX2 + FMA                             */
  TXK_ISA_AVX512 = 2, /* x86-64 AVX-512F (+DQ)                         */
  TXK_ISA_NEON = 3,   /* aarch64 Advanced SIMD (baseline on aarch64)   */
  TXK_ISA_AUTO = 99   /* txk_context_init: the best ISA this CPU runs   */
} txk_isa;

/* 1 if this CPU (and this build) can run kernels of the given ISA (cpuid /
 * __builtin_cpu_supports; never CPU-family tables). Pure, thread-safe. */
int txk_isa_supported(txk_isa isa);
const char* txk_isa_name(txk_isa isa);

/* Kernel families. The micro-kernels of every family are listed once, in
 * src/internal/txk_ukernels.h; that list makes the enumerator (see
 * txk_ukernel_count / txk_ukernel_get) that feeds dispatch, tests and
 * benchmarks. */
typedef enum txk_family {
  TXK_FAMILY_GEMM = 0,   /* f32 GEMM / direct-conv micro-kernels (conv kxk, 1x1, linear) */
  TXK_FAMILY_DWCONV = 1, /* f32 depthwise conv, channel-vectorised            */
  TXK_FAMILY_VUNARY = 2, /* f32 elementwise activation (exp/erf/tanh/sigmoid based) */
  TXK_FAMILY_ROWOP = 3,  /* f32 row ops: layernorm, softmax, accumulate, multiply, binary */
  TXK_FAMILY_WINO = 4,   /* f32 Winograd F(4x4, 3x3) tile transforms (input, output) */
  TXK_FAMILY_COUNT = 5
} txk_family;

/* One enumerator entry. `fn` has the family's micro-kernel signature
 * (txk_<family>_ukernel in src/internal/txk_internal.h); callers outside the
 * library only read name/isa/mr/nr. The name follows the grammar
 * txk_f32_<family>_ukernel_<mr>x<nr>__<isa> (README.md). */
typedef struct txk_ukernel_info {
  const char* name; /* e.g. "txk_f32_gemm_ukernel_8x32__avx512" */
  txk_isa isa;
  int mr;           /* rows (pixels) per tile; 1 for dwconv/vunary          */
  int nr;           /* output channels (or elements) per tile               */
  void (*fn)(void); /* the micro-kernel, cast to its family type            */
} txk_ukernel_info;

size_t txk_ukernel_count(txk_family family);
const txk_ukernel_info* txk_ukernel_get(txk_family family, size_t index); /* NULL if out of range */

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */
/* A pool of worker threads in caller-owned memory (opaque; C99 + POSIX threads).
 * txk_threadpool_init starts threads - 1 workers (the thread that calls a kernel
 * is the other one; threads = 0: one per online core, at most TXK_MAX_THREADS);
 * txk_threadpool_destroy stops and joins them. Between the two, kernels called
 * with a context that points at the pool (txk_context_set_threadpool) split
 * their work over the pool: no allocation, no thread creation, results bitwise
 * identical for every thread count. The pool runs one kernel call at a time: a
 * call made while it is busy (another thread, or a nested call) runs on its
 * caller's thread alone. The pool must not be moved or copied while it is
 * initialised (the workers hold its address). With -DTXK_NO_THREADS (library
 * and caller alike, e.g. bare metal) there are no threads: init succeeds with
 * one thread whatever is asked. */
#define TXK_MAX_THREADS 64
#define TXK_THREADPOOL_BYTES 2048
typedef union txk_threadpool_align_ {
  void* p;
  double d;
  long long ll;
  long double ld;
} txk_threadpool_align_;
typedef struct txk_threadpool {
  txk_threadpool_align_ opaque_[TXK_THREADPOOL_BYTES / sizeof(txk_threadpool_align_)];
} txk_threadpool;

/* TXK_OK, TXK_EINVAL (NULL pool, threads < 0) or TXK_ETHREAD (nothing is left
 * running then). */
int txk_threadpool_init(txk_threadpool* pool, int threads);
/* Stops and joins the workers; the pool is then uninitialised (destroying it
 * again, or a zeroed pool, is a no-op). No kernel may be running on it. */
void txk_threadpool_destroy(txk_threadpool* pool);
/* Threads of an initialised pool, the caller included (1 for NULL). */
int txk_threadpool_threads(const txk_threadpool* pool);
/* Online CPU cores (sysconf), capped at TXK_MAX_THREADS; 1 if unknown. */
int txk_online_cpus(void);
/* sizeof(txk_threadpool), for foreign-function callers. */
size_t txk_threadpool_size(void);

/* The dispatch struct: which micro-kernel each family uses, and the thread
 * pool kernels may use. Fill it with txk_context_init() once (e.g. in the
 * generated model, at model init) and pass it to every call. Plain data, read
 * only by the kernels: share it freely (calls on a shared pool take turns). */
typedef struct txk_context {
  txk_isa isa; /* the ISA selected (never TXK_ISA_AUTO after init) */
  const txk_ukernel_info* ukernel[TXK_FAMILY_COUNT];
  txk_threadpool* pool; /* NULL: one thread (what txk_context_init sets) */
} txk_context;

/* Select, for every family, the fastest kernel whose ISA is supported and not
 * above `max_isa` (TXK_ISA_AUTO = no limit; TXK_ISA_SCALAR forces portable C).
 * Returns TXK_EUNSUPPORTED if max_isa itself is not supported by this CPU. */
int txk_context_init(txk_context* ctx, txk_isa max_isa);
/* Force one family to enumerator entry `index` (tests, benchmarks). Returns
 * TXK_EUNSUPPORTED if that kernel's ISA is not supported here. */
int txk_context_set_ukernel(txk_context* ctx, txk_family family, size_t index);
/* Let the kernels use `pool` (NULL: one thread). */
int txk_context_set_threadpool(txk_context* ctx, txk_threadpool* pool);
/* Threads the context's kernels use (1 without a pool). */
int txk_context_threads(const txk_context* ctx);

/* ------------------------------------------------------------------------ */
/* Fused epilogue (conv2d, linear)                                           */
/* ------------------------------------------------------------------------ */
typedef enum txk_act {
  TXK_ACT_NONE = 0,
  TXK_ACT_RELU = 1,        /* max(x, 0)                                    */
  TXK_ACT_CLAMP = 2,       /* min(max(x, act_min), act_max): relu6 = (0, 6), hardtanh */
  TXK_ACT_HARDSWISH = 3,   /* x * min(max(x + 3, 0), 6) / 6                */
  TXK_ACT_HARDSIGMOID = 4, /* min(max(x + 3, 0), 6) / 6                    */
  TXK_ACT_SILU = 5,        /* x * sigmoid(x)                               */
  TXK_ACT_GELU = 6,        /* 0.5 x (1 + erf(x / sqrt 2))                  */
  TXK_ACT_GELU_TANH = 7,   /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
  TXK_ACT_SIGMOID = 8,     /* 1 / (1 + exp(-x))                            */
  TXK_ACT_TANH = 9,        /* tanh(x)                                      */
  TXK_ACT_COUNT = 10
} txk_act;

/* Where the optional residual tensor r is added:
 *   TXK_RESIDUAL_NONE:       y = act(acc + bias)
 *   TXK_RESIDUAL_BEFORE_ACT: y = act(acc + bias + r)    (ResNet: relu(bn(conv) + shortcut))
 *   TXK_RESIDUAL_AFTER_ACT:  y = act(acc + bias) + r    (MobileNet/EfficientNet/ConvNeXt/ViT)
 * r has the output's shape (NHWC / [M][N]) with its own pixel (row) stride. */
typedef enum txk_residual {
  TXK_RESIDUAL_NONE = 0,
  TXK_RESIDUAL_BEFORE_ACT = 1,
  TXK_RESIDUAL_AFTER_ACT = 2
} txk_residual;

typedef struct txk_epilogue {
  txk_act act;
  float act_min, act_max; /* used by TXK_ACT_CLAMP only                    */
  txk_residual residual;
} txk_epilogue;

/* ------------------------------------------------------------------------ */
/* conv2d (NHWC, packed weights)                                            */
/* ------------------------------------------------------------------------ */
/* Covers dense kxk (any stride / asymmetric padding / dilation), grouped,
 * depthwise, 1x1 and patchify convolutions. Output size must equal
 *   out_h = (in_h + pad_top + pad_bottom - dil_h * (kh - 1) - 1) / stride_h + 1
 * (same for w); ceil-mode style extra bottom/right padding is expressed by
 * larger pad_bottom / pad_right (tf "same" padding likewise).
 *
 * Kernel class (decides the packed layout, see packing.py / README.md):
 *   depthwise  iff groups == in_c == out_c        -> "dwconv" layout
 *   otherwise  (dense, grouped, 1x1, patchify)    -> "gemm" layout
 */
/* Algorithm (decides the packed layout too):
 *   TXK_CONV_DIRECT    the direct / implicit-GEMM kernels above.
 *   TXK_CONV_WINOGRAD  Winograd F(4x4, 3x3): kh = kw = 3, stride 1, dilation 1,
 *                      groups 1 (not depthwise); "winograd" layout (README.md):
 *                      4x fewer multiply-adds, float error a few times the
 *                      direct conv's (measured in README.md). */
typedef enum txk_conv_algo {
  TXK_CONV_DIRECT = 0,
  TXK_CONV_WINOGRAD = 1
} txk_conv_algo;

typedef struct txk_conv2d_desc {
  int n, in_h, in_w, in_c;
  int out_h, out_w, out_c;
  int kh, kw;
  int stride_h, stride_w;
  int pad_top, pad_left, pad_bottom, pad_right;
  int dil_h, dil_w; /* >= 1 */
  int groups;       /* >= 1, divides in_c and out_c */
  int x_stride;     /* input pixel stride in floats (0 = in_c)   */
  int y_stride;     /* output pixel stride in floats (0 = out_c) */
  int r_stride;     /* residual pixel stride in floats (0 = out_c) */
  txk_epilogue epilogue;
  int algo;         /* txk_conv_algo (0 = direct) */
} txk_conv2d_desc;

/* Validate a descriptor (TXK_OK or TXK_EINVAL). */
int txk_conv2d_check(const txk_conv2d_desc* d);
/* Bytes of the packed weights for d (same value as packing.conv2d_packed_nbytes). */
size_t txk_conv2d_packed_size(const txk_conv2d_desc* d);
/* Bytes of scratch the call needs (0 if none; currently: one zero-padded
 * input image when a non-depthwise conv has padding). Pass NULL scratch iff 0.
 * Tip for the generator: a producer can write straight into a zero-bordered
 * buffer and call with pad = 0 on the padded extent: then no scratch/copy. */
size_t txk_conv2d_scratch_size(const txk_conv2d_desc* d);

/* y = epilogue(conv(x, W) + bias [, r]). w_packed from packing.pack_conv2d.
 * residual must be non-NULL iff d->epilogue.residual != NONE. */
int txk_conv2d(const txk_context* ctx, const txk_conv2d_desc* d, const float* x,
               const float* w_packed, float* y, const float* residual, void* scratch);

/* ------------------------------------------------------------------------ */
/* 1x1 conv fused with the depthwise conv it feeds (inverted residuals)     */
/* ------------------------------------------------------------------------ */
/* y = dw(pw(x)) without the expanded tensor pw(x) ever in memory: the output
 * rows are split into bands; a band's pw rows are computed into a slot of the
 * scratch small enough to stay in L2 (the rows shared with the next band are
 * carried over, not recomputed), then its depthwise rows are computed from
 * there. Outputs are bitwise those of txk_conv2d(pw) then txk_conv2d(dw), at
 * any thread count. Requirements (else TXK_EINVAL): pw is 1x1, stride 1, no
 * padding, dilation 1, groups 1, no residual, direct, dense output (y_stride
 * 0); dw is depthwise, dilation 1, direct, input dense (x_stride 0 or
 * dw.in_c), with n, in_h, in_w and in_c equal to pw's n, out_h, out_w and
 * out_c. dw may have a residual (then residual is non-NULL). Weights: each
 * packed as for txk_conv2d. Added in 0.5. */
typedef struct txk_pwdw_desc {
  txk_conv2d_desc pw; /* the 1x1 conv (expansion) */
  txk_conv2d_desc dw; /* the depthwise conv that reads its output */
} txk_pwdw_desc;
int txk_pwdw_check(const txk_pwdw_desc* d);
/* Bytes of scratch (TXK_PWDW_SLOTS band buffers; 0 if d is invalid or too large). */
size_t txk_pwdw_scratch_size(const txk_pwdw_desc* d);
int txk_conv2d_pw_dw(const txk_context* ctx, const txk_pwdw_desc* d, const float* x,
                     const float* w_pw, const float* w_dw, float* y, const float* residual,
                     void* scratch);

/* Reference (oracle): plain loops on UNPACKED PyTorch weights
 * w[out_c][in_c / groups][kh][kw] and bias[out_c] (bias may be NULL). */
int txk_ref_conv2d(const txk_conv2d_desc* d, const float* x, const float* w, const float* bias,
                   float* y, const float* residual);

/* ------------------------------------------------------------------------ */
/* linear / GEMM on packed weights: Y[M][N] = epi(A[M][K] @ W^T + bias)     */
/* ------------------------------------------------------------------------ */
/* W is PyTorch's linear weight [N][K], packed with packing.pack_linear
 * (identical to a 1x1 conv packing). lda/ldy/ldr: row strides in floats
 * (0 = dense: K, N, N). */
typedef struct txk_linear_desc {
  int m, k, n;
  int lda, ldy, ldr;
  txk_epilogue epilogue;
} txk_linear_desc;

size_t txk_linear_packed_size(const txk_linear_desc* d);
int txk_linear(const txk_context* ctx, const txk_linear_desc* d, const float* a,
               const float* w_packed, float* y, const float* residual);
int txk_ref_linear(const txk_linear_desc* d, const float* a, const float* w, const float* bias,
                   float* y, const float* residual);

/* ------------------------------------------------------------------------ */
/* Batched matmul on unpacked operands (attention)                          */
/* ------------------------------------------------------------------------ */
/* For b in [0, batch): C_b[M][N] = alpha * A_b[M][K] @ B_b[K][N]
 *   A_b[i][k] = a[b*a_sb + i*a_sm + k*a_sk]     (all strides in floats)
 *   B_b[k][j] = b[b*b_sb + k*b_sk + j*b_sn]     (QK^T: pass K with b_sk=1, b_sn=row stride)
 *   C_b[i][j] = c[b*c_sb + i*c_sm + j]          (contiguous rows)
 * A with a_sk == 1 is read in place; B is repacked into scratch per batch. */
typedef struct txk_bmm_desc {
  int batch, m, n, k;
  long a_sb, a_sm, a_sk;
  long b_sb, b_sk, b_sn;
  long c_sb, c_sm;
  float alpha;
} txk_bmm_desc;

size_t txk_bmm_scratch_size(const txk_bmm_desc* d);
int txk_bmm(const txk_context* ctx, const txk_bmm_desc* d, const float* a, const float* b,
            float* c, void* scratch);
int txk_ref_bmm(const txk_bmm_desc* d, const float* a, const float* b, float* c);

/* Fused multi-head self-attention core for one image:
 *   for h in heads: O_h = softmax(scale * Q_h K_h^T) V_h
 * q/k/v: [seq][heads*head_dim] rows with row stride qkv_stride (so the
 * output of a fused qkv linear [seq][3*dim] is used in place: q = base,
 * k = base + dim, v = base + 2*dim, qkv_stride = 3*dim). out: [seq][heads*head_dim]
 * with row stride out_stride (0 = heads*head_dim). */
typedef struct txk_attention_desc {
  int seq, heads, head_dim;
  int qkv_stride, out_stride;
  float scale;
} txk_attention_desc;

size_t txk_attention_scratch_size(const txk_attention_desc* d);
int txk_attention(const txk_context* ctx, const txk_attention_desc* d, const float* q,
                  const float* k, const float* v, float* out, void* scratch);
int txk_ref_attention(const txk_attention_desc* d, const float* q, const float* k, const float* v,
                      float* out);

/* ------------------------------------------------------------------------ */
/* Normalisation and softmax                                                */
/* ------------------------------------------------------------------------ */
/* y[r][:] = (x[r][:] - mean) / sqrt(var + eps) * gamma + beta over the last
 * dim c (biased variance, like PyTorch). gamma/beta may be NULL (= 1 / 0).
 * Strides in floats (0 = c). In place (y == x) allowed. */
int txk_layernorm(const txk_context* ctx, size_t rows, size_t c, const float* x, size_t x_stride,
                  float* y, size_t y_stride, const float* gamma, const float* beta, float eps);
int txk_ref_layernorm(size_t rows, size_t c, const float* x, size_t x_stride, float* y,
                      size_t y_stride, const float* gamma, const float* beta, float eps);

/* Group norm on NHWC x[n][hw][c] (dense), `groups` divides c, per-channel
 * affine gamma/beta (may be NULL). In place allowed. */
int txk_groupnorm(const txk_context* ctx, size_t n, size_t hw, size_t c, size_t groups,
                  const float* x, float* y, const float* gamma, const float* beta, float eps);
int txk_ref_groupnorm(size_t n, size_t hw, size_t c, size_t groups, const float* x, float* y,
                      const float* gamma, const float* beta, float eps);

/* Softmax over the last dim (max-subtracted). In place allowed. */
int txk_softmax(const txk_context* ctx, size_t rows, size_t c, const float* x, size_t x_stride,
                float* y, size_t y_stride);
int txk_ref_softmax(size_t rows, size_t c, const float* x, size_t x_stride, float* y,
                    size_t y_stride);

/* ------------------------------------------------------------------------ */
/* Reductions and pooling (NHWC, dense unless a stride is given)            */
/* ------------------------------------------------------------------------ */
/* y[n][c] = mean over hw of x[n][hw][c] (global average pool, SE squeeze). */
int txk_global_avgpool(const txk_context* ctx, size_t n, size_t hw, size_t c, const float* x,
                       float* y);
/* y[p] = mean over c of x[p][c] (p over n*h*w pixels). */
int txk_mean_channels(const txk_context* ctx, size_t pixels, size_t c, const float* x, float* y);

typedef struct txk_pool2d_desc {
  int n, in_h, in_w, c;
  int out_h, out_w; /* caller computes them (floor or ceil mode, PyTorch rules) */
  int kh, kw, stride_h, stride_w, pad_h, pad_w;
  int dil_h, dil_w;          /* max pool only (avg pool requires 1) */
  int count_include_pad;     /* avg pool: PyTorch's count_include_pad */
  int divisor_override;      /* avg pool: 0 = none */
  int x_stride, y_stride;    /* pixel strides (0 = c) */
} txk_pool2d_desc;

/* Max pool: padded positions are ignored (-inf), values only (no indices). */
int txk_maxpool2d(const txk_context* ctx, const txk_pool2d_desc* d, const float* x, float* y);
/* Avg pool with PyTorch's window clipping, count_include_pad and ceil_mode semantics. */
int txk_avgpool2d(const txk_context* ctx, const txk_pool2d_desc* d, const float* x, float* y);
/* Adaptive avg pool: window [floor(i*in/out), ceil((i+1)*in/out)). Uses
 * n, in_h, in_w, c, out_h, out_w, x_stride, y_stride of d. */
int txk_adaptive_avgpool2d(const txk_context* ctx, const txk_pool2d_desc* d, const float* x,
                           float* y);

/* ------------------------------------------------------------------------ */
/* Elementwise                                                              */
/* ------------------------------------------------------------------------ */
typedef enum txk_binop {
  TXK_BIN_ADD = 0,
  TXK_BIN_SUB = 1, /* a - b */
  TXK_BIN_MUL = 2,
  TXK_BIN_DIV = 3, /* a / b */
  TXK_BIN_MAX = 4,
  TXK_BIN_MIN = 5
} txk_binop;

/* Strided 3-D broadcasting binary op over [n][p][c] (p = pixels, c = channels):
 *   y[i*y_sn + j*y_sp + k] = act(a[i*a_sn + j*a_sp + k*a_sc] op b[i*b_sn + j*b_sp + k*b_sc])
 * Strides in floats; 0 broadcasts. Typical b: full (P*C, C, 1), per-channel
 * (0, 0, 1), scalar (0, 0, 0), SE gate per (n, c) (C, 0, 1), per pixel
 * (P, 1, 0). a may be broadcast the same way (e.g. scalar - x). y == a
 * (same strides) is allowed. The epilogue's act is applied to the result
 * (residual must be NONE). */
typedef struct txk_binary_desc {
  txk_binop op;
  size_t n, p, c;
  size_t a_sn, a_sp, a_sc;
  size_t b_sn, b_sp, b_sc;
  size_t y_sn, y_sp;
  txk_epilogue epilogue;
} txk_binary_desc;

int txk_binary(const txk_context* ctx, const txk_binary_desc* d, const float* a, const float* b,
               float* y);
int txk_ref_binary(const txk_binary_desc* d, const float* a, const float* b, float* y);

/* y[i] = act(x[i]) for i < count (contiguous). y == x allowed.
 * act_min/act_max used by TXK_ACT_CLAMP. */
int txk_unary(const txk_context* ctx, txk_act act, float act_min, float act_max, size_t count,
              const float* x, float* y);
int txk_ref_unary(txk_act act, float act_min, float act_max, size_t count, const float* x,
                  float* y);

/* SE gate: y[n][p][c] = x[n][p][c] * s[n][c] (optionally act(s) first, e.g.
 * TXK_ACT_SIGMOID / TXK_ACT_HARDSIGMOID; TXK_ACT_NONE otherwise). In place allowed. */
int txk_channel_scale(const txk_context* ctx, size_t n, size_t p, size_t c, const float* x,
                      const float* s, txk_act gate_act, float* y);
/* An SE gate folded into the 1x1 conv (or linear) that reads the gated tensor: w_out is
 * w_packed (the "gemm" layout of k inputs x n outputs, as packed for txk_conv2d / txk_linear)
 * with input kk's weights multiplied by act(s[kk]) (act as in txk_channel_scale), biases
 * copied. Then conv(x, w_out) = conv(x * act(s), w_packed) in exact arithmetic: each product
 * w * (x * g) is rounded as (w * g) * x instead. Worth it when the image has more pixels
 * than the conv has outputs (k * n products instead of pixels * k). Added in 0.5. */
int txk_gate_weights(const txk_context* ctx, size_t k, size_t n, const float* w_packed,
                     const float* s, txk_act gate_act, float* w_out);

/* ------------------------------------------------------------------------ */
/* Data movement                                                            */
/* ------------------------------------------------------------------------ */
/* y[r*y_stride + j] = x[r*x_stride + j] for r < rows, j < cols (concat along
 * channels = one call per input with y offset by the channel offset). */
int txk_copy2d(size_t rows, size_t cols, const float* x, size_t x_stride, float* y,
               size_t y_stride);

/* Concat along the last (channel) dim: y[p][:] = [x0[p][:c0], x1[p][:c1], ...]. */
int txk_concat_channels(size_t pixels, size_t ninputs, const float* const* xs,
                        const size_t* channels, float* y);

/* General permute of a dense row-major tensor of rank <= 6:
 * y has shape[perm[0]], ..., shape[perm[ndim-1]] and
 * y[i_0..i_{d-1}] = x[j] with j_{perm[t]} = i_t. */
#define TXK_MAX_DIMS 6
int txk_permute(size_t ndim, const size_t* shape, const size_t* perm, const float* x, float* y);

/* Constant pad of an NHWC tensor: y[n][h + top][w + left][c] = x[n][h][w][c],
 * everything else `value`. y is [n][h+top+bottom][w+left+right][c]. */
int txk_pad_nhwc(size_t n, size_t h, size_t w, size_t c, size_t top, size_t bottom, size_t left,
                 size_t right, float value, const float* x, float* y);

/* ------------------------------------------------------------------------ */
/* Vectorised transcendentals (the same code the epilogues use)             */
/* ------------------------------------------------------------------------ */
/* y[i] = f(x[i]), using the context's VUNARY kernel (polynomials, no libm).
 * Error bounds (max measured over all finite floats in range, vs float64
 * libm) are documented in README.md. y == x allowed. */
int txk_vexp(const txk_context* ctx, size_t count, const float* x, float* y);
int txk_verf(const txk_context* ctx, size_t count, const float* x, float* y);
int txk_vtanh(const txk_context* ctx, size_t count, const float* x, float* y);
int txk_vsigmoid(const txk_context* ctx, size_t count, const float* x, float* y);

/* ------------------------------------------------------------------------ */
/* Weights blob validation (src/weights.c)                                  */
/* ------------------------------------------------------------------------ */
/* A weights blob is a header followed by the payload (all little-endian; the
 * writer is src/timmx/c/emit/weights.py):
 *
 *   offset  size  field
 *   0       8     magic "TIMMXWT\0"
 *   8       4     u32 format version (TXK_WEIGHTS_VERSION)
 *   12      4     u32 header bytes (TXK_WEIGHTS_HEADER_SIZE = 64)
 *   16      8     u64 payload bytes (a multiple of 4)
 *   24      8     u64 checksum: Fletcher-64 over the payload's little-endian u32
 *                 words w_i: a += w_i; b += a (both mod 2^32); checksum = b << 32 | a
 *   32      8     u64 layout id (a hash of the model's weights layout)
 *   40      24    reserved: must be zero (bytes 40 .. header bytes - 1)
 *   64      ...   payload, exactly `payload bytes` long; nothing follows it
 */
#define TXK_WEIGHTS_VERSION 1u
#define TXK_WEIGHTS_HEADER_SIZE 64u

/* What a model expects of its blob (the generated <P>_WEIGHTS_* macros). */
typedef struct txk_weights_expect {
  uint32_t version;      /* format version                              */
  uint32_t header_size;  /* header bytes, >= 40                         */
  uint64_t payload_size; /* payload bytes, a multiple of 4              */
  uint64_t layout_id;    /* the model's layout id                       */
} txk_weights_expect;

/* Validate `blob_size` bytes at `blob` against `expect`. Reads only
 * blob[0 .. blob_size) (never past it, whatever the header says), allocates
 * nothing, keeps no state; any alignment. Checks, in this order, and returns
 * the first failure:
 *   TXK_EINVAL             blob or expect is NULL, expect->header_size < 40 or
 *                          expect->payload_size is not a multiple of 4
 *   TXK_EWEIGHTS_SIZE      blob_size < expect->header_size
 *   TXK_EWEIGHTS_MAGIC     bytes 0..7 are not the magic
 *   TXK_EWEIGHTS_VERSION   version != expect->version, or the header-bytes
 *                          field != expect->header_size
 *   TXK_EWEIGHTS_MODEL     payload-bytes field != expect->payload_size
 *   TXK_EWEIGHTS_SIZE      blob_size != header bytes + payload bytes
 *                          (truncated file, or trailing bytes)
 *   TXK_EWEIGHTS_CHECKSUM  a reserved header byte (40 .. header bytes - 1) is
 *                          not zero
 *   TXK_EWEIGHTS_MODEL     layout id != expect->layout_id
 *   TXK_EWEIGHTS_CHECKSUM  the payload's checksum != the header's
 *   TXK_OK                 otherwise: the payload is blob + header bytes. */
int txk_weights_check(const void* blob, size_t blob_size, const txk_weights_expect* expect);
/* The checksum above over n bytes (n a multiple of 4; a trailing 1..3 bytes
 * are ignored). Exposed for tests and tools. */
uint64_t txk_weights_fletcher64(const void* data, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* TIMMX_KERNELS_H */
