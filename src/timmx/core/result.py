"""The outcome of one export, as the summary, JSON and the Python API present it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from timmx.core.evaluate import EvalReport
from timmx.core.verify import VerifyReport


@dataclass
class ExportResult:
    """What an export produced: where, how big, how long, and how well it matches PyTorch."""

    format: str
    model: str
    output: Path
    size_bytes: int
    seconds: float
    verify: VerifyReport | None
    notes: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)
    evaluation: EvalReport | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict: format, model, output, size_bytes, seconds, verify, notes, details."""
        return {
            "format": self.format,
            "model": self.model,
            "output": str(self.output),
            "size_bytes": self.size_bytes,
            "seconds": round(self.seconds, 3),
            "verify": self.verify.to_dict() if self.verify else None,
            "notes": list(self.notes),
            "details": dict(self.details),
            "eval": self.evaluation.to_dict() if self.evaluation else None,
        }


def human_size(size: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def verify_line(report: VerifyReport | None) -> str:
    """One line describing the verification outcome."""
    if report is None:
        return "not verified (--no-verify)"
    if not report.checked:
        return f"numerics NOT checked ({report.runtime}): {report.note}"
    sizes = ", ".join(str(b) for b in sorted(set(report.batch_sizes)))  # 16 photos: "1", not 16x
    verdict = "passed" if report.passed else "FAILED"
    text = (
        f"{verdict} in {report.runtime} ({report.precision}, batch {sizes}): "
        f"max abs err {report.max_abs_err:.2e}, max rel err {report.max_rel_err:.2e}, "
        f"cosine {report.cosine:.6f}, top-1 agree {report.top1_agree:.0%}"
    )
    if report.note:
        text += f"; {report.note}"
    return text


def summary_lines(result: ExportResult) -> list[str]:
    """The human summary printed after an export."""
    lines = [
        f"Exported {result.model} to {result.format}: {result.output}",
        f"  size     {human_size(result.size_bytes)}",
        f"  time     {result.seconds:.1f} s",
        f"  verify   {verify_line(result.verify)}",
    ]
    if result.evaluation is not None:
        lines.append(f"  eval     {result.evaluation.line()}")
    for key, value in result.details.items():
        lines.append(f"  {key:<8} {value}")
    lines.extend(f"  note     {note}" for note in result.notes)
    return lines


def path_size(path: Path) -> int:
    """Bytes of a file, or of every file under a directory."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
