"""Choice types shared by several backends."""

from enum import StrEnum


class Device(StrEnum):
    """Where the model runs while it is exported."""

    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class ComputePrecision(StrEnum):
    """Core ML compute precision (Core ML exports and ExecuTorch's Core ML delegate)."""

    float16 = "float16"
    float32 = "float32"
