"""What the CLI does around an export: error handling, summary and JSON output."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from timmx.console import console, err_console
from timmx.errors import TimmxError, VerificationError
from timmx.export.base import ExportBackend


@contextmanager
def user_errors() -> Iterator[None]:
    """Print TimmxErrors on stderr without a traceback and exit 2 (130 on Ctrl-C).

    Set TIMMX_DEBUG=1 to see the traceback instead.
    """
    try:
        yield
    except TimmxError as exc:
        if os.environ.get("TIMMX_DEBUG"):
            raise
        err_console.print(f"Error: {exc}", markup=False, style="red", soft_wrap=True)
        if isinstance(exc, VerificationError) and exc.report is not None:
            err_console.print(json.dumps(exc.report.to_dict()), markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err_console.print("Interrupted; nothing was written.", markup=False)
        raise typer.Exit(130) from None


def run_export_command(backend: ExportBackend, values: dict[str, object]) -> None:
    """The body of every ``timmx export <format>`` command."""
    from timmx.export.pipeline import run_export
    from timmx.export.result import summary_lines

    as_json = bool(values.get("json_output"))
    with user_errors():
        result = run_export(backend, values, quiet=as_json)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    for line in summary_lines(result):
        console.print(line, markup=False, soft_wrap=True)
