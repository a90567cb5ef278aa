"""Graph passes on the lowered steps, one module each, run in this order.

``dce`` first; then, when fusing: ``activations`` (hardswish / hardsigmoid / SiLU patterns and
clamp pairs back to one unary step), ``se_gates`` (x * sigmoid(s) with s per channel -> one
channel-scale call), ``conv_padding`` (zero padding into the following conv), ``attention``
(bmm, softmax, bmm, head merge -> one attention call), ``epilogues`` (BatchNorm folded into
conv / linear weights, activation and residual add fused into the kernel's epilogue), ``pw_dw``
(a 1x1 conv and the depthwise conv reading it -> one call), ``gate_weights`` (an SE gate into
the weights of the 1x1 conv reading it), ``concat_slices`` (a conv whose output is only copied
into a concatenation writes its channel slice itself), ``winograd`` (3x3 stride-1 convs of the
shapes where Winograd F(4x4, 3x3) wins), and ``dce`` again.
"""

from timmx.c.lower.passes.activations import fuse_activations
from timmx.c.lower.passes.attention import fuse_attention
from timmx.c.lower.passes.concat_slices import fuse_concat_producers
from timmx.c.lower.passes.conv_padding import fuse_conv_padding
from timmx.c.lower.passes.dce import dce
from timmx.c.lower.passes.epilogues import fuse_epilogues
from timmx.c.lower.passes.gate_weights import fold_gate_weights
from timmx.c.lower.passes.pw_dw import fuse_pw_dw
from timmx.c.lower.passes.se_gates import fuse_se_gates
from timmx.c.lower.passes.winograd import select_winograd


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
        fuse_pw_dw(low, counts)
        fold_gate_weights(low, counts)
        fuse_concat_producers(low, counts)
        select_winograd(low, counts)
        dce(low, counts)
    return counts
