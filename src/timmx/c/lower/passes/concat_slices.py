"""A conv whose output is only copied into a channel slice of a concatenation -> the conv
writes the slice itself (the kernels take an output pixel stride), and the copy goes."""

from timmx.c.lower.ir import StepKind, pixel_stride
from timmx.c.lower.passes.uses import Uses, bump, remove_steps, whole

PRODUCERS = (StepKind.CONV, StepKind.CONV_PW_DW)


def fuse_concat_producers(low, counts: dict[str, int]) -> None:
    """COPY of a conv's whole NHWC output into a channel slice of another NHWC buffer -> the
    conv writes into the slice (``y_stride`` = the concatenation's channels)."""
    uses = Uses(low.steps)
    dead = []
    for copy in low.steps:
        if copy.kind is not StepKind.COPY or len(copy.ins) != 1:
            continue
        src, part = copy.ins[0], copy.out
        if src.ndim != 4 or part.ndim != 4 or src.shape != part.shape:
            continue
        if not whole(src) or pixel_stride(src) != src.shape[1] or pixel_stride(part) is None:
            continue
        writers = uses.writers.get(id(src.buf), [])
        if len(writers) != 1 or uses.only_reader(src) is not copy:
            continue
        conv = writers[0]
        if conv.kind not in PRODUCERS or not conv.out.same_view(src):
            continue
        if part.buf.kind != "arena" or any(
            r.buf is not None and r.buf.root() is part.buf.root() for r in conv.touched()
        ):
            continue  # the conv reads the concatenation it would write into
        conv.out = part
        dead.append(copy)
        bump(counts, "conv_into_concat")
    remove_steps(low, dead)
