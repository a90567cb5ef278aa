"""SE gates: ``x * act(s)`` with ``s`` per channel -> one txk_channel_scale call."""

from timmx.c.lower.ir import Ref, StepKind, norm_strides, pixel_stride
from timmx.c.lower.passes.uses import Uses, bump, remove_steps, whole


def fuse_se_gates(low, counts: dict[str, int]) -> None:
    """x * act(s) with x NHWC [N,C,H,W] and s [N,C,1,1] -> one txk_channel_scale call."""
    uses = Uses(low.steps)
    dead = []
    for step in low.steps:
        if step.kind is not StepKind.BINARY or step.attrs["op"] != "MUL" or step.out.ndim != 4:
            continue
        a, b = step.ins
        for x, g in ((a, b), (b, a)):
            n, c = step.out.shape[:2]
            if x.shape != step.out.shape or g.shape not in ((n, c, 1, 1), (c, 1, 1)):
                continue
            if g.buf is None or g.buf.kind != "arena":
                continue
            if pixel_stride(x) != c or pixel_stride(step.out) != c or not whole(step.out):
                continue
            gate = None
            writers = uses.writers.get(id(g.buf), [])
            if (
                len(writers) == 1
                and writers[0].kind is StepKind.UNARY
                and writers[0].attrs["op"] in ("SIGMOID", "HARDSIGMOID")
                and uses.only_reader(g) is step
                and writers[0].out.same_view(g)
            ):
                gate = writers[0]
            s = gate.ins[0] if gate else g
            if s.shape[-2:] != (1, 1) or not _dense_nc(s, n, c):
                continue
            step.kind = StepKind.CHANNEL_SCALE
            step.ins = [x, s]
            step.attrs = {"gate_act": gate.attrs["op"] if gate else "NONE"}
            if gate:
                dead.append(gate)
            bump(counts, "se_gate")
            break
    remove_steps(low, dead)


def _dense_nc(s: Ref, n: int, c: int) -> bool:
    """s addresses [n][c] densely (channel stride 1, batch stride c)."""
    strides = norm_strides(s.shape, s.strides)
    if s.ndim == 4:
        return (c == 1 or strides[1] == 1) and (n == 1 or strides[0] == c)
    return c == 1 or strides[0] == 1
