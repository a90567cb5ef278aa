"""How much of the fp32 tolerance the C target's Winograd convolutions use, on real photos.

    uv run python benchmarks/c_winograd_margin.py resnet101 selecsls42b
    uv run python benchmarks/c_winograd_margin.py resnet50 --photos 16 --work /tmp/margin

For each model (live weights from the cache ``bench_c.py`` uses, seed 0) it exports the C twice,
with the ``winograd`` pass and without it (every conv direct), runs both on --photos real photos
through the model's eval transform (2 threads) and prints, for each, the max abs error against
PyTorch and the worst ratio of an output's error to its bound under timmx's fp32 tolerance for
the C target (``|err| <= atol * scale + rtol * |ref|``; 1.0 = at the bound).
"""

import argparse
import tempfile
from pathlib import Path

from bench_c import add_weights_dir


def margins(name: str, photos: int, work: Path, weights_dir: Path) -> list[str]:
    """One line per variant (winograd, direct) of ``name``."""
    import numpy as np

    import timmx.c.lower.passes as passes
    from timmx._torch_env import import_timm
    from timmx.c.build import require_compiler
    from timmx.c.export import c_runner, export_c
    from timmx.core.bench.worker import live_checkpoint
    from timmx.core.job import CommonOptions
    from timmx.core.model import prepare_model
    from timmx.core.tolerances import tolerance_for
    from timmx.testing.images import photo_batch

    checkpoint = live_checkpoint(name, {}, weights_dir)
    prepared = prepare_model(name, CommonOptions(checkpoint=checkpoint))
    config = import_timm().data.resolve_data_config({}, model=prepared.module)
    xs = photo_batch(tuple(int(v) for v in config["input_size"]), config, photos, seed=1)
    ref = np.stack([prepared.run(xs[i : i + 1]).numpy().reshape(-1) for i in range(photos)])
    tol = tolerance_for("c", "fp32")
    scale = np.maximum(np.abs(ref).max(axis=1, keepdims=True), 1.0)
    bound = tol.atol * scale + tol.rtol * np.abs(ref)
    cc = require_compiler()
    lines = []
    selected = passes.select_winograd
    try:
        for variant in ("winograd", "direct"):
            passes.select_winograd = selected if variant == "winograd" else (lambda low, c: None)
            out_dir = work / name / variant
            export_c(prepared, out_dir, prefix="m", cc=cc)
            run = c_runner(out_dir, "m", out_dir / "build", cc=cc, threads=2)
            out = np.stack(
                [np.asarray(run(xs[i : i + 1].numpy())).reshape(-1) for i in range(photos)]
            ).astype(np.float64)
            diff = np.abs(out - ref)
            lines.append(
                f"{name:<24} {variant:<9} max abs err {diff.max():.2e}  "
                f"worst err/bound {(diff / bound).max():.3f}  "
                f"(logit scale {float(scale.min()):.1f}-{float(scale.max()):.1f})"
            )
    finally:
        passes.select_winograd = selected
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--photos", type=int, default=8, help="real photos per model")
    ap.add_argument("--work", type=Path, help="keep the exports here (default: a temp dir)")
    add_weights_dir(ap)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for name in args.models:
            for line in margins(name, args.photos, work, args.weights_dir):
                print(line, flush=True)


if __name__ == "__main__":
    main()
