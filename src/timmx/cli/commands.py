"""Typer commands generated from the options dataclasses (the schema is written once)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from timmx.core.backend import ExportBackend
from timmx.core.job import MODEL_HELP, CommonOptions
from timmx.core.options import OptionSpec, specs


def typer_parameter(spec: OptionSpec) -> inspect.Parameter:
    """One option spec as a Typer-annotated keyword parameter."""
    annotation = spec.annotation
    if spec.base_type is Path:  # parsed in core, so `-o ""` is not silently "."
        annotation = str | None if spec.optional else str
    declared = typer.Option(
        *spec.info.flags, help=spec.info.help, show_default=spec.info.show_default
    )
    return inspect.Parameter(
        spec.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=spec.default,
        annotation=Annotated[annotation, declared],
    )


def model_parameter(help: str = MODEL_HELP) -> inspect.Parameter:
    """The positional MODEL argument of every export command."""
    return inspect.Parameter(
        "model",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        annotation=Annotated[str, typer.Argument(help=help, show_default=False)],
    )


def common_parameters(*names: str) -> list[inspect.Parameter]:
    """Some of the shared options as Typer parameters (for commands other than export)."""
    by_name = {spec.name: spec for spec in specs(CommonOptions)}
    return [typer_parameter(by_name[name]) for name in names]


def export_command(backend: ExportBackend) -> Callable[..., None]:
    """The ``timmx export <format>`` command: the shared options plus the backend's own."""
    own = specs(backend.Options)
    shared = specs(CommonOptions)
    clash = {s.name for s in shared} & {s.name for s in own}
    if clash:
        raise ValueError(f"{backend.name} redeclares shared options: {sorted(clash)}")
    parameters = [model_parameter(), *(typer_parameter(s) for s in (*shared, *own))]

    def command(model: str, **values: Any) -> None:
        from timmx.cli.output import run_export_command

        run_export_command(backend, model, values)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__name__ = backend.name.replace("-", "_")
    command.__doc__ = backend.help
    return command


def flags(backend: ExportBackend) -> list[str]:
    """Every flag ``timmx export <format>`` accepts (for help checks and messages)."""
    names = []
    for spec in (*specs(CommonOptions), *specs(backend.Options)):
        if spec.info.flags:
            for flag in spec.info.flags:
                names.extend(flag.split("/"))
        elif spec.base_type is bool:
            base = "--" + spec.name.replace("_", "-")
            names.extend([base, "--no-" + spec.name.replace("_", "-")])
        else:
            names.append("--" + spec.name.replace("_", "-"))
    return names
