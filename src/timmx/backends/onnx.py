"""ONNX (.onnx) via the dynamo exporter, simplified with onnxslim, checked, run in onnxruntime."""

import contextlib
from dataclasses import dataclass
from pathlib import Path

from timmx.backends._onnx_graph import (
    DEFAULT_OPSET,
    MIN_OPSET,
    REQUIRES,
    export_onnx,
    onnxruntime_runner,
)
from timmx.backends._torch_capture import dynamic_batch_option, validate_dynamic_batch
from timmx.core.backend import ExportBackend
from timmx.core.options import option
from timmx.core.verify import VerifyReport, verification_batch_sizes, verify_with_runner
from timmx.errors import ConfigurationError


@dataclass
class OnnxOptions:
    """``timmx export onnx`` flags."""

    opset: int = option(DEFAULT_OPSET, f"ONNX opset (>= {MIN_OPSET}).")
    dynamic_batch: bool = dynamic_batch_option()
    external_data: bool = option(
        False, "Store weights in <output>.data beside it.", "--external-data"
    )
    slim: bool = option(True, "Simplify the graph with onnxslim.")


class OnnxBackend(ExportBackend):
    """ONNX export, verified in onnxruntime."""

    name = "onnx"
    help = "Export to ONNX (.onnx) with the dynamo exporter; verified in onnxruntime."
    suffix = ".onnx"
    Options = OnnxOptions
    requires = REQUIRES
    extra = "onnx"

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

    @contextlib.contextmanager
    def runtime(self, job, artifact: Path, *, threads: int | None = None):
        """onnxruntime on the CPU."""
        yield onnxruntime_runner(artifact, threads)

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Run in onnxruntime (CPU) and compare; a second batch size when dynamic."""
        sizes = verification_batch_sizes(job.common.batch_size, job.options.dynamic_batch)
        with self.runtime(job, artifact) as run:
            return verify_with_runner(job, run, "onnxruntime", batch_sizes=sizes)
