"""Ops that move data: concatenation, constant padding and gathers."""

from typing import TYPE_CHECKING

from timmx.c.lower.ir import (
    Ref,
    StepKind,
    contiguous_strides,
    dense_order,
    nhwc_strides,
    strides_for_order,
)
from timmx.c.lower.ops.common import flatten_refs, shape_of
from timmx.c.lower.registry import handles

if TYPE_CHECKING:
    from timmx.c.lower.capture import Lowering


@handles("aten.cat.default")
def cat(low: "Lowering", node, args, kwargs, val):
    """Concatenate by copying each input into its slice of the output."""
    tensors = [t for t in args[0] if t.numel > 0 or len(t.shape) > 1]
    dim = int(args[1]) if len(args) > 1 else int(kwargs.get("dim", 0))
    out_shape = shape_of(val)
    dim %= len(out_shape)
    first = next((t for t in tensors if t.const is None), tensors[0])
    strides = (
        nhwc_strides(out_shape)
        if len(out_shape) == 4
        else (
            strides_for_order(out_shape, dense_order(first))
            if first.const is None
            else contiguous_strides(out_shape)
        )
    )
    y = low.new_ref(out_shape, strides)
    start = 0
    for t in tensors:
        size = t.shape[dim]
        if size == 0:
            continue
        part = Ref(
            shape=t.shape,
            strides=y.strides,
            buf=y.buf,
            offset=y.offset + start * y.strides[dim],
        )
        low.emit(StepKind.COPY, [low.runtime(t)], part)
        start += size
    return y


@handles("aten.constant_pad_nd.default")
def constant_pad(low: "Lowering", node, args, kwargs, val):
    """Constant padding: fill, then copy the input inside (fused into a following conv)."""
    x = low.runtime(args[0])
    pad = list(args[1])
    value = float(args[2]) if len(args) > 2 else float(kwargs.get("value", 0.0))
    out_shape = shape_of(val)
    if any(p < 0 for p in pad):
        low.fail("negative padding (cropping)")
    strides = low.dense_like(x, out_shape)
    y = low.new_ref(out_shape, strides)
    offset = 0
    for i in range(len(pad) // 2):
        d = x.ndim - 1 - i
        offset += pad[2 * i] * strides[d]
    inner = Ref(shape=x.shape, strides=strides, buf=y.buf, offset=offset)
    low.emit(StepKind.PAD, [x], y, value=value, inner=inner, pad=pad)
    return y


def _offsets(x: Ref):
    """An int64 tensor of ``x``'s shape holding each element's offset in its buffer."""
    import torch

    pos = torch.full(x.shape, x.offset, dtype=torch.int64)
    for d, (n, st) in enumerate(zip(x.shape, x.strides, strict=True)):
        view = [1] * x.ndim
        view[d] = n
        pos = pos + torch.arange(n, dtype=torch.int64).reshape(view) * st
    return pos


def _affine_view(x: Ref, offsets) -> Ref | None:
    """The strided view of ``x``'s buffer whose element offsets are ``offsets``, or None."""
    import torch

    shape = tuple(int(n) for n in offsets.shape)
    if offsets.numel() == 0:
        return None
    base = int(offsets.reshape(-1)[0])
    strides = []
    expect = torch.full(shape, base, dtype=torch.int64)
    for d, n in enumerate(shape):
        if n == 1:
            strides.append(0)
            continue
        index = [0] * len(shape)
        index[d] = 1
        st = int(offsets[tuple(index)]) - base
        if st < 0:
            return None
        strides.append(st)
        view = [1] * len(shape)
        view[d] = n
        expect = expect + torch.arange(n, dtype=torch.int64).reshape(view) * st
    if not torch.equal(expect, offsets):
        return None
    return Ref(shape=shape, strides=tuple(strides), buf=x.buf, offset=base)


@handles("aten.index.Tensor", "aten._unsafe_index.Tensor", "aten.index_select.default")
def index(low: "Lowering", node, args, kwargs, val):
    """Indexing with constant indices that pick a strided view (e.g. unfold into patches)."""
    x = args[0]
    rest = args[1:]
    for r in flatten_refs(rest):
        if r.const is None:
            low.fail("indexing with indices computed at run time")
    x = low.runtime(x)

    def const_of(a):
        if isinstance(a, Ref):
            return a.const
        if isinstance(a, list | tuple):
            return type(a)(const_of(v) for v in a)
        return a

    consts = const_of(rest)
    view = _affine_view(x, node.target(_offsets(x), *consts))
    if view is not None:
        return view
    picked = _one_dim_index(node, x, consts)
    if picked is None:
        low.fail("a gather that is not a strided view of its input")
    dim, idx = picked
    runs = _runs(idx)
    if len(runs) > 16:
        low.fail(f"a gather along dim {dim} in {len(runs)} pieces")
    out_shape = shape_of(val)
    y = low.new_ref(out_shape, low.dense_like(x, out_shape))
    for start, first, length, step in runs:  # e.g. torch.roll (Swin): two slices per dim
        src_shape = list(x.shape)
        src_shape[dim] = length
        src_strides = list(x.strides)
        src_strides[dim] = x.strides[dim] * step
        src = Ref(
            shape=tuple(src_shape),
            strides=tuple(src_strides),
            buf=x.buf,
            offset=x.offset + first * x.strides[dim],
        )
        dst = Ref(
            shape=tuple(src_shape),
            strides=y.strides,
            buf=y.buf,
            offset=y.offset + start * y.strides[dim],
        )
        low.emit(StepKind.COPY, [src], dst)
    return y


def _one_dim_index(node, x: Ref, consts) -> tuple[int, list[int]] | None:
    """(dim, indices) when the op picks along one dim with a 1-D index, else None."""
    if str(node.target) == "aten.index_select.default":
        dim, index = int(consts[0]) % x.ndim, consts[1]
    else:
        given = [(d, t) for d, t in enumerate(consts[0]) if t is not None]
        if len(given) != 1:
            return None
        dim, index = given[0]
    if index.ndim != 1 or index.dtype.is_floating_point or index.dtype == _bool_dtype():
        return None
    n = x.shape[dim]
    return dim, [int(i) % n for i in index.tolist()]


def _bool_dtype():
    import torch

    return torch.bool


def _runs(idx: list[int]) -> list[tuple[int, int, int, int]]:
    """Split indices into arithmetic runs: (output start, first index, length, step >= 0)."""
    runs: list[tuple[int, int, int, int]] = []
    i = 0
    while i < len(idx):
        step = idx[i + 1] - idx[i] if i + 1 < len(idx) else 1
        if step < 0:
            step = 1
        j = i + 1
        while j < len(idx) and idx[j] - idx[j - 1] == step:
            j += 1
        runs.append((i, idx[i], j - i, step if j - i > 1 else 1))
        i = j
    return runs
