"""torch.export ExportedProgram (.pt2)."""

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from timmx.backends._torch_capture import (
    dynamic_batch_option,
    export_program,
    torch_runner,
    validate_dynamic_batch,
)
from timmx.core.backend import ExportBackend
from timmx.core.options import option
from timmx.core.verify import VerifyReport, verification_batch_sizes, verify_with_runner

METADATA_FILE = "metadata.json"


@dataclass
class TorchExportOptions:
    """``timmx export torch-export`` flags."""

    dynamic_batch: bool = dynamic_batch_option()
    strict: bool = option(False, "Use torch.export's strict (TorchDynamo) mode.", "--strict")


class TorchExportBackend(ExportBackend):
    """torch.export, verified by reloading with torch.export.load."""

    name = "torch-export"
    help = "Export a torch.export ExportedProgram (.pt2)."
    suffix = ".pt2"
    Options = TorchExportOptions

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

    @contextlib.contextmanager
    def runtime(self, job, artifact: Path, *, threads: int | None = None):
        """torch.export.load (``threads``: torch's intra-op threads, for this process)."""
        import torch

        if threads:
            torch.set_num_threads(threads)
        yield torch_runner(torch.export.load(str(artifact)).module(), job.model.device)

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Reload with torch.export.load and compare (and a second batch size if dynamic)."""
        sizes = verification_batch_sizes(job.common.batch_size, job.options.dynamic_batch)
        with self.runtime(job, artifact) as run:
            return verify_with_runner(job, run, "torch.export", batch_sizes=sizes)
