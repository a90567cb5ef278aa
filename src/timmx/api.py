"""The Python API: the same exports as the CLI, returning a result object."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from timmx.core.result import ExportResult


def backends() -> list[str]:
    """The names of the available export formats."""
    from timmx.core.registry import default_registry

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
    from timmx.core.pipeline import run_export
    from timmx.core.registry import default_registry

    backend = default_registry().get(format)
    return run_export(backend, model, {"output": output, **options})
