"""C names for the generated source: the weights map (``W_*``), the arena map (``A_*``) and one
base name per step for its file-scope data (``d_*``), all derived from timm module paths."""

import re

from timmx.c.lower.ir import (
    FLOAT_BYTES,
    Buffer,
    Ref,
    Step,
    StepKind,
    dense_order,
    is_dense,
    pixel_stride,
)

# the suffix of an arena buffer's name, after the module of the step that first writes it
_ROLE = {StepKind.COPY: "COPY", StepKind.PAD: "PAD"}


def module_ident(module: str) -> str:
    """``layer1.0.conv1 (Conv2d)`` -> ``layer1_0_conv1`` (``graph`` for no module)."""
    path = module.split(" (", 1)[0]
    return re.sub(r"[^0-9A-Za-z]+", "_", path).strip("_").lower() or "graph"


class _Namer:
    """Unique names: the first request for a base gets it, later ones ``<base>_2``, ..."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, *candidates: str) -> str:
        for name in candidates:
            if name not in self.used:
                self.used.add(name)
                return name
        base = candidates[-1]
        n = 2
        while f"{base}_{n}" in self.used:
            n += 1
        self.used.add(f"{base}_{n}")
        return f"{base}_{n}"


def _dims(shape) -> str:
    return "x".join(str(s) for s in shape)


def memory_shape(ref: Ref) -> str | None:
    """The shape of a dense ref in memory order (NHWC for 4-D activations), or None."""
    if ref.ndim == 4 and pixel_stride(ref) == ref.shape[1]:
        n, c, h, w = ref.shape
        return _dims((n, h, w, c))
    if not is_dense(ref):
        return None
    return _dims(ref.shape[d] for d in dense_order(ref)) if ref.ndim else "1"


def _floats(n: int) -> str:
    return f"{n} float" + ("" if n == 1 else "s")


class Symbols:
    """Names of the steps, weight buffers and planned arena buffers, and C pointer expressions
    for refs (``ARENA(A_X) + 16``, ``WEIGHTS(W_Y)``, ``input``)."""

    def __init__(
        self,
        steps: list[Step],
        weights: list[Buffer],
        live: dict[Buffer, tuple[int, int]],
    ) -> None:
        self.steps = steps
        self.step_names: dict[int, str] = {}
        names = _Namer()
        for step in steps:  # a layout copy is named after the op it feeds: ``conv1_0_copy``
            base = module_ident(step.module)
            first = () if step.kind in _ROLE else (base,)
            self.step_names[id(step)] = names.take(*first, f"{base}_{step.kind}")
        self.weights: dict[Buffer, str] = {}
        self.weight_notes: dict[Buffer, str] = {}
        self._name_weights(weights)
        self.arena: dict[Buffer, str] = {}
        self.arena_notes: dict[Buffer, str] = {}
        self._name_arena(live)

    # -- naming ------------------------------------------------------------------------------
    def _name_weights(self, weights: list[Buffer]) -> None:
        roles: dict[Buffer, str] = {}
        for step in self.steps:
            for key, value in step.attrs.items():
                if isinstance(value, Ref) and value.buf is not None and value.buf.kind == "weight":
                    roles.setdefault(value.buf, "" if key in ("packed", "pw_packed") else key)
        names = _Namer()
        for buf in weights:
            role = roles.get(buf, "const")
            base = "W_" + module_ident(buf.module).upper()
            name = names.take(f"{base}_{role.upper()}" if role else base)
            self.weights[buf] = name
            note = buf.note or (f"{role}, " if role else "") + _floats(buf.nfloats)
            self.weight_notes[buf] = note

    def _name_arena(self, live: dict[Buffer, tuple[int, int]]) -> None:
        first: dict[Buffer, tuple[Step, str]] = {}
        for step in self.steps:
            if step.out is not None and step.out.buf.kind == "arena":
                first.setdefault(step.out.buf.root(), (step, _ROLE.get(step.kind, "OUT")))
            if step.scratch_buf is not None:
                first.setdefault(step.scratch_buf.root(), (step, "SCRATCH"))
        whole: dict[Buffer, Ref] = {}
        for step in self.steps:
            refs = [*([step.out] if step.out is not None else []), *step.touched()]
            for ref in refs:
                root = ref.buf.root() if ref.buf is not None else None
                whole_ref = root in live and ref.offset == 0 and ref.numel == root.nfloats
                if whole_ref and memory_shape(ref) is not None:
                    whole.setdefault(root, ref)
        names = _Namer()
        for root in sorted(live, key=lambda b: (live[b][0], b.offset)):
            step, role = first.get(root, (None, "BUF"))
            base = "A_" + module_ident(step.module if step else "").upper()
            self.arena[root] = names.take(f"{base}_{role}")
            lo, hi = live[root]
            when = f"step {lo}" if lo == hi else f"steps {lo}..{hi}"
            if role == "SCRATCH":
                what = f"scratch, {root.nfloats * FLOAT_BYTES} bytes"
            elif root in whole:
                what = memory_shape(whole[root])
            else:
                what = _floats(root.nfloats)
            self.arena_notes[root] = f"{what}, {when}"

    # -- pointers ----------------------------------------------------------------------------
    def ptr_buf(self, buf: Buffer, offset: int = 0) -> str:
        """A C expression for the float at ``offset`` (floats) in ``buf``."""
        if buf.kind in ("input", "output"):
            base = buf.kind
        elif buf.kind == "weight":
            base = f"WEIGHTS({self.weights[buf]})"
        else:
            base = f"ARENA({self.arena[buf.root()]})"
        return f"{base} + {offset}" if offset else base

    def ptr(self, ref: Ref) -> str:
        """A C expression pointing at the first element of ``ref``."""
        return self.ptr_buf(ref.buf, ref.offset)

    # -- maps --------------------------------------------------------------------------------
    def weights_map(self) -> list[str]:
        """``#define W_NAME offset /* what */`` lines, in payload order."""
        return _defines((n, b.offset, self.weight_notes[b]) for b, n in self.weights.items())

    def arena_map(self) -> list[str]:
        """``#define A_NAME offset /* shape, steps */`` lines, in order of first use."""
        return _defines((n, b.offset, self.arena_notes[b]) for b, n in self.arena.items())


def _defines(rows) -> list[str]:
    rows = list(rows)
    if not rows:
        return []
    width = max(len(f"#define {name} {offset}") for name, offset, _ in rows)
    out = []
    for name, offset, note in rows:
        text = f"#define {name} {offset}"
        out.append(f"{text:<{width}} /* {note.replace('*/', '* /')} */")
    return out
