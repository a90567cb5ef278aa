"""The C of each kind of step: one kernel call (two for a pad), plus the file-scope data
(descriptor, index arrays) it points to. ``EMITTERS`` maps every :class:`StepKind` to its
emitter; descriptors come from :mod:`timmx.c.descriptors`."""

import ctypes
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from timmx.c import abi
from timmx.c.descriptors import Desc, Enumerator, binary_geometry, descriptor
from timmx.c.emit.symbols import Symbols
from timmx.c.lower.ir import Ref, Step, StepKind, collapse, norm_strides

# activations txk_unary runs (TXK_ACT_*); any other unary op goes through txg_unary
TXK_ACTS = {name for name in abi.ACT if name != "COUNT"}


@dataclass
class Call:
    """A kernel call: function name and argument expressions."""

    fn: str
    args: list[str]


@dataclass
class StepCode:
    """What one step contributes: file-scope definitions and its kernel calls, in order."""

    data: list[str] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    desc: str | None = None  # the descriptor variable, when the call takes one


def cfloat(v: float) -> str:
    """A C float literal (infinities via HUGE_VALF)."""
    if math.isinf(v):
        return "HUGE_VALF" if v > 0 else "-HUGE_VALF"
    if math.isnan(v):
        return "NAN"
    r = repr(float(v))
    if "e" not in r and "." not in r:
        r += ".0"
    return r + "f"


def wrap(
    head: str, items: list[str], tail: str, *, width: int = 100, indent: int | None = None
) -> list[str]:
    """``head`` + ``items`` joined by ", " + ``tail``, on one line when it fits in ``width``,
    else broken after commas: continuation lines are aligned after ``head``, or, given
    ``indent``, start on a new line after ``head`` indented by ``indent`` spaces."""
    one = head + ", ".join(items) + tail
    if len(one) <= width or not items:
        return [one]
    pad = " " * (len(head) if indent is None else indent)
    lines: list[str] = []
    if indent is not None:
        lines.append(head.rstrip())
        line = pad
    else:
        line = head
    fresh = True
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else tail)
        if not fresh and len(line) + 1 + len(piece) > width:
            lines.append(line)
            line, fresh = pad, True
        line += piece if fresh else " " + piece
        fresh = False
    lines.append(line)
    return lines


def _c_value(value, ctype) -> str:
    if isinstance(value, Enumerator):
        return value.c_name
    if isinstance(value, float) or ctype is ctypes.c_float:
        return cfloat(value)
    if ctype is ctypes.c_long:
        return f"{int(value)}L"
    return str(int(value))


def _fields(desc: Desc) -> list[str]:
    """``.field = value`` items; a nested struct's items are ``.name = {.a = 1``, ..., ``.z}``
    (so the list joined by ", " is the initializer and can be broken between any two)."""
    types = dict(abi.STRUCTS[desc.ctype]._fields_)
    items = []
    for name, value in desc.fields:
        if isinstance(value, Desc):
            inner = _fields(value)
            inner[0] = "{" + inner[0]
            inner[-1] += "}"
            items += [f".{name} = {inner[0]}", *inner[1:]]
        else:
            items.append(f".{name} = {_c_value(value, types[name])}")
    return items


# fields that start a line of a multi-line initializer (the rest follow greedily)
LINE_STARTS = {
    "txk_conv2d_desc": {"n", "kh", "pad_top", "dil_h", "epilogue"},
    "txk_linear_desc": {"m", "epilogue"},
    "txk_bmm_desc": {"batch", "a_sb", "b_sb", "c_sb"},
    "txk_pool2d_desc": {"n", "kh", "dil_h"},
    "txk_binary_desc": {"op", "a_sn", "b_sn", "y_sn", "epilogue"},
}


def c_initializer(ctype: str, name: str, desc: Desc) -> list[str]:
    """``static const <ctype> <name> = {.field = value, ...};``: designated, every field, one
    line when it fits, else one line per group of related fields (``LINE_STARTS``)."""
    head = f"static const {ctype} {name} = {{"
    items = _fields(desc)
    one = wrap(head, items, "};")
    if len(one) == 1:
        return one
    starts = LINE_STARTS.get(ctype, set())
    groups: list[list[str]] = []
    for (field_name, _), item_count in zip(desc.fields, _item_counts(desc), strict=True):
        if not groups or field_name in starts:
            groups.append([])
        groups[-1].extend(items[:item_count])
        items = items[item_count:]
    lines = [head]
    for i, group in enumerate(groups):
        tail = "};" if i == len(groups) - 1 else ","
        lines += wrap("    ", group, tail, indent=None)
    return lines


def _item_counts(desc: Desc) -> list[int]:
    """How many ``_fields`` items each field of ``desc`` makes (a nested struct: several)."""
    return [len(_fields(v)) if isinstance(v, Desc) else 1 for _, v in desc.fields]


def larr(values) -> str:
    """A C long array literal."""
    return "{" + ", ".join(f"{int(v)}L" for v in values) + "}" if values else "{0L}"


def _arrays(name: str, *arrays: tuple[str, list[int]]) -> list[str]:
    """File-scope ``static const long <name>_<key>[]`` index arrays of a txg call."""
    return [f"static const long {name}_{key}[] = {larr(v)};" for key, v in arrays]


def _with_desc(step: Step, sym: Symbols) -> tuple[StepCode, str]:
    desc = descriptor(step)
    name = "d_" + sym.step_names[id(step)]
    return StepCode(data=c_initializer(desc.ctype, name, desc), desc=name), "&" + name


def _scratch(step: Step, sym: Symbols) -> str:
    return sym.ptr_buf(step.scratch_buf) if step.scratch_buf is not None else "NULL"


def _opt(ref, sym: Symbols) -> str:
    return sym.ptr(ref) if isinstance(ref, Ref) else "NULL"


def _conv(step: Step, sym: Symbols) -> StepCode:
    code, d = _with_desc(step, sym)
    x, y, a = step.ins[0], step.out, step.attrs
    args = [sym.ptr(x), sym.ptr(a["packed"]), sym.ptr(y), _opt(a.get("residual"), sym)]
    code.calls.append(Call("txk_conv2d", ["ctx", d, *args, _scratch(step, sym)]))
    return code


def _conv_pw_dw(step: Step, sym: Symbols) -> StepCode:
    code, d = _with_desc(step, sym)
    x, y, a = step.ins[0], step.out, step.attrs
    args = [sym.ptr(x), sym.ptr(a["pw_packed"]), sym.ptr(a["packed"]), sym.ptr(y)]
    args += [_opt(a.get("residual"), sym), _scratch(step, sym)]
    code.calls.append(Call("txk_conv2d_pw_dw", ["ctx", d, *args]))
    return code


def _linear(step: Step, sym: Symbols) -> StepCode:
    code, d = _with_desc(step, sym)
    x, y, a = step.ins[0], step.out, step.attrs
    args = [sym.ptr(x), sym.ptr(a["packed"]), sym.ptr(y), _opt(a.get("residual"), sym)]
    code.calls.append(Call("txk_linear", ["ctx", d, *args]))
    return code


def _bmm(step: Step, sym: Symbols) -> StepCode:
    code, d = _with_desc(step, sym)
    a, b = step.ins
    args = [sym.ptr(a), sym.ptr(b), sym.ptr(step.out), _scratch(step, sym)]
    code.calls.append(Call("txk_bmm", ["ctx", d, *args]))
    return code


def _attention(step: Step, sym: Symbols) -> StepCode:
    code, d = _with_desc(step, sym)
    q, k, v = step.ins
    args = [sym.ptr(q), sym.ptr(k), sym.ptr(v), sym.ptr(step.out), _scratch(step, sym)]
    code.calls.append(Call("txk_attention", ["ctx", d, *args]))
    return code


def _binary(step: Step, sym: Symbols) -> StepCode:
    a, b = step.ins
    y = step.out
    if descriptor(step) is not None:
        code, d = _with_desc(step, sym)
        code.calls.append(Call("txk_binary", ["ctx", d, sym.ptr(a), sym.ptr(b), sym.ptr(y)]))
        return code
    if step.attrs.get("act", "NONE") != "NONE":
        raise ValueError("fused activation on a generic binary step")
    cshape, cy, ca, cb = binary_geometry(step)
    name = "d_" + sym.step_names[id(step)]
    code = StepCode(data=_arrays(name, ("shape", cshape), ("as", ca), ("bs", cb), ("ys", cy)))
    args = [f"TXG_{step.attrs['op']}", str(len(cshape)), f"{name}_shape"]
    args += [sym.ptr(a), f"{name}_as", sym.ptr(b), f"{name}_bs", sym.ptr(y), f"{name}_ys"]
    code.calls.append(Call("txg_binary", args))
    return code


def _unary(step: Step, sym: Symbols) -> StepCode:
    x, y = step.ins[0], step.out
    op = step.attrs["op"]
    p0, p1 = cfloat(step.attrs.get("p0", 0.0)), cfloat(step.attrs.get("p1", 0.0))
    cshape, (cy, cx) = collapse(
        y.shape, norm_strides(y.shape, y.strides), norm_strides(x.shape, x.strides)
    )
    if op in TXK_ACTS and len(cshape) <= 1 and (not cshape or (cy[0] == 1 and cx[0] == 1)):
        count = str(cshape[0] if cshape else 1)
        args = ["ctx", f"TXK_ACT_{op}", p0, p1, count, sym.ptr(x), sym.ptr(y)]
        return StepCode(calls=[Call("txk_unary", args)])
    name = "d_" + sym.step_names[id(step)]
    code = StepCode(data=_arrays(name, ("shape", cshape), ("xs", cx), ("ys", cy)))
    args = [f"TXG_{op}", p0, p1, str(len(cshape)), f"{name}_shape"]
    args += [sym.ptr(x), f"{name}_xs", sym.ptr(y), f"{name}_ys"]
    code.calls.append(Call("txg_unary", args))
    return code


def _copy_code(x: Ref, y: Ref, name: str, sym: Symbols) -> StepCode:
    cshape, (cy, cx) = collapse(
        y.shape, norm_strides(y.shape, y.strides), norm_strides(x.shape, x.strides)
    )
    if len(cshape) == 1 and cy[0] == 1 and cx[0] == 1:
        return StepCode(
            calls=[Call("txk_copy2d", ["1", str(cshape[0]), sym.ptr(x), "0", sym.ptr(y), "0"])]
        )
    if len(cshape) == 2 and cy[1] == 1 and cx[1] == 1:
        args = [str(cshape[0]), str(cshape[1]), sym.ptr(x), str(cx[0]), sym.ptr(y), str(cy[0])]
        return StepCode(calls=[Call("txk_copy2d", args)])
    code = StepCode(data=_arrays(name, ("shape", cshape), ("xs", cx), ("ys", cy)))
    args = [str(len(cshape)), f"{name}_shape", sym.ptr(x), f"{name}_xs", sym.ptr(y), f"{name}_ys"]
    code.calls.append(Call("txg_copy", args))
    return code


def _copy(step: Step, sym: Symbols) -> StepCode:
    return _copy_code(step.ins[0], step.out, "d_" + sym.step_names[id(step)], sym)


def _pad(step: Step, sym: Symbols) -> StepCode:
    y = step.out
    fill = Call("txg_fill", [str(y.buf.nfloats), cfloat(step.attrs["value"]), sym.ptr(y)])
    inner = _copy_code(step.ins[0], step.attrs["inner"], "d_" + sym.step_names[id(step)], sym)
    return StepCode(data=inner.data, calls=[fill, *inner.calls])


def _layernorm(step: Step, sym: Symbols) -> StepCode:
    a = step.attrs
    args = ["ctx", str(a["rows"]), str(a["c"]), sym.ptr(step.ins[0]), str(a["x_stride"])]
    args += [sym.ptr(step.out), str(a["y_stride"]), _opt(a["gamma"], sym), _opt(a["beta"], sym)]
    return StepCode(calls=[Call("txk_layernorm", [*args, cfloat(a["eps"])])])


def _groupnorm(step: Step, sym: Symbols) -> StepCode:
    a = step.attrs
    args = ["ctx", str(a["n"]), str(a["hw"]), str(a["c"]), str(a["groups"])]
    args += [sym.ptr(step.ins[0]), sym.ptr(step.out), _opt(a["gamma"], sym), _opt(a["beta"], sym)]
    return StepCode(calls=[Call("txk_groupnorm", [*args, cfloat(a["eps"])])])


def _softmax(step: Step, sym: Symbols) -> StepCode:
    a = step.attrs
    args = ["ctx", str(a["rows"]), str(a["c"]), sym.ptr(step.ins[0]), str(a["x_stride"])]
    return StepCode(calls=[Call("txk_softmax", [*args, sym.ptr(step.out), str(a["y_stride"])])])


def _pool(fn: str) -> Callable[[Step, Symbols], StepCode]:
    def emit(step: Step, sym: Symbols) -> StepCode:
        code, d = _with_desc(step, sym)
        code.calls.append(Call(fn, ["ctx", d, sym.ptr(step.ins[0]), sym.ptr(step.out)]))
        return code

    return emit


def _global_avgpool(step: Step, sym: Symbols) -> StepCode:
    x = step.ins[0]
    n, c, h, w = x.shape
    args = ["ctx", str(n), str(h * w), str(c), sym.ptr(x), sym.ptr(step.out)]
    return StepCode(calls=[Call("txk_global_avgpool", args)])


def _channel_scale(step: Step, sym: Symbols) -> StepCode:
    x, s = step.ins
    n, c, h, w = x.shape
    gate = f"TXK_ACT_{step.attrs.get('gate_act', 'NONE')}"
    args = ["ctx", str(n), str(h * w), str(c), sym.ptr(x), sym.ptr(s), gate, sym.ptr(step.out)]
    return StepCode(calls=[Call("txk_channel_scale", args)])


def _gate_weights(step: Step, sym: Symbols) -> StepCode:
    conv = step.attrs["conv"]
    gate = f"TXK_ACT_{step.attrs.get('gate_act', 'NONE')}"
    k, n = conv.ins[0].shape[1], conv.out.shape[1]
    args = ["ctx", str(k), str(n), sym.ptr(step.attrs["packed"]), sym.ptr(step.ins[0]), gate]
    return StepCode(calls=[Call("txk_gate_weights", [*args, sym.ptr(step.out)])])


def _reduce(step: Step, sym: Symbols) -> StepCode:
    x, y = step.ins[0], step.out
    a = step.attrs
    kept, rdims = a["kept"], a["rdims"]
    kshape = [x.shape[d] for d in kept]
    kx = [x.strides[d] if x.shape[d] != 1 else 0 for d in kept]
    ky = list(norm_strides(y.shape, y.strides))
    cshape, (cy, cx) = collapse(kshape, ky, kx)
    rshape = [x.shape[d] for d in rdims]
    rx = [x.strides[d] if x.shape[d] != 1 else 0 for d in rdims]
    crshape, (crx,) = collapse(rshape, rx)
    name = "d_" + sym.step_names[id(step)]
    code = StepCode(
        data=_arrays(
            name, ("shape", cshape), ("xs", cx), ("ys", cy), ("rshape", crshape), ("rxs", crx)
        )
    )
    args = [f"TXG_RED_{a['op']}", cfloat(a.get("p0", 0.0)), str(len(cshape)), f"{name}_shape"]
    args += [sym.ptr(x), f"{name}_xs", sym.ptr(y), f"{name}_ys", str(len(crshape))]
    code.calls.append(Call("txg_reduce", [*args, f"{name}_rshape", f"{name}_rxs"]))
    return code


EMITTERS: dict[StepKind, Callable[[Step, Symbols], StepCode]] = {
    StepKind.CONV: _conv,
    StepKind.CONV_PW_DW: _conv_pw_dw,
    StepKind.LINEAR: _linear,
    StepKind.BMM: _bmm,
    StepKind.ATTENTION: _attention,
    StepKind.BINARY: _binary,
    StepKind.UNARY: _unary,
    StepKind.COPY: _copy,
    StepKind.PAD: _pad,
    StepKind.LAYERNORM: _layernorm,
    StepKind.GROUPNORM: _groupnorm,
    StepKind.SOFTMAX: _softmax,
    StepKind.MAXPOOL: _pool("txk_maxpool2d"),
    StepKind.AVGPOOL: _pool("txk_avgpool2d"),
    StepKind.ADAPTIVE_AVGPOOL: _pool("txk_adaptive_avgpool2d"),
    StepKind.GLOBAL_AVGPOOL: _global_avgpool,
    StepKind.CHANNEL_SCALE: _channel_scale,
    StepKind.GATE_WEIGHTS: _gate_weights,
    StepKind.REDUCE: _reduce,
}


def emit_step(step: Step, sym: Symbols) -> StepCode:
    """The C of one step."""
    return EMITTERS[step.kind](step, sym)
