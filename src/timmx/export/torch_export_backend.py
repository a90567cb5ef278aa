"""torch.export ExportedProgram (.pt2)."""

import json
from pathlib import Path
from typing import Annotated

import typer

from timmx.errors import ConfigurationError
from timmx.export.base import ExportBackend
from timmx.export.options import DynamicBatchOpt, build_command
from timmx.export.verify import (
    VerifyReport,
    verification_batch_sizes,
    verify_with_runner,
)

METADATA_FILE = "metadata.json"
MAX_DYNAMIC_BATCH = 1024


def batch_dim_spec(dynamic_batch: bool):
    """``dynamic_shapes`` for the single image input, positional (independent of arg names)."""
    if not dynamic_batch:
        return None
    import torch

    return ({0: torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)},)


def export_program(prepared, *, dynamic_batch: bool = False, strict: bool = False):
    """Capture ``prepared`` with torch.export (shared by the backends built on it)."""
    import torch

    return torch.export.export(
        prepared.module,
        (prepared.sample_input(),),
        dynamic_shapes=batch_dim_spec(dynamic_batch),
        strict=strict,
    )


def validate_dynamic_batch(job) -> None:
    """torch.export captures a symbolic batch reliably only from a sample batch of 2 or more."""
    if getattr(job.options, "dynamic_batch", False) and job.common.batch_size < 2:
        raise ConfigurationError(
            "--dynamic-batch needs --batch-size >= 2 (a batch of 1 gets specialized by "
            "torch.export); add --batch-size 2."
        )


class TorchExportBackend(ExportBackend):
    """torch.export, verified by reloading with torch.export.load."""

    name = "torch-export"
    help = "Export a torch.export ExportedProgram (.pt2)."
    suffix = ".pt2"

    def create_command(self):
        """The ``timmx export torch-export`` command."""

        def options(
            dynamic_batch: DynamicBatchOpt = False,
            strict: Annotated[
                bool,
                typer.Option("--strict", help="Use torch.export's strict (TorchDynamo) mode."),
            ] = False,
        ) -> None: ...

        return build_command(self, options)

    def validate(self, job) -> None:
        """Dynamic batch needs a sample batch of at least 2."""
        validate_dynamic_batch(job)

    def convert(self, job, artifact: Path) -> None:
        """Capture and save the program with metadata as an extra file."""
        import torch

        program = export_program(
            job.model,
            dynamic_batch=job.options.dynamic_batch,
            strict=job.options.strict,
        )
        extra = {METADATA_FILE: json.dumps(job.model.metadata())}
        torch.export.save(program, str(artifact), extra_files=extra)

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Reload with torch.export.load and compare (and a second batch size if dynamic)."""
        import torch

        module = torch.export.load(str(artifact)).module()

        def run(x):
            with torch.inference_mode():
                return module(torch.from_numpy(x).to(job.model.device)).float().cpu().numpy()

        sizes = verification_batch_sizes(job.common.batch_size, job.options.dynamic_batch)
        return verify_with_runner(job, run, "torch.export", batch_sizes=sizes)
