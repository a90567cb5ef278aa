"""The generated model as a shared object, loaded with ctypes and run in this process.

Verification runs the generated demo program (a process per call: it proves the program a user
builds). Timing and accuracy runs use this instead: ``<prefix>_init`` once (weights, arena and
the thread pool), then one ``<prefix>_run`` per call, as an application embeds it, so a
measured millisecond is the model's and not a process start plus a 100 MB weights read.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from timmx.c.build import DEFAULT_FLAGS, kernel_dir, kernel_objects, run_tool, thread_libs
from timmx.errors import ExportError

ALIGN = 64


def build_shared(
    src_dir: Path, prefix: str, build_dir: Path, cc: list[str], flags=DEFAULT_FLAGS
) -> Path:
    """Compile the generated model and the kernel library (``-fPIC``) into one shared object."""
    flags = (*flags, "-fPIC")
    objs = kernel_objects(cc, flags)
    kdir = kernel_dir()
    inc = [f"-I{src_dir}", f"-I{kdir / 'include'}", f"-I{kdir / 'src'}"]
    build_dir.mkdir(parents=True, exist_ok=True)
    model_objs = []
    for name in (f"{prefix}.c", f"{prefix}_labels.c", f"{prefix}_weights.c"):
        src = src_dir / name
        if src.exists():
            obj = build_dir / (src.stem + ".pic.o")
            run_tool([*cc, *flags, *inc, "-c", str(src), "-o", str(obj)], f"compiling {name}")
            model_objs.append(obj)
    lib = build_dir / f"lib{prefix}.so"
    cmd = [*cc, "-shared", "-o", str(lib), *map(str, model_objs), *map(str, objs), "-lm"]
    run_tool([*cmd, *thread_libs(flags)], "linking the shared object")
    return lib


def _header_int(header: str, macro: str) -> int:
    match = re.search(rf"#define {macro} (\d+)u?\b", header)
    if match is None:
        raise ExportError(f"the generated header has no {macro}: re-export the C artifact")
    return int(match.group(1))


class LoadedModel:
    """One instance of the generated model: ``<prefix>_init`` on ``threads`` threads (0: one
    per online core) over caller-owned, 64-byte aligned weights, arena, input and output."""

    def __init__(self, lib_path: Path, src_dir: Path, prefix: str, threads: int = 0):
        import ctypes

        import numpy as np

        self._np = np
        self._keep: list = []
        p, size_t = ctypes.c_void_p, ctypes.c_size_t
        header = (src_dir / f"{prefix}.h").read_text()
        macro = prefix.upper()
        arena_size = _header_int(header, f"{macro}_ARENA_SIZE")
        self.input_floats = _header_int(header, f"{macro}_INPUT_SIZE")
        self.output_floats = _header_int(header, f"{macro}_OUTPUT_SIZE")
        embedded = _header_int(header, f"{macro}_EMBEDDED_WEIGHTS")
        self.lib = lib = ctypes.CDLL(str(lib_path))
        fn = lambda name, args, res=ctypes.c_int: self._fn(f"{prefix}_{name}", args, res)  # noqa: E731
        init = fn("init", [p, p, size_t, p, size_t, ctypes.c_int])
        self._run = fn("run", [p, p, p])
        self._destroy = fn("destroy", [p], None)
        self._threads = fn("threads", [p])
        status = fn("status_string", [ctypes.c_int], ctypes.c_char_p)
        pool = lib.txk_threadpool_size
        pool.restype = size_t
        self.model = self._aligned(int(pool()) + 8192)  # a context, pointers and the pool
        if embedded:
            weights_ptr = fn("embedded_weights", [], p)()
            weights_size = int(fn("embedded_weights_size", [], size_t)())
        else:
            blob = (src_dir / f"{prefix}_weights.bin").read_bytes()
            weights = self._aligned(len(blob))
            weights[:] = np.frombuffer(blob, np.uint8)
            weights_ptr, weights_size = weights.ctypes.data, len(blob)
        arena = self._aligned(arena_size)
        self.x = self._aligned(self.input_floats * 4).view(np.float32)
        self.y = self._aligned(self.output_floats * 4).view(np.float32)
        rc = init(
            self.model.ctypes.data, weights_ptr, weights_size, arena.ctypes.data, arena_size,
            int(threads),
        )  # fmt: skip
        if rc != 0:
            raise ExportError(f"{prefix}_init failed: {status(rc).decode()} ({rc})")
        self._open = True
        self._args = (self.model.ctypes.data, self.x.ctypes.data, self.y.ctypes.data)

    def _fn(self, name: str, args: list, res):
        fn = getattr(self.lib, name)
        fn.argtypes, fn.restype = args, res
        return fn

    def _aligned(self, n: int):
        raw = self._np.zeros(n + ALIGN, self._np.uint8)
        self._keep.append(raw)
        off = -raw.ctypes.data % ALIGN
        return raw[off : off + n]

    def __call__(self, x):
        """One forward pass of a float32 array of the model's input size (its layout)."""
        self.set_input(x)
        self.run()
        return self.output()

    def set_input(self, x) -> None:
        """Copy ``x`` (float32, the model's layout and input size) into the input buffer."""
        self.x[:] = self._np.asarray(x, dtype=self._np.float32).reshape(-1)

    def run(self) -> None:
        """One ``<prefix>_run`` on the input buffer (no copies: what a timing loop calls)."""
        rc = self._run(*self._args)
        if rc != 0:
            raise ExportError(f"the generated model's run failed ({rc})")

    def output(self):
        """A copy of the last output (flat float32)."""
        return self.y.copy()

    @property
    def threads(self) -> int:
        """Threads the runs use (the caller's included)."""
        return int(self._threads(self.model.ctypes.data))

    @property
    def isa(self) -> str:
        """The kernels' ISA picked at init (the model's context starts with it)."""
        import ctypes

        name = self._fn("txk_isa_name", [ctypes.c_int], ctypes.c_char_p)
        return name(int(self.model[:4].view(self._np.int32)[0])).decode()

    def close(self) -> None:
        """Join the threads init started (safe twice)."""
        if self._open:
            self._destroy(self.model.ctypes.data)
            self._open = False


@contextlib.contextmanager
def inprocess_runner(
    src_dir: Path,
    prefix: str,
    build_dir: Path,
    *,
    cc: list[str],
    nhwc_input: bool = False,
    threads: int | None = None,
    flags=DEFAULT_FLAGS,
) -> Iterator[Callable]:
    """Yield a function numpy NCHW batch -> numpy output (flat) running the model in-process on
    ``threads`` threads (None or 0: one per online core); the batch must be the exported one."""
    import numpy as np

    lib = build_shared(src_dir, prefix, build_dir, cc, flags)
    model = LoadedModel(lib, src_dir, prefix, threads or 0)

    def run(x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if nhwc_input:
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        if x.size != model.input_floats:
            raise ExportError(
                f"the C model takes {model.input_floats} input floats (its exported batch), "
                f"not {x.size}"
            )
        return model(x)

    try:
        yield run
    finally:
        model.close()
