"""The Python API: the same exports as the CLI, returning a result object."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from timmx.export.result import ExportResult


def backends() -> list[str]:
    """The names of the available export formats."""
    from timmx.export.registry import default_registry

    return default_registry().names()


def export(
    format: str, model: str, output: str | Path | None = None, **options: object
) -> ExportResult:
    """Export ``model`` to ``format`` and verify it, exactly like ``timmx export``.

    Options are the command's flags as keyword arguments (``--dynamic-batch`` becomes
    ``dynamic_batch=True``; choices may be given as their strings). Unknown options and invalid
    choices raise :class:`timmx.ConfigurationError`; failed exports raise
    :class:`timmx.ExportError`. Returns an :class:`ExportResult`.
    """
    from timmx.export.job import coerce_options
    from timmx.export.options import command_parameters
    from timmx.export.pipeline import run_export
    from timmx.export.registry import default_registry

    backend = default_registry().get(format)
    supplied = dict(options, model=model, output=output)
    values = coerce_options(command_parameters(backend.create_command()), supplied)
    return run_export(backend, values)
