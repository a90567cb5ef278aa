"""The contract every export format implements, and how a backend reports its dependencies.

A backend is a class with a few declarations and two methods::

    class OnnxBackend(ExportBackend):
        name = "onnx"
        help = "Export to ONNX ..."
        suffix = ".onnx"
        Options = OnnxOptions          # a dataclass of option() fields (its own flags)
        requires = ("onnx", "onnxruntime")
        extra = "onnx"

        def convert(self, job, artifact): ...   # write the artifact at a staging path
        def verify(self, job, artifact): ...    # run it in the format's runtime, compare

and, where the format's runtime can run here, ``runtime(job, artifact, threads=None)``: a
context manager yielding a function that runs the artifact (used by verification, by
``--eval-data`` and by benchmarks).

Capability flags (class attributes) tell the shared machinery what the format can do, so no
backend repeats the checks: ``output_is_dir``, ``calibrates`` (int8 calibration flags, and
``--mean/--std`` without ``--normalize`` as calibration statistics), ``devices`` (where the
model may run during export). Built-in backends and plugins (entry point group
``timmx.backends``) load the same way (:mod:`timmx.core.registry`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from timmx.core.options import NoOptions
from timmx.core.types import Device

if TYPE_CHECKING:
    from timmx.core.job import ExportJob
    from timmx.core.verify import Runner, VerifyReport

# The marker file every directory artifact carries (format, model and metadata as JSON). An
# existing folder is replaced only when its marker names the same format (or with --overwrite).
MARKER_FILE = "timmx.json"


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None; never imports the package."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def install_command(extra: str) -> str:
    """The exact command that installs one of timmx's extras."""
    return f"pip install 'timmx[{extra}]'   (in a timmx checkout: uv sync --extra {extra})"


@dataclass(frozen=True)
class DependencyStatus:
    """Whether a backend can run here: its packages, their versions and how to install them."""

    available: bool
    versions: dict[str, str | None] = field(default_factory=dict)
    install_hint: str | None = None
    detail: str | None = None

    @property
    def missing(self) -> list[str]:
        """Distributions that are needed but not installed."""
        return [name for name, version in self.versions.items() if version is None]


class ExportBackend(ABC):
    """One export format (see the module docstring for the contract)."""

    name: ClassVar[str]
    help: ClassVar[str]
    suffix: ClassVar[str] = ""
    # The dataclass of the backend's own flags (timmx.core.options.option fields).
    Options: ClassVar[type] = NoOptions
    # Distributions (as pip names them) the backend needs, and the extra that installs them.
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    # Capabilities.
    output_is_dir: ClassVar[bool] = False
    calibrates: ClassVar[bool] = False
    devices: ClassVar[tuple[Device, ...]] = (Device.cpu, Device.cuda, Device.mps)

    def check_dependencies(self) -> DependencyStatus:
        """Report whether the backend's optional dependencies are installed (no heavy imports)."""
        versions = {dist: installed_version(dist) for dist in self.requires}
        available = all(v is not None for v in versions.values())
        hint = install_command(self.extra) if self.extra else None
        return DependencyStatus(available=available, versions=versions, install_hint=hint)

    def validate(self, job: ExportJob) -> None:
        """Reject invalid option combinations; cheap, runs before any heavy import."""

    def precision(self, job: ExportJob) -> str:
        """The numeric precision of the artifact, used to pick the verification tolerance."""
        return "fp32"

    def writes_directory(self, job: ExportJob) -> bool:
        """Whether this job's artifact is a directory (``output_is_dir`` unless options decide)."""
        return self.output_is_dir

    def default_output(self, job: ExportJob) -> Path:
        """Where the artifact goes when --output is not given."""
        return Path(self.default_output_name(job.model_name))

    def default_output_name(self, model_name: str) -> str:
        """``<model>.<suffix>`` (``<model>_<format>`` for directory formats), path-safe."""
        stem = model_name.replace("/", "_").replace(":", "_")
        if self.output_is_dir:
            return f"{stem}_{self.name.replace('-', '_')}"
        return f"{stem}{self.suffix}"

    def artifact_size(self, path: Path) -> int:
        """Bytes of the artifact at ``path``: the file, or every file of a directory. Formats
        with files beside the named one (OpenVINO's ``.bin``) add them."""
        from timmx.core.result import path_size

        return path_size(path)

    def owns(self, path: Path) -> bool:
        """Whether the existing folder ``path`` is an artifact of this format (safe to replace).

        Default: its ``timmx.json`` marker names this format.
        """
        try:
            marker = json.loads((path / MARKER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(marker, dict) and marker.get("format") == self.name

    @contextlib.contextmanager
    def runtime(
        self, job: ExportJob, artifact: Path, *, threads: int | None = None
    ) -> Iterator[Runner | None]:
        """The artifact loaded in the format's own runtime, for the duration of the block.

        Yields a function running a float32 NCHW numpy batch and returning the numpy output, or
        None where the runtime cannot run on this machine (Core ML off macOS, TensorRT without
        an NVIDIA GPU). ``threads`` sets the runtime's thread count where it has one.
        """
        yield None

    @abstractmethod
    def convert(self, job: ExportJob, artifact: Path) -> None:
        """Write the artifact to ``artifact`` (a staging path; moved into place afterwards)."""

    @abstractmethod
    def verify(self, job: ExportJob, artifact: Path) -> VerifyReport:
        """Load ``artifact`` in the format's runtime and compare it with PyTorch."""
