"""ONNX (.onnx) via the dynamo exporter, simplified with onnxslim, checked, run in onnxruntime."""

import contextlib
import io
from pathlib import Path
from typing import Annotated

import typer

from timmx.errors import ConfigurationError
from timmx.export.base import ExportBackend
from timmx.export.options import DynamicBatchOpt, build_command
from timmx.export.torch_export_backend import batch_dim_spec, validate_dynamic_batch
from timmx.export.verify import (
    VerifyReport,
    verification_batch_sizes,
    verify_with_runner,
)

MIN_OPSET = 18
DEFAULT_OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "output"


def export_onnx(
    prepared,
    path: Path,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    external_data: bool = False,
    slim: bool = True,
) -> None:
    """Export ``prepared`` to ONNX at ``path`` with timmx metadata in ``metadata_props``.

    With ``external_data`` the weights go to ``<path>.data`` beside the graph.
    """
    import onnx
    import torch

    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            prepared.module,
            (prepared.sample_input(),),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=batch_dim_spec(dynamic_batch),
            external_data=False,
            verbose=False,
        )
    proto = program.model_proto
    if slim:
        import onnxslim

        with contextlib.redirect_stdout(io.StringIO()):
            proto = onnxslim.slim(proto)
    set_metadata(proto, prepared.metadata())
    proto.producer_name = "timmx"
    if external_data:
        onnx.save_model(
            proto,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"{path.name}.data",
            size_threshold=1024,
        )
    else:
        onnx.save_model(proto, str(path))
    onnx.checker.check_model(str(path), full_check=False)


def set_metadata(proto, metadata: dict[str, str]) -> None:
    """Write ``metadata`` into the model's standard ``metadata_props``."""
    existing = {prop.key: prop for prop in proto.metadata_props}
    for key, value in metadata.items():
        prop = existing.get(key) or proto.metadata_props.add()
        prop.key, prop.value = key, value


def onnxruntime_runner(path: Path):
    """A function running the ONNX file on CPU with onnxruntime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x):
        return session.run(None, {name: x})[0]

    return run


class OnnxBackend(ExportBackend):
    """ONNX export, verified in onnxruntime."""

    name = "onnx"
    help = "Export to ONNX (.onnx) with the dynamo exporter; verified in onnxruntime."
    suffix = ".onnx"
    requires = ("onnx", "onnxscript", "onnxruntime", "onnxslim")
    extra = "onnx"

    def create_command(self):
        """The ``timmx export onnx`` command."""

        def options(
            opset: Annotated[int, typer.Option(help=f"ONNX opset (>= {MIN_OPSET}).")] = (
                DEFAULT_OPSET
            ),
            dynamic_batch: DynamicBatchOpt = False,
            external_data: Annotated[
                bool,
                typer.Option("--external-data", help="Store weights in <output>.data beside it."),
            ] = False,
            slim: Annotated[bool, typer.Option(help="Simplify the graph with onnxslim.")] = True,
        ) -> None: ...

        return build_command(self, options)

    def validate(self, job) -> None:
        """Opset range and dynamic batch."""
        if job.options.opset < MIN_OPSET:
            raise ConfigurationError(
                f"--opset {job.options.opset} is too old for the dynamo exporter; "
                f"use >= {MIN_OPSET}."
            )
        validate_dynamic_batch(job)

    def convert(self, job, artifact: Path) -> None:
        """Export, slim, add metadata, save and check."""
        export_onnx(
            job.model,
            artifact,
            opset=job.options.opset,
            dynamic_batch=job.options.dynamic_batch,
            external_data=job.options.external_data,
            slim=job.options.slim,
        )

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Run in onnxruntime (CPU) and compare; a second batch size when dynamic."""
        sizes = verification_batch_sizes(job.common.batch_size, job.options.dynamic_batch)
        return verify_with_runner(
            job, onnxruntime_runner(artifact), "onnxruntime", batch_sizes=sizes
        )
