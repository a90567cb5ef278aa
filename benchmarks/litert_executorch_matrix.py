"""Measure litert/executorch exports (seconds, size, max abs err, top-1, cosine) to JSON lines.

Usage: uv run benchmarks/litert_executorch_matrix.py results.jsonl
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import timmx

MODELS = ["test_efficientnet", "test_vit", "resnet50", "mobilenetv3_large_100"]
CASES = [
    ("litert", {"mode": "fp32"}),
    ("litert", {"mode": "fp16"}),
    ("litert", {"mode": "dynamic-int8"}),
    ("litert", {"mode": "int8", "random_calibration": True, "calibration_samples": 8}),
    ("executorch", {"mode": "fp32"}),
    ("executorch", {"mode": "int8", "random_calibration": True, "calibration_samples": 8}),
]
out = Path(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    for model in MODELS:
        for fmt, opts in CASES:
            suffix = ".tflite" if fmt == "litert" else ".pte"
            t = time.perf_counter()
            try:
                r = timmx.export(fmt, model, output=Path(tmp) / f"m{suffix}", **opts)
                v = r.verify
                row = dict(
                    format=fmt,
                    mode=opts["mode"],
                    model=model,
                    seconds=round(r.seconds, 1),
                    size_mib=round(r.size_bytes / 2**20, 2),
                    max_abs=v.max_abs_err,
                    top1=v.top1_agree,
                    cosine=v.cosine,
                    passed=v.passed,
                    accuracy=r.details.get("accuracy"),
                )
            except Exception as e:
                row = dict(
                    format=fmt,
                    mode=opts["mode"],
                    model=model,
                    seconds=round(time.perf_counter() - t, 1),
                    error=f"{type(e).__name__}: {str(e)[:300]}",
                )
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(row, flush=True)
