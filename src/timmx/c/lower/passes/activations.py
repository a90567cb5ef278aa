"""Activation patterns: clamp pairs, hardswish / hardsigmoid (add, clamp, mul, div) and
SiLU (sigmoid * x), as torch.export decomposes them, back to one unary step."""

import math

from timmx.c.lower.ir import Step, StepKind, norm_strides
from timmx.c.lower.passes.uses import Uses, bump, remove_steps, same_mem, scalar_value, whole


def _bounds(step: Step) -> tuple[float, float] | None:
    if step.kind is not StepKind.UNARY:
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
        if second is None or not nxt.ins[0].same_view(step.out) or not whole(step.out):
            continue
        lo, hi = max(first[0], second[0]), min(first[1], second[1])
        nxt.ins = [step.ins[0]]
        nxt.attrs = {"op": "CLAMP", "p0": lo, "p1": hi}
        if lo == 0.0 and math.isinf(hi):
            nxt.attrs["op"] = "RELU"
        dead.append(step)
        bump(counts, "clamp_merge")
    remove_steps(low, dead)


def fuse_activations(low, counts: dict[str, int]) -> None:
    """hardswish, hardsigmoid and SiLU patterns -> one unary step."""
    merge_clamps(low, counts)
    changed = True
    while changed:
        changed = False
        uses = Uses(low.steps)
        for step in low.steps:
            hard = step.kind is StepKind.BINARY and step.attrs["op"] == "ADD"
            silu = step.kind is StepKind.UNARY and step.attrs["op"] == "SIGMOID"
            if (hard and _fuse_hard(low, uses, step, counts)) or (
                silu and _fuse_silu(low, uses, step, counts)
            ):
                changed = True
                break


def _fuse_hard(low, uses: Uses, add: Step, counts) -> bool:
    x, three = add.ins
    if scalar_value(three) != 3.0 or not whole(add.out):
        return False
    clamp = uses.only_reader(add.out)
    if (
        clamp is None
        or clamp.kind is not StepKind.UNARY
        or clamp.attrs["op"] != "CLAMP"
        or (clamp.attrs["p0"], clamp.attrs["p1"]) != (0.0, 6.0)
        or not clamp.ins[0].same_view(add.out)
    ):
        return False
    nxt = uses.only_reader(clamp.out)
    if nxt is None or nxt.kind is not StepKind.BINARY:
        return False
    chain = [add, clamp]
    op = "HARDSIGMOID"
    if nxt.attrs["op"] == "MUL" and scalar_value(nxt.ins[1]) is None:
        a, b = nxt.ins
        other = a if b.same_view(clamp.out) else (b if a.same_view(clamp.out) else None)
        if other is None or not other.same_view(x) or not whole(nxt.out):
            return False
        chain.append(nxt)
        op = "HARDSWISH"
        nxt = uses.only_reader(nxt.out)
        if nxt is None or nxt.kind is not StepKind.BINARY:
            return False
    last_in = chain[-1].out
    ok_div = nxt.attrs["op"] == "DIV" and scalar_value(nxt.ins[1]) == 6.0
    ok_mul = nxt.attrs["op"] == "MUL" and abs((scalar_value(nxt.ins[1]) or 0) - 1 / 6) < 1e-7
    if not (ok_div or ok_mul) or not nxt.ins[0].same_view(last_in):
        return False
    if not same_mem(x, nxt.out) and not (
        x.shape == nxt.out.shape
        and norm_strides(x.shape, x.strides) == norm_strides(nxt.out.shape, nxt.out.strides)
    ):
        return False
    nxt.kind = StepKind.UNARY
    nxt.ins = [x]
    nxt.attrs = {"op": op, "p0": 0.0, "p1": 0.0}
    remove_steps(low, chain)
    bump(counts, op.lower())
    return True


def _fuse_silu(low, uses: Uses, sig: Step, counts) -> bool:
    x = sig.ins[0]
    mul = uses.only_reader(sig.out)
    if mul is None or mul.kind is not StepKind.BINARY or mul.attrs["op"] != "MUL":
        return False
    a, b = mul.ins
    other = a if b.same_view(sig.out) else (b if a.same_view(sig.out) else None)
    if other is None or not other.same_view(x) or mul.out.shape != x.shape:
        return False
    mul.kind = StepKind.UNARY
    mul.ins = [x]
    mul.attrs = {"op": "SILU", "p0": 0.0, "p1": 0.0}
    remove_steps(low, [sig])
    bump(counts, "silu")
    return True
