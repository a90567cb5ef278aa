"""Export backends and the machinery they share.

Importing a submodule (``timmx.export.registry``) makes Python rebind the attribute
``timmx.export`` to this package, hiding the :func:`timmx.api.export` function of the same name.
So the package is callable too: ``timmx.export("onnx", "resnet18")`` works either way.
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from timmx.api import export

        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
