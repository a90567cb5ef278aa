"""The options every backend shares, and how a backend's command is assembled from them."""

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from timmx.export.base import ExportBackend
from timmx.export.types import Device

MODEL_HELP = "timm model name (e.g. resnet50; see `timmx list`)."


def common_options(
    model: Annotated[str, typer.Argument(help=MODEL_HELP, show_default=False)],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Output path (default: <model> with the format's extension).",
        ),
    ] = None,
    pretrained: Annotated[
        bool, typer.Option("--pretrained", help="Load timm's pretrained weights.")
    ] = False,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Weights to load: a state_dict .pth/.pt or a .safetensors file."),
    ] = None,
    num_classes: Annotated[
        int | None, typer.Option(min=1, help="Number of classifier outputs.")
    ] = None,
    in_chans: Annotated[int | None, typer.Option(help="Input channels: 1 or 3.")] = None,
    input_size: Annotated[
        tuple[int, int, int] | None,
        typer.Option(help="Input size C H W (default: the model's own).", show_default=False),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size of the sample input.")] = 1,
    device: Annotated[Device, typer.Option(help="Device the model runs on during export.")] = (
        Device.cpu
    ),
    normalize: Annotated[
        bool,
        typer.Option("--normalize", help="Bake mean/std normalization in: the input is [0, 1]."),
    ] = False,
    softmax: Annotated[
        bool,
        typer.Option("--softmax", help="Append a softmax: the output is probabilities."),
    ] = False,
    mean: Annotated[
        tuple[float, float, float] | None,
        typer.Option(help="Normalization mean R G B (needs --normalize).", show_default=False),
    ] = None,
    std: Annotated[
        tuple[float, float, float] | None,
        typer.Option(help="Normalization std R G B (needs --normalize).", show_default=False),
    ] = None,
    reparam: Annotated[
        bool,
        typer.Option(help="Fuse re-parameterizable blocks (RepVGG, MobileOne, ...)."),
    ] = True,
    verify: Annotated[
        bool,
        typer.Option(help="Run the artifact in its runtime and compare with PyTorch."),
    ] = True,
    atol: Annotated[
        float | None,
        typer.Option(min=0.0, help="Absolute tolerance (default: per format)."),
    ] = None,
    rtol: Annotated[
        float | None,
        typer.Option(min=0.0, help="Relative tolerance (default: per format)."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object.")
    ] = False,
) -> None:
    """Declares the shared options; never called."""


# Shared by the backends whose artifacts can take any batch size.
DynamicBatchOpt = Annotated[
    bool,
    typer.Option("--dynamic-batch", help="Symbolic batch size (needs --batch-size >= 2)."),
]

COMMON_PARAMETERS = tuple(inspect.signature(common_options).parameters.values())
COMMON_NAMES = frozenset(p.name for p in COMMON_PARAMETERS)


def command_parameters(command: Callable[..., object]) -> dict[str, inspect.Parameter]:
    """The parameters of a backend command, by Python name."""
    return dict(inspect.signature(command).parameters)


def build_command(
    backend: ExportBackend, options: Callable[..., object] | None = None
) -> Callable[..., None]:
    """Make the Typer command of ``backend``: the shared options plus those of ``options``.

    ``options`` is a function whose ``Annotated`` parameters declare the backend's own flags;
    it is never called. The command runs the export and prints the summary (or JSON).
    """
    specific = (
        list(inspect.signature(options, eval_str=True).parameters.values()) if options else []
    )
    clash = COMMON_NAMES.intersection(p.name for p in specific)
    if clash:
        raise ValueError(f"{backend.name} redeclares shared options: {sorted(clash)}")
    parameters = [*COMMON_PARAMETERS, *specific]

    def command(**kwargs: object) -> None:
        from timmx.cli_support import run_export_command

        run_export_command(backend, kwargs)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__name__ = backend.name.replace("-", "_")
    command.__doc__ = backend.help
    return command
