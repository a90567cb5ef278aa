"""Lowerings of the compute ops (registered into ``capture.HANDLERS``)."""

import itertools
import math

from timmx.c.lower.capture import Lowering, handles, pixel_stride
from timmx.c.lower.ir import (
    Ref,
    contiguous_strides,
    dense_order,
    nhwc_strides,
    norm_strides,
    strides_for_order,
)


def _shape(val) -> tuple[int, ...]:
    return tuple(int(s) for s in val.shape)


def _pair(v, default=0) -> tuple[int, int]:
    if v is None or (isinstance(v, list | tuple) and len(v) == 0):
        return (default, default)
    if isinstance(v, int):
        return (v, v)
    if len(v) == 1:
        return (int(v[0]), int(v[0]))
    return (int(v[0]), int(v[1]))


@handles("aten.convolution.default")
def conv(low: Lowering, node, args, kwargs, val):
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
    out_shape = _shape(val)
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
    sh, sw = _pair(stride, 1)
    ph, pw = _pair(padding, 0)
    dh, dw = _pair(dilation, 1)
    low.emit(
        "conv",
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


@handles("aten._native_batch_norm_legit_no_training.default")
def batch_norm(low: Lowering, node, args, kwargs, val):
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


def _linear(low: Lowering, a: Ref, weight, bias) -> Ref:
    """y[M][N] = a[M][K] @ weight[N][K]^T + bias."""
    m, k = a.shape
    if not (a.strides[1] == 1 or k == 1) or (m > 1 and a.strides[0] < k):
        a = low.materialize(a, contiguous_strides(a.shape))
    a = low.runtime(a)
    n = int(weight.shape[0])
    y = low.new_ref((m, n))
    low.emit(
        "linear",
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
def addmm(low: Lowering, node, args, kwargs, val):
    """bias + a @ B: a linear layer when B is a constant."""
    bias, a, b = args[:3]
    beta = kwargs.get("beta", 1)
    alpha = kwargs.get("alpha", 1)
    if b.const is not None and bias.const is not None and bias.numel == b.shape[1]:
        w = b.const.t() * alpha
        return _linear(low, a, w, bias.const.reshape(-1) * beta)
    y = mm(low, node, [a, b], {}, val)
    if alpha != 1:
        y = low.unary(y, "AFFINE", alpha, 0.0)
    if beta != 1:
        bias = (
            low.unary(bias, "AFFINE", beta, 0.0)
            if bias.const is None
            else low.const(bias.const * beta)
        )
    return low.binary_refs("ADD", y, bias, _shape(val))


@handles("aten.mm.default")
def mm(low: Lowering, node, args, kwargs, val):
    """a @ b: a linear layer for constant b, else a batch-1 bmm."""
    a, b = args[:2]
    if b.const is not None and a.const is None:
        return _linear(low, a, b.const.t(), None)
    a3 = Ref(shape=(1, *a.shape), strides=(0, *a.strides), buf=a.buf, offset=a.offset, const=None)
    b3 = Ref(shape=(1, *b.shape), strides=(0, *b.strides), buf=b.buf, offset=b.offset, const=None)
    if a.const is not None:
        a3 = low.runtime(a)
        a3 = Ref(shape=(1, *a3.shape), strides=(0, *a3.strides), buf=a3.buf, offset=a3.offset)
    if b.const is not None:
        b3 = low.runtime(b)
        b3 = Ref(shape=(1, *b3.shape), strides=(0, *b3.strides), buf=b3.buf, offset=b3.offset)
    y = _bmm(low, a3, b3)
    return Ref(shape=y.shape[1:], strides=y.strides[1:], buf=y.buf, offset=y.offset)


def _bmm(low: Lowering, a: Ref, b: Ref, alpha: float = 1.0) -> Ref:
    a = low.runtime(a)
    b = low.runtime(b)
    batch, m, _k = a.shape
    n = b.shape[2]
    y = low.new_ref((batch, m, n))
    low.emit("bmm", [a, b], y, alpha=float(alpha))
    return y


@handles("aten.bmm.default")
def bmm(low: Lowering, node, args, kwargs, val):
    """Batched matmul on strided operands (attention)."""
    return _bmm(low, args[0], args[1])


@handles("aten.native_layer_norm.default")
def layer_norm(low: Lowering, node, args, kwargs, val):
    """LayerNorm over the trailing dims, which must be one contiguous run of floats."""
    x, normalized_shape, weight, bias, eps = args[:5]
    for name, r in (("weight", weight), ("bias", bias)):
        if r is not None and r.const is None:
            low.fail(f"layer norm with a {name} computed at run time")
    k = len(normalized_shape)
    c = math.prod(x.shape[x.ndim - k :])
    x = low.runtime(x)
    rows_shape = x.shape[: x.ndim - k]
    inner_ok = _merged_stride(x.shape[x.ndim - k :], x.strides[x.ndim - k :]) == 1
    row_stride = _merged_stride(rows_shape, x.strides[: x.ndim - k])
    if not inner_ok or row_stride is None or (math.prod(rows_shape) > 1 and row_stride < c):
        order = [d for d in dense_order(x) if d < x.ndim - k] + list(range(x.ndim - k, x.ndim))
        x = low.materialize(x, strides_for_order(x.shape, tuple(order)))
        row_stride = _merged_stride(rows_shape, x.strides[: x.ndim - k])
    rows = math.prod(rows_shape)
    y = low.new_ref(x.shape, low.dense_like(x))
    y_stride = _merged_stride(rows_shape, y.strides[: x.ndim - k])
    if y_stride is None or _merged_stride(y.shape[x.ndim - k :], y.strides[x.ndim - k :]) != 1:
        y = low.new_ref(x.shape, contiguous_strides(x.shape))
        y_stride = c
    gamma = weight.const.reshape(-1) if weight is not None else None
    beta = bias.const.reshape(-1) if bias is not None else None
    low.emit(
        "layernorm",
        [x],
        y,
        rows=rows,
        c=c,
        x_stride=row_stride or c,
        y_stride=y_stride or c,
        gamma=None if gamma is None else low.runtime(low.const(gamma.float())),
        beta=None if beta is None else low.runtime(low.const(beta.float())),
        eps=float(eps),
    )
    return (y, None, None)


def _merged_stride(shape, strides) -> int | None:
    """The stride of dims ``shape`` merged into one (None if not mergeable); 1 for empty."""
    dims = [(n, s) for n, s in zip(shape, strides, strict=True) if n != 1]
    if not dims:
        return 1 if not shape else (strides[-1] if strides else 1) or 1
    for (_n0, s0), (n1, s1) in itertools.pairwise(dims):
        if s0 != n1 * s1:
            return None
    return dims[-1][1]


@handles("aten.native_group_norm.default")
def group_norm(low: Lowering, node, args, kwargs, val):
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
        "groupnorm",
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
def softmax(low: Lowering, node, args, kwargs, val):
    """Softmax along one dim, made the innermost one."""
    x, dim = args[0], int(args[1])
    x = low.runtime(x)
    dim = dim % x.ndim
    others = [d for d in dense_order(x) if d != dim]
    order = tuple([*others, dim])
    rows_shape = tuple(x.shape[d] for d in others)
    rs = _merged_stride(rows_shape, tuple(x.strides[d] for d in others))
    if (
        not (x.strides[dim] == 1 or x.shape[dim] == 1)
        or rs is None
        or (math.prod(rows_shape) > 1 and rs < x.shape[dim])
    ):
        x = low.materialize(x, strides_for_order(x.shape, order))
        rs = _merged_stride(rows_shape, tuple(x.strides[d] for d in others))
    y = low.new_ref(x.shape, strides_for_order(x.shape, order))
    low.emit(
        "softmax",
        [x],
        y,
        rows=math.prod(rows_shape),
        c=x.shape[dim],
        x_stride=rs or x.shape[dim],
        y_stride=x.shape[dim],
    )
    return y


def _pool_out(in_size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output size."""
    num = in_size + 2 * p - d * (k - 1) - 1
    out = (num + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= in_size + p:
        out -= 1
    return out


@handles("aten.max_pool2d_with_indices.default", "aten.max_pool2d.default")
def max_pool(low: Lowering, node, args, kwargs, val):
    """Max pool (values only)."""
    x = low.nhwc(args[0])
    k = _pair(args[1])
    s = _pair(args[2] if len(args) > 2 and args[2] else None, 0)
    if s == (0, 0):
        s = k
    p = _pair(args[3] if len(args) > 3 else 0)
    d = _pair(args[4] if len(args) > 4 else 1, 1)
    out_shape = _shape(val[0] if isinstance(val, list | tuple) else val)
    y = low.new_ref(out_shape, nhwc_strides(out_shape))
    low.emit("maxpool", [x], y, k=k, s=s, p=p, d=d)
    return (y, None) if "indices" in str(node.target) else y


@handles("aten.avg_pool2d.default")
def avg_pool(low: Lowering, node, args, kwargs, val):
    """Average pool with PyTorch's ceil-mode and count_include_pad semantics."""
    x = low.nhwc(args[0])
    k = _pair(args[1])
    s = _pair(args[2] if len(args) > 2 and args[2] else None, 0)
    if s == (0, 0):
        s = k
    p = _pair(args[3] if len(args) > 3 else 0)
    count_include_pad = bool(args[5]) if len(args) > 5 else True
    divisor = args[6] if len(args) > 6 else None
    out_shape = _shape(val)
    y = low.new_ref(out_shape, nhwc_strides(out_shape))
    low.emit(
        "avgpool",
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
def adaptive_avg_pool(low: Lowering, node, args, kwargs, val):
    """Adaptive average pool (global when the output is 1x1)."""
    x = low.nhwc(args[0], allow_pixel_stride=False)
    out_shape = _shape(val)
    y = low.new_ref(out_shape, nhwc_strides(out_shape))
    if out_shape[2:] == (1, 1):
        low.emit("global_avgpool", [x], y)
    else:
        low.emit("adaptive_avgpool", [x], y)
    return y


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
def reduce(low: Lowering, node, args, kwargs, val):
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
    out_shape = _shape(val)
    kept = [d for d in range(x.ndim) if d not in dims]
    if op == "MEAN" and x.ndim == 4 and dims == [2, 3] and pixel_stride(x) == x.shape[1]:
        y = low.new_ref(out_shape)
        low.emit("global_avgpool", [x], y)
        return y
    # output: dense in the input's order of the kept dims
    order = [d for d in dense_order(x) if d in kept]
    kept_shape = tuple(x.shape[d] for d in kept)
    pos = {d: i for i, d in enumerate(kept)}
    kstrides = strides_for_order(kept_shape, tuple(pos[d] for d in order))
    buf_ref = low.new_ref(kept_shape, kstrides)
    low.emit(
        "reduce",
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


@handles("aten.cat.default")
def cat(low: Lowering, node, args, kwargs, val):
    """Concatenate by copying each input into its slice of the output."""
    tensors = [t for t in args[0] if t.numel > 0 or len(t.shape) > 1]
    dim = int(args[1]) if len(args) > 1 else int(kwargs.get("dim", 0))
    out_shape = _shape(val)
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
        low.emit("copy", [low.runtime(t)], part)
        start += size
    return y


@handles("aten.constant_pad_nd.default")
def constant_pad(low: Lowering, node, args, kwargs, val):
    """Constant padding: fill, then copy the input inside (fused into a following conv)."""
    x = low.runtime(args[0])
    pad = list(args[1])
    value = float(args[2]) if len(args) > 2 else float(kwargs.get("value", 0.0))
    out_shape = _shape(val)
    if any(p < 0 for p in pad):
        low.fail("negative padding (cropping)")
    strides = low.dense_like(x, out_shape)
    y = low.new_ref(out_shape, strides)
    offset = 0
    for i in range(len(pad) // 2):
        d = x.ndim - 1 - i
        offset += pad[2 * i] * strides[d]
    inner = Ref(shape=x.shape, strides=strides, buf=y.buf, offset=offset)
    low.emit("pad", [x], y, value=value, inner=inner, pad=pad)
    return y


@handles("aten.hardtanh.default", "aten.clamp.default", "aten.clamp_min.default")
def clamp(low: Lowering, node, args, kwargs, val):
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
def clamp_max(low: Lowering, node, args, kwargs, val):
    """Clamp from above only."""
    return low.unary(args[0], "CLAMP", -math.inf, float(args[1]))


@handles("aten.gelu.default")
def gelu(low: Lowering, node, args, kwargs, val):
    """GELU, erf or tanh form."""
    approx = kwargs.get("approximate", args[1] if len(args) > 1 else "none")
    return low.unary(args[0], "GELU_TANH" if approx == "tanh" else "GELU")


@handles("aten.leaky_relu.default")
def leaky_relu(low: Lowering, node, args, kwargs, val):
    """LeakyReLU."""
    slope = float(args[1]) if len(args) > 1 else 0.01
    return low.unary(args[0], "LEAKY_RELU", slope)


@handles("aten.elu.default")
def elu(low: Lowering, node, args, kwargs, val):
    """ELU (alpha only; scale and input_scale 1)."""
    alpha = float(args[1]) if len(args) > 1 else 1.0
    if (len(args) > 2 and float(args[2]) != 1.0) or (len(args) > 3 and float(args[3]) != 1.0):
        low.fail("ELU with scale != 1")
    return low.unary(args[0], "ELU", alpha)


@handles("aten.softplus.default")
def softplus(low: Lowering, node, args, kwargs, val):
    """Softplus with beta 1 and threshold 20."""
    beta = float(args[1]) if len(args) > 1 else 1.0
    threshold = float(args[2]) if len(args) > 2 else 20.0
    if beta != 1.0 or threshold != 20.0:
        low.fail("softplus with beta != 1 or threshold != 20")
    return low.unary(args[0], "SOFTPLUS")


@handles("aten.pow.Tensor_Scalar")
def pow_scalar(low: Lowering, node, args, kwargs, val):
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
def rsub(low: Lowering, node, args, kwargs, val):
    """other - alpha * x."""
    alpha = float(kwargs.get("alpha", args[2] if len(args) > 2 else 1))
    x = args[0] if alpha == 1 else low.unary(args[0], "AFFINE", alpha, 0.0)
    return low.unary(x, "RSUB", float(args[1]))


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
def upsample(low: Lowering, node, args, kwargs, val):
    """Separable resize (nearest, bilinear, bicubic) as two GEMMs with constant matrices.

    The interpolation matrices are taken from PyTorch itself (the op applied to one-hot
    images), so every mode, scale and ``align_corners`` matches exactly. The H pass is
    ``Rh[OH][H] @ x[n][H][W*C]`` and the W pass ``Rw[OW][W] @ t[n*OH][W][C]`` on NHWC data.
    """
    import torch

    x = low.nhwc(low.runtime(args[0]), allow_pixel_stride=False)
    n, c, h, w = x.shape
    oh, ow = _shape(val)[2:]

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
        return _bmm(low, a3, b)

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
def index(low: Lowering, node, args, kwargs, val):
    """Indexing with constant indices that pick a strided view (e.g. unfold into patches)."""
    x = args[0]
    rest = args[1:]
    for r in _flatten_refs(rest):
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
    out_shape = _shape(val)
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
        low.emit("copy", [src], dst)
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


def _flatten_refs(x):
    if isinstance(x, Ref):
        yield x
    elif isinstance(x, list | tuple):
        for v in x:
            yield from _flatten_refs(v)


@handles("aten.linalg_vector_norm.default")
def vector_norm(low: Lowering, node, args, kwargs, val):
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


__all__ = ["norm_strides"]
