"""Multi-head attention: (q * scale) @ k^T -> softmax -> @ v -> merged heads: one call."""

from timmx.c.lower.ir import Ref, StepKind
from timmx.c.lower.passes.uses import Uses, bump, remove_steps, scalar_value, whole


def _strides(ref: Ref) -> tuple[int, ...]:
    return tuple(s if n != 1 else 0 for n, s in zip(ref.shape, ref.strides, strict=True))


def fuse_attention(low, counts: dict[str, int]) -> None:
    """(q * scale) @ k^T -> softmax -> @ v -> heads merged: one txk_attention call.

    Matches the explicit attention of timm's exportable mode for one image, with q, k and v
    read in place from the qkv projection's output rows and the result written straight into
    the merged-heads buffer the output projection reads.
    """
    uses = Uses(low.steps)
    for bmm2 in list(low.steps):
        if bmm2.kind is not StepKind.BMM or bmm2.attrs.get("alpha", 1.0) != 1.0:
            continue
        probs, v = bmm2.ins
        sm = uses.writers.get(id(probs.buf), [])
        if (
            len(sm) != 1
            or sm[0].kind is not StepKind.SOFTMAX
            or uses.only_reader(probs) is not bmm2
        ):
            continue
        sm = sm[0]
        scores = sm.ins[0]
        bw = uses.writers.get(id(scores.buf), [])
        if len(bw) != 1 or bw[0].kind is not StepKind.BMM or uses.only_reader(scores) is not sm:
            continue
        bmm1 = bw[0]
        q, k = bmm1.ins
        scale = float(bmm1.attrs.get("alpha", 1.0))
        removed = [bmm1, sm, bmm2]
        heads, seq, hd = q.shape
        if k.shape != (heads, hd, seq) or v.shape != (heads, seq, hd) or heads < 1:
            continue
        if q.buf is not None and q.buf.kind == "arena":
            qw = uses.writers.get(id(q.buf), [])
            if (
                len(qw) == 1
                and qw[0].kind is StepKind.BINARY
                and qw[0].attrs["op"] == "MUL"
                and scalar_value(qw[0].ins[1]) is not None
                and uses.only_reader(q) is bmm1
                and whole(qw[0].out)
            ):
                mul = qw[0]
                src = mul.ins[0]
                if src.ndim == 4 and src.shape[0] == 1:
                    src = Ref(src.shape[1:], src.strides[1:], src.buf, src.offset)
                if src.shape != (heads, seq, hd) or mul.out.numel != q.numel:
                    continue
                # q as a view of the scaled tensor must follow the source's element order
                if _strides(q) != tuple(
                    s for s in _strides(Ref(mul.out.shape[-3:], mul.out.strides[-3:]))
                ):
                    continue
                scale *= scalar_value(mul.ins[1])
                q = src
                removed.insert(0, mul)
        rows = k.strides[2] if seq > 1 else None
        if rows is None or k.buf is not v.buf or q.buf is not k.buf or k.buf.kind == "weight":
            continue
        head_ok = (
            _strides(q) == (hd if heads > 1 else 0, rows, 1 if hd > 1 else 0)
            and _strides(k) == (hd if heads > 1 else 0, 1 if hd > 1 else 0, rows)
            and _strides(v) == (hd if heads > 1 else 0, rows, 1 if hd > 1 else 0)
        )
        if not head_ok:
            continue
        out = bmm2.out
        cp = uses.only_reader(out)
        if cp is None or cp.kind is not StepKind.COPY or not whole(out):
            continue
        src, dst = cp.ins[0], cp.out
        # the copy merges heads: src (1, seq, heads, hd) of the bmm output -> dst rows
        if src.shape != (1, seq, heads, hd) or _strides(src)[1:] != (
            hd if seq > 1 else 0,
            seq * hd if heads > 1 else 0,
            1 if hd > 1 else 0,
        ):
            continue
        ds = _strides(dst)
        if ds[2:] != (hd if heads > 1 else 0, 1 if hd > 1 else 0):
            continue
        out_stride = ds[1] if seq > 1 else heads * hd
        cp.kind = StepKind.ATTENTION
        cp.ins = [
            Ref((seq, heads * hd), (rows, 1), q.buf, q.offset),
            Ref((seq, heads * hd), (rows, 1), k.buf, k.offset),
            Ref((seq, heads * hd), (rows, 1), v.buf, v.offset),
        ]
        cp.out = Ref(dst.shape, dst.strides, dst.buf, dst.offset)
        cp.attrs = {
            "seq": seq,
            "heads": heads,
            "head_dim": hd,
            "qkv_stride": rows,
            "out_stride": out_stride,
            "scale": scale,
        }
        cp.module = bmm2.module or cp.module
        remove_steps(low, removed)
        uses = Uses(low.steps)
        bump(counts, "attention")
