/* libFuzzer harness for txk_weights_check (src/timmx/c/kernels/src/weights.c):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *     -I../../src/timmx/c/kernels/include fuzz_weights.c ../../src/timmx/c/kernels/src/weights.c \
 *     -o fuzz_weights
 *   ./fuzz_weights -max_total_time=60 CORPUS_DIR seeds/weights
 *
 * Every input is checked twice: against the fixed expectation of seeds/weights/valid.bin (a
 * 64-byte payload, layout id FUZZ_LAYOUT; written by timmx.c.emit.weights.build_blob) and
 * against an expectation taken from the input's own header fields (so huge or inconsistent
 * sizes reach the size arithmetic). libFuzzer hands over an exact-size heap copy, so ASan
 * sees any read past the blob. An accepted blob must really be valid: the harness re-checks
 * it with its own byte-by-byte reading of the format. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "timmx_kernels.h"

#define FUZZ_PAYLOAD 64u
#define FUZZ_LAYOUT 0x0123456789abcdefULL

int LLVMFuzzerTestOneInput(const unsigned char* data, size_t size);

static uint64_t le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  int i;
  for (i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

/* The format, read independently of weights.c: abort() if `status` disagrees. */
static void oracle(const unsigned char* p, size_t n, const txk_weights_expect* e, int status) {
  uint64_t a = 0, b = 0, i;
  if (status != TXK_OK) {
    if (status != TXK_EINVAL && status != TXK_EWEIGHTS_SIZE && status != TXK_EWEIGHTS_MAGIC &&
        status != TXK_EWEIGHTS_VERSION && status != TXK_EWEIGHTS_CHECKSUM &&
        status != TXK_EWEIGHTS_MODEL)
      abort(); /* a status outside the contract */
    return;
  }
  if (n < e->header_size || memcmp(p, "TIMMXWT", 8) != 0) abort();
  if (le(p + 8, 4) != e->version || le(p + 12, 4) != e->header_size) abort();
  if (le(p + 16, 8) != e->payload_size || le(p + 32, 8) != e->layout_id) abort();
  if ((uint64_t)n != e->header_size + e->payload_size) abort();
  for (i = 40; i < e->header_size; i++)
    if (p[i] != 0) abort();
  for (i = e->header_size; i + 4 <= n; i += 4) {
    a = (a + le(p + i, 4)) & 0xffffffffu;
    b = (b + a) & 0xffffffffu;
  }
  if (le(p + 24, 8) != ((b << 32) | a)) abort();
}

int LLVMFuzzerTestOneInput(const unsigned char* data, size_t size) {
  txk_weights_expect e;
  e.version = TXK_WEIGHTS_VERSION;
  e.header_size = TXK_WEIGHTS_HEADER_SIZE;
  e.payload_size = FUZZ_PAYLOAD;
  e.layout_id = FUZZ_LAYOUT;
  oracle(data, size, &e, txk_weights_check(data, size, &e));
  if (size >= 40) {
    e.version = (uint32_t)le(data + 8, 4);
    e.header_size = (uint32_t)le(data + 12, 4);
    e.payload_size = le(data + 16, 8) & ~(uint64_t)3;
    e.layout_id = le(data + 32, 8);
    oracle(data, size, &e, txk_weights_check(data, size, &e));
  }
  (void)txk_weights_fletcher64(data, size);
  return 0;
}
