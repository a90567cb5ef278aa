"""Graph passes on the lowered steps: pattern fusion, BatchNorm folding, epilogue fusion, DCE."""

from timmx.c.lower.ir import Step


def run_passes(low, *, fuse: bool = True) -> dict[str, int]:
    """Run the passes in order; returns how many times each fired."""
    counts: dict[str, int] = {}
    dce(low, counts)
    return counts


def dce(low, counts: dict[str, int]) -> None:
    """Drop steps whose output nobody reads."""
    from timmx.c.plan import step_refs

    changed = True
    while changed:
        changed = False
        read = set()
        for step in low.steps:
            for ref in step.reads() + step_refs(step):
                if ref.buf is not None:
                    read.add(id(ref.buf))
        keep: list[Step] = []
        for step in low.steps:
            out = step.out
            if out is not None and out.buf.kind == "arena" and id(out.buf) not in read:
                counts["dead"] = counts.get("dead", 0) + 1
                changed = True
                continue
            keep.append(step)
        low.steps = keep
