"""ncnn (a folder with model.ncnn.param, model.ncnn.bin, model_ncnn.py) via pnnx.

pnnx traces nothing itself: timmx traces the model with TorchScript, runs pnnx's bundled
converter inside a private work folder (it writes its intermediates next to its input), checks
that every expected file was written and that every operator was lowered to an ncnn layer (pnnx
exits 0 even when it leaves operators it cannot convert), and keeps only the ncnn files plus
``timmx.json`` (the metadata; it also marks the folder as a timmx export). Verification runs
the result with the ``ncnn`` Python runtime.
"""

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from timmx.backends._ncnn_rewrites import explicit_chunks, ncnn_friendly
from timmx.core.backend import MARKER_FILE, DependencyStatus, ExportBackend, installed_version
from timmx.core.options import option
from timmx.core.verify import VerifyReport, verify_with_runner
from timmx.errors import ConfigurationError, ExportError

PARAM_FILE = "model.ncnn.param"
BIN_FILE = "model.ncnn.bin"
PY_FILE = "model_ncnn.py"
METADATA_FILE = MARKER_FILE  # timmx.json: the metadata, also marking the folder as ours
NCNN_FILES = (PARAM_FILE, BIN_FILE, PY_FILE)
INPUT_BLOB = "in0"
OUTPUT_BLOB = "out0"
PNNX_TIMEOUT_S = 1800


@dataclass
class NcnnOptions:
    """``timmx export ncnn`` flags."""

    fp16: bool = option(True, "Store weights as float16 in model.ncnn.bin (half the size).")


def _tail(text: str, lines: int = 8) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _layer_types(param: Path) -> list[str]:
    """Layer types listed in an ncnn .param file (first column after the two header lines)."""
    rows = param.read_text(encoding="utf-8", errors="replace").splitlines()[2:]
    return [row.split()[0] for row in rows if row.strip()]


def unlowered_operators(param: Path, log: str) -> list[str]:
    """Operators pnnx left as PyTorch ops ("ignore ..." in its log, dotted types in the param)."""
    found: list[str] = []
    for line in log.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "ignore":
            found.append(parts[1])
    found.extend(kind for kind in _layer_types(param) if "." in kind)
    return sorted(set(found))


def pnnx_executable() -> Path:
    """The converter binary bundled in the pnnx wheel (found without importing torch)."""
    import importlib.util

    spec = importlib.util.find_spec("pnnx")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError("pnnx is not installed; pip install 'timmx[ncnn]'.")
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder / ("pnnx.exe" if os.name == "nt" else "pnnx")


def export_ncnn(prepared, directory: Path, *, fp16: bool = True) -> dict[str, object]:
    """Convert ``prepared`` into ``directory`` (which must exist): the ncnn param/bin, pnnx's
    ``model_ncnn.py`` example and ``timmx.json``. Returns what the metadata file holds.

    The model is traced, pnnx runs in a temporary folder beside ``directory`` and everything it
    writes besides the three ncnn files is deleted. Raises ExportError when pnnx fails, leaves a
    file out, or cannot lower an operator to ncnn.
    """
    import torch

    if prepared.batch_size != 1:
        raise ConfigurationError("ncnn has no batch dimension; use --batch-size 1.")
    work = Path(tempfile.mkdtemp(prefix=".pnnx-", dir=directory.parent))
    try:
        example = prepared.sample_input()
        module, rewritten = ncnn_friendly(prepared.module, example)
        with torch.inference_mode(False), torch.no_grad(), explicit_chunks():
            traced = torch.jit.trace(module, example, check_trace=False)
        del module
        traced.save(str(work / "model.pt"))
        del traced
        shape = ",".join(str(d) for d in example.shape)
        command = [
            str(pnnx_executable()),
            "model.pt",
            f"inputshape=[{shape}]f32",
            "device=cpu",
            f"fp16={1 if fp16 else 0}",
        ]
        try:
            done = subprocess.run(
                command, cwd=work, capture_output=True, text=True, timeout=PNNX_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ExportError(f"Could not run pnnx ({command[0]}): {exc}") from exc
        log = f"{done.stdout}\n{done.stderr}"
        if done.returncode != 0:
            raise ExportError(
                f"pnnx failed with exit code {done.returncode}; its last lines:\n{_tail(log)}"
            )
        missing = [
            name
            for name in NCNN_FILES
            if not (work / name).is_file() or not (work / name).stat().st_size
        ]
        if missing:
            raise ExportError(
                f"pnnx exited 0 but did not write {', '.join(missing)}: its ncnn conversion "
                f"failed. Its last lines:\n{_tail(log)}"
            )
        unlowered = unlowered_operators(work / PARAM_FILE, log)
        if unlowered:
            raise ExportError(
                f"pnnx could not convert {len(unlowered)} operator type(s) to ncnn layers "
                f"({', '.join(unlowered)}), so ncnn cannot run {prepared.name}. Reshapes beyond "
                "4 dimensions (e.g. an attention pool's 5-D kv split) are a known pnnx limitation; "
                "export to onnx or another format instead."
            )
        for name in NCNN_FILES:
            shutil.move(str(work / name), str(directory / name))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    metadata: dict[str, object] = dict(prepared.metadata())
    metadata.update(
        {
            "format": "ncnn",
            "ncnn_input": INPUT_BLOB,
            "ncnn_output": OUTPUT_BLOB,
            "ncnn_input_shape": json.dumps(list(prepared.input_size)),
            "fp16_weights": str(fp16).lower(),
            "pnnx_version": installed_version("pnnx") or "unknown",
            "attention_rewritten": str(rewritten),
        }
    )
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return metadata


def ncnn_runner(directory: Path, *, fp16: bool = True, threads: int | None = None):
    """A function running the ncnn model on each image of a batch (ncnn has no batch axis).

    With ``fp16`` ncnn keeps its defaults (fp16 storage/arithmetic where the CPU supports it);
    without, they are switched off so an fp32 model also computes in fp32.
    """
    import ncnn
    import numpy as np

    net = ncnn.Net()
    net.opt.num_threads = threads or os.cpu_count() or 1
    if not fp16:
        net.opt.use_fp16_storage = False
        net.opt.use_fp16_packed = False
        net.opt.use_fp16_arithmetic = False
        net.opt.use_bf16_storage = False
    if net.load_param(str(directory / PARAM_FILE)) != 0:
        raise ExportError(f"ncnn could not load {directory / PARAM_FILE}.")
    if net.load_model(str(directory / BIN_FILE)) != 0:
        raise ExportError(f"ncnn could not load {directory / BIN_FILE}.")

    def run(x):
        rows = []
        for image in x:
            with net.create_extractor() as extractor:
                extractor.input(INPUT_BLOB, ncnn.Mat(np.ascontiguousarray(image)).clone())
                status, out = extractor.extract(OUTPUT_BLOB)
                if status != 0:
                    raise ExportError(f"ncnn failed to compute {OUTPUT_BLOB} (status {status}).")
                rows.append(np.array(out, dtype=np.float32).reshape(-1))
        return np.stack(rows)

    run.net = net  # keeps the network alive as long as the runner
    return run


class NcnnBackend(ExportBackend):
    """ncnn export via pnnx, verified in the ncnn Python runtime."""

    name = "ncnn"
    help = (
        "Export to ncnn (folder with model.ncnn.param/.bin and model_ncnn.py) via pnnx; "
        "verified in the ncnn runtime."
    )
    Options = NcnnOptions
    output_is_dir = True
    requires = ("pnnx", "ncnn")
    extra = "ncnn"

    def check_dependencies(self) -> DependencyStatus:
        """pnnx converts (its bundled binary must be present); ncnn verifies."""
        state = super().check_dependencies()
        if state.available:
            binary = pnnx_executable()
            if not binary.is_file():
                return DependencyStatus(
                    available=False,
                    versions=state.versions,
                    install_hint=state.install_hint,
                    detail=f"the pnnx converter binary is missing ({binary}); reinstall pnnx",
                )
        return state

    def validate(self, job) -> None:
        """ncnn has no batch axis."""
        if job.common.batch_size != 1:
            raise ConfigurationError(
                f"ncnn has no batch dimension (got --batch-size {job.common.batch_size}); "
                "use --batch-size 1 and run images one at a time."
            )

    def precision(self, job) -> str:
        """fp16 weight storage or fp32."""
        return "fp16" if job.options.fp16 else "fp32"

    def convert(self, job, artifact: Path) -> None:
        """Trace, run pnnx in a private folder, keep the ncnn files and timmx.json."""
        metadata = export_ncnn(job.model, artifact, fp16=job.options.fp16)
        job.details["files"] = ", ".join([*NCNN_FILES, METADATA_FILE])
        rewritten = int(str(metadata.get("attention_rewritten", 0)))
        if rewritten:
            job.notes.append(
                f"{rewritten} attention layers traced in 4-D form for pnnx (same computation)"
            )
        job.notes.append(f"metadata in {METADATA_FILE} (ncnn has no metadata field)")

    @contextlib.contextmanager
    def runtime(self, job, artifact: Path, *, threads: int | None = None):
        """The ncnn runtime (fp32 exports run with fp16 storage/arithmetic off)."""
        yield ncnn_runner(artifact, fp16=job.options.fp16, threads=threads)

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Run in ncnn and compare (tolerance per precision, top-1 must agree)."""
        note = None if job.options.fp16 else "ncnn run with fp16 storage/arithmetic off"
        with self.runtime(job, artifact) as run:
            return verify_with_runner(job, run, "ncnn", note=note)
