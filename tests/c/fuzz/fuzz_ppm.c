/* libFuzzer harness for the generated demo's input reader (main.c: txm_load_input, which
 * parses and resizes a P6 PPM or takes a raw float32 file). main.c is included without its
 * main(); build against an exported model's directory ART:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *     -IART -IART/kernels/include fuzz_ppm.c -o fuzz_ppm -lm
 *   ./fuzz_ppm -max_total_time=60 CORPUS_DIR seeds/ppm
 *
 * Oracles besides the sanitizers: a rejected input has a message, and an accepted one has
 * written every float of the (exact-size, NaN-filled) input buffer with a finite value. */
#define TXM_DEMO_NO_MAIN
#include "main.c"

int LLVMFuzzerTestOneInput(const unsigned char* data, size_t size);

static void txm_fuzz_one(const char* name, const unsigned char* data, size_t size,
                         float* input) {
  char err[256];
  size_t i;
  for (i = 0; i < TXM_INPUT_FLOATS; i++) input[i] = NAN;
  err[0] = '\0';
  if (txm_load_input(name, data, size, input, err, sizeof err) != 0) {
    if (err[0] == '\0') abort(); /* rejected without saying why */
    return;
  }
  for (i = 0; i < TXM_INPUT_FLOATS; i++)
    if (!isfinite(input[i])) abort(); /* accepted but left (or made) a non-finite value */
}

int LLVMFuzzerTestOneInput(const unsigned char* data, size_t size) {
  float* input = (float*)malloc(TXM_INPUT_FLOATS * sizeof(float));
  if (input == NULL) return 0;
  txm_fuzz_one("fuzz", data, size, input); /* PPM if it starts with P6, else raw */
  if (!(size >= 2 && data[0] == 'P' && data[1] == '6'))
    txm_fuzz_one("fuzz.ppm", data, size, input); /* the PPM parser on anything else, too */
  free(input);
  return 0;
}
