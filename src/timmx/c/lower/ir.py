"""The C target's IR: buffers, strided tensor views over them, and kernel steps.

A ``Ref`` is a strided view (shape, strides and offset in floats) of a ``Buffer``: the input,
the output, a region of the arena, or a constant in the weights blob. View ops (reshape,
permute, slice, expand, ...) only make new ``Ref`` objects, so layout changes cost nothing
until a kernel needs a particular layout; then a copy step is inserted.
"""

from dataclasses import dataclass, field
from enum import StrEnum

from timmx.errors import ExportError

FLOAT_BYTES = 4
ALIGN = 64


class UnsupportedOpError(ExportError):
    """An op of the captured graph that the C target cannot lower."""


class StepKind(StrEnum):
    """What a step computes; each kind has one C emitter (``emit/steps.py``)."""

    CONV = "conv"  # txk_conv2d (dense, grouped, depthwise, 1x1, patchify)
    CONV_PW_DW = "conv_pw_dw"  # txk_conv2d_pw_dw (a 1x1 conv fused into the depthwise after it)
    LINEAR = "linear"  # txk_linear
    BMM = "bmm"  # txk_bmm (batched matmul on strided operands)
    ATTENTION = "attention"  # txk_attention (fused by a pass from bmm, softmax, bmm, copy)
    BINARY = "binary"  # txk_binary (3-D broadcast) or txg_binary (any rank)
    UNARY = "unary"  # txk_unary (contiguous activations) or txg_unary
    COPY = "copy"  # txk_copy2d or txg_copy (layout changes, concat, gathers)
    PAD = "pad"  # txg_fill, then a copy of the input inside
    LAYERNORM = "layernorm"
    GROUPNORM = "groupnorm"
    SOFTMAX = "softmax"
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"
    ADAPTIVE_AVGPOOL = "adaptive_avgpool"
    GLOBAL_AVGPOOL = "global_avgpool"
    CHANNEL_SCALE = "channel_scale"  # txk_channel_scale (SE gates, fused by a pass)
    GATE_WEIGHTS = "gate_weights"  # txk_gate_weights (an SE gate folded into a 1x1 conv)
    REDUCE = "reduce"  # txg_reduce


@dataclass(eq=False)
class Buffer:
    """A region of memory: ``kind`` is input, output, arena or weight."""

    nfloats: int
    kind: str
    name: str
    data: object = None  # numpy float32 array for weight buffers
    offset: int = 0  # bytes: in the arena (arena) or the weights payload (weight)
    alias: "Buffer | None" = None  # in-place: this buffer lives inside ``alias``
    module: str = ""  # the timm module that made it (names it in the generated C)
    note: str = ""  # what it holds, for the generated weights map (e.g. the packed layout)

    def root(self) -> "Buffer":
        """The buffer this one finally aliases (itself if none)."""
        b = self
        while b.alias is not None:
            b = b.alias
        return b

    @property
    def nbytes(self) -> int:
        """Size in bytes."""
        return self.nfloats * FLOAT_BYTES


@dataclass(eq=False)
class Ref:
    """A strided float32 view; ``const`` holds the value of compile-time constants."""

    shape: tuple[int, ...]
    strides: tuple[int, ...] = ()
    buf: Buffer | None = None
    offset: int = 0
    const: object = None  # torch.Tensor when the value is known at export time

    @property
    def numel(self) -> int:
        """Element count."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def ndim(self) -> int:
        """Rank."""
        return len(self.shape)

    def same_view(self, other: "Ref") -> bool:
        """True when both refs address exactly the same elements in the same order."""
        return (
            self.buf is not None
            and other.buf is not None
            and self.buf.root() is other.buf.root()
            and self.abs_offset() == other.abs_offset()
            and self.shape == other.shape
            and norm_strides(self.shape, self.strides) == norm_strides(other.shape, other.strides)
        )

    def abs_offset(self) -> int:
        """Offset in floats from the start of the root buffer."""
        return self.offset  # in-place aliases always start where their root starts


def norm_strides(shape: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int, ...]:
    """Strides with those of size-1 dims zeroed (they never matter)."""
    return tuple(0 if n == 1 else s for n, s in zip(shape, strides, strict=True))


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Row-major strides of ``shape``."""
    strides = []
    acc = 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(strides))


def strides_for_order(shape: tuple[int, ...], order: tuple[int, ...]) -> tuple[int, ...]:
    """Dense strides where ``order`` lists the dims from outermost to innermost."""
    strides = [0] * len(shape)
    acc = 1
    for d in reversed(order):
        strides[d] = acc
        acc *= max(shape[d], 1)
    return tuple(strides)


def nhwc_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Dense NHWC strides of a logical NCHW shape."""
    return strides_for_order(shape, (0, 2, 3, 1))


def broadcast_strides(ref: Ref, shape) -> tuple[int, ...]:
    """Strides of ``ref`` broadcast to ``shape`` (0 on broadcast and size-1 dims)."""
    pad = len(shape) - ref.ndim
    return tuple([0] * pad + list(norm_strides(ref.shape, ref.strides)))


def collapse(shape, *stride_sets) -> tuple[list[int], list[list[int]]]:
    """Drop size-1 dims and merge dims contiguous in every operand; order by the first."""
    dims = [d for d in range(len(shape)) if shape[d] != 1]
    first = stride_sets[0]
    dims.sort(key=lambda d: -abs(first[d]))
    out_shape: list[int] = []
    out_strides: list[list[int]] = [[] for _ in stride_sets]
    for d in dims:
        if out_shape and all(
            ss[-1] == s[d] * shape[d] for ss, s in zip(out_strides, stride_sets, strict=True)
        ):
            out_shape[-1] *= shape[d]
            for ss, s in zip(out_strides, stride_sets, strict=True):
                ss[-1] = s[d]
            continue
        out_shape.append(shape[d])
        for ss, s in zip(out_strides, stride_sets, strict=True):
            ss.append(s[d])
    return out_shape, out_strides


def is_dense(ref: Ref) -> bool:
    """True when the view covers a gap-free, non-overlapping block of ``numel`` floats."""
    dims = [(s, n) for n, s in zip(ref.shape, ref.strides, strict=True) if n != 1]
    dims.sort(key=lambda t: -t[0])
    expect = 1
    for s, n in reversed(dims):
        if s != expect:
            return False
        expect *= n
    return True


def dense_order(ref: Ref) -> tuple[int, ...]:
    """The dims of ``ref`` from outermost to innermost stride (stable for ties)."""
    idx = list(range(ref.ndim))
    idx.sort(key=lambda d: (-(ref.strides[d] if ref.shape[d] != 1 else 0), d))
    # size-1 dims keep their logical position relative to each other: put them outermost
    ones = [d for d in range(ref.ndim) if ref.shape[d] == 1]
    rest = [d for d in idx if ref.shape[d] != 1]
    return tuple(ones + rest) if ones else tuple(rest)


@dataclass(eq=False)
class Step:
    """One kernel call of the forward pass."""

    kind: StepKind
    ins: list[Ref]
    out: Ref | None
    attrs: dict = field(default_factory=dict)
    module: str = ""
    scratch: int = 0  # bytes of arena scratch the call needs
    scratch_buf: Buffer | None = None

    def reads(self) -> list[Ref]:
        """Every runtime ref the step reads (inputs plus attrs refs such as a residual)."""
        refs = list(self.ins)
        for key in ("residual",):
            r = self.attrs.get(key)
            if isinstance(r, Ref):
                refs.append(r)
        return refs

    def attr_refs(self) -> list[Ref]:
        """Refs held in the attrs (inner views, gamma/beta, residual, packed weights)."""
        return [v for v in self.attrs.values() if isinstance(v, Ref)]

    def touched(self) -> list[Ref]:
        """Every ref the step uses besides its output: inputs and the refs in its attrs."""
        return self.reads() + self.attr_refs()

    def sources(self) -> list[Ref]:
        """The refs whose values the step reads (``touched`` less a pad's inner view, which
        the pad writes)."""
        inner = self.attrs.get("inner") if self.kind is StepKind.PAD else None
        return [r for r in self.touched() if r is not inner]


def pixel_stride(ref: Ref) -> int | None:
    """The pixel stride of a 4-D NCHW-logical ref stored NHWC (channels contiguous), or None."""
    n, c, h, w = ref.shape
    sn, sc, sh, sw = ref.strides
    if c > 1 and sc != 1:
        return None
    ps = sw if w > 1 else (sh // w if h > 1 else (sn // (h * w) if n > 1 else c))
    if ps < c:
        return None
    if w > 1 and sw != ps:
        return None
    if h > 1 and sh != w * ps:
        return None
    if n > 1 and sn != h * w * ps:
        return None
    return ps


def ceil_div(a: int, b: int) -> int:
    """Ceiling division."""
    return -(-a // b)


def round_up(a: int, b: int) -> int:
    """Round ``a`` up to a multiple of ``b``."""
    return ceil_div(a, b) * b
