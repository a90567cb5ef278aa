"""A step's kernel descriptor: the ordered fields of the ``txk_*_desc`` struct it passes.

This is the one place that turns a step into descriptor values. The C emitter prints a
:class:`Desc` as a designated initializer (``emit/steps.py``) and the exporter converts the
same object to the ctypes mirror (:mod:`timmx.c.abi`) to ask the kernel library how much
scratch the call needs (``c/build.py``), so the plan and the generated code cannot disagree.
Field names and order are checked against the mirror when a descriptor is made.
"""

from dataclasses import dataclass

from timmx.c import abi
from timmx.c.lower.ir import (
    Ref,
    Step,
    StepKind,
    broadcast_strides,
    collapse,
    norm_strides,
    pixel_stride,
)

# the kernel library's query for the scratch bytes of each kind that takes scratch
SCRATCH_SIZE_FUNCTIONS = {
    StepKind.CONV: "txk_conv2d_scratch_size",
    StepKind.CONV_PW_DW: "txk_pwdw_scratch_size",
    StepKind.BMM: "txk_bmm_scratch_size",
    StepKind.ATTENTION: "txk_attention_scratch_size",
}


@dataclass(frozen=True)
class Enumerator:
    """A C enumerator: ``prefix`` names its table in :data:`abi.ENUMS` (``TXK_ACT_``...)."""

    prefix: str
    name: str

    @property
    def c_name(self) -> str:
        """The enumerator as written in C (``TXK_ACT_RELU``)."""
        return self.prefix + self.name

    @property
    def value(self) -> int:
        """Its value (from the ABI mirror)."""
        return abi.ENUMS[self.prefix][self.name]


@dataclass(frozen=True)
class Desc:
    """A descriptor: the C struct type and its (field, value) pairs in declaration order.

    Values are ints, floats, :class:`Enumerator` or a nested :class:`Desc`.
    """

    ctype: str
    fields: tuple[tuple[str, object], ...]

    def __post_init__(self) -> None:
        mirror = abi.STRUCTS[self.ctype]
        expected = [name for name, _ in mirror._fields_]
        got = [name for name, _ in self.fields]
        if got != expected:
            raise ValueError(f"{self.ctype}: fields {got} do not match the ABI {expected}")

    def __getitem__(self, name: str) -> object:
        return dict(self.fields)[name]

    def to_ctypes(self):
        """The descriptor as an instance of its ctypes mirror."""

        def value(v):
            if isinstance(v, Enumerator):
                return v.value
            if isinstance(v, Desc):
                return v.to_ctypes()
            return v

        return abi.STRUCTS[self.ctype](**{name: value(v) for name, v in self.fields})


def _desc(ctype: str, **fields) -> Desc:
    return Desc(ctype, tuple(fields.items()))


def epilogue(attrs: dict, residual: bool = True) -> Desc:
    """The txk_epilogue of a conv / linear / binary step."""
    mode = attrs.get("residual_mode", "NONE") if residual else "NONE"
    return _desc(
        "txk_epilogue",
        act=Enumerator("TXK_ACT_", attrs.get("act", "NONE")),
        act_min=float(attrs.get("act_min", 0.0)),
        act_max=float(attrs.get("act_max", 0.0)),
        residual=Enumerator("TXK_RESIDUAL_", mode),
    )


def _dense_or(stride: int | None, channels: int) -> int:
    """A descriptor pixel stride: 0 when it equals the channel count (dense)."""
    return 0 if not stride or stride == channels else stride


def conv2d(step: Step) -> Desc:
    """txk_conv2d_desc of a conv step (after packing: ``kh``/``kw`` are set)."""
    x, y, a = step.ins[0], step.out, step.attrs
    n, c, h, w = x.shape
    _, oc, oh, ow = y.shape
    r = a.get("residual")
    pt, pl, pb, pr = a["pad"]
    return _desc(
        "txk_conv2d_desc",
        n=n,
        in_h=h,
        in_w=w,
        in_c=c,
        out_h=oh,
        out_w=ow,
        out_c=oc,
        kh=a["kh"],
        kw=a["kw"],
        stride_h=a["stride"][0],
        stride_w=a["stride"][1],
        pad_top=pt,
        pad_left=pl,
        pad_bottom=pb,
        pad_right=pr,
        dil_h=a["dilation"][0],
        dil_w=a["dilation"][1],
        groups=a["groups"],
        x_stride=_dense_or(pixel_stride(x), c),
        y_stride=_dense_or(pixel_stride(y), oc),
        r_stride=_dense_or(pixel_stride(r), oc) if isinstance(r, Ref) else 0,
        epilogue=epilogue(a),
        algo=Enumerator("TXK_CONV_", a.get("algo", "DIRECT")),
    )


def pw_dw(step: Step) -> Desc:
    """txk_pwdw_desc of a fused 1x1 -> depthwise step: the 1x1 step (``attrs["pw"]``) and the
    depthwise conv as a conv step reading the 1x1's output."""
    pw = step.attrs["pw"]
    dw = Step(kind=StepKind.CONV, ins=[pw.out], out=step.out, attrs=step.attrs)
    return _desc("txk_pwdw_desc", pw=conv2d(pw), dw=conv2d(dw))


def linear(step: Step) -> Desc:
    """txk_linear_desc of a linear step."""
    x, y, a = step.ins[0], step.out, step.attrs
    m, k = x.shape
    n = y.shape[1]
    r = a.get("residual")
    return _desc(
        "txk_linear_desc",
        m=m,
        k=k,
        n=n,
        lda=x.strides[0] if m > 1 else k,
        ldy=y.strides[0] if m > 1 else n,
        ldr=(r.strides[0] if m > 1 else n) if isinstance(r, Ref) else 0,
        epilogue=epilogue(a),
    )


def bmm(step: Step) -> Desc:
    """txk_bmm_desc of a bmm step (strides of size-1 dims are 0; a_sk is 1 when k is 1)."""
    a, b = step.ins
    y = step.out
    batch, m, k = a.shape
    n = b.shape[2]
    asb, asm, ask = norm_strides(a.shape, a.strides)
    bsb, bsk, bsn = norm_strides(b.shape, b.strides)
    return _desc(
        "txk_bmm_desc",
        batch=batch,
        m=m,
        n=n,
        k=k,
        a_sb=asb,
        a_sm=asm,
        a_sk=1 if k == 1 else ask,
        b_sb=bsb,
        b_sk=bsk,
        b_sn=bsn,
        c_sb=y.strides[0],
        c_sm=y.strides[1],
        alpha=float(step.attrs.get("alpha", 1.0)),
    )


def attention(step: Step) -> Desc:
    """txk_attention_desc of an attention step."""
    a = step.attrs
    return _desc(
        "txk_attention_desc",
        seq=a["seq"],
        heads=a["heads"],
        head_dim=a["head_dim"],
        qkv_stride=a["qkv_stride"],
        out_stride=a["out_stride"],
        scale=float(a["scale"]),
    )


def pool2d(step: Step) -> Desc:
    """txk_pool2d_desc of a max / avg / adaptive avg pool step."""
    x, y, a = step.ins[0], step.out, step.attrs
    n, c, h, w = x.shape
    oh, ow = y.shape[2:]
    k, s, p, d = a.get("k", (1, 1)), a.get("s", (1, 1)), a.get("p", (0, 0)), a.get("d", (1, 1))
    return _desc(
        "txk_pool2d_desc",
        n=n,
        in_h=h,
        in_w=w,
        c=c,
        out_h=oh,
        out_w=ow,
        kh=k[0],
        kw=k[1],
        stride_h=s[0],
        stride_w=s[1],
        pad_h=p[0],
        pad_w=p[1],
        dil_h=d[0],
        dil_w=d[1],
        count_include_pad=int(a.get("count_include_pad", True)),
        divisor_override=a.get("divisor", 0),
        x_stride=_dense_or(pixel_stride(x), c),
        y_stride=_dense_or(pixel_stride(y), c),
    )


def binary_geometry(step: Step) -> tuple[list[int], list[int], list[int], list[int]]:
    """The collapsed (shape, y strides, a strides, b strides) of a binary step."""
    a, b = step.ins
    y = step.out
    shape = y.shape
    ys = norm_strides(y.shape, y.strides)
    cshape, (cy, ca, cb) = collapse(
        shape, ys, broadcast_strides(a, shape), broadcast_strides(b, shape)
    )
    return cshape, cy, ca, cb


def binary(step: Step) -> Desc | None:
    """txk_binary_desc when the op fits the kernel's 3-D [n][p][c] form (else None: txg)."""
    cshape, cy, ca, cb = binary_geometry(step)
    if not (len(cshape) <= 3 and (not cshape or cy[-1] == 1)):
        return None
    pad = 3 - len(cshape)
    cshape, cy, ca, cb = ([1] * pad + cshape, [0] * pad + cy, [0] * pad + ca, [0] * pad + cb)
    return _desc(
        "txk_binary_desc",
        op=Enumerator("TXK_BIN_", step.attrs["op"]),
        n=cshape[0],
        p=cshape[1],
        c=cshape[2],
        a_sn=ca[0],
        a_sp=ca[1],
        a_sc=ca[2],
        b_sn=cb[0],
        b_sp=cb[1],
        b_sc=cb[2],
        y_sn=cy[0],
        y_sp=cy[1],
        epilogue=epilogue(step.attrs, residual=False),
    )


_BUILDERS = {
    StepKind.CONV: conv2d,
    StepKind.CONV_PW_DW: pw_dw,
    StepKind.LINEAR: linear,
    StepKind.BMM: bmm,
    StepKind.ATTENTION: attention,
    StepKind.MAXPOOL: pool2d,
    StepKind.AVGPOOL: pool2d,
    StepKind.ADAPTIVE_AVGPOOL: pool2d,
    StepKind.BINARY: binary,
}


def descriptor(step: Step) -> Desc | None:
    """The descriptor the step's kernel call takes, or None (a call without one)."""
    build = _BUILDERS.get(step.kind)
    return build(step) if build is not None else None
