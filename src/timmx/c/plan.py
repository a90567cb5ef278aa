"""The static memory plan: liveness of arena buffers, in-place reuse, offsets in one arena.

Every step's output, and its scratch, is an arena buffer with a live interval (the first step
that writes it to the last step that reads it). Buffers whose intervals overlap never share
bytes; the rest are packed greedily (largest first, lowest fitting offset), each at a 64-byte
aligned offset. An elementwise step whose input dies at that step writes in place.
"""

from dataclasses import dataclass, field

from timmx.c.lower.ir import ALIGN, Buffer, Step, StepKind, norm_strides, round_up

INPLACE_KINDS = {
    StepKind.UNARY,
    StepKind.BINARY,
    StepKind.SOFTMAX,
    StepKind.LAYERNORM,
    StepKind.CHANNEL_SCALE,
}


@dataclass
class MemoryPlan:
    """Arena size (bytes) and the number of buffers / in-place reuses, for the report, and the
    live interval (first step, last step) of every planned (root) arena buffer."""

    arena_bytes: int
    buffers: int
    inplace: int
    naive_bytes: int
    live: dict[Buffer, tuple[int, int]] = field(default_factory=dict)


def _whole(ref) -> bool:
    return ref.buf is not None and ref.offset == 0 and ref.numel == ref.buf.nfloats


def _intervals(steps: list[Step]) -> dict[Buffer, list[int]]:
    live: dict[Buffer, list[int]] = {}

    def touch(buf: Buffer | None, i: int) -> None:
        if buf is None:
            return
        buf = buf.root()
        if buf.kind != "arena":
            return
        span = live.setdefault(buf, [i, i])
        span[0] = min(span[0], i)
        span[1] = max(span[1], i)

    for i, step in enumerate(steps):
        for ref in step.touched():
            touch(ref.buf, i)
        if step.out is not None:
            touch(step.out.buf, i)
        touch(step.scratch_buf, i)
    return live


def make_inplace(steps: list[Step]) -> int:
    """Let elementwise steps write over an input that dies there; returns how many did."""
    last_read: dict[Buffer, int] = {}
    for i, step in enumerate(steps):
        for ref in step.touched():
            if ref.buf is not None:
                last_read[ref.buf.root()] = i
    count = 0
    for i, step in enumerate(steps):
        if step.kind not in INPLACE_KINDS or step.out is None or not _whole(step.out):
            continue
        out_buf = step.out.buf
        if out_buf.kind != "arena" or out_buf.alias is not None:
            continue
        for ref in step.ins:
            buf = ref.buf.root() if ref.buf is not None else None
            if (
                buf is None
                or buf.kind != "arena"
                or buf is out_buf
                or not _whole(ref)
                or ref.buf is not buf
                or last_read.get(buf) != i
                or ref.shape != step.out.shape
                or norm_strides(ref.shape, ref.strides)
                != norm_strides(step.out.shape, step.out.strides)
            ):
                continue
            others = [r for r in step.ins if r is not ref and r.buf is not None]
            if any(r.buf.root() is buf and not r.same_view(ref) for r in others):
                continue  # another operand reads the same memory in another order
            out_buf.alias = buf
            last_read[buf] = max(last_read.get(buf, i), last_read.get(out_buf, i))
            count += 1
            break
    return count


def plan_memory(steps: list[Step], buffers: list[Buffer], *, inplace: bool = True) -> MemoryPlan:
    """Assign arena offsets (bytes) to every arena buffer; returns the plan's figures."""
    for step in steps:
        if step.scratch and step.scratch_buf is None:
            step.scratch_buf = Buffer(
                nfloats=round_up(step.scratch, 4) // 4, kind="arena", name="scratch"
            )
            buffers.append(step.scratch_buf)
    reused = make_inplace(steps) if inplace else 0
    live = _intervals(steps)
    roots = sorted(live, key=lambda b: (-round_up(b.nbytes, ALIGN), live[b][0]))
    placed: list[tuple[int, int, int, int]] = []  # (start, end, lo, hi)
    arena = 0
    naive = 0
    for buf in roots:
        size = round_up(max(buf.nbytes, 4), ALIGN)
        naive += size
        lo_t, hi_t = live[buf]
        conflicts = sorted(
            (start, end) for start, end, a, b in placed if not (b < lo_t or a > hi_t)
        )
        offset = 0
        for start, end in conflicts:
            if offset + size <= start:
                break
            offset = max(offset, end)
        buf.offset = offset
        placed.append((offset, offset + size, lo_t, hi_t))
        arena = max(arena, offset + size)
    for buf in buffers:
        if buf.kind == "arena" and buf.alias is not None:
            buf.offset = buf.root().offset
    return MemoryPlan(
        arena_bytes=arena,
        buffers=len(roots),
        inplace=reused,
        naive_bytes=naive,
        live={buf: (lo, hi) for buf, (lo, hi) in live.items()},
    )
