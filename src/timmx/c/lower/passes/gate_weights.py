"""An SE gate (channel scale) whose only reader is a 1x1 conv -> the gate folded into that
conv's weights at run time (``txk_gate_weights``), where that is fewer multiplies: the conv
then reads the ungated tensor, and no pass over the image is left."""

from timmx.c.lower.ir import Buffer, Ref, StepKind, ceil_div
from timmx.c.lower.passes.pw_dw import is_pointwise
from timmx.c.lower.passes.uses import Uses, bump

# Fold only where the conv has at most 1/4 as many outputs as the image has pixels: the gated
# copy costs in_c * out_c products over weights that come from memory cold, the channel scale
# in_c * pixels over a tensor still in cache. Measured on efficientnet_b0 (1 thread, gate
# step / channel scale): 56x56 (24 outputs) 0.06, 28x28 (40) 0.46, 14x14 (80) 3.2, 14x14
# (112) 4.6.
WEIGHTS_PER_PIXEL = 4


def fold_gate_weights(low, counts: dict[str, int]) -> None:
    """channel_scale(x, s) -> 1x1 conv: the scale step becomes a ``GATE_WEIGHTS`` step writing
    the conv's gated packed weights to the arena (``in_c * out_c`` products instead of
    ``pixels * in_c``), and the conv reads x. Batch 1 only (one gate per image), and only
    where the conv has few outputs for the image's pixels (:data:`WEIGHTS_PER_PIXEL`)."""
    uses = Uses(low.steps)
    for step in low.steps:
        if step.kind is not StepKind.CHANNEL_SCALE:
            continue
        x, s = step.ins
        n, c, h, w = x.shape
        conv = uses.only_reader(step.out)
        if n != 1 or conv is None or not is_pointwise(conv):
            continue
        if not conv.ins[0].same_view(step.out):
            continue
        out_c = conv.out.shape[1]
        if out_c * WEIGHTS_PER_PIXEL > h * w:
            continue
        nfloats = ceil_div(out_c, 16) * 16 * (1 + c)
        buf = Buffer(nfloats=nfloats, kind="arena", name="gated_w", module=conv.module)
        step.kind = StepKind.GATE_WEIGHTS
        step.ins = [s]
        step.out = Ref(shape=(nfloats,), strides=(1,), buf=buf)
        step.attrs["conv"] = conv
        conv.ins[0] = x
        conv.attrs["gate_step"] = step
        conv.attrs["gated_packed"] = step.out  # what the conv reads (packing points it there)
        low.buffers.append(buf)
        bump(counts, "gate_into_weights")
