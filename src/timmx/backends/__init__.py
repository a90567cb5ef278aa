"""The built-in export backends, one module (or package) per format.

Each module has the same shape: an options dataclass (``<Format>Options``), the export and
runner functions, and the backend class. Backends import :mod:`timmx.core` and the shared
``_``-prefixed helpers here, never each other.

Importing a submodule makes Python set the attribute ``timmx.backends`` to this package,
hiding the :func:`timmx.api.backends` function of the same name; so the package is callable
too: ``timmx.backends()`` lists the format names either way.
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self) -> list[str]:
        from timmx.api import backends

        return backends()


sys.modules[__name__].__class__ = _CallablePackage
