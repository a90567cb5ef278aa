"""The ``timmx`` Typer app. Format-agnostic: export commands come from the registry."""

from __future__ import annotations

import inspect
import json
import platform
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from timmx._version import __version__
from timmx.cli.commands import common_parameters, export_command, flags, model_parameter
from timmx.cli.console import console
from timmx.cli.output import user_errors
from timmx.core.backend import installed_version
from timmx.core.registry import default_registry


class ExportGroup(TyperGroup):
    """``timmx export``: an unknown flag names the formats that do have it."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            # Typer may vendor click: recognise NoSuchOption by name, not by class.
            if type(exc).__name__ != "NoSuchOption" or not hasattr(exc, "option_name"):
                raise
            owners = [
                backend.name
                for backend in default_registry().backends()
                if exc.option_name in flags(backend)
            ]
            if owners:
                exc.message += f". {exc.option_name} is an option of: {', '.join(owners)}"
            raise


app = typer.Typer(
    name="timmx",
    help="Export timm models to deployment formats, verified against PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
export_app = typer.Typer(
    cls=ExportGroup,
    help="Export a timm model to a format (run `timmx export FORMAT --help`).",
    no_args_is_help=True,
)
app.add_typer(export_app, name="export")

for _backend in default_registry().backends():
    export_app.command(name=_backend.name, help=_backend.help)(export_command(_backend))

# `timmx benchmark` and `timmx matrix` (timmx.cli.bench).
from timmx.cli.bench import benchmark, matrix_app  # noqa: E402

app.command()(benchmark)
app.add_typer(matrix_app, name="matrix")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"timmx {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version.",
        ),
    ] = False,
) -> None:
    """Export timm models to deployment formats, verified against PyTorch."""


@app.command("list")
def list_models(
    pattern: Annotated[
        str | None, typer.Argument(help="Substring or glob (e.g. 'resnet*').")
    ] = None,
    pretrained_only: Annotated[
        bool,
        typer.Option("--pretrained-only", help="Only models with pretrained weights."),
    ] = False,
) -> None:
    """List timm models matching PATTERN."""
    from timmx.core.info import list_model_names

    with user_errors():
        names = list_model_names(pattern, pretrained_only)
    for name in names:
        typer.echo(name)
    if not names:
        typer.echo(f"No timm model matches {pattern!r}.", err=True)


def info(model: str, json_output: bool = False, **weights: Any) -> None:
    """Describe a timm model: architecture, parameters, input, preprocessing, classes."""
    from timmx.core.info import describe_model

    with user_errors():
        description = describe_model(model, **weights)
    if json_output:
        typer.echo(json.dumps(description, default=str))
        return
    for key, value in description.items():
        console.print(f"{key:<16} {value}", markup=False, soft_wrap=True)


# `timmx info` takes the export flags that change the model, declared once in CommonOptions.
info.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        model_parameter("timm model name."),
        *common_parameters("pretrained", "checkpoint", "num_classes", "in_chans"),
        inspect.Parameter(
            "json_output",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[bool, typer.Option("--json", help="Print one JSON object.")],
        ),
    ]
)
app.command()(info)


CORE_PACKAGES = ("torch", "torchvision", "timm", "numpy", "typer", "rich")


@app.command()
def doctor(
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show which backends can run here, with versions and install hints."""
    core = {name: installed_version(name) for name in CORE_PACKAGES}
    registry = default_registry()
    rows = []
    for backend in registry.backends():
        try:
            state = backend.check_dependencies()
            row = {
                "backend": backend.name,
                "available": state.available,
                "versions": state.versions,
                "install": None if state.available else state.install_hint,
                "detail": state.detail,
            }
        except Exception as exc:  # a broken optional install must not take doctor down
            row = {
                "backend": backend.name,
                "available": False,
                "versions": {},
                "install": None,
                "detail": f"dependency check failed: {type(exc).__name__}: {exc}",
            }
        rows.append(row)
    for failure in registry.failures:
        rows.append(
            {
                "backend": failure.name,
                "available": False,
                "versions": {},
                "install": None,
                "detail": f"plugin {failure.source} failed to load: {failure.error}",
            }
        )
    if json_output:
        data = {"timmx": __version__, "python": platform.python_version(), "core": core}
        typer.echo(json.dumps({**data, "backends": rows}))
        return
    console.print(f"timmx {__version__} on Python {platform.python_version()}", markup=False)
    console.print(
        "core: " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in core.items()),
        markup=False,
    )
    for row in rows:
        mark = "ok     " if row["available"] else "missing"
        versions = ", ".join(f"{k} {v or '-'}" for k, v in row["versions"].items())
        line = f"  {mark} {row['backend']:<13} {versions}"
        if row["detail"]:
            line += f" ({row['detail']})"
        console.print(line, markup=False, soft_wrap=True)
        if row["install"]:
            console.print(f"          install: {row['install']}", markup=False, soft_wrap=True)
