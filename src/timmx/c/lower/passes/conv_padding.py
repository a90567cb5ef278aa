"""Zero padding on H/W followed by a conv -> the conv's own padding."""

from timmx.c.lower.ir import StepKind, pixel_stride
from timmx.c.lower.passes.uses import Uses, bump, remove_steps


def fuse_conv_padding(low, counts: dict[str, int]) -> None:
    """Zero ``constant_pad_nd`` on H/W followed by a conv -> the conv's own padding."""
    uses = Uses(low.steps)
    dead = []
    for step in low.steps:
        if step.kind is not StepKind.PAD or step.attrs["value"] != 0.0 or step.out.ndim != 4:
            continue
        pad = list(step.attrs["pad"]) + [0] * (8 - len(step.attrs["pad"]))
        if any(pad[4:]):
            continue
        conv = uses.only_reader(step.out)
        if conv is None or conv.kind is not StepKind.CONV or not conv.ins[0].same_view(step.out):
            continue
        x = step.ins[0]
        if x.buf is None or pixel_stride(x) is None:
            continue
        left, right, top, bottom = pad[:4]
        t, l_, b, r = conv.attrs["pad"]
        conv.attrs["pad"] = [t + top, l_ + left, b + bottom, r + right]
        conv.ins[0] = x
        dead.append(step)
        bump(counts, "pad_into_conv")
    remove_steps(low, dead)
