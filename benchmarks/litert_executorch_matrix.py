"""Measure litert/executorch exports (seconds, size, max abs err, top-1, cosine) to JSON lines.

    uv run benchmarks/litert_executorch_matrix.py results.jsonl [--random-weights] [--models M ...]
    uv run benchmarks/litert_executorch_matrix.py results.jsonl --markdown

By default (``--live-weights``) every model gets live weights (timmx.testing.live_weights on a
batch of real photos, saved as a state_dict and exported with ``--checkpoint``), fp32/fp16/
dynamic-int8 verify on the photo folder (``--verify-data``) and int8 calibrates on the photo
folder (``--calibration-data``; its held-out slice is the verification set).
``--random-weights`` reproduces the old figures: timm's random init, seeded noise inputs and
``--random-calibration --calibration-samples 8``.
``--markdown`` prints the table of an existing results file.
"""

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

from live_checkpoint import live_checkpoint  # benchmarks/live_checkpoint.py

import timmx

MODELS = ["test_efficientnet", "test_vit", "resnet50", "mobilenetv3_large_100"]
CASES = [
    ("litert", "fp32"),
    ("litert", "fp16"),
    ("litert", "dynamic-int8"),
    ("litert", "int8"),
    ("executorch", "fp32"),
    ("executorch", "int8"),
]


def options(mode: str, live: bool, checkpoint: Path | None, photos: Path | None) -> dict:
    opts: dict = {"mode": mode}
    if live:
        opts["checkpoint"] = checkpoint
        if mode == "int8":
            opts["calibration_data"] = photos  # verifies on the held-out slice
        else:
            opts["verify_data"] = photos
    elif mode == "int8":
        opts.update(random_calibration=True, calibration_samples=8)
    return opts


def measure(out: Path, models: list[str], live: bool) -> None:
    from timmx.testing import write_photo_folder

    with tempfile.TemporaryDirectory() as tmp:
        photos = write_photo_folder(Path(tmp) / "photos") if live else None
        for model in models:
            started = time.perf_counter()
            checkpoint = live_checkpoint(model, Path(tmp)) if live else None
            live_seconds = round(time.perf_counter() - started, 1)
            for fmt, mode in CASES:
                suffix = ".tflite" if fmt == "litert" else ".pte"
                opts = options(mode, live, checkpoint, photos)
                base = dict(
                    format=fmt, mode=mode, model=model, weights="live" if live else "random"
                )
                t = time.perf_counter()
                try:
                    r = timmx.export(fmt, model, output=Path(tmp) / f"m{suffix}", **opts)
                    v = r.verify
                    row = dict(
                        base,
                        seconds=round(r.seconds, 1),
                        size_mib=round(r.size_bytes / 2**20, 2),
                        max_abs=v.max_abs_err,
                        top1=v.top1_agree,
                        cosine=v.cosine,
                        passed=v.passed,
                        accuracy=r.details.get("accuracy"),
                        live_weights_s=live_seconds,
                    )
                except Exception as e:
                    row = dict(
                        base,
                        seconds=round(time.perf_counter() - t, 1),
                        error=f"{type(e).__name__}: {str(e)[:400]}",
                    )
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(row, flush=True)


def markdown(results: Path) -> str:
    """The table of a results file; a failed verification shows its figures, marked FAILED."""
    lines = [
        "| backend | mode | model | export s | size MiB | max abs err | top-1 agree | cosine |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for line in results.read_text().splitlines():
        r = json.loads(line)
        head = f"| {r['format']} | {r['mode']} | {r['model']} | {r['seconds']} |"
        error = r.get("error", "")
        figures = re.search(
            r"max abs err (\S+) \(atol (\S+), rtol ([^)]+)\), cosine (\S+) \(min ([^)]+)\), "
            r"top-1 agreement (\d+%)",
            error,
        )
        if figures:
            err, atol, rtol, cosine, min_cosine, top1 = figures.groups()
            # bold what failed: the element-wise bound (when the mode has one) or the cosine
            err = f"**{err}** (atol {atol}, rtol {rtol})" if atol != "None" else err
            low = float(cosine) < float(min_cosine)
            cosine = f"**{cosine}** (min {min_cosine})" if low else f"{cosine} (min {min_cosine})"
            lines.append(f"{head} **FAILED** (nothing written) | {err} | {top1} | {cosine} |")
        elif error:
            lines.append(f"{head} - | FAILED: {error.splitlines()[0][:200]} | | |")
        else:
            lines.append(
                f"{head} {r['size_mib']} | {r['max_abs']:.3g} | {r['top1']:.0%} | "
                f"{r['cosine']:.4f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument(
        "--live-weights",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="live weights + photo verification/calibration (default) or timm's random init",
    )
    parser.add_argument("--random-weights", dest="live_weights", action="store_false")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--markdown", action="store_true", help="print the results as a table")
    args = parser.parse_args()
    if args.markdown:
        print(markdown(args.results))
    else:
        measure(args.results, args.models, args.live_weights)


if __name__ == "__main__":
    main()
