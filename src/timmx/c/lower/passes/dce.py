"""Dead-step elimination: drop steps whose output nobody reads."""

from timmx.c.lower.ir import Step
from timmx.c.lower.passes.uses import bump


def dce(low, counts: dict[str, int]) -> None:
    """Drop steps whose output nobody reads."""
    changed = True
    while changed:
        changed = False
        read = set()
        for step in low.steps:
            for ref in step.sources():
                if ref.buf is not None:
                    read.add(id(ref.buf))
        keep: list[Step] = []
        for step in low.steps:
            out = step.out
            if out is not None and out.buf.kind == "arena" and id(out.buf) not in read:
                bump(counts, "dead")
                changed = True
                continue
            keep.append(step)
        low.steps = keep
