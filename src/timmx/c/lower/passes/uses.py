"""Who reads and writes each buffer, and the predicates the fusion passes share."""

from timmx.c.lower.ir import Ref, Step, is_dense, norm_strides


def bump(counts: dict[str, int], key: str) -> None:
    """Count one firing of ``key`` (the report's ``fused`` figures)."""
    counts[key] = counts.get(key, 0) + 1


class Uses:
    """Who reads each buffer (by root identity) and where each step sits."""

    def __init__(self, steps: list[Step]) -> None:
        self.readers: dict[int, list[Step]] = {}
        self.writers: dict[int, list[Step]] = {}
        self.index = {id(s): i for i, s in enumerate(steps)}
        for step in steps:
            for ref in step.sources():
                if ref.buf is not None:
                    self.readers.setdefault(id(ref.buf), []).append(step)
            if step.out is not None:
                self.writers.setdefault(id(step.out.buf), []).append(step)

    def only_reader(self, ref: Ref) -> Step | None:
        """The single step reading ``ref``'s buffer, if exactly one does and it is fusable."""
        if ref.buf is None or ref.buf.kind != "arena":
            return None
        readers = self.readers.get(id(ref.buf), [])
        if len(readers) != 1 or len(self.writers.get(id(ref.buf), [])) != 1:
            return None
        return readers[0]


def whole(ref: Ref) -> bool:
    """The ref covers its whole buffer, densely, from offset 0."""
    return (
        ref.buf is not None and ref.offset == 0 and ref.numel == ref.buf.nfloats and is_dense(ref)
    )


def scalar_value(ref: Ref) -> float | None:
    """The value of a constant that is a single number (broadcast), else None."""
    if ref.buf is None or ref.buf.kind != "weight" or ref.buf.data is None:
        return None
    data = ref.buf.data
    if data.size != 1:
        return None
    return float(data[0])


def remove_steps(low, dead: list[Step]) -> None:
    """Drop ``dead`` from the lowering's steps."""
    ids = {id(s) for s in dead}
    low.steps = [s for s in low.steps if id(s) not in ids]


def same_mem(a: Ref, b: Ref) -> bool:
    """Two whole-buffer dense refs of the same shape with the same element order."""
    return (
        whole(a)
        and whole(b)
        and a.shape == b.shape
        and norm_strides(a.shape, a.strides) == norm_strides(b.shape, b.strides)
    )
