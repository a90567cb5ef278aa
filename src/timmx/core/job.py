"""One export in flight: the shared options, the backend's options and what has been learned."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from timmx.core.backend import ExportBackend, installed_version
from timmx.core.options import option
from timmx.core.types import Device
from timmx.errors import ConfigurationError

if TYPE_CHECKING:
    from timmx.core.calibration import CalibrationSet
    from timmx.core.evaluate import EvalReport
    from timmx.core.model import PreparedModel

MODEL_HELP = "timm model name (e.g. resnet50; see `timmx list`)."


@dataclass
class CommonOptions:
    """The options every export format shares (README: "Options every format shares")."""

    output: Path | None = option(
        None, "Output path (default: <model> with the format's extension).", "--output", "-o"
    )
    overwrite: bool = option(
        False,
        "Replace an existing output folder that is not a timmx artifact of this format.",
        "--overwrite",
    )
    pretrained: bool = option(False, "Load timm's pretrained weights.", "--pretrained")
    checkpoint: Path | None = option(
        None, "Weights to load: a state_dict .pth/.pt or a .safetensors file."
    )
    num_classes: int | None = option(None, "Number of classifier outputs.", min=1)
    in_chans: int | None = option(None, "Input channels: 1 or 3.")
    input_size: tuple[int, int, int] | None = option(
        None, "Input size C H W (default: the model's own).", show_default=False
    )
    batch_size: int = option(1, "Batch size of the sample input.", min=1)
    device: Device = option(Device.cpu, "Device the model runs on during export.")
    normalize: bool = option(
        False, "Bake mean/std normalization in: the input is [0, 1].", "--normalize"
    )
    softmax: bool = option(False, "Append a softmax: the output is probabilities.", "--softmax")
    mean: tuple[float, float, float] | None = option(
        None, "Normalization mean R G B (needs --normalize).", show_default=False
    )
    std: tuple[float, float, float] | None = option(
        None, "Normalization std R G B (needs --normalize).", show_default=False
    )
    reparam: bool = option(True, "Fuse re-parameterizable blocks (RepVGG, MobileOne, ...).")
    verify: bool = option(True, "Run the artifact in its runtime and compare with PyTorch.")
    atol: float | None = option(None, "Absolute tolerance (default: per format).", min=0.0)
    rtol: float | None = option(None, "Relative tolerance (default: per format).", min=0.0)
    verify_data: Path | None = option(
        None,
        "Verify on these images (a folder; timm's eval transform) instead of random images.",
        show_default=False,
    )
    eval_data: Path | None = option(
        None,
        "Measure top-1/top-5 of PyTorch and the artifact on labelled images: a folder with "
        "one sub-folder per class (ImageNet synsets, class indices, or names in labels.txt).",
        show_default=False,
    )
    eval_samples: int | None = option(
        None, "Images of --eval-data to use (default: all).", min=1, show_default=False
    )
    max_accuracy_drop: float | None = option(
        None,
        "With --eval-data: fail (exit 2, nothing written) when the artifact's top-1 is more "
        "than this many points below PyTorch's.",
        min=0.0,
        show_default=False,
    )
    json_output: bool = option(False, "Print the result as one JSON object.", "--json")


@dataclass
class ExportJob:
    """Everything one export needs; backends read options and the prepared model from here."""

    backend: ExportBackend
    model_name: str
    common: CommonOptions
    options: Any  # an instance of backend.Options
    output: Path | None = None
    prepared: PreparedModel | None = None
    calibration: CalibrationSet | None = None
    # Verification images (None: seeded random images): the files, their tensor, a description.
    verify_files: list[Path] | None = None
    verify_images: Any = None
    verify_source: str | None = None
    evaluation: EvalReport | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)

    @property
    def model(self) -> PreparedModel:
        """The prepared model (available from ``convert()`` on)."""
        if self.prepared is None:
            raise RuntimeError("the model has not been prepared yet")
        return self.prepared


def unavailable_device(device: Device) -> str | None:
    """Why ``device`` certainly cannot work here, found without importing torch (else None)."""
    if device == Device.cuda:
        version = installed_version("torch") or ""
        if "+cpu" in version:
            return f"this PyTorch ({version}) is a CPU-only build"
        nvidia = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0")
        if (
            sys.platform.startswith("linux")
            and "+rocm" not in version
            and not any(Path(p).exists() for p in nvidia)
        ):
            return "no NVIDIA driver is loaded on this machine"
    if device == Device.mps and sys.platform != "darwin":
        return "MPS exists only on Apple silicon Macs"
    return None


def require_device(device: Device) -> None:
    """Raise a ConfigurationError when ``device`` certainly cannot work here (no torch)."""
    problem = unavailable_device(device)
    if problem:
        what = "an NVIDIA GPU with CUDA" if device == Device.cuda else "Apple's MPS"
        raise ConfigurationError(
            f"--device {device.value} needs {what}: {problem}. Export on the CPU "
            "(drop --device) or on a machine that has it."
        )


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_input_memory(common: CommonOptions) -> None:
    if common.input_size is None:
        return
    c, h, w = common.input_size
    needed = 4 * common.batch_size * c * h * w
    total = physical_memory()
    if total is not None and needed > total:
        raise ConfigurationError(
            f"--input-size {c} {h} {w} with --batch-size {common.batch_size} is a "
            f"{needed / 2**30:.1f} GiB float32 input tensor alone, more than this machine's "
            f"{total / 2**30:.1f} GiB of memory; use a smaller --input-size."
        )


def validate_common(common: CommonOptions, backend: ExportBackend | None = None) -> None:
    """Reject invalid combinations of the shared options (cheap; no torch import).

    With ``backend``, its capabilities are checked too: the device it runs on, and whether
    ``--mean/--std`` may set calibration statistics without ``--normalize``.
    """
    calibrates = bool(backend and backend.calibrates)
    if common.in_chans is not None and common.in_chans not in (1, 3):
        raise ConfigurationError(f"--in-chans must be 1 or 3, got {common.in_chans}.")
    if common.input_size is not None:
        c, h, w = common.input_size
        if c not in (1, 3):
            raise ConfigurationError(f"--input-size channels must be 1 or 3, got {c}.")
        if h < 1 or w < 1:
            raise ConfigurationError(f"--input-size height and width must be >= 1, got {h}x{w}.")
        if common.in_chans is not None and common.in_chans != c:
            raise ConfigurationError(
                f"--input-size has {c} channels but --in-chans is {common.in_chans}; "
                "make them agree."
            )
    if common.batch_size < 1:
        raise ConfigurationError(f"--batch-size must be >= 1, got {common.batch_size}.")
    if common.num_classes is not None and common.num_classes < 1:
        raise ConfigurationError(f"--num-classes must be >= 1, got {common.num_classes}.")
    stats_given = common.mean is not None or common.std is not None
    if stats_given and not common.normalize and not calibrates:
        raise ConfigurationError(
            "--mean/--std set the normalization baked in by --normalize; add --normalize."
        )
    for name, values in (("--mean", common.mean), ("--std", common.std)):
        if values is not None and len(values) != 3:
            raise ConfigurationError(f"{name} takes 3 values (R G B), got {len(values)}.")
    if common.std is not None and any(s <= 0 for s in common.std):
        raise ConfigurationError(f"--std values must be > 0, got {list(common.std)}.")
    if common.eval_data is None and (
        common.eval_samples is not None or common.max_accuracy_drop is not None
    ):
        raise ConfigurationError(
            "--eval-samples and --max-accuracy-drop apply to --eval-data; add --eval-data "
            "FOLDER (one sub-folder of images per class)."
        )
    if common.verify_data is not None:
        from timmx.core.images import image_files

        if not common.verify_data.is_dir():
            raise ConfigurationError(
                f"--verify-data {common.verify_data} is not a folder; give a folder of images."
            )
        image_files(common.verify_data, "--verify-data")
    if common.eval_data is not None:
        from timmx.core.evaluate import class_folders

        class_folders(common.eval_data)
    if common.pretrained and common.checkpoint is not None:
        raise ConfigurationError(
            "--pretrained and --checkpoint both set the weights; pass only one of them."
        )
    if common.checkpoint is not None and not common.checkpoint.is_file():
        raise ConfigurationError(f"Checkpoint {common.checkpoint} does not exist or is not a file.")
    for name, value in (("--atol", common.atol), ("--rtol", common.rtol)):
        if value is not None and value < 0:
            raise ConfigurationError(f"{name} must be >= 0, got {value}.")
    _check_input_memory(common)
    if backend is not None and common.device not in backend.devices:
        if Device.cpu in backend.devices:
            raise ConfigurationError(
                f"The {backend.name} backend exports on the CPU; drop --device "
                f"{common.device.value}."
            )
        wanted = backend.devices[0].value
        raise ConfigurationError(
            f"The {backend.name} backend needs --device {wanted}: add --device {wanted} "
            f"(got --device {common.device.value})."
        )
