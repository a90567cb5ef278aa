"""Conv / linear epilogues: per-channel scale and shift (BatchNorm) folded into the weights
and bias, then the activation and the residual add fused into the kernel's epilogue."""

import math

from timmx.c.lower.ir import Ref, StepKind, norm_strides, pixel_stride
from timmx.c.lower.passes.uses import Uses, bump, remove_steps, same_mem, whole

ACTS = {"RELU", "CLAMP", "HARDSWISH", "HARDSIGMOID", "SILU", "GELU", "GELU_TANH", "SIGMOID", "TANH"}


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
            if step.kind not in (StepKind.CONV, StepKind.LINEAR) or not whole(step.out):
                continue
            nxt = uses.only_reader(step.out)
            if nxt is None:
                continue
            y = step.out
            channels = y.shape[1]
            a = step.attrs
            if nxt.kind is StepKind.BINARY and nxt.attrs.get("act", "NONE") == "NONE":
                op = nxt.attrs["op"]
                x0, x1 = nxt.ins
                mine, other = (x0, x1) if x0.buf is y.buf else (x1, x0)
                if mine.buf is not y.buf or not same_mem(mine, nxt.out) or other.buf is y.buf:
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
                    bump(counts, "fold_scale_shift")
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
                    if step.kind is StepKind.CONV and pixel_stride(r) is None:
                        continue
                    a["residual"] = r
                    a["residual_mode"] = "BEFORE_ACT" if a["act"] == "NONE" else "AFTER_ACT"
                    bump(counts, "residual")
                else:
                    continue
            elif nxt.kind is StepKind.UNARY and nxt.attrs["op"] in ACTS:
                if a["act"] != "NONE" or a["residual_mode"] == "AFTER_ACT":
                    continue
                if not same_mem(nxt.ins[0], nxt.out) or nxt.ins[0].buf is not y.buf:
                    continue
                a["act"] = nxt.attrs["op"]
                a["act_min"] = nxt.attrs.get("p0", 0.0)
                a["act_max"] = nxt.attrs.get("p1", 0.0)
                if a["act"] == "CLAMP" and math.isinf(a["act_max"]) and a["act_min"] == 0.0:
                    a["act"] = "RELU"
                bump(counts, "activation")
            else:
                continue
            step.out = Ref(shape=y.shape, strides=y.strides, buf=nxt.out.buf, offset=0)
            if nxt.module and nxt.module != step.module:
                also = step.attrs.setdefault("also", [])
                if nxt.module not in also:
                    also.append(nxt.module)
            remove_steps(low, [nxt])
            changed = True
            break
