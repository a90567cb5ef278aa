"""``timmx benchmark MODEL``: one model in every format, timed in each format's own runtime.

For each format a worker process (:mod:`timmx.core.bench.worker`) exports the model with full
verification (or reuses the artifact in ``--artifacts``), then times the artifact in its runtime
on the CPU at each thread count: median and p90 latency, load and first-inference time, peak
memory. PyTorch eager is the baseline row. The table itself is drawn by the CLI from
:func:`table_cells`, so the terminal, ``--out FILE.md`` and the JSON hold the same figures.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timmx.core.bench.child import run_one
from timmx.core.bench.measure import FIXED_ONE, NOT_SETTABLE
from timmx.core.bench.system import system_header, usable_cores
from timmx.core.result import human_size
from timmx.errors import ConfigurationError

BASELINE = "torch"
# Runtimes that exist only on one OS: not benchmarked by default elsewhere.
RUNTIME_PLATFORM = {"coreml": "Darwin"}
# Options that make no sense for a benchmark (it names its own artifacts and prints a table).
NOT_FOR_BENCHMARK = ("output", "json_output", "overwrite")
DEFAULT_RUNS = 20
DEFAULT_WARMUP = 3

Progress = Callable[..., None]


@dataclass
class BenchmarkReport:
    """Everything ``timmx benchmark`` measured (``rows``: one dict per format, torch first)."""

    model: str
    formats: list[str]
    threads: list[int]
    runs: int
    warmup: int
    system: dict[str, Any]
    options: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "model": self.model,
            "formats": self.formats,
            "threads": self.threads,
            "runs": self.runs,
            "warmup": self.warmup,
            "system": self.system,
            "options": self.options,
            "rows": self.rows,
        }


def parse_threads(text: str) -> list[int]:
    """``"1,all"`` -> ``[1, <usable cores>]``: positive counts, duplicates dropped."""
    counts: list[int] = []
    for item in (part.strip().lower() for part in str(text).split(",")):
        if not item:
            continue
        if item == "all":
            value = usable_cores()
        elif item.isdigit() and int(item) >= 1:
            value = int(item)
        else:
            raise ConfigurationError(
                f"--threads takes thread counts >= 1 or 'all', separated by commas "
                f"(e.g. 1,all), got {item!r}."
            )
        if value not in counts:
            counts.append(value)
    if not counts:
        raise ConfigurationError("--threads is empty; give e.g. --threads 1,all.")
    return counts


def runs_here(backend) -> str | None:
    """Why ``backend``'s runtime cannot run on this machine (None when it can)."""
    state = backend.check_dependencies()
    if not state.available:
        return state.detail or f"not installed ({state.install_hint})"
    wanted = RUNTIME_PLATFORM.get(backend.name)
    if wanted and platform.system() != wanted:
        return f"its runtime runs only on {wanted}"
    return None


def default_formats() -> list[str]:
    """Every registered format whose runtime runs here."""
    from timmx.core.registry import default_registry

    return [b.name for b in default_registry().backends() if runs_here(b) is None]


def parse_formats(text: str | None) -> list[str]:
    """``--formats a,b``: known names, in the given order (default: :func:`default_formats`)."""
    from timmx.core.registry import default_registry

    if text is None or not text.strip():
        return default_formats()
    names: list[str] = []
    for name in (part.strip() for part in text.split(",")):
        if not name or name == BASELINE:
            continue  # the PyTorch baseline is always measured
        default_registry().get(name)  # unknown names raise, listing the formats
        if name not in names:
            names.append(name)
    return names


def _jsonable_options(options: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif hasattr(value, "value"):
            value = value.value
        out[key] = value
    return out


def check_options(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """The shared export options, checked once before any worker starts (JSON-ready)."""
    from timmx.core.job import CommonOptions, validate_common
    from timmx.core.model import check_model_name
    from timmx.core.options import parse_options

    given = [f"--{k.replace('_', '-')}" for k in NOT_FOR_BENCHMARK if options.get(k)]
    if given:
        raise ConfigurationError(f"{', '.join(given)} do not apply to a benchmark.")
    options = {k: v for k, v in options.items() if k not in NOT_FOR_BENCHMARK}
    validate_common(parse_options(CommonOptions, options))
    check_model_name(model)
    return _jsonable_options(options)


def run_benchmark(
    model: str,
    *,
    formats: list[str],
    threads: list[int],
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    options: dict[str, Any] | None = None,
    artifacts: Path | None = None,
    live_weights: bool = False,
    progress: Progress = lambda *args: None,
) -> BenchmarkReport:
    """Measure ``model`` in PyTorch eager and in each of ``formats``, one worker each."""
    from timmx.core.pipeline import make_job
    from timmx.core.registry import default_registry

    if runs < 1 or warmup < 0:
        raise ConfigurationError("--runs must be >= 1 and --warmup >= 0.")
    options = check_options(model, dict(options or {}))
    if live_weights and options.get("checkpoint"):
        raise ConfigurationError("--live-weights and --checkpoint both set the weights.")
    if live_weights and options.get("pretrained"):
        raise ConfigurationError("--live-weights and --pretrained both set the weights.")
    distributions = [dist for name in formats for dist in default_registry().get(name).requires]
    report = BenchmarkReport(
        model=model,
        formats=formats,
        threads=threads,
        runs=runs,
        warmup=warmup,
        system=system_header(distributions),
        options=dict(options),  # a copy: live_weights below is a report fact, not an option
    )
    folder = artifacts or Path(tempfile.mkdtemp(prefix="timmx-benchmark-"))
    folder.mkdir(parents=True, exist_ok=True)
    base = {"model": model, "threads": threads, "runs": runs, "warmup": warmup}
    try:
        if live_weights:
            progress("Drawing live weights", 0, len(formats) + 1)
            answer = run_one(
                {"kind": "live", "model": model, "options": options, "folder": str(folder)},
                lambda message: progress(message, 0, len(formats) + 1),
            )
            if "checkpoint" not in answer:
                raise ConfigurationError(
                    answer.get("error") or answer.get("worker_error") or "live weights failed"
                )
            options = {**answer["options"], "checkpoint": answer["checkpoint"]}
            report.options.update(options, live_weights=True)
        for index, name in enumerate([BASELINE, *formats]):
            label = "PyTorch eager" if name == BASELINE else name
            progress(f"{label}: starting", index, len(formats) + 1)
            request = {**base, "kind": "benchmark", "format": name, "options": options}
            row = None
            if name != BASELINE:
                backend = default_registry().get(name)
                row = _cannot_start(backend, model, options)
                job = make_job(backend, model, options)
                request["artifact"] = str(folder / backend.default_output(job).name)
                request["reuse"] = artifacts is not None
            if row is None:
                answer = run_one(
                    request,
                    lambda message, i=index, n=label: progress(
                        f"{n}: {message}", i, len(formats) + 1
                    ),
                )
                row = _row_from(name, answer)
            report.rows.append(row)
        progress("done", len(formats) + 1, len(formats) + 1)
    finally:
        if artifacts is None:
            shutil.rmtree(folder, ignore_errors=True)
    return report


def _cannot_start(backend, model: str, options: dict) -> dict | None:
    """A ❌ row when the format cannot even start: missing dependencies, invalid options."""
    from timmx.core.pipeline import make_job, require_dependencies
    from timmx.errors import TimmxError

    try:
        require_dependencies(backend)
        backend.validate(make_job(backend, model, options))
    except TimmxError as exc:
        return {"format": backend.name, "status": "export_failed", "reason": str(exc)}
    return None


def _row_from(name: str, answer: dict) -> dict:
    if "format" in answer:
        return answer
    reason = answer.get("error") or answer.get("worker_error") or "the worker gave no result"
    return {"format": name, "status": "export_failed", "reason": reason}


# ------------------------------------------------------------------------------ the table

MARKS = {
    "passed": "✅",
    "unchecked": "✅",
    "unverified": "✅",
    "verify_failed": "❎",
    "accuracy_failed": "❎",
    "export_failed": "❌",
    "baseline": "◆",
}


LOAD_NOTES = {
    "c": (
        "load ms includes compiling the generated C into a shared object with the system "
        "compiler and its init (weights, arena, threads); each run is one in-process call"
    ),
}
LEGEND = (
    "latency per thread count: median / p90 ms over the timed runs (the thread count the "
    "runtime ran with in brackets where it differs); load: opening the artifact in its "
    "runtime; first: the first inference; peak RSS: the measuring process (Python included); "
    "✅ verified, ❎ exported but verification failed, ❌ export failed, ◆ baseline"
)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _latency(row: dict, threads: int) -> str:
    for timing in row.get("timings") or []:
        if timing["threads"] != threads:
            continue
        if timing.get("median_ms") is None:
            if timing.get("applied") == "1 (fixed)":
                return "1 (fixed)"
            if row["format"] in NOT_SETTABLE and timing.get("note", "").startswith("same"):
                return "not settable"
            return "-" if not timing.get("note") else "failed"
        text = f"{_ms(timing['median_ms'])} / {_ms(timing['p90_ms'])}"
        applied = timing.get("applied") or ""
        if applied and applied != str(threads) and row["format"] not in FIXED_ONE:
            text += f" ({applied})"
        return text
    return "-"


def _figures(row: dict) -> tuple[str, str]:
    verify = row.get("verify") or {}
    if row.get("status") == "baseline":
        return "reference", ""
    if not verify:
        return "-", "-"
    if not verify.get("checked"):
        return "not checked", "-"
    err = verify.get("max_abs_err")
    cos = verify.get("cosine")
    return (f"{err:.2e}" if err is not None else "-"), (f"{cos:.6f}" if cos is not None else "-")


def _accuracy(row: dict) -> str:
    evaluation = row.get("eval") or {}
    if not evaluation:
        return "-"
    if not evaluation.get("checked", True):
        return "not run"
    return f"{evaluation['top1_artifact']:.2f}%"


def table_cells(report: BenchmarkReport) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, rows of cells, footnotes): the benchmark table, ready to draw."""
    with_eval = any(row.get("eval") for row in report.rows)
    headers = ["", "format", "precision", "size", "load ms", "first ms"]
    headers += [f"{t} thread{'s' if t > 1 else ''}" for t in report.threads]
    headers += ["peak RSS", "max abs err", "cosine"]
    if with_eval:
        headers.append("top-1")
    cells, notes = [], []
    for row in report.rows:
        status = row.get("status", "export_failed")
        name = "PyTorch eager" if row["format"] == BASELINE else row["format"]
        mark = MARKS.get(status, "❌")
        if status == "export_failed":
            notes.append(f"{name}: {row.get('reason', 'failed')}")
            line = [mark, name, row.get("precision", "-"), f"failed [{len(notes)}]"]
            line += [""] * (len(headers) - len(line))
            cells.append(line)
            continue
        precision = row.get("precision", "-")
        if row.get("default_precision"):
            precision += f" (default {row['default_precision']})"
        first = (row.get("timings") or [{}])[0]
        size = human_size(row["size_bytes"]) if row.get("size_bytes") else "-"
        load = "-" if status == "baseline" else _ms(first.get("load_ms"))
        line = [mark, name, precision, size, load, _ms(first.get("first_ms"))]
        line += [_latency(row, t) for t in report.threads]
        peak = row.get("peak_rss_bytes")
        line.append(human_size(peak) if peak else "-")
        line.extend(_figures(row))
        if with_eval:
            line.append(_accuracy(row))
        cells.append(line)
        if status in ("verify_failed", "accuracy_failed"):
            notes.append(f"{name}: {row.get('reason', 'verification failed')}")
        verify = row.get("verify") or {}
        if verify and not verify.get("checked") and verify.get("note"):
            notes.append(f"{name}: numerics not checked: {verify['note']}")
        if row.get("no_runtime"):
            notes.append(f"{name}: exported and checked; its runtime cannot run on this machine")
        if row.get("measure_error"):
            notes.append(f"{name}: timing {row['measure_error']}")
        if row["format"] in LOAD_NOTES and row.get("timings"):
            notes.append(f"{name}: {LOAD_NOTES[row['format']]}")
    return headers, cells, notes


def header_lines(report: BenchmarkReport) -> list[str]:
    """The lines above the table: model, input, machine, load and runtime versions."""
    system = report.system
    cpu = system["cpu"]
    load = system.get("load_average")
    input_size = report.options.get("input_size")
    shape = "x".join(str(v) for v in input_size) if input_size else "the model's default size"
    weights = (
        "live weights"
        if report.options.get("live_weights")
        else f"checkpoint {Path(report.options['checkpoint']).name}"
        if report.options.get("checkpoint")
        else "pretrained"
        if report.options.get("pretrained")
        else "random init"
    )
    threads = ", ".join(str(t) for t in report.threads)
    timed_on = next((r["timing_input"] for r in report.rows if r.get("timing_input")), None)
    return [
        f"timmx benchmark {report.model}: batch {report.options.get('batch_size', 1)}, "
        f"input {shape}, {weights}; {report.runs} timed runs after {report.warmup} warm-up; "
        f"threads {threads}" + (f"; timed on {timed_on}" if timed_on else ""),
        f"CPU: {cpu['model']}, {cpu['logical_cores']} logical cores "
        f"({cpu['usable_cores']} usable); ISA: {' '.join(cpu['isa']) or 'unknown'}",
        f"{system['os']}, Python {system['python']}, timmx {system['timmx']}"
        + (f"; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}" if load else ""),
        "Runtimes: " + ", ".join(f"{k} {v}" for k, v in system["versions"].items()),
    ]


def markdown(report: BenchmarkReport) -> str:
    """The benchmark as Markdown: header lines, the table and its notes."""
    headers, cells, notes = table_cells(report)
    lines = [f"    {line}" for line in header_lines(report)] + [""]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines.extend("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells)
    lines += ["", LEGEND]
    if notes:
        lines.append("")
        lines.extend(f"{i}. {note.splitlines()[0]}" for i, note in enumerate(notes, 1))
    return "\n".join(lines) + "\n"
