"""timmx: export timm models to deployment formats, verified against PyTorch.

``import timmx`` stays light: torch and the converters load only when an export runs.
"""

from timmx._version import __version__
from timmx.api import backends, export
from timmx.errors import (
    AccuracyError,
    ConfigurationError,
    DependencyError,
    ExportError,
    TimmxError,
    VerificationError,
)

__all__ = [
    "AccuracyError",
    "ConfigurationError",
    "DependencyError",
    "ExportError",
    "TimmxError",
    "VerificationError",
    "__version__",
    "backends",
    "export",
]
