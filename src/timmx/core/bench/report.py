"""``timmx matrix report``: JSON-lines files of ``timmx matrix`` (shards, reruns) merged into one
Markdown table, models down, formats across.

A cell is ✅ with the largest absolute error against PyTorch (``✅ structure`` where the runtime
cannot run here and the artifact's structure was checked), ❎ with the figure that failed
verification, or ❌ with the converter's reason in at most 80 characters. When a pair appears
more than once (``--resume --retry-failed``, overlapping shards), its latest record counts.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from timmx.core.bench.matrix import PASSING, read_records

REASON_LIMIT = 80
# Wrappers around the converter's own message that say nothing about the cause.
NOISE = re.compile(
    r"^(Error: |[\w-]+ (export|verification|evaluation) failed: |The [\w-]+ export process |"
    r"(RuntimeError|ExportError|Exception|TorchExportError|ConversionError): )+"
)


def merge(paths: list[Path]) -> list[dict[str, Any]]:
    """The latest record of every (model, format) pair found in ``paths``, in first-seen order."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        for record in read_records(path):
            key = (record["model"], record["format"])
            old = latest.get(key)
            if old is None or str(record.get("finished", "")) >= str(old.get("finished", "")):
                latest[key] = record
    return list(latest.values())


def short_reason(text: str | None, limit: int = REASON_LIMIT) -> str:
    """The informative part of a failure message, on one line, at most ``limit`` characters."""
    if not text:
        return "failed"
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    first = lines[0] if lines else "failed"
    first = NOISE.sub("", first).strip() or first
    first = " ".join(first.split())
    if len(first) > limit:
        first = first[: limit - 1].rstrip() + "…"
    return first


def failing_figure(verify: dict[str, Any] | None) -> str:
    """The verification figure that is out of tolerance, in a few words."""
    if not verify:
        return "verification failed"
    err, cos = verify.get("max_abs_err"), verify.get("cosine")
    if err is None or (isinstance(err, float) and math.isnan(err)):
        return "non-finite output"
    min_cos = verify.get("min_cosine")
    if cos is not None and min_cos is not None and cos < min_cos:
        return f"cosine {cos:.4f} < {min_cos:g}"
    atol = verify.get("atol")
    if atol is not None and err > atol:
        return f"max abs {err:.2g} > atol {atol:g}"
    top1 = verify.get("top1_agree")
    if top1 is not None:
        return f"top-1 agree {top1:.0%}"
    return "verification failed"


def cell(record: dict[str, Any] | None) -> str:
    """One table cell for ``record`` (``·`` where the pair was not run)."""
    if record is None:
        return "·"
    status = record.get("status")
    verify = record.get("verify") or {}
    if status == "passed":
        err = verify.get("max_abs_err")
        return f"✅ {err:.1e}" if isinstance(err, int | float) else "✅"
    if status == "unchecked":
        return "✅ structure"
    if status == "unverified":
        return "✅ not verified"
    if status == "verify_failed":
        return f"❎ {failing_figure(verify)}"
    if status == "accuracy_failed":
        drop = (record.get("eval") or {}).get("drop")
        return f"❎ top-1 drop {drop:.1f}" if isinstance(drop, int | float) else "❎ accuracy"
    if status == "timeout":
        return "❌ " + short_reason(record.get("reason") or "timed out")
    return "❌ " + short_reason(record.get("reason"))


def pass_rates(records: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """format -> (pairs that passed, pairs run)."""
    rates: dict[str, list[int]] = {}
    for record in records:
        counts = rates.setdefault(record["format"], [0, 0])
        counts[1] += 1
        counts[0] += record.get("status") in PASSING
    return {fmt: (passed, total) for fmt, (passed, total) in rates.items()}


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(records: list[dict[str, Any]], formats: list[str] | None = None) -> str:
    """The merged records as Markdown: pass rates per format, then the models x formats table."""
    order = formats or list(dict.fromkeys(r["format"] for r in records))
    models = list(dict.fromkeys(r["model"] for r in records))
    family = {r["model"]: r.get("family") for r in records if r.get("family")}
    by_pair = {(r["model"], r["format"]): r for r in records}
    rates = pass_rates(records)
    lines = ["| format | passed | rate |", "|---|---:|---:|"]
    for fmt in order:
        passed, total = rates.get(fmt, (0, 0))
        share = f"{100.0 * passed / total:.0f}%" if total else "-"
        lines.append(f"| {fmt} | {passed}/{total} | {share} |")
    lines.append("")
    head = ["family", "model"] if family else ["model"]
    lines.append("| " + " | ".join([*head, *order]) + " |")
    lines.append("|" + "|".join("---" for _ in [*head, *order]) + "|")
    for model in models:
        first = [family.get(model, ""), f"`{model}`"] if family else [f"`{model}`"]
        row = [_escape(cell(by_pair.get((model, fmt)))) for fmt in order]
        lines.append("| " + " | ".join([*first, *row]) + " |")
    return "\n".join(lines) + "\n"
