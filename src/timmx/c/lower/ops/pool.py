"""2-D pooling: max, average, adaptive and global average."""

from typing import TYPE_CHECKING

from timmx.c.lower.ir import StepKind, nhwc_strides
from timmx.c.lower.ops.common import pair, shape_of
from timmx.c.lower.registry import handles

if TYPE_CHECKING:
    from timmx.c.lower.capture import Lowering


@handles("aten.max_pool2d_with_indices.default", "aten.max_pool2d.default")
def max_pool(low: "Lowering", node, args, kwargs, val):
    """Max pool (values only)."""
    x = low.nhwc(args[0])
    k = pair(args[1])
    s = pair(args[2] if len(args) > 2 and args[2] else None, 0)
    if s == (0, 0):
        s = k
    p = pair(args[3] if len(args) > 3 else 0)
    d = pair(args[4] if len(args) > 4 else 1, 1)
    out_shape = shape_of(val[0] if isinstance(val, list | tuple) else val)
    y = low.new_ref(out_shape, nhwc_strides(out_shape))
    low.emit(StepKind.MAXPOOL, [x], y, k=k, s=s, p=p, d=d)
    return (y, None) if "indices" in str(node.target) else y


@handles("aten.avg_pool2d.default")
def avg_pool(low: "Lowering", node, args, kwargs, val):
    """Average pool with PyTorch's ceil-mode and count_include_pad semantics."""
    x = low.nhwc(args[0])
    k = pair(args[1])
    s = pair(args[2] if len(args) > 2 and args[2] else None, 0)
    if s == (0, 0):
        s = k
    p = pair(args[3] if len(args) > 3 else 0)
    count_include_pad = bool(args[5]) if len(args) > 5 else True
    divisor = args[6] if len(args) > 6 else None
    out_shape = shape_of(val)
    y = low.new_ref(out_shape, nhwc_strides(out_shape))
    low.emit(
        StepKind.AVGPOOL,
        [x],
        y,
        k=k,
        s=s,
        p=p,
        d=(1, 1),
        count_include_pad=count_include_pad,
        divisor=int(divisor or 0),
    )
    return y


@handles("aten._adaptive_avg_pool2d.default")
def adaptive_avg_pool(low: "Lowering", node, args, kwargs, val):
    """Adaptive average pool (global when the output is 1x1)."""
    x = low.nhwc(args[0], allow_pixel_stride=False)
    out_shape = shape_of(val)
    y = low.new_ref(out_shape, nhwc_strides(out_shape))
    if out_shape[2:] == (1, 1):
        low.emit(StepKind.GLOBAL_AVGPOOL, [x], y)
    else:
        low.emit(StepKind.ADAPTIVE_AVGPOOL, [x], y)
    return y
