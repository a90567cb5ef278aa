"""Elementwise ops: activations, clamps, powers and the unary / binary tables."""

import math
from typing import TYPE_CHECKING

from timmx.c.lower.ir import Ref
from timmx.c.lower.registry import handles

if TYPE_CHECKING:
    from timmx.c.lower.capture import Lowering

# aten unary ops that are one txk_unary / txg_unary op (TXK_ACT_* when contiguous, else TXG_*)
UNARY_OPS = {
    "aten.relu.default": "RELU",
    "aten.sigmoid.default": "SIGMOID",
    "aten.tanh.default": "TANH",
    "aten.silu.default": "SILU",
    "aten.hardswish.default": "HARDSWISH",
    "aten.hardsigmoid.default": "HARDSIGMOID",
    "aten.sqrt.default": "SQRT",
    "aten.rsqrt.default": "RSQRT",
    "aten.exp.default": "EXP",
    "aten.log.default": "LOG",
    "aten.neg.default": "NEG",
    "aten.abs.default": "ABS",
    "aten.reciprocal.default": "RECIPROCAL",
    "aten.erf.default": "ERF",
    "aten.floor.default": "FLOOR",
    "aten.ceil.default": "CEIL",
    "aten.sin.default": "SIN",
    "aten.cos.default": "COS",
    "aten.mish.default": "MISH",
}
# aten binary ops (tensor or scalar operands) -> TXK_BIN_* / TXG_* op
BINARY_OPS = {
    "aten.add.Tensor": "ADD",
    "aten.add.Scalar": "ADD",
    "aten.sub.Tensor": "SUB",
    "aten.sub.Scalar": "SUB",
    "aten.mul.Tensor": "MUL",
    "aten.mul.Scalar": "MUL",
    "aten.div.Tensor": "DIV",
    "aten.div.Scalar": "DIV",
    "aten.maximum.default": "MAX",
    "aten.minimum.default": "MIN",
    "aten.pow.Tensor_Tensor": "POW",
}


@handles(*UNARY_OPS)
def unary(low: "Lowering", node, args, kwargs, val):
    """One unary op from the table."""
    return low.unary(args[0], UNARY_OPS[str(node.target)])


@handles(*BINARY_OPS)
def binary(low: "Lowering", node, args, kwargs, val):
    """A broadcasting binary op; scalars become constants, ``alpha`` scales the second."""
    import torch

    op = BINARY_OPS[str(node.target)]
    a, b = args[0], args[1]
    alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
    if kwargs.get("rounding_mode") is not None:
        low.fail("div with a rounding mode")
    if not isinstance(a, Ref):
        a = low.const(torch.tensor(float(a)))
    if not isinstance(b, Ref):
        b = low.const(torch.tensor(float(b)))
    if alpha != 1:
        if b.const is not None:
            b = low.const(b.const * alpha)
        else:
            b = low.unary(b, "AFFINE", alpha, 0.0)
    return low.binary_refs(op, a, b, tuple(int(s) for s in node.meta["val"].shape))


@handles("aten.hardtanh.default", "aten.clamp.default", "aten.clamp_min.default")
def clamp(low: "Lowering", node, args, kwargs, val):
    """Clamp / hardtanh / relu6 (a clamp without a bound uses +-inf)."""
    name = str(node.target)
    if name == "aten.hardtanh.default":
        lo = args[1] if len(args) > 1 else -1.0
        hi = args[2] if len(args) > 2 else 1.0
    elif name == "aten.clamp_min.default":
        lo, hi = args[1], None
    else:
        lo = args[1] if len(args) > 1 else kwargs.get("min")
        hi = args[2] if len(args) > 2 else kwargs.get("max")
    if isinstance(lo, Ref) or isinstance(hi, Ref):
        low.fail("clamp with tensor bounds")
    lo = -math.inf if lo is None else float(lo)
    hi = math.inf if hi is None else float(hi)
    if lo == 0.0 and hi == math.inf:
        return low.unary(args[0], "RELU")
    return low.unary(args[0], "CLAMP", lo, hi)


@handles("aten.clamp_max.default")
def clamp_max(low: "Lowering", node, args, kwargs, val):
    """Clamp from above only."""
    return low.unary(args[0], "CLAMP", -math.inf, float(args[1]))


@handles("aten.gelu.default")
def gelu(low: "Lowering", node, args, kwargs, val):
    """GELU, erf or tanh form."""
    approx = kwargs.get("approximate", args[1] if len(args) > 1 else "none")
    return low.unary(args[0], "GELU_TANH" if approx == "tanh" else "GELU")


@handles("aten.leaky_relu.default")
def leaky_relu(low: "Lowering", node, args, kwargs, val):
    """LeakyReLU."""
    slope = float(args[1]) if len(args) > 1 else 0.01
    return low.unary(args[0], "LEAKY_RELU", slope)


@handles("aten.elu.default")
def elu(low: "Lowering", node, args, kwargs, val):
    """ELU (alpha only; scale and input_scale 1)."""
    alpha = float(args[1]) if len(args) > 1 else 1.0
    if (len(args) > 2 and float(args[2]) != 1.0) or (len(args) > 3 and float(args[3]) != 1.0):
        low.fail("ELU with scale != 1")
    return low.unary(args[0], "ELU", alpha)


@handles("aten.softplus.default")
def softplus(low: "Lowering", node, args, kwargs, val):
    """Softplus with beta 1 and threshold 20."""
    beta = float(args[1]) if len(args) > 1 else 1.0
    threshold = float(args[2]) if len(args) > 2 else 20.0
    if beta != 1.0 or threshold != 20.0:
        low.fail("softplus with beta != 1 or threshold != 20")
    return low.unary(args[0], "SOFTPLUS")


@handles("aten.pow.Tensor_Scalar")
def pow_scalar(low: "Lowering", node, args, kwargs, val):
    """x ** p."""
    p = float(args[1])
    if p == 1.0:
        return args[0]
    if p == 0.5:
        return low.unary(args[0], "SQRT")
    if p == -0.5:
        return low.unary(args[0], "RSQRT")
    if p == -1.0:
        return low.unary(args[0], "RECIPROCAL")
    return low.unary(args[0], "POW_SCALAR", p)


@handles("aten.rsub.Scalar")
def rsub(low: "Lowering", node, args, kwargs, val):
    """other - alpha * x."""
    alpha = float(kwargs.get("alpha", args[2] if len(args) > 2 else 1))
    x = args[0] if alpha == 1 else low.unary(args[0], "AFFINE", alpha, 0.0)
    return low.unary(x, "RSUB", float(args[1]))
