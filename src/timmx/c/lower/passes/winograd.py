"""3x3 stride-1 convs where Winograd F(4x4, 3x3) is faster -> ``algo = WINOGRAD`` (the kernel
library's ``TXK_CONV_WINOGRAD``: 4x fewer multiply-adds, transformed weights 4x larger)."""

from timmx.c.lower.ir import StepKind
from timmx.c.lower.passes.uses import bump

# Measured with the library's kernels (fastest of 24 calls, 1 and 2 threads, AVX-512 Xeon;
# direct / Winograd time): 1.5-2.5x from 14x14 (16 tiles) up with 32 or more channels each
# side and 16 MMACs or more (56x56x64 2.2 / 2.1, 28x28x128 2.3, 14x14x256 1.5 / 1.5,
# 112x112x32 1.5 / 1.3); it loses or ties below: 7x7x512 1.1 / 1.1, 7x7x256 0.87,
# 7x7x160 0.79, 28x28 16->16 0.90, 14x14 64->64 1.19 / 0.94.
# In a whole model the transformed weights (36 ic oc floats) come from memory, not cache: on
# live resnet50 (1 and 2 threads, interleaved with onnxruntime) Winograd on all 11 3x3
# stride-1 convs of 14x14 and up gave 0.928 / 0.924 of the direct model's median, and without
# the five 14x14x256 ones (9.4 MB of weights each, 4x the direct layout's) 0.938 / 0.935: 1%
# for 35 MB more weights. So a conv also needs MIN_MACS_PER_BYTE of direct work per byte of
# its transformed weights (56x56x64 196, 28x28x128 49, 14x14x256 12).
MIN_TILES = 16
MIN_CHANNELS = 32
MIN_MACS = 16e6
MIN_MACS_PER_BYTE = 20


def wins(n: int, ic: int, oc: int, oh: int, ow: int) -> bool:
    """Whether a 3x3 stride-1 conv of this shape runs faster as Winograd F(4x4, 3x3)."""
    tiles = n * -(-oh // 4) * -(-ow // 4)
    macs = n * oh * ow * ic * oc * 9
    weight_bytes = 36 * ic * oc * 4
    return (
        tiles >= MIN_TILES
        and min(ic, oc) >= MIN_CHANNELS
        and macs >= MIN_MACS
        and macs >= MIN_MACS_PER_BYTE * weight_bytes
    )


def select_winograd(low, counts: dict[str, int]) -> None:
    """Mark every plain 3x3 stride-1 conv (groups 1, no dilation) where :func:`wins`."""
    for step in low.steps:
        a = step.attrs
        if step.kind is not StepKind.CONV or a.get("algo", "DIRECT") != "DIRECT":
            continue
        oc, ic, kh, kw = (int(d) for d in a["weight"].shape)
        if (kh, kw) != (3, 3) or a["groups"] != 1:
            continue
        if tuple(a["stride"]) != (1, 1) or tuple(a["dilation"]) != (1, 1):
            continue
        n, _, oh, ow = step.out.shape
        if wins(n, ic, oc, oh, ow):
            a["algo"] = "WINOGRAD"
            bump(counts, "winograd")
