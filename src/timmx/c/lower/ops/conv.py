"""Convolutions (Conv2d, and Conv1d as a 1-pixel-high Conv2d)."""

from typing import TYPE_CHECKING

from timmx.c.lower.ir import Ref, StepKind, nhwc_strides
from timmx.c.lower.ops.common import pair, shape_of
from timmx.c.lower.registry import handles

if TYPE_CHECKING:
    from timmx.c.lower.capture import Lowering


@handles("aten.convolution.default")
def conv(low: "Lowering", node, args, kwargs, val):
    """Conv2d (dense / grouped / depthwise / 1x1 / patchify); weights must be constants."""
    x, w, b, stride, padding, dilation, transposed, _out_pad, groups = args[:9]
    if transposed:
        low.fail("transposed convolution")
    if w.const is None:
        low.fail("convolution with weights computed at run time")
    if x.ndim not in (3, 4):
        low.fail(f"convolution of a {x.ndim}-D tensor")
    if b is not None and b.const is None:
        low.fail("convolution with a bias computed at run time")
    weight = w.const.detach().float()
    bias = b.const.detach().float() if b is not None else None
    out_shape = shape_of(val)
    one_d = x.ndim == 3
    if one_d:  # Conv1d (e.g. ECA attention) as a Conv2d over a 1-pixel-high image
        x = low.runtime(x)
        x = Ref(
            shape=(x.shape[0], x.shape[1], 1, x.shape[2]),
            strides=(x.strides[0], x.strides[1], 0, x.strides[2]),
            buf=x.buf,
            offset=x.offset,
        )
        weight = weight.unsqueeze(2)
        out_shape = (out_shape[0], out_shape[1], 1, out_shape[2])
        stride, padding, dilation = ([1, *stride], [0, *padding], [1, *dilation])
    x = low.nhwc(x)
    y = low.new_ref(out_shape, nhwc_strides(out_shape))
    sh, sw = pair(stride, 1)
    ph, pw = pair(padding, 0)
    dh, dw = pair(dilation, 1)
    low.emit(
        StepKind.CONV,
        [x],
        y,
        weight=weight,
        bias=bias,
        stride=(sh, sw),
        pad=[ph, pw, ph, pw],  # top, left, bottom, right
        dilation=(dh, dw),
        groups=int(groups),
        act="NONE",
        act_min=0.0,
        act_max=0.0,
        residual_mode="NONE",
        residual=None,
    )
    if one_d:
        return Ref(
            shape=(y.shape[0], y.shape[1], y.shape[3]),
            strides=(y.strides[0], y.strides[1], y.strides[3]),
            buf=y.buf,
            offset=y.offset,
        )
    return y
