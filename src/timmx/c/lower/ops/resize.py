"""2-D resizes (nearest, bilinear, bicubic) as two GEMMs with constant matrices."""

from typing import TYPE_CHECKING

from timmx.c.lower.ir import Ref, nhwc_strides
from timmx.c.lower.ops.common import shape_of
from timmx.c.lower.ops.matmul import bmm_refs
from timmx.c.lower.registry import handles

if TYPE_CHECKING:
    from timmx.c.lower.capture import Lowering


@handles(
    "aten.upsample_nearest2d.vec",
    "aten.upsample_nearest2d.default",
    "aten._upsample_nearest_exact2d.vec",
    "aten._upsample_nearest_exact2d.default",
    "aten.upsample_bilinear2d.vec",
    "aten.upsample_bilinear2d.default",
    "aten.upsample_bicubic2d.vec",
    "aten.upsample_bicubic2d.default",
    "aten._upsample_bilinear2d_aa.vec",
    "aten._upsample_bilinear2d_aa.default",
    "aten._upsample_bicubic2d_aa.vec",
    "aten._upsample_bicubic2d_aa.default",
)
def upsample(low: "Lowering", node, args, kwargs, val):
    """Separable resize (nearest, bilinear, bicubic) as two GEMMs with constant matrices.

    The interpolation matrices are taken from PyTorch itself (the op applied to one-hot
    images), so every mode, scale and ``align_corners`` matches exactly. The H pass is
    ``Rh[OH][H] @ x[n][H][W*C]`` and the W pass ``Rw[OW][W] @ t[n*OH][W][C]`` on NHWC data.
    """
    import torch

    x = low.nhwc(low.runtime(args[0]), allow_pixel_stride=False)
    n, c, h, w = x.shape
    oh, ow = shape_of(val)[2:]

    def matrix(axis: int, size: int) -> torch.Tensor:
        basis = torch.zeros(1, size, h, w)
        idx = torch.arange(size)
        if axis == 2:
            basis[0, idx, idx, :] = 1.0
            out = node.target(basis, *args[1:], **kwargs)[0, :, :, 0]
        else:
            basis[0, idx, :, idx] = 1.0
            out = node.target(basis, *args[1:], **kwargs)[0, :, 0, :]
        return out.t().contiguous().float()  # [out][in]

    def gemm(mat: torch.Tensor, b: Ref, batch: int, rows_out: int) -> Ref:
        a = low.runtime(low.const(mat))
        a3 = Ref(shape=(batch, *a.shape), strides=(0, *a.strides), buf=a.buf, offset=a.offset)
        return bmm_refs(low, a3, b)

    y = x
    if oh != h or not torch.equal(matrix(2, h), torch.eye(h)):
        b = Ref(shape=(n, h, w * c), strides=(h * w * c, w * c, 1), buf=x.buf, offset=x.offset)
        t = gemm(matrix(2, h), b, n, oh)
        y = Ref(shape=(n, c, oh, w), strides=nhwc_strides((n, c, oh, w)), buf=t.buf, offset=0)
    if ow != w or not torch.equal(matrix(3, w), torch.eye(w)):
        b = Ref(shape=(n * oh, w, c), strides=(w * c, c, 1), buf=y.buf, offset=y.offset)
        t = gemm(matrix(3, w), b, n * oh, ow)
        y = Ref(shape=(n, c, oh, ow), strides=nhwc_strides((n, c, oh, ow)), buf=t.buf, offset=0)
    return y
