"""ctypes bindings of the timmx C kernel library for the tests: the structs, enumerators and
function signatures are timmx.c.abi's (the one mirror of timmx_kernels.h); this module adds
the test helpers (building the library, aligned arrays, contexts)."""

import ctypes as C
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from timmx.c import abi
from timmx.c.abi import (  # noqa: F401  (re-exported for the tests)
    AttentionDesc,
    BinaryDesc,
    BmmDesc,
    Context,
    Conv2dDesc,
    Epilogue,
    LinearDesc,
    Pool2dDesc,
    ThreadPool,
    UkernelInfo,
)

KERNELS_DIR = Path(__file__).resolve().parents[3] / "src" / "timmx" / "c" / "kernels"
INCLUDE_DIR = KERNELS_DIR / "include"
SRC_DIR = KERNELS_DIR / "src"
CFLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-fPIC"]

ISA_SCALAR, ISA_AVX2, ISA_AVX512, ISA_NEON, ISA_AUTO = (
    abi.ISA[k] for k in ("SCALAR", "AVX2", "AVX512", "NEON", "AUTO")
)
FAMILY_GEMM, FAMILY_DWCONV, FAMILY_VUNARY, FAMILY_ROWOP, FAMILY_WINO = (
    abi.FAMILY[k] for k in ("GEMM", "DWCONV", "VUNARY", "ROWOP", "WINO")
)
FAMILY_COUNT = abi.FAMILY_COUNT
ACT = {k.lower(): v for k, v in abi.ACT.items() if k != "COUNT"}
RES_NONE, RES_BEFORE, RES_AFTER = (abi.RESIDUAL[k] for k in ("NONE", "BEFORE_ACT", "AFTER_ACT"))
BIN = {k.lower(): v for k, v in abi.BINOP.items()}


def sources() -> list[Path]:
    return sorted(SRC_DIR.glob("*.c"))


def build_shared(out_dir: Path, cc: str = "gcc", extra: list[str] | None = None) -> Path:
    """Compile every kernel source (in parallel) into out_dir/libtxk.so."""
    out_dir.mkdir(parents=True, exist_ok=True)
    flags = CFLAGS + (extra or [])

    def compile_one(src: Path) -> Path:
        obj = out_dir / (src.stem + ".o")
        cmd = [cc, *flags, f"-I{INCLUDE_DIR}", "-c", str(src), "-o", str(obj)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr}")
        return obj

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        objs = list(ex.map(compile_one, sources()))
    lib = out_dir / "libtxk.so"
    cmd = [cc, *flags, "-shared", *map(str, objs), "-o", str(lib), "-lm", "-pthread"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"link failed:\n{res.stderr}")
    return lib


def aligned_empty(n: int, fill: float | None = None) -> np.ndarray:
    """A float32 array of n elements whose data pointer is 64-byte aligned."""
    raw = np.empty(n + 16, np.float32)
    off = (-raw.ctypes.data % 64) // 4
    arr = raw[off : off + n]
    assert arr.ctypes.data % 64 == 0, "alignment helper failed"
    if fill is not None:
        arr[:] = fill
    return arr


def aligned_copy(a: np.ndarray) -> np.ndarray:
    out = aligned_empty(a.size)
    out[:] = np.asarray(a, np.float32).reshape(-1)
    return out


def ptr(a: np.ndarray | None):
    if a is None:
        return None
    assert a.dtype == np.float32, f"expected float32, got {a.dtype}"
    return a.ctypes.data_as(C.c_void_p)


class Lib:
    def __init__(self, path: Path):
        self.lib = C.CDLL(str(path))
        abi.declare(self.lib)

    def kernels(self, family: int) -> list[tuple[int, str, int, int, int]]:
        """(index, name, isa, mr, nr) of every enumerated kernel of a family."""
        out = []
        for i in range(self.lib.txk_ukernel_count(family)):
            k = self.lib.txk_ukernel_get(family, i).contents
            out.append((i, k.name.decode(), k.isa, k.mr, k.nr))
        return out

    def supported(self, isa: int) -> bool:
        return bool(self.lib.txk_isa_supported(isa))

    def context(
        self,
        family: int | None = None,
        index: int | None = None,
        isa: int = ISA_AUTO,
        threads: int = 1,
    ):
        ctx = Context()
        rc = self.lib.txk_context_init(C.byref(ctx), isa)
        assert rc == 0, f"txk_context_init({isa}) -> {rc}"
        if family is not None:
            rc = self.lib.txk_context_set_ukernel(C.byref(ctx), family, index)
            assert rc == 0, f"txk_context_set_ukernel({family}, {index}) -> {rc}"
        if threads != 1:
            rc = self.lib.txk_context_set_threadpool(C.byref(ctx), C.byref(self.pool(threads)))
            assert rc == 0, f"txk_context_set_threadpool -> {rc}"
        return ctx

    def pool(self, threads: int) -> ThreadPool:
        """A thread pool of `threads` threads, started once per library and kept (its
        workers sleep between tests); never copied, so its address stays valid."""
        pools = self.__dict__.setdefault("_pools", {})
        if threads not in pools:
            pool = ThreadPool()
            rc = self.lib.txk_threadpool_init(C.byref(pool), threads)
            assert rc == 0, f"txk_threadpool_init({threads}) -> {rc}"
            pools[threads] = pool
        return pools[threads]


_CACHE: dict[str, Lib] = {}


def shared_lib(tmp_root: Path) -> Lib:
    """The gcc-built library, compiled once per test session (process)."""
    if "gcc" not in _CACHE:
        _CACHE["gcc"] = Lib(build_shared(tmp_root / "txk_gcc"))
    return _CACHE["gcc"]
