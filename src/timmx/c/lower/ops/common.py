"""Helpers shared by the op families."""

import itertools

from timmx.c.lower.ir import Ref


def shape_of(val) -> tuple[int, ...]:
    """The static shape of a node's fake-tensor value."""
    return tuple(int(s) for s in val.shape)


def pair(v, default=0) -> tuple[int, int]:
    """An (h, w) pair from an int, a 1- or 2-list, or None / [] (``default``)."""
    if v is None or (isinstance(v, list | tuple) and len(v) == 0):
        return (default, default)
    if isinstance(v, int):
        return (v, v)
    if len(v) == 1:
        return (int(v[0]), int(v[0]))
    return (int(v[0]), int(v[1]))


def merged_stride(shape, strides) -> int | None:
    """The stride of dims ``shape`` merged into one (None if not mergeable); 1 for empty."""
    dims = [(n, s) for n, s in zip(shape, strides, strict=True) if n != 1]
    if not dims:
        return 1 if not shape else (strides[-1] if strides else 1) or 1
    for (_n0, s0), (n1, s1) in itertools.pairwise(dims):
        if s0 != n1 * s1:
            return None
    return dims[-1][1]


def flatten_refs(x):
    """Every Ref in a nest of lists and tuples."""
    if isinstance(x, Ref):
        yield x
    elif isinstance(x, list | tuple):
        for v in x:
            yield from flatten_refs(v)
