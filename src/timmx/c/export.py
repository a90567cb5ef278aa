"""The C target as plain functions: lower a prepared model, generate the C, verify it."""

from dataclasses import dataclass
from pathlib import Path

from timmx.c.build import (
    DEFAULT_FLAGS,
    build_demo,
    find_compiler,
    require_compiler,
    run_demo,
    scratch_sizer,
)
from timmx.c.emit.generate import Generated, generate
from timmx.c.lower.capture import Lowering, capture
from timmx.c.lower.passes import run_passes
from timmx.errors import ExportError


@dataclass
class Lowered:
    """The lowered program: steps, buffers, the input and output refs."""

    steps: list
    buffers: list
    input_ref: object
    output_ref: object
    fused: dict


def lower(prepared, *, nhwc_input: bool = False, fuse: bool = True) -> Lowered:
    """Capture ``prepared.module`` with torch.export and lower it to kernel steps."""
    program = capture(prepared.module, prepared.sample_input())
    low = Lowering(program, nhwc_input=nhwc_input)
    low.run()
    fused = run_passes(low, fuse=fuse)
    return Lowered(low.steps, low.buffers, low.input_ref, low.output_ref, fused)


def export_c(
    prepared,
    out_dir: Path,
    *,
    prefix: str,
    embed_weights: bool = False,
    nhwc_input: bool = False,
    fuse: bool = True,
    cc: list[str] | None = None,
) -> Generated:
    """Write the C artifact of ``prepared`` into ``out_dir`` (created if needed)."""
    lowered = lower(prepared, nhwc_input=nhwc_input, fuse=fuse)
    cc = cc if cc is not None else find_compiler()
    generated = generate(
        lowered,
        prepared,
        Path(out_dir),
        prefix=prefix,
        embed_weights=embed_weights,
        nhwc_input=nhwc_input,
        scratch_sizer=scratch_sizer(cc),
    )
    generated.fused = lowered.fused  # type: ignore[attr-defined]
    return generated


def c_runner(
    out_dir: Path,
    prefix: str,
    build_dir: Path,
    *,
    nhwc_input: bool = False,
    cc=None,
    flags=None,
    threads: int | None = None,
):
    """Compile the artifact once; returns a function numpy NCHW batch -> numpy output, run by
    the demo on ``threads`` threads (None: the demo's default, one per online core)."""
    import numpy as np

    cc = cc or require_compiler()
    exe = build_demo(out_dir, prefix, build_dir, cc=cc, flags=flags or DEFAULT_FLAGS)
    weights = out_dir / f"{prefix}_weights.bin"

    def run(x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if nhwc_input:
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        inp = build_dir / "input.raw"
        outp = build_dir / "output.raw"
        x.tofile(inp)
        args = [str(inp), str(outp)]
        if weights.exists():
            args.insert(0, str(weights))
        if threads is not None:
            args[:0] = ["--threads", str(int(threads))]
        proc = run_demo(exe, args)
        if proc.returncode != 0:
            raise ExportError(
                f"the generated C program failed (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
            )
        return np.fromfile(outp, dtype=np.float32)

    return run
