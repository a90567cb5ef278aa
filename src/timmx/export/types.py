"""Choice types shared by several backends."""

from enum import StrEnum


class Device(StrEnum):
    """Where the model runs while it is exported."""

    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"
