/* Status strings, CPU feature detection, kernel enumerators and dispatch. */
#include "txk_internal.h"

const char* txk_status_string(int status) {
  switch (status) {
    case TXK_OK: return "ok";
    case TXK_EINVAL: return "invalid argument";
    case TXK_EUNSUPPORTED: return "unsupported";
    case TXK_EALIGN: return "misaligned packed or scratch buffer";
    case TXK_EWEIGHTS_SIZE: return "weights: wrong size (truncated file or trailing bytes)";
    case TXK_EWEIGHTS_MAGIC: return "weights: not a timmx weights file";
    case TXK_EWEIGHTS_VERSION: return "weights: unsupported format version";
    case TXK_EWEIGHTS_CHECKSUM: return "weights: corrupted (checksum or reserved header bytes)";
    case TXK_EWEIGHTS_MODEL: return "weights: made for another model";
    default: return "unknown status";
  }
}

const char* txk_isa_name(txk_isa isa) {
  switch (isa) {
    case TXK_ISA_SCALAR: return "scalar";
    case TXK_ISA_AVX2: return "avx2";
    case TXK_ISA_AVX512: return "avx512";
    case TXK_ISA_NEON: return "neon";
    case TXK_ISA_AUTO: return "auto";
    default: return "unknown";
  }
}

int txk_isa_supported(txk_isa isa) {
  switch (isa) {
    case TXK_ISA_SCALAR: return 1;
#if defined(TXK_X86) && (defined(__GNUC__) || defined(__clang__))
    /* __builtin_cpu_supports checks cpuid and OS (XCR0) support; thread-safe read. */
    case TXK_ISA_AVX2:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case TXK_ISA_AVX512:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
             __builtin_cpu_supports("fma");
#endif
#if defined(TXK_ARM64)
    case TXK_ISA_NEON: return 1; /* baseline on aarch64 */
#endif
    default: return 0;
  }
}

#define TXK_FN(f) ((void (*)(void))(f))

/* Enumerators: one const table per family, preferred kernel of an ISA first. */
static const txk_ukernel_info gemm_table[] = {
#if defined(TXK_X86)
    {"txk_f32_gemm_ukernel_8x32__avx512", TXK_ISA_AVX512, 8, 32,
     TXK_FN(txk_f32_gemm_ukernel_8x32__avx512)},
    {"txk_f32_gemm_ukernel_12x32__avx512", TXK_ISA_AVX512, 12, 32,
     TXK_FN(txk_f32_gemm_ukernel_12x32__avx512)},
    {"txk_f32_gemm_ukernel_6x16__avx2", TXK_ISA_AVX2, 6, 16,
     TXK_FN(txk_f32_gemm_ukernel_6x16__avx2)},
#endif
#if defined(TXK_ARM64)
    {"txk_f32_gemm_ukernel_6x16__neon", TXK_ISA_NEON, 6, 16,
     TXK_FN(txk_f32_gemm_ukernel_6x16__neon)},
#endif
    {"txk_f32_gemm_ukernel_4x16__scalar", TXK_ISA_SCALAR, 4, 16,
     TXK_FN(txk_f32_gemm_ukernel_4x16__scalar)},
};

static const txk_ukernel_info dwconv_table[] = {
#if defined(TXK_X86)
    {"txk_f32_dwconv_ukernel_row16c__avx512", TXK_ISA_AVX512, 1, 16,
     TXK_FN(txk_f32_dwconv_ukernel_row16c__avx512)},
    {"txk_f32_dwconv_ukernel_row8c__avx2", TXK_ISA_AVX2, 1, 8,
     TXK_FN(txk_f32_dwconv_ukernel_row8c__avx2)},
#endif
#if defined(TXK_ARM64)
    {"txk_f32_dwconv_ukernel_row4c__neon", TXK_ISA_NEON, 1, 4,
     TXK_FN(txk_f32_dwconv_ukernel_row4c__neon)},
#endif
    {"txk_f32_dwconv_ukernel_row__scalar", TXK_ISA_SCALAR, 1, 1,
     TXK_FN(txk_f32_dwconv_ukernel_row__scalar)},
};

static const txk_ukernel_info vunary_table[] = {
#if defined(TXK_X86)
    {"txk_f32_vunary_16__avx512", TXK_ISA_AVX512, 1, 16, TXK_FN(txk_f32_vunary_16__avx512)},
    {"txk_f32_vunary_8__avx2", TXK_ISA_AVX2, 1, 8, TXK_FN(txk_f32_vunary_8__avx2)},
#endif
#if defined(TXK_ARM64)
    {"txk_f32_vunary_4__neon", TXK_ISA_NEON, 1, 4, TXK_FN(txk_f32_vunary_4__neon)},
#endif
    {"txk_f32_vunary__scalar", TXK_ISA_SCALAR, 1, 1, TXK_FN(txk_f32_vunary__scalar)},
};

static const txk_ukernel_info rowop_table[] = {
#if defined(TXK_X86)
    {"txk_f32_rowop_16__avx512", TXK_ISA_AVX512, 1, 16, TXK_FN(txk_f32_rowop_16__avx512)},
    {"txk_f32_rowop_8__avx2", TXK_ISA_AVX2, 1, 8, TXK_FN(txk_f32_rowop_8__avx2)},
#endif
    {"txk_f32_rowop__scalar", TXK_ISA_SCALAR, 1, 1, TXK_FN(txk_f32_rowop__scalar)},
};

static const txk_ukernel_info* table_of(txk_family f, size_t* n) {
  switch (f) {
    case TXK_FAMILY_GEMM: *n = sizeof(gemm_table) / sizeof(gemm_table[0]); return gemm_table;
    case TXK_FAMILY_DWCONV: *n = sizeof(dwconv_table) / sizeof(dwconv_table[0]); return dwconv_table;
    case TXK_FAMILY_VUNARY: *n = sizeof(vunary_table) / sizeof(vunary_table[0]); return vunary_table;
    case TXK_FAMILY_ROWOP: *n = sizeof(rowop_table) / sizeof(rowop_table[0]); return rowop_table;
    default: *n = 0; return NULL;
  }
}

size_t txk_ukernel_count(txk_family family) {
  size_t n;
  (void)table_of(family, &n);
  return n;
}

const txk_ukernel_info* txk_ukernel_get(txk_family family, size_t index) {
  size_t n;
  const txk_ukernel_info* t = table_of(family, &n);
  return (t != NULL && index < n) ? &t[index] : NULL;
}

/* Preference rank of an ISA (higher = faster), -1 if above the limit. */
static int isa_rank(txk_isa isa, txk_isa max_isa) {
  int r;
  switch (isa) {
    case TXK_ISA_SCALAR: r = 0; break;
    case TXK_ISA_AVX2: r = 1; break;
    case TXK_ISA_AVX512: r = 2; break;
    case TXK_ISA_NEON: r = 1; break;
    default: return -1;
  }
  switch (max_isa) {
    case TXK_ISA_AUTO: return r;
    case TXK_ISA_SCALAR: return isa == TXK_ISA_SCALAR ? r : -1;
    case TXK_ISA_AVX2: return (isa == TXK_ISA_SCALAR || isa == TXK_ISA_AVX2) ? r : -1;
    case TXK_ISA_AVX512:
      return (isa == TXK_ISA_SCALAR || isa == TXK_ISA_AVX2 || isa == TXK_ISA_AVX512) ? r : -1;
    case TXK_ISA_NEON: return (isa == TXK_ISA_SCALAR || isa == TXK_ISA_NEON) ? r : -1;
    default: return -1;
  }
}

int txk_context_init(txk_context* ctx, txk_isa max_isa) {
  int f, best_rank = 0;
  if (ctx == NULL) return TXK_EINVAL;
  if (max_isa != TXK_ISA_AUTO && !txk_isa_supported(max_isa)) return TXK_EUNSUPPORTED;
  ctx->isa = TXK_ISA_SCALAR;
  for (f = 0; f < TXK_FAMILY_COUNT; f++) {
    size_t n, i;
    const txk_ukernel_info* t = table_of((txk_family)f, &n);
    const txk_ukernel_info* best = NULL;
    int rank = -1;
    for (i = 0; i < n; i++) {
      int r = isa_rank(t[i].isa, max_isa);
      if (r > rank && txk_isa_supported(t[i].isa)) {
        rank = r;
        best = &t[i];
      }
    }
    if (best == NULL) return TXK_EUNSUPPORTED;
    ctx->ukernel[f] = best;
    if (rank > best_rank) {
      best_rank = rank;
      ctx->isa = best->isa;
    }
  }
  return TXK_OK;
}

int txk_context_set_ukernel(txk_context* ctx, txk_family family, size_t index) {
  const txk_ukernel_info* k = txk_ukernel_get(family, index);
  if (ctx == NULL || k == NULL) return TXK_EINVAL;
  if (!txk_isa_supported(k->isa)) return TXK_EUNSUPPORTED;
  ctx->ukernel[family] = k;
  return TXK_OK;
}

int txk_ctx_ok(const txk_context* ctx) {
  int f;
  if (ctx == NULL) return 0;
  for (f = 0; f < TXK_FAMILY_COUNT; f++)
    if (ctx->ukernel[f] == NULL || ctx->ukernel[f]->fn == NULL) return 0;
  return 1;
}
