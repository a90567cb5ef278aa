"""The op families: importing this package registers every lowering in ``registry.HANDLERS``."""

from timmx.c.lower.ops import (  # noqa: F401  (each module registers its ops)
    conv,
    elementwise,
    matmul,
    norm,
    pool,
    reduce,
    resize,
    shape,
)
