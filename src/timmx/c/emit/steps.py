"""C code for each kind of lowered step (one block per step, descriptors as static const)."""

import math

from timmx.c.lower.ir import Ref, Step, norm_strides

TXK_ACTS = {
    "NONE",
    "RELU",
    "CLAMP",
    "HARDSWISH",
    "HARDSIGMOID",
    "SILU",
    "GELU",
    "GELU_TANH",
    "SIGMOID",
    "TANH",
}


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


def ptr(ref: Ref, const: bool = True) -> str:
    """A C expression pointing at the first element of ``ref``."""
    buf = ref.buf
    q = "const float*" if const else "float*"
    if buf.kind == "input":
        base = "input"
        return f"({base} + {ref.offset})" if ref.offset else base
    if buf.kind == "output":
        return f"(output + {ref.offset})" if ref.offset else "output"
    if buf.kind == "weight":
        return (
            f"(({q})(W + {buf.offset}) + {ref.offset})"
            if ref.offset
            else f"(({q})(W + {buf.offset}))"
        )
    root = buf.root()
    off = root.offset
    return f"(({q})(A + {off}) + {ref.offset})" if ref.offset else f"(({q})(A + {off}))"


def collapse(shape, *stride_sets):
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


def _broadcast(ref: Ref, shape) -> tuple[int, ...]:
    """Strides of ``ref`` broadcast to ``shape`` (0 on broadcast dims)."""
    pad = len(shape) - ref.ndim
    strides = [0] * pad + list(norm_strides(ref.shape, ref.strides))
    return tuple(strides)


def larr(values) -> str:
    """A C long array literal."""
    return "{" + ", ".join(f"{int(v)}L" for v in values) + "}" if values else "{0L}"


def epilogue(attrs) -> str:
    """A txk_epilogue initializer."""
    act = attrs.get("act", "NONE")
    return (
        f"{{TXK_ACT_{act}, {cfloat(attrs.get('act_min', 0.0))}, "
        f"{cfloat(attrs.get('act_max', 0.0))}, TXK_RESIDUAL_{attrs.get('residual_mode', 'NONE')}}}"
    )


def emit_step(step: Step) -> list[str]:
    """The C statements of one step (without the comment)."""
    fn = globals().get(f"_emit_{step.kind}")
    if fn is None:
        raise ValueError(f"no C emitter for step kind {step.kind!r}")
    return fn(step)


def _scratch(step: Step) -> str:
    if step.scratch_buf is None:
        return "NULL"
    return f"(A + {step.scratch_buf.root().offset})"


def _emit_conv(step: Step) -> list[str]:
    x, y = step.ins[0], step.out
    a = step.attrs
    n, c, h, w = x.shape
    _, oc, oh, ow = y.shape
    kh, kw = a["kh"], a["kw"]
    from timmx.c.lower.ir import pixel_stride

    xs = pixel_stride(x)
    ys = pixel_stride(y)
    r = a.get("residual")
    rs = pixel_stride(r) if isinstance(r, Ref) else 0
    pt, pl, pb, pr = a["pad"]
    desc = (
        f"{{{n}, {h}, {w}, {c}, {oh}, {ow}, {oc}, {kh}, {kw}, {a['stride'][0]}, {a['stride'][1]}, "
        f"{pt}, {pl}, {pb}, {pr}, {a['dilation'][0]}, {a['dilation'][1]}, {a['groups']}, "
        f"{xs if xs != c else 0}, {ys if ys != oc else 0}, {rs if rs and rs != oc else 0}, "
        f"{epilogue(a)}}}"
    )
    res = ptr(r) if isinstance(r, Ref) else "NULL"
    return [
        f"static const txk_conv2d_desc d = {desc};",
        f"TXM_TRY(txk_conv2d(ctx, &d, {ptr(x)}, {ptr(a['packed'])}, {ptr(y, False)}, {res}, "
        f"{_scratch(step)}));",
    ]


def _emit_linear(step: Step) -> list[str]:
    x, y = step.ins[0], step.out
    a = step.attrs
    m, k = x.shape
    n = y.shape[1]
    lda = x.strides[0] if m > 1 else k
    ldy = y.strides[0] if m > 1 else n
    r = a.get("residual")
    ldr = (r.strides[0] if m > 1 else n) if isinstance(r, Ref) else 0
    res = ptr(r) if isinstance(r, Ref) else "NULL"
    return [
        f"static const txk_linear_desc d = {{{m}, {k}, {n}, {lda}, {ldy}, {ldr}, {epilogue(a)}}};",
        f"TXM_TRY(txk_linear(ctx, &d, {ptr(x)}, {ptr(a['packed'])}, {ptr(y, False)}, {res}));",
    ]


def _emit_bmm(step: Step) -> list[str]:
    a, b = step.ins
    y = step.out
    batch, m, k = a.shape
    n = b.shape[2]
    asb, asm, ask = (s if dim != 1 else 0 for s, dim in zip(a.strides, a.shape, strict=True))
    bsb, bsk, bsn = (s if dim != 1 else 0 for s, dim in zip(b.strides, b.shape, strict=True))
    if k == 1:
        ask = 1
    desc = (
        f"{{{batch}, {m}, {n}, {k}, {asb}L, {asm}L, {ask}L, {bsb}L, {bsk}L, {bsn}L, "
        f"{y.strides[0]}L, {y.strides[1]}L, {cfloat(step.attrs.get('alpha', 1.0))}}}"
    )
    return [
        f"static const txk_bmm_desc d = {desc};",
        f"TXM_TRY(txk_bmm(ctx, &d, {ptr(a)}, {ptr(b)}, {ptr(y, False)}, {_scratch(step)}));",
    ]


def _emit_attention(step: Step) -> list[str]:
    q, k, v = step.ins
    a = step.attrs
    desc = (
        f"{{{a['seq']}, {a['heads']}, {a['head_dim']}, {a['qkv_stride']}, {a['out_stride']}, "
        f"{cfloat(a['scale'])}}}"
    )
    return [
        f"static const txk_attention_desc d = {desc};",
        f"TXM_TRY(txk_attention(ctx, &d, {ptr(q)}, {ptr(k)}, {ptr(v)}, {ptr(step.out, False)}, "
        f"{_scratch(step)}));",
    ]


def _emit_binary(step: Step) -> list[str]:
    a, b = step.ins
    y = step.out
    shape = y.shape
    ys = norm_strides(y.shape, y.strides)
    cshape, (cy, ca, cb) = collapse(shape, ys, _broadcast(a, shape), _broadcast(b, shape))
    act = step.attrs.get("act", "NONE")
    if len(cshape) <= 3 and (not cshape or cy[-1] == 1):
        pad = 3 - len(cshape)
        cshape = [1] * pad + cshape
        cy = [0] * pad + cy
        ca = [0] * pad + ca
        cb = [0] * pad + cb
        desc = (
            f"{{TXK_BIN_{step.attrs['op']}, {cshape[0]}, {cshape[1]}, {cshape[2]}, "
            f"{ca[0]}, {ca[1]}, {ca[2]}, {cb[0]}, {cb[1]}, {cb[2]}, {cy[0]}, {cy[1]}, "
            f"{{TXK_ACT_{act}, {cfloat(step.attrs.get('act_min', 0.0))}, "
            f"{cfloat(step.attrs.get('act_max', 0.0))}, TXK_RESIDUAL_NONE}}}}"
        )
        return [
            f"static const txk_binary_desc d = {desc};",
            f"TXM_TRY(txk_binary(ctx, &d, {ptr(a)}, {ptr(b)}, {ptr(y, False)}));",
        ]
    if act != "NONE":
        raise ValueError("fused activation on a generic binary step")
    nd = len(cshape)
    return [
        f"static const long shape[] = {larr(cshape)}, as[] = {larr(ca)}, bs[] = {larr(cb)}, "
        f"ys[] = {larr(cy)};",
        f"TXM_TRY(txg_binary(TXG_{step.attrs['op']}, {nd}, shape, {ptr(a)}, as, {ptr(b)}, bs, "
        f"{ptr(y, False)}, ys));",
    ]


def _emit_unary(step: Step) -> list[str]:
    x, y = step.ins[0], step.out
    op = step.attrs["op"]
    p0, p1 = step.attrs.get("p0", 0.0), step.attrs.get("p1", 0.0)
    cshape, (cy, cx) = collapse(
        y.shape, norm_strides(y.shape, y.strides), norm_strides(x.shape, x.strides)
    )
    if op in TXK_ACTS and len(cshape) <= 1 and (not cshape or (cy[0] == 1 and cx[0] == 1)):
        count = cshape[0] if cshape else 1
        return [
            f"TXM_TRY(txk_unary(ctx, TXK_ACT_{op}, {cfloat(p0)}, {cfloat(p1)}, {count}, "
            f"{ptr(x)}, {ptr(y, False)}));"
        ]
    nd = len(cshape)
    return [
        f"static const long shape[] = {larr(cshape)}, xs[] = {larr(cx)}, ys[] = {larr(cy)};",
        f"TXM_TRY(txg_unary(TXG_{op}, {cfloat(p0)}, {cfloat(p1)}, {nd}, shape, {ptr(x)}, xs, "
        f"{ptr(y, False)}, ys));",
    ]


def _copy_lines(x: Ref, y: Ref) -> list[str]:
    cshape, (cy, cx) = collapse(
        y.shape, norm_strides(y.shape, y.strides), norm_strides(x.shape, x.strides)
    )
    if len(cshape) == 1 and cy[0] == 1 and cx[0] == 1:
        return [f"TXM_TRY(txk_copy2d(1, {cshape[0]}, {ptr(x)}, 0, {ptr(y, False)}, 0));"]
    if len(cshape) == 2 and cy[1] == 1 and cx[1] == 1:
        return [
            f"TXM_TRY(txk_copy2d({cshape[0]}, {cshape[1]}, {ptr(x)}, {cx[0]}, {ptr(y, False)}, "
            f"{cy[0]}));"
        ]
    nd = len(cshape)
    return [
        f"static const long shape[] = {larr(cshape)}, xs[] = {larr(cx)}, ys[] = {larr(cy)};",
        f"TXM_TRY(txg_copy({nd}, shape, {ptr(x)}, xs, {ptr(y, False)}, ys));",
    ]


def _emit_copy(step: Step) -> list[str]:
    return _copy_lines(step.ins[0], step.out)


def _emit_pad(step: Step) -> list[str]:
    y = step.out
    return [
        f"TXM_TRY(txg_fill({y.buf.nfloats}, {cfloat(step.attrs['value'])}, {ptr(y, False)}));",
        "{",
        *("  " + line for line in _copy_lines(step.ins[0], step.attrs["inner"])),
        "}",
    ]


def _opt(ref) -> str:
    return ptr(ref) if isinstance(ref, Ref) else "NULL"


def _emit_layernorm(step: Step) -> list[str]:
    a = step.attrs
    return [
        f"TXM_TRY(txk_layernorm(ctx, {a['rows']}, {a['c']}, {ptr(step.ins[0])}, {a['x_stride']}, "
        f"{ptr(step.out, False)}, {a['y_stride']}, {_opt(a['gamma'])}, {_opt(a['beta'])}, "
        f"{cfloat(a['eps'])}));"
    ]


def _emit_groupnorm(step: Step) -> list[str]:
    a = step.attrs
    return [
        f"TXM_TRY(txk_groupnorm(ctx, {a['n']}, {a['hw']}, {a['c']}, {a['groups']}, "
        f"{ptr(step.ins[0])}, {ptr(step.out, False)}, {_opt(a['gamma'])}, {_opt(a['beta'])}, "
        f"{cfloat(a['eps'])}));"
    ]


def _emit_softmax(step: Step) -> list[str]:
    a = step.attrs
    return [
        f"TXM_TRY(txk_softmax(ctx, {a['rows']}, {a['c']}, {ptr(step.ins[0])}, {a['x_stride']}, "
        f"{ptr(step.out, False)}, {a['y_stride']}));"
    ]


def _pool_desc(step: Step) -> str:
    from timmx.c.lower.ir import pixel_stride

    x, y = step.ins[0], step.out
    a = step.attrs
    n, c, h, w = x.shape
    oh, ow = y.shape[2:]
    xs, ys = pixel_stride(x), pixel_stride(y)
    return (
        f"{{{n}, {h}, {w}, {c}, {oh}, {ow}, {a.get('k', (1, 1))[0]}, {a.get('k', (1, 1))[1]}, "
        f"{a.get('s', (1, 1))[0]}, {a.get('s', (1, 1))[1]}, {a.get('p', (0, 0))[0]}, "
        f"{a.get('p', (0, 0))[1]}, {a.get('d', (1, 1))[0]}, {a.get('d', (1, 1))[1]}, "
        f"{int(a.get('count_include_pad', True))}, {a.get('divisor', 0)}, "
        f"{xs if xs != c else 0}, {ys if ys != c else 0}}}"
    )


def _emit_maxpool(step: Step) -> list[str]:
    return [
        f"static const txk_pool2d_desc d = {_pool_desc(step)};",
        f"TXM_TRY(txk_maxpool2d(ctx, &d, {ptr(step.ins[0])}, {ptr(step.out, False)}));",
    ]


def _emit_avgpool(step: Step) -> list[str]:
    return [
        f"static const txk_pool2d_desc d = {_pool_desc(step)};",
        f"TXM_TRY(txk_avgpool2d(ctx, &d, {ptr(step.ins[0])}, {ptr(step.out, False)}));",
    ]


def _emit_adaptive_avgpool(step: Step) -> list[str]:
    return [
        f"static const txk_pool2d_desc d = {_pool_desc(step)};",
        f"TXM_TRY(txk_adaptive_avgpool2d(ctx, &d, {ptr(step.ins[0])}, {ptr(step.out, False)}));",
    ]


def _emit_global_avgpool(step: Step) -> list[str]:
    x = step.ins[0]
    n, c, h, w = x.shape
    return [
        f"TXM_TRY(txk_global_avgpool(ctx, {n}, {h * w}, {c}, {ptr(x)}, {ptr(step.out, False)}));"
    ]


def _emit_channel_scale(step: Step) -> list[str]:
    x, s = step.ins
    n, c, h, w = x.shape
    return [
        f"TXM_TRY(txk_channel_scale(ctx, {n}, {h * w}, {c}, {ptr(x)}, {ptr(s)}, "
        f"TXK_ACT_{step.attrs.get('gate_act', 'NONE')}, {ptr(step.out, False)}));"
    ]


def _emit_reduce(step: Step) -> list[str]:
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
    return [
        f"static const long shape[] = {larr(cshape)}, xs[] = {larr(cx)}, ys[] = {larr(cy)}, "
        f"rshape[] = {larr(crshape)}, rxs[] = {larr(crx)};",
        f"TXM_TRY(txg_reduce(TXG_RED_{a['op']}, {cfloat(a.get('p0', 0.0))}, {len(cshape)}, shape, "
        f"{ptr(x)}, xs, {ptr(y, False)}, ys, {len(crshape)}, rshape, rxs));",
    ]
