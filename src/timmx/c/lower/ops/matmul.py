"""Matrix products: linear layers (constant weights) and batched matmuls."""

from typing import TYPE_CHECKING

from timmx.c.lower.ir import Ref, StepKind, contiguous_strides
from timmx.c.lower.ops.common import shape_of
from timmx.c.lower.registry import handles

if TYPE_CHECKING:
    from timmx.c.lower.capture import Lowering


def linear(low: "Lowering", a: Ref, weight, bias) -> Ref:
    """y[M][N] = a[M][K] @ weight[N][K]^T + bias."""
    m, k = a.shape
    if not (a.strides[1] == 1 or k == 1) or (m > 1 and a.strides[0] < k):
        a = low.materialize(a, contiguous_strides(a.shape))
    a = low.runtime(a)
    n = int(weight.shape[0])
    y = low.new_ref((m, n))
    low.emit(
        StepKind.LINEAR,
        [a],
        y,
        weight=weight.detach().float(),
        bias=None if bias is None else bias.detach().float().reshape(-1),
        act="NONE",
        act_min=0.0,
        act_max=0.0,
        residual_mode="NONE",
        residual=None,
    )
    return y


@handles("aten.addmm.default")
def addmm(low: "Lowering", node, args, kwargs, val):
    """bias + a @ B: a linear layer when B is a constant."""
    bias, a, b = args[:3]
    beta = kwargs.get("beta", 1)
    alpha = kwargs.get("alpha", 1)
    if b.const is not None and bias.const is not None and bias.numel == b.shape[1]:
        w = b.const.t() * alpha
        return linear(low, a, w, bias.const.reshape(-1) * beta)
    y = mm(low, node, [a, b], {}, val)
    if alpha != 1:
        y = low.unary(y, "AFFINE", alpha, 0.0)
    if beta != 1:
        bias = (
            low.unary(bias, "AFFINE", beta, 0.0)
            if bias.const is None
            else low.const(bias.const * beta)
        )
    return low.binary_refs("ADD", y, bias, shape_of(val))


@handles("aten.mm.default")
def mm(low: "Lowering", node, args, kwargs, val):
    """a @ b: a linear layer for constant b, else a batch-1 bmm."""
    a, b = args[:2]
    if b.const is not None and a.const is None:
        return linear(low, a, b.const.t(), None)
    a3 = Ref(shape=(1, *a.shape), strides=(0, *a.strides), buf=a.buf, offset=a.offset, const=None)
    b3 = Ref(shape=(1, *b.shape), strides=(0, *b.strides), buf=b.buf, offset=b.offset, const=None)
    if a.const is not None:
        a3 = low.runtime(a)
        a3 = Ref(shape=(1, *a3.shape), strides=(0, *a3.strides), buf=a3.buf, offset=a3.offset)
    if b.const is not None:
        b3 = low.runtime(b)
        b3 = Ref(shape=(1, *b3.shape), strides=(0, *b3.strides), buf=b3.buf, offset=b3.offset)
    y = bmm_refs(low, a3, b3)
    return Ref(shape=y.shape[1:], strides=y.strides[1:], buf=y.buf, offset=y.offset)


def bmm_refs(low: "Lowering", a: Ref, b: Ref, alpha: float = 1.0) -> Ref:
    a = low.runtime(a)
    b = low.runtime(b)
    batch, m, _k = a.shape
    n = b.shape[2]
    y = low.new_ref((batch, m, n))
    low.emit(StepKind.BMM, [a, b], y, alpha=float(alpha))
    return y


@handles("aten.bmm.default")
def bmm(low: "Lowering", node, args, kwargs, val):
    """Batched matmul on strided operands (attention)."""
    return bmm_refs(low, args[0], args[1])
