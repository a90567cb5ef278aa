"""Verification tolerances, per format and precision, in one place.

An artifact passes when every output element satisfies ``|out - ref| <= atol * scale + rtol *
|ref|``, ``scale`` being its sample's largest ``|ref|`` but at least 1 (skipped where ``atol`` is
None; measured on live weights, whose logits reach 10-300, a fixed atol judged float32 summation
order and fp16 weight rounding, not correctness), the cosine similarity of each sample's output
with PyTorch's is at least ``min_cosine``, and, where ``min_top1`` is set, the top-1 class
agrees on at least that fraction of the samples (a swap of two classes closer than the first
check lets them move is a tie, not a disagreement). ``--atol``/``--rtol`` override the first check.

| precision | atol | rtol | min cosine | min top-1 | why |
|---|---|---|---|---|---|
| fp32 | 1e-4 | 1e-3 | 0.9999 | - | float32 reorderings only |
| fp16 | 5e-2 | 5e-2 | 0.999 | - | fp16 weights/activations (~1e-3 relative per op) |
| int8 | - | - | 0.98 | - | quantization: judged by cosine and reported top-1 |

Per-format overrides (``OVERRIDES``):

| format | precision | atol | rtol | min cosine | min top-1 | why |
|---|---|---|---|---|---|---|
| litert | dynamic-int8 | - | - | 0.98 | - | int8 weights, activations quantized per call |
| executorch | int8 | - | - | 0.95 | - | XNNPACK per-tensor activations; test_vit: 0.959 |
| ncnn | fp16 | 5e-2 | 5e-2 | 0.999 | 1.0 | fp16 weights + ncnn's fp16 storage (drifts ~1e-2) |
| ncnn | fp32 | 1e-4 | 1e-3 | 0.9999 | 1.0 | fp32, run with ncnn's fp16 storage off |
| mnn | int8-weights | - | - | 0.98 | - | 8-bit weights, float compute; live resnet50: 0.992 |
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria for one format and precision."""

    atol: float | None
    rtol: float
    min_cosine: float
    min_top1: float | None = None


DEFAULT = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.9999),
    "fp16": Tolerance(atol=5e-2, rtol=5e-2, min_cosine=0.999),
    "bf16": Tolerance(atol=1e-1, rtol=1e-1, min_cosine=0.995),
    "int8": Tolerance(atol=None, rtol=0.0, min_cosine=0.98),
    "int4": Tolerance(atol=None, rtol=0.0, min_cosine=0.95),
}

# Per-format exceptions to DEFAULT, keyed by (format, precision).
OVERRIDES: dict[tuple[str, str], Tolerance] = {
    ("litert", "dynamic-int8"): Tolerance(atol=None, rtol=0.0, min_cosine=0.98),
    ("executorch", "int8"): Tolerance(atol=None, rtol=0.0, min_cosine=0.95),
    ("ncnn", "fp16"): Tolerance(atol=5e-2, rtol=5e-2, min_cosine=0.999, min_top1=1.0),
    ("ncnn", "fp32"): Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.9999, min_top1=1.0),
    ("mnn", "int8-weights"): Tolerance(atol=None, rtol=0.0, min_cosine=0.98),
}


def tolerance_for(
    format_name: str,
    precision: str,
    atol: float | None = None,
    rtol: float | None = None,
) -> Tolerance:
    """The tolerance for ``format_name`` at ``precision``, with user overrides applied."""
    base = OVERRIDES.get((format_name, precision)) or DEFAULT.get(precision) or DEFAULT["fp32"]
    if atol is None and rtol is None:
        return base
    return Tolerance(
        atol=atol if atol is not None else (base.atol if base.atol is not None else 0.0),
        rtol=rtol if rtol is not None else base.rtol,
        min_cosine=base.min_cosine,
        min_top1=base.min_top1,
    )
