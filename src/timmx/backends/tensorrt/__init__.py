"""TensorRT engines (.engine) from a dynamo-exported ONNX intermediate; NVIDIA GPUs only.

The engine is built by :func:`export_tensorrt` (see :mod:`timmx.backends.tensorrt.build` for how
each precision is represented: strongly typed networks, int8 by explicit Q/DQ quantization) and
verified by running it with TensorRT's runtime on the GPU against PyTorch.
"""

import contextlib
import importlib.util
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from timmx.backends._onnx_graph import DEFAULT_OPSET, MIN_OPSET
from timmx.backends._torch_capture import MAX_DYNAMIC_BATCH, validate_dynamic_batch
from timmx.backends.tensorrt import build as tensorrt_build
from timmx.backends.tensorrt.build import (
    MIN_TENSORRT_MAJOR,
    BatchProfile,
    EngineRunner,
    build_engine,
    exact_fp32_torch,
    export_intermediate_onnx,
    tensorrt_major,
)
from timmx.core.backend import (
    DependencyStatus,
    ExportBackend,
    install_command,
    installed_version,
)
from timmx.core.calibration import (
    calibration_data_option,
    calibration_samples_option,
    calibration_steps_option,
    load_calibration,
    random_calibration_option,
    validate_calibration,
)
from timmx.core.options import option
from timmx.core.types import Device
from timmx.core.verify import VerifyReport, verify_with_runner
from timmx.errors import ConfigurationError, DependencyError

INSTALL_HINT = "pip install tensorrt   (Linux or Windows with an NVIDIA GPU and driver)"
ONNX_HINT = install_command("onnx")
# Distributions that provide the `tensorrt` module: the meta package, then the per-CUDA ones.
TENSORRT_DISTRIBUTIONS = (
    "tensorrt",
    "tensorrt-cu13",
    "tensorrt-cu12",
    "tensorrt-cu13-bindings",
    "tensorrt-cu12-bindings",
)
ONNX_REQUIRES = ("onnx", "onnxscript", "onnxslim")
DEFAULT_BATCH_MAX = 32
METADATA_SUFFIX = ".json"
NVIDIA_PROC_VERSION = Path("/proc/driver/nvidia/version")


class TensorRTMode(StrEnum):
    """Engine precision."""

    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


@dataclass
class TensorRTOptions:
    """``timmx export tensorrt`` flags."""

    mode: TensorRTMode = option(
        TensorRTMode.fp32, "Precision: fp32, fp16 or int8 (explicit Q/DQ, calibrated)."
    )
    workspace: float | None = option(
        None,
        "Builder workspace memory limit in GiB (default: TensorRT's own).",
        show_default=False,
    )
    opset: int = option(DEFAULT_OPSET, f"ONNX opset of the intermediate (>= {MIN_OPSET}).")
    dynamic_batch: bool = option(
        False,
        "Dynamic batch profile: min --batch-min, opt --batch-size, max --batch-max (needs "
        "--batch-size >= 2).",
        "--dynamic-batch",
    )
    batch_min: int | None = option(
        None, "Smallest batch of the --dynamic-batch profile (default: 1).", show_default=False
    )
    batch_max: int | None = option(
        None,
        "Largest batch of the --dynamic-batch profile (default: "
        f"max(--batch-size, {DEFAULT_BATCH_MAX})).",
        show_default=False,
    )
    calibration_data: Path | None = calibration_data_option()
    calibration_samples: int | None = calibration_samples_option()
    calibration_steps: int | None = calibration_steps_option()
    random_calibration: bool = random_calibration_option()
    keep_onnx: bool = option(False, "Keep the ONNX intermediate as <output>.onnx.", "--keep-onnx")
    verbose: bool = option(False, "Print TensorRT's verbose build log.", "--verbose")


def tensorrt_version() -> str | None:
    """The installed TensorRT version without importing it ('unknown' if only the module)."""
    for dist in TENSORRT_DISTRIBUTIONS:
        version = installed_version(dist)
        if version is not None:
            return version
    try:
        found = importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):
        found = False
    return "unknown" if found else None


def nvidia_driver() -> str | None:
    """'GPU name, driver X' from nvidia-smi (or the kernel module's version); None if absent."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run(
                [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            done = None
        if done is not None and done.returncode == 0 and done.stdout.strip():
            gpus = [line.split(",") for line in done.stdout.strip().splitlines()]
            names = "; ".join(name.strip() for name, *_ in gpus)
            driver = gpus[0][1].strip() if len(gpus[0]) > 1 else "?"
            return f"{names}, driver {driver}"
    try:
        text = NVIDIA_PROC_VERSION.read_text()
    except OSError:
        return None
    words = text.split()
    version = next((w for w in words if w.count(".") >= 1 and w[0].isdigit()), "?")
    return f"NVIDIA driver {version}"


def export_tensorrt(
    prepared,
    path: Path,
    *,
    mode: str = "fp32",
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    batch_min: int = 1,
    batch_max: int = DEFAULT_BATCH_MAX,
    workspace_gib: float | None = None,
    calibration_batches=None,
    onnx_path: Path | None = None,
    verbose: bool = False,
    trt=None,
) -> dict[str, str]:
    """Export ``prepared`` to a TensorRT engine at ``path``; returns the engine's metadata.

    The ONNX intermediate goes to ``onnx_path`` when given (kept), else to a temporary folder.
    With ``dynamic_batch`` the engine gets one optimization profile: min ``batch_min``, opt the
    sample batch size, max ``batch_max``. The metadata (the model's plus build facts) is also
    written beside the engine as ``<engine>.json``.
    """
    trt = trt or tensorrt_build.import_tensorrt()
    with tempfile.TemporaryDirectory(prefix="timmx-trt-") as scratch:
        onnx_file = onnx_path or Path(scratch) / f"{path.stem}.onnx"
        export_intermediate_onnx(
            prepared,
            onnx_file,
            mode=mode,
            opset=opset,
            dynamic_batch=dynamic_batch,
            calibration_batches=calibration_batches,
        )
        profile = None
        if dynamic_batch:
            profile = BatchProfile(batch_min, prepared.batch_size, batch_max)
        engine = build_engine(
            onnx_file,
            mode=mode,
            profile=profile,
            workspace_gib=workspace_gib,
            verbose=verbose,
            trt=trt,
        )
    path.write_bytes(engine)
    metadata = {
        **prepared.metadata(),
        "tensorrt_version": str(trt.__version__),
        "precision": mode,
        "strongly_typed": "true",
        "batch_profile": (
            json.dumps([profile.min, profile.opt, profile.max]) if profile else "static"
        ),
        **_gpu_facts(prepared.device),
    }
    path.with_name(path.name + METADATA_SUFFIX).write_text(json.dumps(metadata, indent=2))
    return metadata


def _gpu_facts(device: str) -> dict[str, str]:
    """The GPU an engine was built for (engines are specific to a GPU and TensorRT version)."""
    if device != "cuda":
        return {}
    import torch

    major, minor = torch.cuda.get_device_capability()
    return {"gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


class TensorRTBackend(ExportBackend):
    """TensorRT engine export, verified by running the engine with TensorRT on the GPU."""

    name = "tensorrt"
    help = (
        "Export a TensorRT engine (.engine) via a dynamo ONNX intermediate (--device cuda); "
        "verified with TensorRT's runtime."
    )
    suffix = ".engine"
    Options = TensorRTOptions
    requires = ONNX_REQUIRES
    extra = "onnx"
    calibrates = True
    devices = (Device.cuda,)

    def check_dependencies(self) -> DependencyStatus:
        """TensorRT (>= 10), the ONNX exporter packages and an NVIDIA driver; no imports."""
        trt_version = tensorrt_version()
        versions = {"tensorrt": trt_version}
        versions.update({dist: installed_version(dist) for dist in ONNX_REQUIRES})
        driver = nvidia_driver()
        missing_onnx = [d for d in ONNX_REQUIRES if versions[d] is None]
        hints = []
        if trt_version is None:
            hints.append(INSTALL_HINT)
        if missing_onnx:
            hints.append(ONNX_HINT)
        problems = []
        if trt_version not in (None, "unknown") and tensorrt_major(trt_version) < 10:
            problems.append(
                f"TensorRT {trt_version} is older than {MIN_TENSORRT_MAJOR}; "
                "upgrade with pip install -U tensorrt"
            )
        if driver is None:
            problems.append("no NVIDIA GPU/driver found (TensorRT engines need one)")
        detail = "; ".join([*([f"GPU: {driver}"] if driver else []), *problems])
        return DependencyStatus(
            available=trt_version is not None and not missing_onnx and not problems,
            versions=versions,
            install_hint=" and ".join(hints) if hints else INSTALL_HINT,
            detail=detail or None,
        )

    def validate(self, job) -> None:
        """Opset, workspace, batch profile and calibration flags (--device cuda: capability)."""
        options = job.options
        if options.opset < MIN_OPSET:
            raise ConfigurationError(
                f"--opset {options.opset} is too old for the dynamo exporter; use >= {MIN_OPSET}."
            )
        if options.workspace is not None and options.workspace <= 0:
            raise ConfigurationError(
                f"--workspace is in GiB and must be > 0, got {options.workspace}."
            )
        self._validate_profile(job)
        mode = TensorRTMode(options.mode)
        validate_calibration(
            job, needs_calibration=mode == TensorRTMode.int8, allowed=mode == TensorRTMode.int8
        )
        if mode == TensorRTMode.int8 and installed_version("torchao") is None:
            raise DependencyError(self.name, ["torchao"], "pip install torchao")

    @staticmethod
    def _validate_profile(job) -> None:
        options = job.options
        batch = job.common.batch_size
        if not options.dynamic_batch:
            given = [
                flag
                for flag, value in (
                    ("--batch-min", options.batch_min),
                    ("--batch-max", options.batch_max),
                )
                if value is not None
            ]
            if given:
                raise ConfigurationError(
                    f"{' and '.join(given)} only apply to the --dynamic-batch profile; add "
                    "--dynamic-batch or remove them."
                )
            return
        validate_dynamic_batch(job)
        low, high = profile_bounds(job)
        if low < 1:
            raise ConfigurationError(f"--batch-min must be >= 1, got {low}.")
        if high > MAX_DYNAMIC_BATCH:
            raise ConfigurationError(
                f"--batch-max must be <= {MAX_DYNAMIC_BATCH} (the exporter's symbolic batch "
                f"range), got {high}."
            )
        if not low <= batch <= high:
            raise ConfigurationError(
                f"The profile needs --batch-min <= --batch-size <= --batch-max (the batch size "
                f"is the optimal batch), got {low} <= {batch} <= {high}."
            )

    def precision(self, job) -> str:
        """The --mode."""
        return TensorRTMode(job.options.mode).value

    def convert(self, job, artifact: Path) -> None:
        """ONNX intermediate (calibrated Q/DQ for int8), then the engine and its metadata."""
        options = job.options
        mode = TensorRTMode(options.mode)
        batches = None
        if mode == TensorRTMode.int8:
            calibration = load_calibration(job)
            batches = calibration.batches(job.model.batch_size, device=job.model.device)
        low, high = profile_bounds(job)
        onnx_path = artifact.with_suffix(".onnx") if options.keep_onnx else None
        metadata = export_tensorrt(
            job.model,
            artifact,
            mode=mode.value,
            opset=options.opset,
            dynamic_batch=options.dynamic_batch,
            batch_min=low,
            batch_max=high,
            workspace_gib=options.workspace,
            calibration_batches=batches,
            onnx_path=onnx_path,
            verbose=options.verbose,
        )
        job.details["tensorrt"] = metadata["tensorrt_version"]
        if options.dynamic_batch:
            job.details["profile"] = f"batch min {low}, opt {job.model.batch_size}, max {high}"
        if mode == TensorRTMode.int8:
            job.notes.append(
                "int8 by explicit quantization: Q/DQ from PT2E calibration on conv/linear "
                "inputs (strongly typed network; no TensorRT calibrator or cache)"
            )
        if onnx_path is not None:
            job.notes.append(f"ONNX intermediate kept: {onnx_path.name}")
        job.notes.append(f"build metadata: {artifact.name}{METADATA_SUFFIX}")

    @contextlib.contextmanager
    def runtime(self, job, artifact: Path, *, threads: int | None = None):
        """The engine deserialized by TensorRT's runtime on the GPU."""
        yield EngineRunner(
            artifact.read_bytes(), device=job.model.device, verbose=job.options.verbose
        )

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Deserialize and run the engine on the GPU; compare with PyTorch (true fp32)."""
        with self.runtime(job, artifact) as runner, exact_fp32_torch():
            return verify_with_runner(
                job, runner, "tensorrt", batch_sizes=verification_batch_sizes(job)
            )


def profile_bounds(job) -> tuple[int, int]:
    """(--batch-min, --batch-max) with their defaults filled in."""
    batch = job.common.batch_size
    low = job.options.batch_min if job.options.batch_min is not None else 1
    high = job.options.batch_max
    if high is None:
        high = max(batch, DEFAULT_BATCH_MAX)
    return low, high


def verification_batch_sizes(job) -> tuple[int, ...]:
    """The sample batch, plus another batch inside the profile when the batch is dynamic."""
    batch = job.common.batch_size
    if not job.options.dynamic_batch:
        return (batch,)
    low, high = profile_bounds(job)
    other = batch + 1 if batch + 1 <= high else low
    return (batch,) if other == batch else (batch, other)
