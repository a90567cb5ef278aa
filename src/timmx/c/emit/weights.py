"""The weights blob: a 64-byte header (magic, version, sizes, checksum, layout id) + payload.

Header (little-endian)::

    0   char[8]  magic "TIMMXWT\\0"
    8   u32      format version (1)
    12  u32      header bytes (64)
    16  u64      payload bytes
    24  u64      checksum: Fletcher-64 over the payload's u32 words (a += w; b += a; b<<32 | a)
    32  u64      layout id: a hash of the model's weights layout (rejects another model's file)
    40  u8[24]   reserved, zero (the loader rejects a header whose reserved bytes are not zero)
    64  payload  exactly ``payload bytes``; nothing follows it (the loader rejects trailing bytes)

The loader is ``txk_weights_check`` in the kernel library (kernels/src/weights.c), which every
generated ``<prefix>_check_weights`` calls; keep the two in step (and bump VERSION on any change).
"""

import hashlib
import struct

MAGIC = b"TIMMXWT\0"
VERSION = 1
HEADER_BYTES = 64


def fletcher64(payload: bytes) -> int:
    """The checksum the generated loader recomputes (payload length is a multiple of 4)."""
    import numpy as np

    words = np.frombuffer(payload, dtype="<u4").astype(np.uint64)
    n = words.size
    if n == 0:
        return 0
    a = int(words.sum(dtype=np.uint64)) & 0xFFFFFFFF
    weights = (np.arange(n, 0, -1, dtype=np.uint64)) & np.uint64(0xFFFFFFFF)
    b = int((words * weights).sum(dtype=np.uint64)) & 0xFFFFFFFF
    return (b << 32) | a


def layout_id(description: str) -> int:
    """A 63-bit id of the weights layout (names, offsets, sizes)."""
    return int.from_bytes(hashlib.sha256(description.encode()).digest()[:8], "little") >> 1


def build_blob(payload: bytes, layout: int) -> bytes:
    """Header + payload."""
    header = struct.pack(
        "<8sIIQQQ24x", MAGIC, VERSION, HEADER_BYTES, len(payload), fletcher64(payload), layout
    )
    assert len(header) == HEADER_BYTES
    return header + payload
