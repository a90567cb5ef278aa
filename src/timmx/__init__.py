"""timmx: export timm models to deployment formats, verified against PyTorch.

``import timmx`` stays light: torch and the converters load only when an export runs.
"""

__version__ = "0.1.0"

from timmx.api import backends, export
from timmx.errors import (
    ConfigurationError,
    DependencyError,
    ExportError,
    TimmxError,
    VerificationError,
)

__all__ = [
    "ConfigurationError",
    "DependencyError",
    "ExportError",
    "TimmxError",
    "VerificationError",
    "__version__",
    "backends",
    "export",
]
