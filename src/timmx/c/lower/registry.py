"""The op registry: aten op name -> the function that lowers it.

The op families (``timmx.c.lower.ops.*``) register their functions with :func:`handles` when
they are imported; ``capture`` imports the ``ops`` package once and looks ops up here.
A lowering function is called as ``fn(low, node, args, kwargs, val)`` with the
:class:`~timmx.c.lower.capture.Lowering`, the FX node, its resolved args and kwargs and the
node's fake-tensor value, and returns the op's value (a ``Ref``, or a tuple for multi-output ops).
"""

from collections.abc import Callable

Handler = Callable[..., object]

HANDLERS: dict[str, Handler] = {}


def handles(*names: str) -> Callable[[Handler], Handler]:
    """Register a lowering function for the named aten ops."""

    def deco(fn: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = fn
        return fn

    return deco
