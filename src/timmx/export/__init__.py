"""Deprecated: the pre-0.2 home of the backend machinery, kept importable for one release.

``timmx.export.base`` re-exports the backend contract from :mod:`timmx.core.backend` with a
DeprecationWarning; new code imports :mod:`timmx.core` (and plugins declare an ``Options``
dataclass instead of ``create_command``). Importing this package rebinds the attribute
``timmx.export``, hiding :func:`timmx.api.export`; so the package is callable too.
"""

import sys
import types
import warnings

warnings.warn(
    "timmx.export is deprecated; import timmx.core (backend contract: timmx.core.backend).",
    DeprecationWarning,
    stacklevel=2,
)


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from timmx.api import export

        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
