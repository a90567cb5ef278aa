"""Compile and run generated C: compiler discovery, a cache of compiled kernel objects, and
the scratch sizes of the kernel library (queried through ctypes, :mod:`timmx.c.abi`, with the
steps' descriptors, :mod:`timmx.c.descriptors`) for the memory plan."""

import ctypes
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from timmx.c import abi
from timmx.c.descriptors import SCRATCH_SIZE_FUNCTIONS, descriptor
from timmx.c.lower.ir import StepKind
from timmx.errors import ConfigurationError, ExportError

DEFAULT_FLAGS = ("-O2",)
WARN_FLAGS = ("-Wall", "-Wextra")
SANITIZE_FLAGS = (
    "-O1",
    "-g",
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-fno-sanitize-recover=all",
)


def find_compiler() -> list[str] | None:
    """The C compiler: ``$CC`` (may carry flags), else cc, gcc, clang; None if there is none."""
    env = os.environ.get("CC", "").strip()
    if env:
        parts = shlex.split(env)
        if parts and shutil.which(parts[0]):
            return [shutil.which(parts[0]) or parts[0], *parts[1:]]
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def require_compiler() -> list[str]:
    """The C compiler, or a ConfigurationError saying how to get one or skip verification."""
    cc = find_compiler()
    if cc is None:
        raise ConfigurationError(
            "Verifying the C export needs a C compiler and none was found (tried $CC, cc, gcc, "
            "clang). Install one (e.g. `apt-get install gcc`), set CC, or pass --no-verify."
        )
    return cc


def compiler_id(cc: list[str]) -> str:
    """The compiler's version line (part of the cache key)."""
    try:
        out = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else " ".join(cc)
    except (OSError, subprocess.SubprocessError):
        return " ".join(cc)


def cache_root() -> Path:
    """Where compiled kernel objects are cached (``$TIMMX_CACHE_DIR`` or ~/.cache/timmx)."""
    base = os.environ.get("TIMMX_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "timmx"
    )
    return Path(base) / "c-kernels"


def kernel_dir() -> Path:
    """The kernel library's sources (``src/``, ``include/``) shipped inside timmx."""
    return Path(__file__).resolve().parent / "kernels"


def _sources_hash(cc: list[str], flags: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    kdir = kernel_dir()
    for p in sorted([*(kdir / "src").rglob("*"), *(kdir / "include").rglob("*")]):
        if p.suffix in (".c", ".h", ".inc"):
            h.update(p.relative_to(kdir).as_posix().encode())
            h.update(p.read_bytes())
    h.update(compiler_id(cc).encode())
    h.update(" ".join([*cc, *flags]).encode())
    return h.hexdigest()[:24]


def run_tool(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    """Run a compiler or linker; on failure an ExportError naming ``what`` with the output's
    last lines. Returns its stderr (warnings)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-25:]
        raise ExportError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return proc.stderr


def kernel_objects(cc: list[str], flags: tuple[str, ...] = DEFAULT_FLAGS) -> list[Path]:
    """The kernel library compiled with ``flags``: cached by sources + compiler + flags."""
    key = _sources_hash(cc, flags)
    out = cache_root() / key
    stamp = out / "done"
    kdir = kernel_dir()
    sources = sorted((kdir / "src").glob("*.c"))
    if stamp.exists():
        return [out / (s.stem + ".o") for s in sources]
    tmp = Path(tempfile.mkdtemp(prefix="objs-", dir=_ensure(cache_root())))
    inc = [f"-I{kdir / 'include'}", f"-I{kdir / 'src'}"]

    def compile_one(src: Path) -> None:
        run_tool(
            [*cc, *flags, *WARN_FLAGS, *inc, "-c", str(src), "-o", str(tmp / (src.stem + ".o"))],
            f"compiling kernel {src.name}",
        )

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        list(pool.map(compile_one, sources))
    (tmp / "done").write_text(" ".join([*cc, *flags]))
    try:
        tmp.rename(out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    return [out / (s.stem + ".o") for s in sources]


def thread_libs(flags: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Link flags of the kernel library's thread pool (POSIX threads; none when the flags
    build it without threads, ``-DTXK_NO_THREADS``)."""
    return [] if "-DTXK_NO_THREADS" in flags else ["-lpthread"]


def _ensure(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def build_demo(
    src_dir: Path,
    prefix: str,
    build_dir: Path,
    *,
    cc: list[str] | None = None,
    flags: tuple[str, ...] = DEFAULT_FLAGS,
    werror: bool = False,
) -> Path:
    """Compile the generated model + main.c against the cached kernels; returns the binary."""
    cc = cc or require_compiler()
    objs = kernel_objects(cc, flags)
    kdir = kernel_dir()
    inc = [f"-I{src_dir}", f"-I{kdir / 'include'}", f"-I{kdir / 'src'}"]
    warn = [*WARN_FLAGS, *(["-Werror"] if werror else [])]
    sources = [src_dir / f"{prefix}.c", src_dir / "main.c"]
    for extra in (f"{prefix}_labels.c", f"{prefix}_weights.c"):
        if (src_dir / extra).exists():
            sources.append(src_dir / extra)
    build_dir.mkdir(parents=True, exist_ok=True)
    model_objs = []

    def compile_one(src: Path) -> Path:
        obj = build_dir / (src.stem + ".o")
        run_tool(
            [*cc, *flags, *warn, *inc, "-c", str(src), "-o", str(obj)], f"compiling {src.name}"
        )
        return obj

    with ThreadPoolExecutor(max_workers=2) as pool:
        model_objs = list(pool.map(compile_one, sources))
    exe = build_dir / f"{prefix}_demo"
    libs = ["-lm", *thread_libs(flags)]
    run_tool(
        [*cc, *flags, "-o", str(exe), *map(str, model_objs), *map(str, objs), *libs], "linking"
    )
    return exe


def run_demo(
    exe: Path, args: list[str], *, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the demo binary; returns the completed process (no check)."""
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


# ---------------------------------------------------------------------------------------------
# Scratch sizes from the kernel library itself (so faster kernels need no generator change).
# ---------------------------------------------------------------------------------------------
_LIBS: dict[str, ctypes.CDLL] = {}


def kernel_library(cc: list[str]) -> ctypes.CDLL:
    """The kernel library as a shared object (cached), for its size queries."""
    flags = ("-O1", "-fPIC")
    key = _sources_hash(cc, (*flags, "shared"))
    if key in _LIBS:
        return _LIBS[key]
    path = cache_root() / f"libtxk-{key}.so"
    if not path.exists():
        kdir = kernel_dir()
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        _ensure(path.parent)
        run_tool(
            [
                *cc,
                *flags,
                "-shared",
                f"-I{kdir / 'include'}",
                f"-I{kdir / 'src'}",
                *map(str, sorted((kdir / "src").glob("*.c"))),
                "-o",
                str(tmp),
                "-lm",
                *thread_libs(),
            ],
            "building the kernel library",
        )
        os.replace(tmp, path)
    lib = abi.declare(ctypes.CDLL(str(path)))
    _LIBS[key] = lib
    return lib


def scratch_sizer(cc: list[str] | None):
    """A function step -> scratch bytes, asking the compiled kernel library with the step's
    descriptor (needs a compiler; without one, a conservative estimate that the generated
    init double-checks)."""
    lib = kernel_library(cc) if cc else None

    def size(step) -> int:
        fn = SCRATCH_SIZE_FUNCTIONS.get(step.kind)
        if fn is None:
            return 0
        desc = descriptor(step)
        if lib is None:
            return _estimate(step.kind, desc)
        return int(getattr(lib, fn)(ctypes.byref(desc.to_ctypes())))

    return size


def _estimate(kind: StepKind, d) -> int:
    """An upper bound of the kernel library's scratch bytes, without the library (the same
    formulas as conv.c / winograd.c / pwdw.c, plus slack)."""

    def r16(v: int) -> int:
        return -(-v // 16) * 16

    if kind is StepKind.CONV:
        if d["algo"].name == "WINOGRAD":
            tiles = d["n"] * -(-d["out_h"] // 4) * -(-d["out_w"] // 4)
            return (36 * tiles * (r16(d["in_c"]) + r16(d["out_c"])) + 64) * 4
        pads = (d["pad_top"], d["pad_left"], d["pad_bottom"], d["pad_right"])
        if d["in_c"] == d["out_c"] == d["groups"] or not any(pads):
            return 0
        hp = d["in_h"] + d["pad_top"] + d["pad_bottom"]
        wp = d["in_w"] + d["pad_left"] + d["pad_right"]
        return hp * wp * d["in_c"] * 4 + 64
    if kind is StepKind.CONV_PW_DW:
        dw = d["dw"]
        row = dw["in_w"] * dw["in_c"]
        kh, sh = dw["kh"], dw["stride_h"]
        fit = 256 * 1024 // 4 // row
        band = min((fit - kh) // sh + 1 if fit >= kh else 1, dw["out_h"])
        cap = min((band - 1) * sh + kh, dw["in_h"])
        return min(dw["out_h"], 8) * r16(cap * row) * 4 + 64
    if kind is StepKind.BMM:
        n, k, slots = d["n"], d["k"], min(max(d["batch"], 1), 32)
        return slots * (r16(n) * (k + 1) + r16(d["m"] * k) + 64) * 4
    s, hd = d["seq"], d["head_dim"]
    return d["heads"] * (r16(s * r16(s)) + r16(s) * (hd + 1) + r16(hd) * (s + 1) + 64) * 4
