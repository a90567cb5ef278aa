"""The C generator's tables agree with each other (no model export needed): every step kind
has an emitter, every descriptor builder's fields follow the ABI mirror, and the op families
are registered."""

from timmx.c import abi
from timmx.c.descriptors import _BUILDERS, SCRATCH_SIZE_FUNCTIONS
from timmx.c.emit.steps import EMITTERS, wrap
from timmx.c.lower.ir import StepKind


def test_every_step_kind_has_one_emitter() -> None:
    assert set(EMITTERS) == set(StepKind), set(StepKind) ^ set(EMITTERS)


def test_scratch_queries_are_library_functions_of_described_kinds() -> None:
    for kind, fn in SCRATCH_SIZE_FUNCTIONS.items():
        assert kind in _BUILDERS, f"{kind} takes scratch but has no descriptor"
        assert fn in abi.FUNCTIONS, f"{fn} is not in the kernel library's mirror"


def test_capture_registers_every_op_family() -> None:
    from timmx.c.lower import capture

    for op in (
        "aten.convolution.default",
        "aten.addmm.default",
        "aten.native_layer_norm.default",
        "aten.max_pool2d_with_indices.default",
        "aten.mean.dim",
        "aten.cat.default",
        "aten.relu.default",
        "aten.add.Tensor",
        "aten.upsample_bilinear2d.vec",
    ):
        assert op in capture.HANDLERS, f"{op} has no lowering"


def test_wrap_keeps_lines_short_and_text_intact() -> None:
    items = [f"ARENA(A_BUFFER_{i})" for i in range(12)]
    lines = wrap("  TXM_STEP(3, txk_conv2d(", items, "));")
    assert all(len(line) <= 100 for line in lines), lines
    assert (
        " ".join(line.strip() for line in lines)
        == "TXM_STEP(3, txk_conv2d(" + ", ".join(items) + "));"
    )
