"""The backend interface every export format implements."""

from __future__ import annotations

import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from timmx.export.job import ExportJob
    from timmx.export.verify import VerifyReport


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
    """One export format.

    Subclasses declare ``name``, ``help`` and the artifact's ``suffix``; ``create_command()``
    returns the Typer command (usually via :func:`timmx.export.options.build_command`);
    ``convert()`` writes the artifact and ``verify()`` runs it in the format's own runtime.
    """

    name: ClassVar[str]
    help: ClassVar[str]
    suffix: ClassVar[str] = ""
    output_is_dir: ClassVar[bool] = False
    # Distributions (as pip names them) the backend needs, and the extra that installs them.
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    # Whether --mean/--std may be given without --normalize (they then set calibration stats).
    mean_std_for_calibration: ClassVar[bool] = False

    @abstractmethod
    def create_command(self) -> Callable[..., None]:
        """Return the Typer-compatible command function for ``timmx export <name>``."""

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

    @abstractmethod
    def convert(self, job: ExportJob, artifact: Path) -> None:
        """Write the artifact to ``artifact`` (a staging path; moved into place afterwards)."""

    @abstractmethod
    def verify(self, job: ExportJob, artifact: Path) -> VerifyReport:
        """Load ``artifact`` in the format's runtime and compare it with PyTorch."""
