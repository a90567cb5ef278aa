/* Scalar float semantics of the kernel library: the one definition of every
 * elementwise op that the reference kernels (ref.c), the scalar micro-kernels
 * (f32-scalar.c), the portable drivers (ops.c) and the generic ops (gen_ops.c)
 * share, so that all portable paths give the same answer, PyTorch's, including
 * on NaN and signed zeros. Header only (static inline), strict C99, no state.
 *
 * Semantics (checked against PyTorch by tests/c/test_c_kernels_ops.py::
 * test_nan_and_signed_zero_semantics on every path, vector kernels included):
 *   max(a, b), min(a, b)   NaN if a or b is NaN (torch.maximum / torch.minimum);
 *                          of two equal values (+0 and -0) the SECOND operand, like
 *                          torch.maximum on vectorised (non-tiny) tensors. Reductions
 *                          call max(new, running): the first of equal values stays,
 *                          like max_pool2d and amax.
 *   relu(x)                x < 0 ? +0 : x, so relu(NaN) = NaN, relu(-0) = -0 (torch.relu)
 *   clamp(x, lo, hi)       min(max(x, lo), hi) as torch.clamp: NaN stays NaN, -0 stays
 *                          -0 when lo = 0 (relu6), lo > hi gives hi (the vector kernels
 *                          require lo <= hi, which every caller passes)
 *   hardswish(x)           x * clamp(x + 3, 0, 6) / 6 (PyTorch's expression, bit for bit:
 *                          hardswish(-3) = -0, hardswish(NaN) = NaN)
 *   hardsigmoid(x)         clamp(x + 3, 0, 6) / 6 (bit for bit)
 *   sigmoid, silu, gelu, gelu_tanh, tanh, elu, softplus, mish: PyTorch's formulas
 *   on libm (silu = x / (1 + exp(-x)), elu = x > 0 ? x : alpha * expm1(x), ...):
 *   NaN in, NaN out; odd functions keep the sign of zero (silu(-0) = gelu(-0) = -0).
 * The vector kernels implement the same NaN / signed-zero rules with their own
 * instructions (x86 max/min return the second operand on NaN or equality: see
 * templates/txk_vmath.inc). Never compile this library with -ffast-math. */
#ifndef TXK_SCALAR_MATH_H
#define TXK_SCALAR_MATH_H

#include <math.h>

#include "timmx_kernels.h"

static inline int txk_scalar_isnan(float x) { return x != x; }

/* a > b ? a : b, but NaN if either is NaN; b when a == b (also +0 vs -0). */
static inline float txk_scalar_max(float a, float b) { return (a > b || a != a) ? a : b; }
/* a < b ? a : b, but NaN if either is NaN; b when a == b. */
static inline float txk_scalar_min(float a, float b) { return (a < b || a != a) ? a : b; }

static inline float txk_scalar_relu(float x) { return x < 0.0f ? 0.0f : x; }

static inline float txk_scalar_clamp(float x, float lo, float hi) {
  const float t = x < lo ? lo : x;
  return t > hi ? hi : t;
}

static inline float txk_scalar_hardsigmoid(float x) {
  return txk_scalar_clamp(x + 3.0f, 0.0f, 6.0f) / 6.0f;
}

static inline float txk_scalar_hardswish(float x) {
  return x * txk_scalar_clamp(x + 3.0f, 0.0f, 6.0f) / 6.0f;
}

static inline float txk_scalar_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

static inline float txk_scalar_silu(float x) { return x / (1.0f + expf(-x)); }

static inline float txk_scalar_gelu(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

static inline float txk_scalar_gelu_tanh(float x) {
  return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
}

/* x * sigmoid(1.702 x) (timm's QuickGELU) */
static inline float txk_scalar_gelu_sigmoid(float x) { return x * txk_scalar_sigmoid(1.702f * x); }

static inline float txk_scalar_elu(float x, float alpha) {
  return x > 0.0f ? x : alpha * expm1f(x);
}

static inline float txk_scalar_leaky_relu(float x, float slope) { return x > 0.0f ? x : slope * x; }

/* torch.nn.functional.softplus with beta = 1, threshold = 20 */
static inline float txk_scalar_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

static inline float txk_scalar_mish(float x) { return x * tanhf(txk_scalar_softplus(x)); }

/* The fused activations of the public API (txk_act); lo/hi for TXK_ACT_CLAMP. */
static inline float txk_scalar_act(int act, float x, float lo, float hi) {
  switch (act) {
    case TXK_ACT_RELU: return txk_scalar_relu(x);
    case TXK_ACT_CLAMP: return txk_scalar_clamp(x, lo, hi);
    case TXK_ACT_HARDSWISH: return txk_scalar_hardswish(x);
    case TXK_ACT_HARDSIGMOID: return txk_scalar_hardsigmoid(x);
    case TXK_ACT_SILU: return txk_scalar_silu(x);
    case TXK_ACT_GELU: return txk_scalar_gelu(x);
    case TXK_ACT_GELU_TANH: return txk_scalar_gelu_tanh(x);
    case TXK_ACT_SIGMOID: return txk_scalar_sigmoid(x);
    case TXK_ACT_TANH: return tanhf(x);
    default: return x; /* TXK_ACT_NONE */
  }
}

/* The binary ops of the public API (txk_binop). */
static inline float txk_scalar_binop(int op, float a, float b) {
  switch (op) {
    case TXK_BIN_ADD: return a + b;
    case TXK_BIN_SUB: return a - b;
    case TXK_BIN_MUL: return a * b;
    case TXK_BIN_DIV: return a / b;
    case TXK_BIN_MAX: return txk_scalar_max(a, b);
    case TXK_BIN_MIN: return txk_scalar_min(a, b);
    default: return a;
  }
}

#endif /* TXK_SCALAR_MATH_H */
