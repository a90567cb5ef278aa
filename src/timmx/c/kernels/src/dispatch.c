/* Dispatch layer: status strings, CPU feature detection, the micro-kernel
 * enumerator (made from the list, internal/txk_ukernels.h) and the context. */
#include "internal/txk_internal.h"

const char* txk_status_string(int status) {
  switch (status) {
    case TXK_OK: return "ok";
    case TXK_EINVAL: return "invalid argument";
    case TXK_EUNSUPPORTED: return "unsupported";
    case TXK_EALIGN: return "misaligned packed or scratch buffer";
    case TXK_ETHREAD: return "cannot create threads";
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

/* The enumerator: one entry per kernel of the list (in list order) that this
 * architecture compiles, and the family of each entry. The name, ISA, MR and
 * NR all come from the list's tokens. */
#define TXK_UKERNEL_INFO_(family, mr, nr, isa)                                           \
  TXK_IF_ISA_##isa({TXK_UKERNEL_NAME_STR(family, mr, nr, isa), (txk_isa)TXK_ISA_ID_##isa, \
                    mr, nr, (void (*)(void))TXK_UKERNEL_NAME(family, mr, nr, isa)}, )
static const txk_ukernel_info ukernels[] = {TXK_UKERNELS(TXK_UKERNEL_INFO_)};
#undef TXK_UKERNEL_INFO_

#define TXK_UKERNEL_FAMILY_(family, mr, nr, isa) TXK_IF_ISA_##isa(TXK_FAMILY_ID_##family, )
static const unsigned char ukernel_family[] = {TXK_UKERNELS(TXK_UKERNEL_FAMILY_)};
#undef TXK_UKERNEL_FAMILY_

#define TXK_NUKERNELS (sizeof(ukernels) / sizeof(ukernels[0]))
/* C99 static assertion: one family per entry */
typedef char txk_ukernel_family_table_matches[(sizeof(ukernel_family) == TXK_NUKERNELS) ? 1 : -1];

size_t txk_ukernel_count(txk_family family) {
  size_t i, n = 0;
  for (i = 0; i < TXK_NUKERNELS; i++) n += ukernel_family[i] == (unsigned)family;
  return n;
}

const txk_ukernel_info* txk_ukernel_get(txk_family family, size_t index) {
  size_t i;
  for (i = 0; i < TXK_NUKERNELS; i++)
    if (ukernel_family[i] == (unsigned)family && index-- == 0) return &ukernels[i];
  return NULL;
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
  ctx->pool = NULL;
  for (f = 0; f < TXK_FAMILY_COUNT; f++) {
    size_t i;
    const txk_ukernel_info* best = NULL;
    int rank = -1;
    for (i = 0; i < TXK_NUKERNELS; i++) {
      const txk_ukernel_info* k = &ukernels[i];
      int r;
      if (ukernel_family[i] != (unsigned)f) continue;
      r = isa_rank(k->isa, max_isa);
      if (r > rank && txk_isa_supported(k->isa)) {
        rank = r;
        best = k;
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
