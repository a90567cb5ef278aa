"""Graph passes on the lowered steps.

In order: activation pattern fusion (torch.export decomposes hardswish / hardsigmoid into
add/clamp/mul/div and SiLU into sigmoid * x), SE gates (x * sigmoid(s) with s per channel ->
one channel-scale call), zero padding folded into the following conv, then conv/linear
epilogues: per-channel scale/shift (BatchNorm) folded into the weights and bias, activation
and residual add fused into the kernel's epilogue, and dead steps removed.
"""

import math

from timmx.c.lower.ir import Ref, Step, is_dense, norm_strides

ACTS = {"RELU", "CLAMP", "HARDSWISH", "HARDSIGMOID", "SILU", "GELU", "GELU_TANH", "SIGMOID", "TANH"}


def run_passes(low, *, fuse: bool = True) -> dict[str, int]:
    """Run the passes in order; returns how many times each fired."""
    counts: dict[str, int] = {}
    dce(low, counts)
    if fuse:
        fuse_activations(low, counts)
        fuse_se_gates(low, counts)
        fuse_conv_padding(low, counts)
        fuse_attention(low, counts)
        fuse_epilogues(low, counts)
        dce(low, counts)
    return counts


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


class Uses:
    """Who reads each buffer (by root identity) and where each step sits."""

    def __init__(self, steps: list[Step]) -> None:
        from timmx.c.plan import step_refs

        self.readers: dict[int, list[Step]] = {}
        self.writers: dict[int, list[Step]] = {}
        self.index = {id(s): i for i, s in enumerate(steps)}
        for step in steps:
            for ref in step.reads() + step_refs(step):
                if ref.buf is not None and not (
                    ref is step.attrs.get("inner") and step.kind == "pad"
                ):
                    self.readers.setdefault(id(ref.buf), []).append(step)
            if step.out is not None:
                self.writers.setdefault(id(step.out.buf), []).append(step)

    def only_reader(self, ref: Ref) -> Step | None:
        """The single step reading ``ref``'s buffer, if exactly one does and it is fusable."""
        if ref.buf is None or ref.buf.kind != "arena":
            return None
        readers = self.readers.get(id(ref.buf), [])
        if len(readers) != 1 or len(self.writers.get(id(ref.buf), [])) != 1:
            return None
        return readers[0]


def _whole(ref: Ref) -> bool:
    return (
        ref.buf is not None and ref.offset == 0 and ref.numel == ref.buf.nfloats and is_dense(ref)
    )


def _scalar(ref: Ref) -> float | None:
    """The value of a constant that is a single number (broadcast), else None."""
    if ref.buf is None or ref.buf.kind != "weight" or ref.buf.data is None:
        return None
    data = ref.buf.data
    if data.size != 1:
        return None
    return float(data[0])


def _remove(low, dead: list[Step]) -> None:
    ids = {id(s) for s in dead}
    low.steps = [s for s in low.steps if id(s) not in ids]


def _same_mem(a: Ref, b: Ref) -> bool:
    """Two whole-buffer dense refs of the same shape with the same element order."""
    return (
        _whole(a)
        and _whole(b)
        and a.shape == b.shape
        and norm_strides(a.shape, a.strides) == norm_strides(b.shape, b.strides)
    )


def _bounds(step: Step) -> tuple[float, float] | None:
    if step.kind != "unary":
        return None
    if step.attrs["op"] == "RELU":
        return (0.0, math.inf)
    if step.attrs["op"] == "CLAMP":
        return (step.attrs["p0"], step.attrs["p1"])
    return None


def merge_clamps(low, counts: dict[str, int]) -> None:
    """clamp_min then clamp_max (how hardtanh / relu6 decompose) -> one clamp."""
    uses = Uses(low.steps)
    dead = []
    for step in low.steps:
        first = _bounds(step)
        if first is None or step in dead:
            continue
        nxt = uses.only_reader(step.out)
        second = _bounds(nxt) if nxt is not None else None
        if second is None or not nxt.ins[0].same_view(step.out) or not _whole(step.out):
            continue
        lo, hi = max(first[0], second[0]), min(first[1], second[1])
        nxt.ins = [step.ins[0]]
        nxt.attrs = {"op": "CLAMP", "p0": lo, "p1": hi}
        if lo == 0.0 and math.isinf(hi):
            nxt.attrs["op"] = "RELU"
        dead.append(step)
        _bump(counts, "clamp_merge")
    _remove(low, dead)


def fuse_activations(low, counts: dict[str, int]) -> None:
    """hardswish, hardsigmoid and SiLU patterns -> one unary step."""
    merge_clamps(low, counts)
    changed = True
    while changed:
        changed = False
        uses = Uses(low.steps)
        for step in low.steps:
            hard = step.kind == "binary" and step.attrs["op"] == "ADD"
            silu = step.kind == "unary" and step.attrs["op"] == "SIGMOID"
            if (hard and _fuse_hard(low, uses, step, counts)) or (
                silu and _fuse_silu(low, uses, step, counts)
            ):
                changed = True
                break


def _fuse_hard(low, uses: Uses, add: Step, counts) -> bool:
    x, three = add.ins
    if _scalar(three) != 3.0 or not _whole(add.out):
        return False
    clamp = uses.only_reader(add.out)
    if (
        clamp is None
        or clamp.kind != "unary"
        or clamp.attrs["op"] != "CLAMP"
        or (clamp.attrs["p0"], clamp.attrs["p1"]) != (0.0, 6.0)
        or not clamp.ins[0].same_view(add.out)
    ):
        return False
    nxt = uses.only_reader(clamp.out)
    if nxt is None or nxt.kind != "binary":
        return False
    chain = [add, clamp]
    op = "HARDSIGMOID"
    if nxt.attrs["op"] == "MUL" and _scalar(nxt.ins[1]) is None:
        a, b = nxt.ins
        other = a if b.same_view(clamp.out) else (b if a.same_view(clamp.out) else None)
        if other is None or not other.same_view(x) or not _whole(nxt.out):
            return False
        chain.append(nxt)
        op = "HARDSWISH"
        nxt = uses.only_reader(nxt.out)
        if nxt is None or nxt.kind != "binary":
            return False
    last_in = chain[-1].out
    ok_div = nxt.attrs["op"] == "DIV" and _scalar(nxt.ins[1]) == 6.0
    ok_mul = nxt.attrs["op"] == "MUL" and abs((_scalar(nxt.ins[1]) or 0) - 1 / 6) < 1e-7
    if not (ok_div or ok_mul) or not nxt.ins[0].same_view(last_in):
        return False
    if not _same_mem(x, nxt.out) and not (
        x.shape == nxt.out.shape
        and norm_strides(x.shape, x.strides) == norm_strides(nxt.out.shape, nxt.out.strides)
    ):
        return False
    nxt.kind = "unary"
    nxt.ins = [x]
    nxt.attrs = {"op": op, "p0": 0.0, "p1": 0.0}
    _remove(low, chain)
    _bump(counts, op.lower())
    return True


def _fuse_silu(low, uses: Uses, sig: Step, counts) -> bool:
    x = sig.ins[0]
    mul = uses.only_reader(sig.out)
    if mul is None or mul.kind != "binary" or mul.attrs["op"] != "MUL":
        return False
    a, b = mul.ins
    other = a if b.same_view(sig.out) else (b if a.same_view(sig.out) else None)
    if other is None or not other.same_view(x) or mul.out.shape != x.shape:
        return False
    mul.kind = "unary"
    mul.ins = [x]
    mul.attrs = {"op": "SILU", "p0": 0.0, "p1": 0.0}
    _remove(low, [sig])
    _bump(counts, "silu")
    return True


def fuse_se_gates(low, counts: dict[str, int]) -> None:
    """x * act(s) with x NHWC [N,C,H,W] and s [N,C,1,1] -> one txk_channel_scale call."""
    from timmx.c.lower.capture import pixel_stride

    uses = Uses(low.steps)
    dead = []
    for step in low.steps:
        if step.kind != "binary" or step.attrs["op"] != "MUL" or step.out.ndim != 4:
            continue
        a, b = step.ins
        for x, g in ((a, b), (b, a)):
            n, c = step.out.shape[:2]
            if x.shape != step.out.shape or g.shape not in ((n, c, 1, 1), (c, 1, 1)):
                continue
            if g.buf is None or g.buf.kind != "arena":
                continue
            if pixel_stride(x) != c or pixel_stride(step.out) != c or not _whole(step.out):
                continue
            gate = None
            writers = uses.writers.get(id(g.buf), [])
            if (
                len(writers) == 1
                and writers[0].kind == "unary"
                and writers[0].attrs["op"] in ("SIGMOID", "HARDSIGMOID")
                and uses.only_reader(g) is step
                and writers[0].out.same_view(g)
            ):
                gate = writers[0]
            s = gate.ins[0] if gate else g
            if s.shape[-2:] != (1, 1) or not _dense_nc(s, n, c):
                continue
            step.kind = "channel_scale"
            step.ins = [x, s]
            step.attrs = {"gate_act": gate.attrs["op"] if gate else "NONE"}
            if gate:
                dead.append(gate)
            _bump(counts, "se_gate")
            break
    _remove(low, dead)


def _dense_nc(s: Ref, n: int, c: int) -> bool:
    """s addresses [n][c] densely (channel stride 1, batch stride c)."""
    strides = norm_strides(s.shape, s.strides)
    if s.ndim == 4:
        return (c == 1 or strides[1] == 1) and (n == 1 or strides[0] == c)
    return c == 1 or strides[0] == 1


def _strides(ref: Ref) -> tuple[int, ...]:
    return tuple(s if n != 1 else 0 for n, s in zip(ref.shape, ref.strides, strict=True))


def fuse_attention(low, counts: dict[str, int]) -> None:
    """(q * scale) @ k^T -> softmax -> @ v -> heads merged: one txk_attention call.

    Matches the explicit attention of timm's exportable mode for one image, with q, k and v
    read in place from the qkv projection's output rows and the result written straight into
    the merged-heads buffer the output projection reads.
    """
    uses = Uses(low.steps)
    for bmm2 in list(low.steps):
        if bmm2.kind != "bmm" or bmm2.attrs.get("alpha", 1.0) != 1.0:
            continue
        probs, v = bmm2.ins
        sm = uses.writers.get(id(probs.buf), [])
        if len(sm) != 1 or sm[0].kind != "softmax" or uses.only_reader(probs) is not bmm2:
            continue
        sm = sm[0]
        scores = sm.ins[0]
        bw = uses.writers.get(id(scores.buf), [])
        if len(bw) != 1 or bw[0].kind != "bmm" or uses.only_reader(scores) is not sm:
            continue
        bmm1 = bw[0]
        q, k = bmm1.ins
        scale = float(bmm1.attrs.get("alpha", 1.0))
        removed = [bmm1, sm, bmm2]
        heads, seq, hd = q.shape
        if k.shape != (heads, hd, seq) or v.shape != (heads, seq, hd) or heads < 1:
            continue
        if q.buf is not None and q.buf.kind == "arena":
            qw = uses.writers.get(id(q.buf), [])
            if (
                len(qw) == 1
                and qw[0].kind == "binary"
                and qw[0].attrs["op"] == "MUL"
                and _scalar(qw[0].ins[1]) is not None
                and uses.only_reader(q) is bmm1
                and _whole(qw[0].out)
            ):
                mul = qw[0]
                src = mul.ins[0]
                if src.ndim == 4 and src.shape[0] == 1:
                    src = Ref(src.shape[1:], src.strides[1:], src.buf, src.offset)
                if src.shape != (heads, seq, hd) or mul.out.numel != q.numel:
                    continue
                # q as a view of the scaled tensor must follow the source's element order
                if _strides(q) != tuple(
                    s for s in _strides(Ref(mul.out.shape[-3:], mul.out.strides[-3:]))
                ):
                    continue
                scale *= _scalar(mul.ins[1])
                q = src
                removed.insert(0, mul)
        rows = k.strides[2] if seq > 1 else None
        if rows is None or k.buf is not v.buf or q.buf is not k.buf or k.buf.kind == "weight":
            continue
        head_ok = (
            _strides(q) == (hd if heads > 1 else 0, rows, 1 if hd > 1 else 0)
            and _strides(k) == (hd if heads > 1 else 0, 1 if hd > 1 else 0, rows)
            and _strides(v) == (hd if heads > 1 else 0, rows, 1 if hd > 1 else 0)
        )
        if not head_ok:
            continue
        out = bmm2.out
        cp = uses.only_reader(out)
        if cp is None or cp.kind != "copy" or not _whole(out):
            continue
        src, dst = cp.ins[0], cp.out
        # the copy merges heads: src (1, seq, heads, hd) of the bmm output -> dst rows
        if src.shape != (1, seq, heads, hd) or _strides(src)[1:] != (
            hd if seq > 1 else 0,
            seq * hd if heads > 1 else 0,
            1 if hd > 1 else 0,
        ):
            continue
        ds = _strides(dst)
        if ds[2:] != (hd if heads > 1 else 0, 1 if hd > 1 else 0):
            continue
        out_stride = ds[1] if seq > 1 else heads * hd
        cp.kind = "attention"
        cp.ins = [
            Ref((seq, heads * hd), (rows, 1), q.buf, q.offset),
            Ref((seq, heads * hd), (rows, 1), k.buf, k.offset),
            Ref((seq, heads * hd), (rows, 1), v.buf, v.offset),
        ]
        cp.out = Ref(dst.shape, dst.strides, dst.buf, dst.offset)
        cp.attrs = {
            "seq": seq,
            "heads": heads,
            "head_dim": hd,
            "qkv_stride": rows,
            "out_stride": out_stride,
            "scale": scale,
        }
        cp.module = bmm2.module or cp.module
        _remove(low, removed)
        uses = Uses(low.steps)
        _bump(counts, "attention")


def fuse_conv_padding(low, counts: dict[str, int]) -> None:
    """Zero ``constant_pad_nd`` on H/W followed by a conv -> the conv's own padding."""
    from timmx.c.lower.capture import pixel_stride

    uses = Uses(low.steps)
    dead = []
    for step in low.steps:
        if step.kind != "pad" or step.attrs["value"] != 0.0 or step.out.ndim != 4:
            continue
        pad = list(step.attrs["pad"]) + [0] * (8 - len(step.attrs["pad"]))
        if any(pad[4:]):
            continue
        conv = uses.only_reader(step.out)
        if conv is None or conv.kind != "conv" or not conv.ins[0].same_view(step.out):
            continue
        x = step.ins[0]
        if x.buf is None or pixel_stride(x) is None:
            continue
        left, right, top, bottom = pad[:4]
        t, l_, b, r = conv.attrs["pad"]
        conv.attrs["pad"] = [t + top, l_ + left, b + bottom, r + right]
        conv.ins[0] = x
        dead.append(step)
        _bump(counts, "pad_into_conv")
    _remove(low, dead)


def _memory_order_const(const: Ref, view: Ref) -> "object | None":
    """The constant broadcast over ``view``'s shape, laid out in ``view``'s memory order."""
    import numpy as np

    data = const.buf.data
    shape = view.shape
    pad = len(shape) - const.ndim
    if pad < 0:
        return None
    cstrides = [0] * pad + list(norm_strides(const.shape, const.strides))
    item = data.itemsize
    bc = np.lib.stride_tricks.as_strided(
        data[const.offset :], shape=shape, strides=[s * item for s in cstrides]
    )
    mem = np.empty(view.buf.nfloats, dtype=np.float32)
    dst = np.lib.stride_tricks.as_strided(
        mem, shape=shape, strides=[s * 4 for s in norm_strides(shape, view.strides)]
    )
    dst[...] = bc
    return mem


def _channel_vector(const: Ref, view: Ref, channels: int):
    """Per-output-channel values of a constant applied to ``view`` (channels innermost)."""
    mem = _memory_order_const(const, view)
    if mem is None or mem.size % channels:
        return None
    rows = mem.reshape(-1, channels)
    if not (rows == rows[:1]).all():
        return None
    return rows[0].copy()


def fuse_epilogues(low, counts: dict[str, int]) -> None:
    """Fold per-channel scale/shift into conv/linear weights; fuse activation and residual."""
    import torch

    changed = True
    while changed:
        changed = False
        uses = Uses(low.steps)
        for step in low.steps:
            if step.kind not in ("conv", "linear") or not _whole(step.out):
                continue
            nxt = uses.only_reader(step.out)
            if nxt is None:
                continue
            y = step.out
            channels = y.shape[1]
            a = step.attrs
            if nxt.kind == "binary" and nxt.attrs.get("act", "NONE") == "NONE":
                op = nxt.attrs["op"]
                x0, x1 = nxt.ins
                mine, other = (x0, x1) if x0.buf is y.buf else (x1, x0)
                if mine.buf is not y.buf or not _same_mem(mine, nxt.out) or other.buf is y.buf:
                    continue
                if other.buf.kind == "weight" and other.buf.data is not None:
                    if a["act"] != "NONE" or a["residual_mode"] != "NONE":
                        continue
                    if op not in ("MUL", "ADD") and not (op in ("SUB", "DIV") and mine is x0):
                        continue
                    vec = _channel_vector(other, mine, channels)
                    if vec is None:
                        continue
                    v = torch.from_numpy(vec).double()
                    w = a["weight"].double()
                    bias = a["bias"].double() if a["bias"] is not None else torch.zeros(channels)
                    shape = (-1,) + (1,) * (w.ndim - 1)
                    if op == "MUL":
                        w, bias = w * v.reshape(shape), bias * v
                    elif op == "DIV":
                        w, bias = w / v.reshape(shape), bias / v
                    elif op == "ADD":
                        bias = bias + v
                    else:
                        bias = bias - v
                    a["weight"], a["bias"] = w.float(), bias.float()
                    a["folded"] = True
                    _bump(counts, "fold_scale_shift")
                elif op == "ADD" and other.buf.kind != "weight":
                    if a["residual_mode"] != "NONE" or other.shape != mine.shape:
                        continue
                    if norm_strides(other.shape, other.strides) != norm_strides(
                        mine.shape, mine.strides
                    ):
                        continue
                    wr = uses.writers.get(id(other.buf), [])
                    if other.buf.kind == "arena" and (
                        not wr or max(uses.index[id(s)] for s in wr) >= uses.index[id(step)]
                    ):
                        continue
                    if other.buf.kind == "output":
                        continue
                    r = Ref(shape=y.shape, strides=y.strides, buf=other.buf, offset=other.offset)
                    if step.kind == "conv":
                        from timmx.c.lower.capture import pixel_stride

                        if pixel_stride(r) is None:
                            continue
                    a["residual"] = r
                    a["residual_mode"] = "BEFORE_ACT" if a["act"] == "NONE" else "AFTER_ACT"
                    _bump(counts, "residual")
                else:
                    continue
            elif nxt.kind == "unary" and nxt.attrs["op"] in ACTS:
                if a["act"] != "NONE" or a["residual_mode"] == "AFTER_ACT":
                    continue
                if not _same_mem(nxt.ins[0], nxt.out) or nxt.ins[0].buf is not y.buf:
                    continue
                a["act"] = nxt.attrs["op"]
                a["act_min"] = nxt.attrs.get("p0", 0.0)
                a["act_max"] = nxt.attrs.get("p1", 0.0)
                if a["act"] == "CLAMP" and math.isinf(a["act_max"]) and a["act_min"] == 0.0:
                    a["act"] = "RELU"
                _bump(counts, "activation")
            else:
                continue
            step.out = Ref(shape=y.shape, strides=y.strides, buf=nxt.out.buf, offset=0)
            if nxt.module and nxt.module != step.module:
                also = step.attrs.setdefault("also", [])
                if nxt.module not in also:
                    also.append(nxt.module)
            _remove(low, [nxt])
            changed = True
            break


def dce(low, counts: dict[str, int]) -> None:
    """Drop steps whose output nobody reads."""
    from timmx.c.plan import step_refs

    changed = True
    while changed:
        changed = False
        read = set()
        for step in low.steps:
            for ref in step.reads() + step_refs(step):
                if ref.buf is not None and not (step.kind == "pad" and ref is step.attrs["inner"]):
                    read.add(id(ref.buf))
        keep: list[Step] = []
        for step in low.steps:
            out = step.out
            if out is not None and out.buf.kind == "arena" and id(out.buf) not in read:
                counts["dead"] = counts.get("dead", 0) + 1
                changed = True
                continue
            keep.append(step)
        low.steps = keep
