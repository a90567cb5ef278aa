"""Export a matrix of models x formats with timmx and print one table of what was measured.

Usage:
    uv run benchmarks/export_matrix.py --formats onnx,torchscript,torch-export \
        --models resnet50,efficientnet_b0 [--set mode=int8] [--json results.json]

Each cell is one real export (random weights unless --pretrained), verified in its runtime.
Columns: seconds (whole export incl. verification), size, max abs error, cosine, top-1 agreement.
"""

import argparse
import json
import tempfile
from pathlib import Path

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
    args = parser.parse_args()
    options = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}
    rows = []
    header = f"{'format':<13} {'model':<24} {'seconds':>8} {'size MiB':>9} {'max abs':>9}"
    print(header + f" {'cosine':>9} {'top-1':>6}  status")
    for fmt in args.formats.split(","):
        backend = default_registry().get(fmt)
        for model in args.models.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                output = Path(tmp) / backend.default_output_name(model)
                row = {"format": fmt, "model": model, **options}
                try:
                    result = timmx.export(fmt, model, output=output, **options)
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
                except timmx.TimmxError as exc:
                    row["error"] = str(exc)
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
