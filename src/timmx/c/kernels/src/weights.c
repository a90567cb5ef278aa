/* Weights blob validation: the one copy of the header check and the checksum that every
 * generated model calls from <prefix>_check_weights (format: timmx_kernels.h). */
#include <string.h>

#include "timmx_kernels.h"

static uint32_t txk_le32(const unsigned char* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t txk_le64(const unsigned char* p) {
  return (uint64_t)txk_le32(p) | ((uint64_t)txk_le32(p + 4) << 32);
}

uint64_t txk_weights_fletcher64(const void* data, size_t n) {
  const unsigned char* p = (const unsigned char*)data;
  uint32_t a = 0, b = 0;
  size_t i;
  if (p == NULL) return 0;
  for (i = 0; n - i >= 4; i += 4) {
    a += txk_le32(p + i);
    b += a;
  }
  return ((uint64_t)b << 32) | a;
}

int txk_weights_check(const void* blob, size_t blob_size, const txk_weights_expect* expect) {
  static const unsigned char magic[8] = {'T', 'I', 'M', 'M', 'X', 'W', 'T', 0};
  const unsigned char* p = (const unsigned char*)blob;
  uint64_t header, payload;
  size_t i;
  if (p == NULL || expect == NULL || expect->header_size < 40 || expect->payload_size % 4 != 0)
    return TXK_EINVAL;
  if (blob_size < expect->header_size) return TXK_EWEIGHTS_SIZE;
  if (memcmp(p, magic, sizeof magic) != 0) return TXK_EWEIGHTS_MAGIC;
  if (txk_le32(p + 8) != expect->version) return TXK_EWEIGHTS_VERSION;
  if (txk_le32(p + 12) != expect->header_size) return TXK_EWEIGHTS_VERSION;
  header = expect->header_size;
  payload = txk_le64(p + 16);
  if (payload != expect->payload_size) return TXK_EWEIGHTS_MODEL;
  /* blob_size == header + payload, without forming a sum that could wrap. */
  if ((uint64_t)blob_size - header != payload) return TXK_EWEIGHTS_SIZE;
  for (i = 40; i < header; i++)
    if (p[i] != 0) return TXK_EWEIGHTS_CHECKSUM;
  if (txk_le64(p + 32) != expect->layout_id) return TXK_EWEIGHTS_MODEL;
  if (txk_weights_fletcher64(p + header, (size_t)payload) != txk_le64(p + 24))
    return TXK_EWEIGHTS_CHECKSUM;
  return TXK_OK;
}
