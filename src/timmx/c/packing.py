"""Pack PyTorch weights into the layouts the timmx C kernels read (numpy only).

This is the Python half of the packing contract; the C half is
``src/timmx/c/kernels/README.md`` and ``txk_conv2d_packed_size`` /
``txk_linear_packed_size`` in ``timmx_kernels.h``. BatchNorm must already be
folded into ``weight``/``bias`` by the caller. All packed arrays are float32,
C-contiguous, and must be placed at a ``TXK_ALIGN`` (64) byte aligned offset.

Layouts (``B = BLOCK = 16`` output channels per block, zero padded):

``gemm`` layout (dense / grouped / 1x1 / patchify conv2d, and linear)
    For each group ``g`` (``groups`` of them), for each output-channel block
    ``ob`` of the group's ``ocg = out_c // groups`` channels
    (``ceil(ocg / 16)`` blocks), one block of ``16 * (1 + kh * kw * icg)`` floats::

        bias[16]                      # bias[g*ocg + ob*16 + j], 0 past ocg
        w[kh][kw][icg][16]            # weight[g*ocg + ob*16 + j, ic, y, x]

    Blocks are consecutive; the block size is a multiple of 16 floats (64 bytes),
    so every block stays 64-byte aligned. A linear layer ``weight[N][K]`` is the
    1x1 conv case (kh = kw = 1, icg = K, groups = 1).

``dwconv`` layout (depthwise: ``groups == in_c == out_c``, weight ``[C, 1, kh, kw]``)
    For each channel block ``cb`` (``ceil(C / 16)`` blocks), ``16 * (1 + kh * kw)`` floats::

        bias[16]                      # bias[cb*16 + j], 0 past C
        w[kh][kw][16]                 # weight[cb*16 + j, 0, y, x], 0 past C

``winograd`` layout (Winograd F(4x4, 3x3): 3x3, stride 1, dilation 1, groups 1)
    ``bias[ocp]`` (``ocp = ceil(out_c / 16) * 16``, 0 past out_c), then for each of the 36
    positions ``xi = 6 * a + b`` of the 6x6 transformed tile the ``gemm`` layout of the 1x1
    problem ``U_xi[oc][ic] = (G weight[oc, ic] G^T)[a][b]`` with a zero bias (G: see
    ``WINOGRAD_G`` and ``kernels/src/winograd.c``).
"""

import numpy as np

BLOCK = 16
ALIGN = 64


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def is_depthwise(in_c: int, out_c: int, groups: int) -> bool:
    """True iff the conv uses the ``dwconv`` layout (``groups == in_c == out_c``)."""
    return groups == in_c == out_c


def conv2d_packed_nbytes(out_c: int, in_c: int, kh: int, kw: int, groups: int = 1) -> int:
    """Byte size of ``pack_conv2d``'s result (equals C's ``txk_conv2d_packed_size``)."""
    if is_depthwise(in_c, out_c, groups):
        return _ceil_div(out_c, BLOCK) * BLOCK * (1 + kh * kw) * 4
    ocg, icg = out_c // groups, in_c // groups
    return groups * _ceil_div(ocg, BLOCK) * BLOCK * (1 + kh * kw * icg) * 4


# Winograd F(4x4, 3x3) weight transform, as in kernels/src/winograd.c: interpolation points
# 0, -1, 1, 1/2, -2 and infinity (Lavin & Gray's 0, +-1, +-2 mixed with 1/2: about a third of
# their float32 error, after Barabasz et al. 2020).
WINOGRAD_G = np.array(
    [
        [1, 0, 0],
        [-1 / 3, 1 / 3, -1 / 3],
        [1 / 3, 1 / 3, 1 / 3],
        [-16 / 15, -8 / 15, -4 / 15],
        [1 / 15, -2 / 15, 4 / 15],
        [0, 0, 1],
    ],
    dtype=np.float64,
)


def winograd_packed_nbytes(out_c: int, in_c: int) -> int:
    """Byte size of ``pack_conv2d_winograd``'s result (C's ``txk_conv2d_packed_size`` with
    ``algo = TXK_CONV_WINOGRAD``)."""
    ocp = _ceil_div(out_c, BLOCK) * BLOCK
    return (ocp + 36 * ocp * (1 + in_c)) * 4


def pack_conv2d_winograd(weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Pack a 3x3 conv weight ``[out_c, in_c, 3, 3]`` (+ bias) in the ``winograd`` layout."""
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4 or weight.shape[2:] != (3, 3):
        raise ValueError(f"winograd needs a [oc, ic, 3, 3] weight, got shape {weight.shape}")
    out_c, in_c = weight.shape[:2]
    ocp = _ceil_div(out_c, BLOCK) * BLOCK
    b = np.zeros(ocp, np.float32)
    if bias is not None:
        b[:out_c] = np.asarray(bias, dtype=np.float32).reshape(-1)
    g = WINOGRAD_G
    u = np.einsum("ay,oiyx,bx->aboi", g, weight, g).reshape(36, out_c, in_c)
    # 36 groups of a 1x1 conv [oc][ic]: the gemm layout of groups = 36
    gemm = pack_conv2d(u.reshape(36 * out_c, in_c, 1, 1).astype(np.float32), None, groups=36)
    return np.ascontiguousarray(np.concatenate([b, gemm]))


def linear_packed_nbytes(out_features: int, in_features: int) -> int:
    """Byte size of ``pack_linear``'s result (equals C's ``txk_linear_packed_size``)."""
    return conv2d_packed_nbytes(out_features, in_features, 1, 1, 1)


def packed_alignment() -> int:
    """Required alignment in bytes of every packed weight buffer (and scratch)."""
    return ALIGN


def pack_conv2d(weight: np.ndarray, bias: np.ndarray | None, groups: int = 1) -> np.ndarray:
    """Pack a PyTorch conv weight ``[out_c, in_c // groups, kh, kw]`` (+ bias ``[out_c]``).

    Returns a 1-D float32 array in the ``dwconv`` layout when ``groups == in_c == out_c``,
    else in the ``gemm`` layout (see the module docstring).
    """
    weight = np.asarray(weight, dtype=np.float32)
    if weight.ndim != 4:
        raise ValueError(f"conv weight must be 4-D [oc, ic/g, kh, kw], got shape {weight.shape}")
    out_c, icg, kh, kw = weight.shape
    if groups < 1 or out_c % groups:
        raise ValueError(f"groups={groups} must divide out_c={out_c}")
    in_c = icg * groups
    if bias is None:
        bias = np.zeros(out_c, np.float32)
    bias = np.asarray(bias, dtype=np.float32).reshape(-1)
    if bias.shape[0] != out_c:
        raise ValueError(f"bias has {bias.shape[0]} entries, expected {out_c}")
    if is_depthwise(in_c, out_c, groups):
        nb = _ceil_div(out_c, BLOCK)
        cp = nb * BLOCK
        w = np.zeros((cp, kh, kw), np.float32)
        w[:out_c] = weight[:, 0]
        b = np.zeros(cp, np.float32)
        b[:out_c] = bias
        # [cb][j][kh][kw] -> [cb][kh][kw][j]
        w = w.reshape(nb, BLOCK, kh * kw).transpose(0, 2, 1)
        out = np.concatenate([b.reshape(nb, 1, BLOCK), w], axis=1)
        return np.ascontiguousarray(out.reshape(-1))
    ocg = out_c // groups
    nb = _ceil_div(ocg, BLOCK)
    ocp = nb * BLOCK
    k = kh * kw * icg
    w = np.zeros((groups, ocp, kh, kw, icg), np.float32)
    # [oc][ic][kh][kw] -> [g][ocg][kh][kw][ic]
    w[:, :ocg] = weight.reshape(groups, ocg, icg, kh, kw).transpose(0, 1, 3, 4, 2)
    b = np.zeros((groups, ocp), np.float32)
    b[:, :ocg] = bias.reshape(groups, ocg)
    # [g][nb][j][k] -> [g][nb][k][j]
    w = w.reshape(groups, nb, BLOCK, k).transpose(0, 1, 3, 2)
    out = np.concatenate([b.reshape(groups, nb, 1, BLOCK), w], axis=2)
    return np.ascontiguousarray(out.reshape(-1))


def pack_linear(weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Pack a PyTorch linear weight ``[out_features, in_features]`` (+ bias) in the gemm layout.

    Identical to ``pack_conv2d(weight[:, :, None, None], bias)``.
    """
    weight = np.asarray(weight, dtype=np.float32)
    if weight.ndim != 2:
        raise ValueError(f"linear weight must be 2-D [out, in], got shape {weight.shape}")
    return pack_conv2d(weight[:, :, None, None], bias, 1)


def aligned_offset(offset: int) -> int:
    """Round a byte offset up to the packed-buffer alignment (for laying out a weights file)."""
    return _ceil_div(offset, ALIGN) * ALIGN
