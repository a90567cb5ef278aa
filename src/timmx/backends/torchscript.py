"""TorchScript (.pt) via torch.jit.trace or torch.jit.script."""

import contextlib
import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from timmx.backends._torch_capture import torch_runner
from timmx.core.backend import ExportBackend
from timmx.core.options import option
from timmx.core.verify import VerifyReport, verify_with_runner

METADATA_FILE = "metadata.json"


class TorchScriptMethod(StrEnum):
    """How the model is captured."""

    trace = "trace"
    script = "script"


@dataclass
class TorchScriptOptions:
    """``timmx export torchscript`` flags."""

    method: TorchScriptMethod = option(
        TorchScriptMethod.trace, "Capture with trace (recommended) or script."
    )


def export_torchscript(prepared, path: Path, method: TorchScriptMethod) -> None:
    """Capture ``prepared`` with trace (recommended) or script and save it with metadata."""
    import torch

    module = prepared.module
    with torch.inference_mode(False), torch.no_grad():
        if method == TorchScriptMethod.script:
            scripted = torch.jit.script(module)
        else:
            scripted = torch.jit.trace(module, prepared.sample_input(), check_trace=False)
    extra_files = {METADATA_FILE: json.dumps(prepared.metadata())}
    torch.jit.save(scripted, str(path), _extra_files=extra_files)


class TorchScriptBackend(ExportBackend):
    """TorchScript export, verified by reloading with torch.jit.load."""

    name = "torchscript"
    help = "Export to TorchScript (.pt) with torch.jit.trace (default) or torch.jit.script."
    suffix = ".pt"
    Options = TorchScriptOptions

    def convert(self, job, artifact: Path) -> None:
        """Write the TorchScript file."""
        export_torchscript(job.model, artifact, job.options.method)

    @contextlib.contextmanager
    def runtime(self, job, artifact: Path, *, threads: int | None = None):
        """torch.jit.load (``threads``: torch's intra-op threads, for this process)."""
        import torch

        if threads:
            torch.set_num_threads(threads)
        loaded = torch.jit.load(str(artifact), map_location=job.model.device)
        loaded.eval()
        yield torch_runner(loaded, job.model.device)

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Reload with torch.jit.load and compare."""
        with self.runtime(job, artifact) as run:
            return verify_with_runner(job, run, "torch.jit")
