"""Import torch and timm reliably.

The torchvision wheels on PyPI for Linux are CUDA builds. Next to a CPU-only torch their compiled
extension (``torchvision/_C.so``) cannot load, and ``import torchvision`` then dies with
``RuntimeError: operator torchvision::nms does not exist`` (pytorch/vision#9077), which takes
``import timm`` down with it. timm only needs torchvision's Python transforms, so when the
extension is missing timmx declares the two operator schemas torchvision registers fake kernels
for; the operators themselves stay unavailable (timm's classifiers never call them).
"""

import sys

# Keeps the operator schemas registered for the life of the process.
_SCHEMA_LIBRARIES: list[object] = []

_MISSING_OPS_MESSAGE = "torchvision::nms does not exist"


def _declare_torchvision_schemas() -> None:
    import torch

    lib = torch.library.Library("torchvision", "FRAGMENT")
    for schema in (
        "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
        "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    ):
        name = schema.split("(", 1)[0]
        if not hasattr(torch.ops.torchvision, name):
            lib.define(schema)
    _SCHEMA_LIBRARIES.append(lib)


def import_torchvision():
    """Import torchvision, working around a CUDA-only compiled extension next to a CPU torch."""
    try:
        import torchvision
    except RuntimeError as exc:
        if _MISSING_OPS_MESSAGE not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _declare_torchvision_schemas()
        import torchvision
    return torchvision


def import_timm():
    """Import timm (and so torch and torchvision) and return the module."""
    if "timm" not in sys.modules:
        import_torchvision()
    import timm

    return timm
