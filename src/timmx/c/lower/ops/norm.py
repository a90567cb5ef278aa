"""Normalisations and softmax: BatchNorm (as scale and shift), LayerNorm, GroupNorm."""

import math
from typing import TYPE_CHECKING

from timmx.c.lower.ir import (
    Ref,
    StepKind,
    dense_order,
    nhwc_strides,
    strides_for_order,
)
from timmx.c.lower.ops.common import merged_stride
from timmx.c.lower.registry import handles

if TYPE_CHECKING:
    from timmx.c.lower.capture import Lowering


@handles("aten._native_batch_norm_legit_no_training.default")
def batch_norm(low: "Lowering", node, args, kwargs, val):
    """Inference BatchNorm as a per-channel scale and shift (folded into convs by a pass)."""
    import torch

    x, weight, bias, mean, var, _momentum, eps = args[:7]
    for name, r in (("weight", weight), ("bias", bias), ("mean", mean), ("var", var)):
        if r is not None and r.const is None:
            low.fail(f"batch norm with a {name} computed at run time")
    c = x.shape[1]
    inv = torch.rsqrt(var.const.double() + float(eps))
    scale = inv * (weight.const.double() if weight is not None else 1.0)
    shift = (bias.const.double() if bias is not None else 0.0) - mean.const.double() * scale
    bshape = (c,) + (1,) * (x.ndim - 2)
    shape = tuple(x.shape)
    y = low.binary_refs("MUL", x, low.const(scale.float().reshape(bshape)), shape)
    y = low.binary_refs("ADD", y, low.const(shift.float().reshape(bshape)), shape)
    return (y, None, None)


@handles("aten.native_layer_norm.default")
def layer_norm(low: "Lowering", node, args, kwargs, val):
    """LayerNorm over the trailing dims, which must be one contiguous run of floats."""
    x, normalized_shape, weight, bias, eps = args[:5]
    for name, r in (("weight", weight), ("bias", bias)):
        if r is not None and r.const is None:
            low.fail(f"layer norm with a {name} computed at run time")
    k = len(normalized_shape)
    c = math.prod(x.shape[x.ndim - k :])
    x = low.runtime(x)
    # the rows in x's memory order, so that they merge into one stride; y takes the same order
    # (rows taken in the logical order over a permuted layout once paired x's row i with
    # another row of y: MobileViT's unfolded patches)
    row_dims = [d for d in dense_order(x) if d < x.ndim - k]
    order = (*row_dims, *range(x.ndim - k, x.ndim))
    rows_shape = tuple(x.shape[d] for d in row_dims)
    inner_ok = merged_stride(x.shape[x.ndim - k :], x.strides[x.ndim - k :]) == 1
    row_stride = merged_stride(rows_shape, tuple(x.strides[d] for d in row_dims))
    if not inner_ok or row_stride is None or (math.prod(rows_shape) > 1 and row_stride < c):
        x = low.materialize(x, strides_for_order(x.shape, order))
        row_stride = merged_stride(rows_shape, tuple(x.strides[d] for d in row_dims))
    rows = math.prod(rows_shape)
    y = low.new_ref(x.shape, strides_for_order(x.shape, order))
    gamma = weight.const.reshape(-1) if weight is not None else None
    beta = bias.const.reshape(-1) if bias is not None else None
    low.emit(
        StepKind.LAYERNORM,
        [x],
        y,
        rows=rows,
        c=c,
        x_stride=row_stride or c,
        y_stride=c,
        gamma=None if gamma is None else low.runtime(low.const(gamma.float())),
        beta=None if beta is None else low.runtime(low.const(beta.float())),
        eps=float(eps),
    )
    return (y, None, None)


@handles("aten.native_group_norm.default")
def group_norm(low: "Lowering", node, args, kwargs, val):
    """GroupNorm on an NHWC tensor."""
    x, weight, bias, n, c, hw, groups, eps = args[:8]
    if x.ndim != 4:
        x4 = Ref(
            shape=(*x.shape, *(1,) * (4 - x.ndim)),
            strides=(*x.strides, *(1,) * (4 - x.ndim)),
            buf=x.buf,
            offset=x.offset,
            const=x.const,
        )
        if x.ndim > 4:
            low.fail("group norm of a tensor with more than 4 dims")
    else:
        x4 = x
    x4 = low.materialize(low.runtime(x4), nhwc_strides(x4.shape))
    y = low.new_ref(x4.shape, nhwc_strides(x4.shape))
    low.emit(
        StepKind.GROUPNORM,
        [x4],
        y,
        n=int(n),
        hw=int(hw),
        c=int(c),
        groups=int(groups),
        gamma=None if weight is None else low.runtime(low.const(weight.const.float())),
        beta=None if bias is None else low.runtime(low.const(bias.const.float())),
        eps=float(eps),
    )
    if x.ndim != 4:
        y = Ref(shape=x.shape, strides=y.strides[: x.ndim], buf=y.buf, offset=0)
    return (y, None, None)


@handles("aten._softmax.default")
def softmax(low: "Lowering", node, args, kwargs, val):
    """Softmax along one dim, made the innermost one."""
    x, dim = args[0], int(args[1])
    x = low.runtime(x)
    dim = dim % x.ndim
    others = [d for d in dense_order(x) if d != dim]
    order = tuple([*others, dim])
    rows_shape = tuple(x.shape[d] for d in others)
    rs = merged_stride(rows_shape, tuple(x.strides[d] for d in others))
    if (
        not (x.strides[dim] == 1 or x.shape[dim] == 1)
        or rs is None
        or (math.prod(rows_shape) > 1 and rs < x.shape[dim])
    ):
        x = low.materialize(x, strides_for_order(x.shape, order))
        rs = merged_stride(rows_shape, tuple(x.strides[d] for d in others))
    y = low.new_ref(x.shape, strides_for_order(x.shape, order))
    low.emit(
        StepKind.SOFTMAX,
        [x],
        y,
        rows=math.prod(rows_shape),
        c=x.shape[dim],
        x_stride=rs or x.shape[dim],
        y_stride=x.shape[dim],
    )
    return y
