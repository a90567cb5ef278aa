"""Deprecated alias of :mod:`timmx.core.backend` (kept for one release)."""

import warnings

from timmx.core.backend import (
    DependencyStatus,
    ExportBackend,
    install_command,
    installed_version,
)

warnings.warn(
    "timmx.export.base is deprecated; import timmx.core.backend instead.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["DependencyStatus", "ExportBackend", "install_command", "installed_version"]
