"""Compile and run generated C: compiler discovery, a cache of compiled kernel objects, and
the scratch sizes of the kernel library (queried through ctypes) for the memory plan."""

import ctypes
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


def _kernel_dir() -> Path:
    return Path(__file__).resolve().parent / "kernels"


def _sources_hash(cc: list[str], flags: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    kdir = _kernel_dir()
    for p in sorted([*(kdir / "src").rglob("*"), *(kdir / "include").rglob("*")]):
        if p.suffix in (".c", ".h", ".inc"):
            h.update(p.relative_to(kdir).as_posix().encode())
            h.update(p.read_bytes())
    h.update(compiler_id(cc).encode())
    h.update(" ".join([*cc, *flags]).encode())
    return h.hexdigest()[:24]


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
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
    kdir = _kernel_dir()
    sources = sorted((kdir / "src").glob("*.c"))
    if stamp.exists():
        return [out / (s.stem + ".o") for s in sources]
    tmp = Path(tempfile.mkdtemp(prefix="objs-", dir=_ensure(cache_root())))
    inc = [f"-I{kdir / 'include'}", f"-I{kdir / 'src'}"]

    def compile_one(src: Path) -> None:
        _run(
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
    kdir = _kernel_dir()
    inc = [f"-I{src_dir}", f"-I{kdir / 'include'}", f"-I{kdir / 'src'}"]
    warn = [*WARN_FLAGS, *(["-Werror"] if werror else [])]
    sources = [src_dir / f"{prefix}.c", src_dir / "main.c"]
    if (src_dir / f"{prefix}_weights.c").exists():
        sources.append(src_dir / f"{prefix}_weights.c")
    build_dir.mkdir(parents=True, exist_ok=True)
    model_objs = []

    def compile_one(src: Path) -> Path:
        obj = build_dir / (src.stem + ".o")
        _run([*cc, *flags, *warn, *inc, "-c", str(src), "-o", str(obj)], f"compiling {src.name}")
        return obj

    with ThreadPoolExecutor(max_workers=2) as pool:
        model_objs = list(pool.map(compile_one, sources))
    exe = build_dir / f"{prefix}_demo"
    _run([*cc, *flags, "-o", str(exe), *map(str, model_objs), *map(str, objs), "-lm"], "linking")
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
class _Epilogue(ctypes.Structure):
    _fields_ = [
        ("act", ctypes.c_int),
        ("act_min", ctypes.c_float),
        ("act_max", ctypes.c_float),
        ("residual", ctypes.c_int),
    ]


class _Conv(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_int)
        for n in (
            "n",
            "in_h",
            "in_w",
            "in_c",
            "out_h",
            "out_w",
            "out_c",
            "kh",
            "kw",
            "stride_h",
            "stride_w",
            "pad_top",
            "pad_left",
            "pad_bottom",
            "pad_right",
            "dil_h",
            "dil_w",
            "groups",
            "x_stride",
            "y_stride",
            "r_stride",
        )
    ] + [("epilogue", _Epilogue)]


class _Bmm(ctypes.Structure):
    _fields_ = (
        [(n, ctypes.c_int) for n in ("batch", "m", "n", "k")]
        + [
            (n, ctypes.c_long)
            for n in ("a_sb", "a_sm", "a_sk", "b_sb", "b_sk", "b_sn", "c_sb", "c_sm")
        ]
        + [("alpha", ctypes.c_float)]
    )


class _Attn(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_int) for n in ("seq", "heads", "head_dim", "qkv_stride", "out_stride")
    ] + [("scale", ctypes.c_float)]


_LIBS: dict[str, ctypes.CDLL] = {}


def kernel_library(cc: list[str]) -> ctypes.CDLL:
    """The kernel library as a shared object (cached), for its size queries."""
    flags = ("-O1", "-fPIC")
    key = _sources_hash(cc, (*flags, "shared"))
    if key in _LIBS:
        return _LIBS[key]
    path = cache_root() / f"libtxk-{key}.so"
    if not path.exists():
        kdir = _kernel_dir()
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        _ensure(path.parent)
        _run(
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
            ],
            "building the kernel library",
        )
        os.replace(tmp, path)
    lib = ctypes.CDLL(str(path))
    for fn, arg in (
        ("txk_conv2d_scratch_size", _Conv),
        ("txk_bmm_scratch_size", _Bmm),
        ("txk_attention_scratch_size", _Attn),
    ):
        getattr(lib, fn).restype = ctypes.c_size_t
        getattr(lib, fn).argtypes = [ctypes.POINTER(arg)]
    _LIBS[key] = lib
    return lib


def scratch_sizer(cc: list[str] | None):
    """A function step -> scratch bytes, asking the compiled kernel library (needs a compiler;
    without one, a conservative estimate that the generated init double-checks)."""
    from timmx.c.lower.ir import pixel_stride

    lib = kernel_library(cc) if cc else None

    def size(step) -> int:
        a = step.attrs
        if step.kind == "conv":
            x, y = step.ins[0], step.out
            n, c, h, w = x.shape
            _, oc, oh, ow = y.shape
            pt, pl, pb, pr = a["pad"]
            if lib is None:
                if c == oc == a["groups"] or not any(a["pad"]):
                    return 0
                return (h + pt + pb) * (w + pl + pr) * c * 4 + 64
            xs, ys = pixel_stride(x), pixel_stride(y)
            d = _Conv(
                n,
                h,
                w,
                c,
                oh,
                ow,
                oc,
                a["kh"],
                a["kw"],
                a["stride"][0],
                a["stride"][1],
                pt,
                pl,
                pb,
                pr,
                a["dilation"][0],
                a["dilation"][1],
                a["groups"],
                0 if xs == c else xs,
                0 if ys == oc else ys,
                0,
                _Epilogue(0, 0.0, 0.0, 0),
            )
            return int(lib.txk_conv2d_scratch_size(ctypes.byref(d)))
        if step.kind == "bmm":
            A, B = step.ins
            batch, m, k = A.shape
            nn = B.shape[2]
            if lib is None:
                return (((nn + 15) // 16) * 16 * (k + 1) + m * k + 64) * 4
            st = [s if dim != 1 else 0 for s, dim in zip(A.strides, A.shape, strict=True)]
            sb = [s if dim != 1 else 0 for s, dim in zip(B.strides, B.shape, strict=True)]
            if k == 1:
                st[2] = 1
            d = _Bmm(batch, m, nn, k, *st, *sb, step.out.strides[0], step.out.strides[1], 1.0)
            return int(lib.txk_bmm_scratch_size(ctypes.byref(d)))
        if step.kind == "attention":
            if lib is None:
                s = a["seq"]
                return (((s + 15) // 16) * 16 * (s + 2 * a["head_dim"] + 32)) * 4 * 2
            d = _Attn(
                a["seq"], a["heads"], a["head_dim"], a["qkv_stride"], a["out_stride"], a["scale"]
            )
            return int(lib.txk_attention_scratch_size(ctypes.byref(d)))
        return 0

    return size
