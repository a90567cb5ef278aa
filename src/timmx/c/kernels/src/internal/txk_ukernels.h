/* The list of micro-kernels: the one place a micro-kernel is named.
 *
 *   X(family, MR, NR, isa)   ->   txk_f32_<family>_ukernel_<MR>x<NR>__<isa>
 *
 * One line per micro-kernel. From this line alone:
 *   - internal/txk_internal.h declares the function with its family's signature
 *     (txk_<family>_ukernel), so a definition in f32-<isa>.c that does not match
 *     the family contract is a compile error;
 *   - dispatch.c tables it ({name, isa, MR, NR, fn}, all from these tokens) for
 *     txk_ukernel_count / txk_ukernel_get and txk_context_init;
 *   - the tests read this file (tests/c/test_c_kernels.py parses TXK_UKERNELS and
 *     checks the library enumerates exactly these kernels, for all ISAs of the
 *     build's architecture) and test every entry through the enumeration;
 *   - benchmarks/kernels/bench_kernels.py benchmarks every enumerated entry.
 * The definition goes into src/f32-<isa>.c. Naming grammar, per-family contracts
 * and the "new family" checklist: ../../README.md.
 *
 * MR x NR is the tile of one call: rows (output pixels) x columns (output
 * channels / elements). Families that work on one row of any length (dwconv,
 * vunary, rowop) have MR = 1 and NR = the vector width in floats.
 *
 * Order matters: txk_ukernel_get(family, i) is the i-th entry of that family
 * here, and dispatch picks, per family, the first entry of the best ISA the CPU
 * runs, so the preferred kernel of an ISA comes first. Entries of an ISA this
 * architecture cannot compile are dropped (TXK_IF_ISA_<isa> below). */
#ifndef TXK_UKERNELS_H
#define TXK_UKERNELS_H

#include "timmx_kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#define TXK_X86 1
#endif
#if defined(__aarch64__)
#define TXK_ARM64 1
#endif

/* clang-format off */
#define TXK_UKERNELS(X)                                                            \
  /* GEMM / direct conv (conv kxk, 1x1, grouped, patchify; linear; bmm) */         \
  X(gemm,     6, 64, avx512)   /* default on AVX-512 */                            \
  X(gemm,     8, 32, avx512)                                                       \
  X(gemm,    12, 32, avx512)                                                       \
  X(gemm,     6, 16, avx2)                                                         \
  X(gemm,     6, 16, neon)                                                         \
  X(gemm,     4, 16, scalar)                                                       \
  /* depthwise conv: one output row per call, NR channels per vector */            \
  X(dwconv,   1, 16, avx512)                                                       \
  X(dwconv,   1,  8, avx2)                                                         \
  X(dwconv,   1,  4, neon)                                                         \
  X(dwconv,   1,  1, scalar)                                                       \
  /* elementwise activations / exp / erf over n floats */                          \
  X(vunary,   1, 16, avx512)                                                       \
  X(vunary,   1,  8, avx2)                                                         \
  X(vunary,   1,  4, neon)                                                         \
  X(vunary,   1,  1, scalar)                                                       \
  /* row ops: layernorm, softmax, accumulate, multiply, binary (NEON: scalar) */   \
  X(rowop,    1, 16, avx512)                                                       \
  X(rowop,    1,  8, avx2)                                                         \
  X(rowop,    1,  1, scalar)                                                       \
  /* Winograd F(4x4, 3x3) transforms: one tile, NR channels per vector */          \
  X(wino,     1, 16, avx512)                                                       \
  X(wino,     1,  8, avx2)                                                         \
  X(wino,     1,  4, neon)                                                         \
  X(wino,     1,  1, scalar)

/* F(family, TXK_FAMILY_ value of timmx_kernels.h): every family used above. */
#define TXK_UKERNEL_FAMILIES(F)                                                    \
  F(gemm,   TXK_FAMILY_GEMM)                                                       \
  F(dwconv, TXK_FAMILY_DWCONV)                                                     \
  F(vunary, TXK_FAMILY_VUNARY)                                                     \
  F(rowop,  TXK_FAMILY_ROWOP)                                                      \
  F(wino,   TXK_FAMILY_WINO)

/* I(isa, TXK_ISA_ value): every ISA used above. */
#define TXK_UKERNEL_ISAS(I)                                                        \
  I(scalar, TXK_ISA_SCALAR)                                                        \
  I(avx2,   TXK_ISA_AVX2)                                                          \
  I(avx512, TXK_ISA_AVX512)                                                        \
  I(neon,   TXK_ISA_NEON)
/* clang-format on */

/* TXK_IF_ISA_<isa>(...) keeps its arguments iff this architecture compiles
 * kernels of that ISA (whether the CPU runs them is decided at run time). */
#define TXK_IF_ISA_scalar(...) __VA_ARGS__
#if defined(TXK_X86)
#define TXK_IF_ISA_avx2(...) __VA_ARGS__
#define TXK_IF_ISA_avx512(...) __VA_ARGS__
#else
#define TXK_IF_ISA_avx2(...)
#define TXK_IF_ISA_avx512(...)
#endif
#if defined(TXK_ARM64)
#define TXK_IF_ISA_neon(...) __VA_ARGS__
#else
#define TXK_IF_ISA_neon(...)
#endif

/* The naming grammar, as a macro: the C identifier and its string. */
#define TXK_UKERNEL_NAME(family, mr, nr, isa) txk_f32_##family##_ukernel_##mr##x##nr##__##isa
#define TXK_STR_(s) #s
#define TXK_STR(s) TXK_STR_(s)
#define TXK_UKERNEL_NAME_STR(family, mr, nr, isa) TXK_STR(TXK_UKERNEL_NAME(family, mr, nr, isa))

/* TXK_FAMILY_ID_<family> and TXK_ISA_ID_<isa>: the enum values of the tokens. */
#define TXK_FAMILY_ID_ENUM_(family, value) TXK_FAMILY_ID_##family = value,
enum txk_family_id { TXK_UKERNEL_FAMILIES(TXK_FAMILY_ID_ENUM_) TXK_FAMILY_ID_END_ };
#undef TXK_FAMILY_ID_ENUM_
#define TXK_ISA_ID_ENUM_(isa, value) TXK_ISA_ID_##isa = value,
enum txk_isa_id { TXK_UKERNEL_ISAS(TXK_ISA_ID_ENUM_) TXK_ISA_ID_END_ };
#undef TXK_ISA_ID_ENUM_

#endif /* TXK_UKERNELS_H */
