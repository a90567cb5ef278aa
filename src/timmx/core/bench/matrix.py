"""``timmx matrix``: many models x formats, each pair exported and verified in its own process.

Pairs are enumerated in a fixed order (models as given, formats as given) and dealt to shards
round-robin: ``--shard I/N`` keeps the pairs whose index is I modulo N, so N machines (a Slurm
array, a Kubernetes indexed Job, a CI matrix) split the work without talking to each other.
Each finished pair appends one JSON line to ``--out``; ``--resume`` skips the pairs already
there, so an interrupted run continues where it stopped. ``timmx matrix report`` merges the
files (:mod:`timmx.core.bench.report`).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timmx.core.bench.child import Worker, wait_any
from timmx.errors import ConfigurationError

PASSING = ("passed", "unchecked", "unverified")
DEFAULT_TIMEOUT_S = 3600
REASON_CHARS = 4000


@dataclass(frozen=True)
class Pair:
    """One model in one format (``family``: the label a models file gave it, if any)."""

    model: str
    format: str
    family: str | None = None


def read_models_file(path: Path) -> list[tuple[str, str | None]]:
    """Models from a file: one per line, ``# comment`` after it names its family."""
    models = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        text, _, comment = raw.partition("#")
        name = text.strip()
        if name:
            models.append((name, comment.strip() or None))
    return models


def parse_models(spec: str) -> list[tuple[str, str | None]]:
    """``--models``: a file (one model per line), or comma-separated names and glob patterns."""
    from timmx.core.info import list_model_names
    from timmx.core.model import check_model_name

    path = Path(spec)
    if path.is_file():
        models = read_models_file(path)
    else:
        models = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            if any(ch in item for ch in "*?["):
                found = list_model_names(item, False)
                if not found:
                    raise ConfigurationError(f"--models pattern {item!r} matches no timm model.")
                models.extend((name, None) for name in found)
            else:
                models.append((item, None))
    if not models:
        raise ConfigurationError(f"--models {spec!r} names no model.")
    for name, _ in models:
        check_model_name(name)
    seen: set[str] = set()
    return [(m, f) for m, f in models if not (m in seen or seen.add(m))]


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N; None -> (0, 1)."""
    if not text:
        return 0, 1
    index, _, count = text.partition("/")
    if not (index.strip().isdigit() and count.strip().isdigit()):
        raise ConfigurationError(f"--shard takes I/N (e.g. 0/4), got {text!r}.")
    i, n = int(index), int(count)
    if n < 1 or i >= n:
        raise ConfigurationError(f"--shard {text}: I must be between 0 and N-1 (N >= 1).")
    return i, n


def plan(
    models: list[tuple[str, str | None]], formats: list[str], shard: tuple[int, int] = (0, 1)
) -> list[Pair]:
    """Every (model, format) pair in order, keeping those of ``shard``."""
    index, count = shard
    pairs = [Pair(m, f, family) for m, family in models for f in formats]
    return [pair for k, pair in enumerate(pairs) if k % count == index]


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (an unfinished last line is ignored)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by an interrupted run
        if isinstance(record, dict) and "model" in record and "format" in record:
            records.append(record)
    return records


def pending(pairs: list[Pair], out: Path, *, resume: bool, retry_failed: bool) -> list[Pair]:
    """The pairs still to run: with ``resume``, those without a record in ``out`` (with
    ``retry_failed``, also those whose last record did not pass)."""
    if not resume:
        return pairs
    last = {(r["model"], r["format"]): r for r in read_records(out)}
    keep = []
    for pair in pairs:
        record = last.get((pair.model, pair.format))
        if record is None or (retry_failed and record.get("status") not in PASSING):
            keep.append(pair)
    return keep


def _record(pair: Pair, answer: dict, shard: tuple[int, int]) -> dict[str, Any]:
    from timmx._version import __version__

    record: dict[str, Any] = {"model": pair.model, "format": pair.format}
    if pair.family:
        record["family"] = pair.family
    if "status" in answer:
        record.update({k: v for k, v in answer.items() if k not in ("model", "format")})
    else:
        status = "timeout" if answer.get("timed_out") else "crashed"
        reason = answer.get("error") or answer.get("worker_error") or "no result"
        record.update(status=status, reason=reason, seconds=answer.get("worker_seconds"))
    if isinstance(record.get("reason"), str):
        record["reason"] = record["reason"][:REASON_CHARS]
    record["shard"] = f"{shard[0]}/{shard[1]}"
    record["host"] = platform.node()
    record["timmx"] = __version__
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return record


def run_matrix(
    pairs: list[Pair],
    out: Path,
    *,
    options: dict[str, Any] | None = None,
    jobs: int = 1,
    shard: tuple[int, int] = (0, 1),
    live_weights: bool = False,
    weights_dir: Path | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    on_start: Callable[[Pair], None] = lambda pair: None,
    on_record: Callable[[dict], None] = lambda record: None,
    on_message: Callable[[Pair, str], None] = lambda pair, message: None,
) -> list[dict[str, Any]]:
    """Run ``pairs`` with up to ``jobs`` worker processes at once, appending each record to
    ``out`` as it finishes. Ctrl-C or SIGTERM kill the running workers; finished records stay."""
    from timmx.core.isolation import sigterm_as_interrupt

    if jobs < 1:
        raise ConfigurationError(f"--jobs must be >= 1, got {jobs}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    queue = list(pairs)
    running: list[Worker] = []
    records: list[dict[str, Any]] = []
    base = {"kind": "export", "options": dict(options or {}), "live_weights": live_weights}
    if weights_dir is not None:
        base["weights_dir"] = str(weights_dir)
    try:
        with sigterm_as_interrupt():
            while queue or running:
                while queue and len(running) < jobs:
                    pair = queue.pop(0)
                    on_start(pair)
                    request = {**base, "model": pair.model, "format": pair.format}
                    running.append(Worker(request, timeout=timeout, tag=pair))
                for worker, answer in wait_any(running, lambda w, m: on_message(w.tag, m)):
                    running.remove(worker)
                    record = _record(worker.tag, answer, shard)
                    _append(out, record)
                    records.append(record)
                    on_record(record)
    finally:
        for worker in running:
            worker.abandon()
    return records


def _append(out: Path, record: dict[str, Any]) -> None:
    """One JSON line, flushed to disk (a killed run loses no finished pair)."""
    with out.open("a", encoding="utf-8") as stream:
        stream.write(json.dumps(record, default=str) + "\n")
        stream.flush()
        os.fsync(stream.fileno())
