"""A 1x1 conv whose only reader is a depthwise conv -> one ``txk_conv2d_pw_dw`` call (the
expansion of an inverted residual: the expanded tensor never goes to memory)."""

from timmx.c.lower.ir import FLOAT_BYTES, Step, StepKind, pixel_stride
from timmx.c.lower.passes.uses import Uses, bump, remove_steps, whole

# Fuse only when one image of the expanded tensor is larger than this: smaller ones stay in L2
# between the two separate calls anyway, and the fused call's GEMM runs on a few rows at a time
# (partial tiles). Measured on efficientnet_b0 (1 thread, fastest of 120 calls, fused / apart):
# 112x112x96 0.81, 56x56x144 1.00-1.02, 28x28x240 and 14x14 0.99-1.08, 7x7x1152 1.10.
MIN_FUSED_BYTES = 1 << 20


def is_pointwise(step: Step) -> bool:
    """A plain 1x1 conv: stride 1, no padding, groups 1, direct."""
    a = step.attrs
    if step.kind is not StepKind.CONV:
        return False
    return (
        tuple(a["weight"].shape[2:]) == (1, 1)
        and tuple(a["stride"]) == (1, 1)
        and not any(a["pad"])
        and a["groups"] == 1
        and a.get("algo", "DIRECT") == "DIRECT"
    )


def _is_dw(step: Step) -> bool:
    """A depthwise conv without dilation, direct."""
    a = step.attrs
    c = step.out.shape[1]
    return (
        step.kind is StepKind.CONV
        and a["groups"] == c == step.ins[0].shape[1]
        and c > 1
        and tuple(a["dilation"]) == (1, 1)
        and a.get("algo", "DIRECT") == "DIRECT"
    )


def fuse_pw_dw(low, counts: dict[str, int]) -> None:
    """1x1 conv -> depthwise conv (the 1x1's output read by nothing else) -> one fused step.

    The depthwise step becomes a ``CONV_PW_DW`` step that reads the 1x1's input; the 1x1 step
    moves into its ``pw`` attribute, and the expanded tensor's buffer is no longer planned."""
    uses = Uses(low.steps)
    dead = []
    for pw in low.steps:
        if not is_pointwise(pw) or not whole(pw.out):
            continue
        if pw.attrs.get("residual_mode", "NONE") != "NONE":
            continue
        if pixel_stride(pw.out) != pw.out.shape[1] or pixel_stride(pw.ins[0]) is None:
            continue
        dw = uses.only_reader(pw.out)
        if dw is None or not _is_dw(dw) or not dw.ins[0].same_view(pw.out):
            continue
        _, c, h, w = pw.out.shape
        if dw.ins[0].shape[0] != pw.ins[0].shape[0] or c * h * w * FLOAT_BYTES <= MIN_FUSED_BYTES:
            continue
        also = [*pw.attrs.get("also", []), dw.module, *dw.attrs.get("also", [])]
        dw.kind = StepKind.CONV_PW_DW
        dw.attrs["pw"] = pw
        dw.attrs["dw_module"] = dw.module  # names the depthwise weights
        dw.attrs["also"] = [m for m in also if m and m != pw.module]
        dw.ins = [pw.ins[0]]
        dw.module = pw.module
        dead.append(pw)
        bump(counts, "pw_dw")
    remove_steps(low, dead)
