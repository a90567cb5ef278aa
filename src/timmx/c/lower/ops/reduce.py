"""Reductions over any dims, and the vector norm built on them."""

from typing import TYPE_CHECKING

from timmx.c.lower.ir import Ref, StepKind, dense_order, pixel_stride, strides_for_order
from timmx.c.lower.ops.common import shape_of
from timmx.c.lower.registry import handles

if TYPE_CHECKING:
    from timmx.c.lower.capture import Lowering


REDUCE = {
    "aten.mean.dim": "MEAN",
    "aten.sum.dim_IntList": "SUM",
    "aten.amax.default": "MAX",
    "aten.amin.default": "MIN",
    "aten.var.correction": "VAR",
    "aten.mean.default": "MEAN",
    "aten.sum.default": "SUM",
}


@handles(*REDUCE)
def reduce(low: "Lowering", node, args, kwargs, val):
    """Reductions over any dims; NHWC global average pools use the fast kernel."""
    name = str(node.target)
    op = REDUCE[name]
    x = low.runtime(args[0])
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    if dims is None or (isinstance(dims, list | tuple) and len(dims) == 0):
        dims = list(range(x.ndim))
    if isinstance(dims, int):
        dims = [dims]
    dims = sorted({int(d) % x.ndim for d in dims})
    keepdim = bool(kwargs.get("keepdim", args[2] if len(args) > 2 else False))
    correction = 1.0
    if op == "VAR":
        correction = kwargs.get("correction")
        correction = 1.0 if correction is None else float(correction)
        keepdim = bool(kwargs.get("keepdim", False))
    if kwargs.get("dtype") not in (None,):
        import torch

        if kwargs["dtype"] != torch.float32:
            low.fail(f"reduction with dtype {kwargs['dtype']}")
    out_shape = shape_of(val)
    kept = [d for d in range(x.ndim) if d not in dims]
    if op == "MEAN" and x.ndim == 4 and dims == [2, 3] and pixel_stride(x) == x.shape[1]:
        y = low.new_ref(out_shape)
        low.emit(StepKind.GLOBAL_AVGPOOL, [x], y)
        return y
    # output: dense in the input's order of the kept dims
    order = [d for d in dense_order(x) if d in kept]
    kept_shape = tuple(x.shape[d] for d in kept)
    pos = {d: i for i, d in enumerate(kept)}
    kstrides = strides_for_order(kept_shape, tuple(pos[d] for d in order))
    buf_ref = low.new_ref(kept_shape, kstrides)
    low.emit(
        StepKind.REDUCE,
        [x],
        buf_ref,
        op=op,
        p0=correction,
        kept=kept,
        rdims=dims,
    )
    if keepdim:
        strides = []
        for d in range(x.ndim):
            strides.append(kstrides[pos[d]] if d in pos else 0)
        return Ref(shape=out_shape, strides=tuple(strides), buf=buf_ref.buf, offset=0)
    return buf_ref


@handles("aten.linalg_vector_norm.default")
def vector_norm(low: "Lowering", node, args, kwargs, val):
    """The L2 (or L1) norm over dims: sqrt(sum(x * x)) (XCiT, F.normalize)."""
    from types import SimpleNamespace

    x = low.runtime(args[0])
    ord_ = float(args[1] if len(args) > 1 else kwargs.get("ord", 2))
    dims = args[2] if len(args) > 2 else kwargs.get("dim")
    keepdim = bool(args[3] if len(args) > 3 else kwargs.get("keepdim", False))
    if kwargs.get("dtype") is not None:
        low.fail("vector norm with a dtype")
    if ord_ not in (1.0, 2.0):
        low.fail(f"vector norm of order {ord_}")
    t = low.unary(x, "ABS") if ord_ == 1.0 else low.binary_refs("MUL", x, x, x.shape)
    total = reduce(low, SimpleNamespace(target="aten.sum.dim_IntList"), [t, dims, keepdim], {}, val)
    return total if ord_ == 1.0 else low.unary(total, "SQRT")
