"""What the CLI does around a command: errors, the export summary and JSON output."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from timmx.cli.console import Spinner, console, err_console
from timmx.core.backend import ExportBackend
from timmx.core.isolation import Terminated
from timmx.errors import TimmxError


@contextmanager
def user_errors() -> Iterator[None]:
    """Print TimmxErrors on stderr without a traceback and exit 2 (130 on Ctrl-C, 143 on
    SIGTERM).

    Set TIMMX_DEBUG=1 to see the traceback instead.
    """
    try:
        yield
    except TimmxError as exc:
        if os.environ.get("TIMMX_DEBUG"):
            raise
        err_console.print(f"Error: {exc}", markup=False, style="red", soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        what = "Terminated" if terminated else "Interrupted"
        err_console.print(f"{what}; nothing was written.", markup=False)
        raise typer.Exit(143 if terminated else 130) from None


def run_export_command(backend: ExportBackend, model: str, values: dict[str, Any]) -> None:
    """The body of every ``timmx export <format>`` command."""
    from timmx.core.pipeline import run_export
    from timmx.core.result import summary_lines

    as_json = bool(values.get("json_output"))
    with user_errors(), Spinner(quiet=as_json) as spinner:
        result = run_export(backend, model, values, progress=spinner.update)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    for line in summary_lines(result):
        console.print(line, markup=False, soft_wrap=True)
