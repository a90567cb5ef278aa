"""``timmx benchmark`` and ``timmx matrix`` (run, report): Typer commands and Rich output.

The measuring is in :mod:`timmx.core.bench`; this module parses flags, shows progress on stderr
and draws the tables.
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from timmx.cli.commands import common_parameters, model_parameter
from timmx.cli.console import console, err_console
from timmx.cli.output import user_errors
from timmx.core.job import CommonOptions
from timmx.core.options import specs

# Shared export options that a benchmark or a matrix sets itself (or that name one model).
BENCH_SKIPS = ("output", "overwrite", "json_output")
MATRIX_SKIPS = (*BENCH_SKIPS, "checkpoint")


def _keyword(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def _shared(skips: tuple[str, ...]) -> list[inspect.Parameter]:
    return common_parameters(*(s.name for s in specs(CommonOptions) if s.name not in skips))


@contextlib.contextmanager
def _progress_bar(quiet: bool) -> Iterator[Any]:
    """A progress bar on stderr (interactive terminals only); yields update(message, done,
    total)."""
    if quiet or not err_console.is_terminal:
        yield lambda *args: None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    task = bar.add_task("starting", total=None)

    def update(message: str, done: int | None = None, total: int | None = None) -> None:
        shown = message if len(message) <= 70 else message[:69] + "…"
        bar.update(task, description=shown, completed=done, total=total)

    with bar:
        yield update


# ------------------------------------------------------------------------------ benchmark

FORMATS = _keyword(  # shared by benchmark and matrix
    "formats",
    Annotated[
        str | None,
        typer.Option(help="Formats, comma-separated (default: every format that runs here)."),
    ],
    None,
)

BENCH_OWN = [
    FORMATS,
    _keyword(
        "threads",
        Annotated[str, typer.Option(help="Thread counts, comma-separated; 'all' = every core.")],
        "1,all",
    ),
    _keyword("runs", Annotated[int, typer.Option(help="Timed runs per thread count.", min=1)], 20),
    _keyword("warmup", Annotated[int, typer.Option(help="Untimed runs before timing.", min=0)], 3),
    _keyword(
        "artifacts",
        Annotated[
            str | None,
            typer.Option(
                help="Folder of artifacts: existing ones are reused (and verified again), "
                "missing ones are exported there and kept (default: a temporary folder)."
            ),
        ],
        None,
    ),
    _keyword(
        "live_weights",
        Annotated[
            bool,
            typer.Option(
                "--live-weights",
                help="Random weights that keep every branch alive (timmx.testing; needs "
                "scikit-image and scikit-learn) instead of timm's init, verified on real photos "
                "unless --verify-data is given.",
            ),
        ],
        False,
    ),
    _keyword(
        "json_output",
        Annotated[bool, typer.Option("--json", help="Print the results as one JSON object.")],
        False,
    ),
    _keyword(
        "out",
        Annotated[
            str | None,
            typer.Option(help="Also write the results to FILE (JSON; Markdown if FILE ends .md)."),
        ],
        None,
    ),
]


def benchmark(model: str, **values: Any) -> None:
    """Time MODEL in every format's own runtime on the CPU (PyTorch eager is the baseline)."""
    from timmx.core.bench.benchmark import markdown, parse_formats, parse_threads, run_benchmark

    own = {p.name for p in BENCH_OWN}
    shared = {k: v for k, v in values.items() if k not in own}
    as_json = values["json_output"]
    with user_errors():
        formats = parse_formats(values["formats"])
        threads = parse_threads(values["threads"])
        artifacts = Path(values["artifacts"]) if values["artifacts"] else None
        with _progress_bar(as_json) as progress:
            report = run_benchmark(
                model,
                formats=formats,
                threads=threads,
                runs=values["runs"],
                warmup=values["warmup"],
                options=shared,
                artifacts=artifacts,
                live_weights=values["live_weights"],
                progress=progress,
            )
    if values["out"]:
        out = Path(values["out"])
        text = markdown(report) if out.suffix == ".md" else json.dumps(report.to_dict(), indent=1)
        out.write_text(text, encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    print_benchmark(report)


def print_benchmark(report) -> None:
    """The header lines, the table and its numbered notes."""
    from rich.console import Console

    from timmx.core.bench.benchmark import LEGEND, header_lines, table_cells

    # A pipe or a file gets the whole table, not one folded to 80 columns.
    out = console if console.is_terminal else Console(highlight=False, width=200)
    for line in header_lines(report):
        out.print(line, markup=False, soft_wrap=True)
    headers, cells, notes = table_cells(report)
    table = Table(show_lines=False, header_style="bold")
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index < 3 else "right", overflow="fold")
    for row in cells:
        table.add_row(*row)
    out.print(table)
    out.print(LEGEND, markup=False, soft_wrap=True)
    for number, note in enumerate(notes, 1):
        out.print(f"[{number}] {note}", markup=False, soft_wrap=True)


benchmark.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [model_parameter(), *BENCH_OWN, *_shared(BENCH_SKIPS)]
)


# --------------------------------------------------------------------------------- matrix

matrix_app = typer.Typer(
    help="Export many models x formats (JSON lines; sharded; resumable). "
    "`timmx matrix report FILES` merges the results into a Markdown table.",
    invoke_without_command=True,
    no_args_is_help=False,
)

MATRIX_OWN = [
    _keyword(
        "models",
        Annotated[
            str | None,
            typer.Option(
                help="A file (one model per line, '# family' after it) or comma-separated "
                "names and glob patterns (e.g. 'resnet1*,vit_tiny*')."
            ),
        ],
        None,
    ),
    FORMATS,
    _keyword(
        "out",
        Annotated[str, typer.Option(help="JSON-lines file the records are appended to.")],
        "matrix.jsonl",
    ),
    _keyword(
        "jobs",
        Annotated[int, typer.Option(help="Exports running at once on this machine.", min=1)],
        1,
    ),
    _keyword(
        "shard",
        Annotated[
            str | None,
            typer.Option(help="I/N: run only the pairs of shard I (0 <= I < N), round-robin."),
        ],
        None,
    ),
    _keyword(
        "resume",
        Annotated[bool, typer.Option("--resume", help="Skip pairs already recorded in --out.")],
        False,
    ),
    _keyword(
        "retry_failed",
        Annotated[
            bool,
            typer.Option("--retry-failed", help="With --resume: run failed pairs again."),
        ],
        False,
    ),
    _keyword(
        "timeout",
        Annotated[float, typer.Option(help="Seconds one pair may take.", min=1)],
        3600.0,
    ),
    _keyword(
        "live_weights",
        Annotated[
            bool,
            typer.Option(
                "--live-weights",
                help="Random weights that keep every branch alive (needs scikit-image and "
                "scikit-learn), cached per model in --weights-dir, verified on real photos "
                "unless --verify-data is given.",
            ),
        ],
        False,
    ),
    _keyword(
        "weights_dir",
        Annotated[
            str | None,
            typer.Option(
                help="Where --live-weights keeps its checkpoints (default: <out>.weights)."
            ),
        ],
        None,
    ),
]


def matrix(ctx: typer.Context, **values: Any) -> None:
    """Export every model in every format, each pair in its own process; one JSON line each."""
    if ctx.invoked_subcommand is not None:
        return
    from timmx.core.bench.benchmark import check_options, parse_formats
    from timmx.core.bench.matrix import parse_models, parse_shard, pending, plan, run_matrix

    own = {p.name for p in MATRIX_OWN}
    shared = {k: v for k, v in values.items() if k not in own}
    with user_errors():
        if not values["models"]:
            from timmx.errors import ConfigurationError

            raise ConfigurationError(
                "Give --models (a file, or names and patterns), or run `timmx matrix report`."
            )
        models = parse_models(values["models"])
        options = check_options(models[0][0], shared)
        formats = parse_formats(values["formats"])
        shard = parse_shard(values["shard"])
        out = Path(values["out"])
        pairs = plan(models, formats, shard)
        todo = pending(pairs, out, resume=values["resume"], retry_failed=values["retry_failed"])
        weights = Path(values["weights_dir"]) if values["weights_dir"] else None
        if values["live_weights"] and weights is None:
            weights = out.with_name(out.name + ".weights")
        skipped = len(pairs) - len(todo)
        err_console.print(
            f"{len(todo)} pair(s) to run ({len(models)} models x {len(formats)} formats, shard "
            f"{shard[0]}/{shard[1]}{f', {skipped} already in {out}' if skipped else ''}); "
            f"{values['jobs']} at a time -> {out}",
            markup=False,
        )
        with _progress_bar(False) as progress:
            done = [0]
            active: dict[Any, str] = {}

            def show() -> None:
                text = ", ".join(f"{p.model}/{p.format}: {m}" for p, m in active.items())
                progress(text or "waiting", done[0], len(todo))

            def on_start(pair) -> None:
                active[pair] = "starting"
                show()

            def on_message(pair, message: str) -> None:
                active[pair] = message
                show()

            def on_record(record: dict) -> None:
                from timmx.core.bench.report import cell

                done[0] += 1
                active.pop(next(p for p in active if p.model == record["model"]
                                and p.format == record["format"]), None)  # fmt: skip
                seconds = record.get("seconds") or 0
                err_console.print(
                    f"{cell(record)}  {record['model']} -> {record['format']} ({seconds:.0f} s)",
                    markup=False,
                    soft_wrap=True,
                )
                show()

            records = run_matrix(
                todo,
                out,
                options=options,
                jobs=values["jobs"],
                shard=shard,
                live_weights=values["live_weights"],
                weights_dir=weights,
                timeout=values["timeout"],
                on_start=on_start,
                on_record=on_record,
                on_message=on_message,
            )
    from timmx.core.bench.matrix import PASSING

    passed = sum(r.get("status") in PASSING for r in records)
    console.print(f"{passed}/{len(records)} pair(s) passed; records in {out}", markup=False)


matrix.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        *MATRIX_OWN,
        *_shared(MATRIX_SKIPS),
    ]
)
matrix_app.callback()(matrix)


@matrix_app.command("report")
def matrix_report(
    files: Annotated[list[Path], typer.Argument(help="JSON-lines files of `timmx matrix`.")],
    out: Annotated[
        Path | None, typer.Option(help="Write the Markdown there instead of printing it.")
    ] = None,
    merged: Annotated[
        Path | None, typer.Option(help="Also write the merged records (JSON lines) there.")
    ] = None,
    formats: Annotated[
        str | None, typer.Option(help="Columns, comma-separated (default: as recorded).")
    ] = None,
) -> None:
    """Merge matrix results (shards, reruns: the latest record of a pair wins) into Markdown."""
    from timmx.core.bench.report import markdown, merge
    from timmx.errors import ConfigurationError

    with user_errors():
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ConfigurationError(f"No such file: {', '.join(missing)}.")
        records = merge(files)
        if not records:
            raise ConfigurationError(f"No matrix records in {', '.join(map(str, files))}.")
    order = [f.strip() for f in formats.split(",") if f.strip()] if formats else None
    text = markdown(records, order)
    if merged is not None:
        merged.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    if out is not None:
        out.write_text(text, encoding="utf-8")
        err_console.print(f"Wrote {out} ({len(records)} records)", markup=False)
        return
    typer.echo(text, nl=False)
