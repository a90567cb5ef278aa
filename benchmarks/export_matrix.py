"""Export a matrix of models x formats with timmx and print one table of what was measured.

Usage:
    uv run benchmarks/export_matrix.py --formats onnx,torchscript,torch-export \
        --models resnet50,efficientnet_b0 [--set mode=int8] [--json results.json]

Each cell is one real export, verified in its runtime. Weights: live by default
(``--live-weights``: timmx.testing.live_weights on real photos, exported with ``--checkpoint``,
verified on a folder of the photos with ``--verify-data``; int8 modes calibrate on that folder
with ``--calibration-data`` and verify on its held-out slice); ``--no-live-weights`` for timm's
random init and seeded noise inputs; ``--set pretrained=true`` for timm's pretrained weights.
Columns: seconds (whole export incl. verification), size, max abs error, cosine, top-1 agreement.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from live_checkpoint import live_checkpoint  # benchmarks/live_checkpoint.py

import timmx
from timmx.core.registry import default_registry


def _value(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", required=True, help="comma-separated formats")
    parser.add_argument("--models", required=True, help="comma-separated timm models")
    parser.add_argument("--set", action="append", default=[], help="option=value (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument(
        "--live-weights",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="live weights and real-photo verification/calibration (default: on)",
    )
    args = parser.parse_args()
    options = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}
    with tempfile.TemporaryDirectory() as weights:
        run(args, options, Path(weights))


def _live_options(model: str, options: dict, folder: Path, cache: dict) -> dict:
    """--checkpoint with live weights, and --verify-data (or --calibration-data for int8) on a
    folder of real photos, unless ``options`` name their own weights or data."""
    from timmx.testing import write_photo_folder

    extra: dict = {}
    if not {"checkpoint", "pretrained"} & set(options):
        if model not in cache:
            cache[model] = live_checkpoint(model, folder)
        extra["checkpoint"] = cache[model]
    if not {"verify_data", "calibration_data", "random_calibration"} & set(options):
        photos = folder / "photos"
        if not photos.is_dir():
            write_photo_folder(photos)
        int8 = str(options.get("mode", "")) == "int8"
        extra["calibration_data" if int8 else "verify_data"] = photos
    return extra


def run(args, options: dict, folder: Path) -> None:
    checkpoints: dict = {}
    rows = []
    header = f"{'format':<13} {'model':<24} {'seconds':>8} {'size MiB':>9} {'max abs':>9}"
    print(header + f" {'cosine':>9} {'top-1':>6}  status")
    for fmt in args.formats.split(","):
        backend = default_registry().get(fmt)
        for model in args.models.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                output = Path(tmp) / backend.default_output_name(model)
                if str(options.get("convert_to", "")) == "neuralnetwork":  # coreml: a .mlmodel
                    output = output.with_suffix(".mlmodel")
                row = {"format": fmt, "model": model, **options}
                started = time.perf_counter()
                try:
                    extra = {}
                    if args.live_weights:
                        extra = _live_options(model, options, folder, checkpoints)
                        row["weights"] = "live"
                    started = time.perf_counter()  # a failed row's seconds: the export alone
                    result = timmx.export(fmt, model, output=output, **options, **extra)
                    v = result.verify
                    row.update(result.to_dict())
                    status = "ok" if v and v.checked else (v.note if v else "not verified")
                    print(
                        f"{fmt:<13} {model:<24} {result.seconds:>8.1f} "
                        f"{result.size_bytes / 2**20:>9.1f} "
                        f"{_fmt(v.max_abs_err if v else None):>9} "
                        f"{_fmt(v.cosine if v else None, 6):>9} "
                        f"{_fmt(v.top1_agree if v else None, 2):>6}  {status}",
                        flush=True,
                    )
                except Exception as exc:  # a failed export or verification: report, go on
                    row["error"] = f"{type(exc).__name__}: {exc}"
                    row["seconds"] = round(time.perf_counter() - started, 1)
                    print(f"{fmt:<13} {model:<24} FAILED: {exc}", flush=True)
                rows.append(row)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}e}" if digits == 2 and value < 0.01 else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()
