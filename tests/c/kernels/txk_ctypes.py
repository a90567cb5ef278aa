"""ctypes bindings of the timmx C kernel library for the tests (mirrors timmx_kernels.h)."""

import ctypes as C
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

KERNELS_DIR = Path(__file__).resolve().parents[3] / "src" / "timmx" / "c" / "kernels"
INCLUDE_DIR = KERNELS_DIR / "include"
SRC_DIR = KERNELS_DIR / "src"
CFLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-fPIC"]

ISA_SCALAR, ISA_AVX2, ISA_AVX512, ISA_NEON, ISA_AUTO = 0, 1, 2, 3, 99
FAMILY_GEMM, FAMILY_DWCONV, FAMILY_VUNARY, FAMILY_ROWOP = 0, 1, 2, 3
FAMILY_COUNT = 4
ACT = {
    "none": 0,
    "relu": 1,
    "clamp": 2,
    "hardswish": 3,
    "hardsigmoid": 4,
    "silu": 5,
    "gelu": 6,
    "gelu_tanh": 7,
    "sigmoid": 8,
    "tanh": 9,
}
RES_NONE, RES_BEFORE, RES_AFTER = 0, 1, 2
BIN = {"add": 0, "sub": 1, "mul": 2, "div": 3, "max": 4, "min": 5}


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
    cmd = [cc, *flags, "-shared", *map(str, objs), "-o", str(lib), "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"link failed:\n{res.stderr}")
    return lib


class Epilogue(C.Structure):
    _fields_ = [
        ("act", C.c_int),
        ("act_min", C.c_float),
        ("act_max", C.c_float),
        ("residual", C.c_int),
    ]


class UkernelInfo(C.Structure):
    _fields_ = [
        ("name", C.c_char_p),
        ("isa", C.c_int),
        ("mr", C.c_int),
        ("nr", C.c_int),
        ("fn", C.c_void_p),
    ]


class Context(C.Structure):
    _fields_ = [("isa", C.c_int), ("ukernel", C.POINTER(UkernelInfo) * FAMILY_COUNT)]


_CONV_FIELDS = [
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
]


class Conv2dDesc(C.Structure):
    _fields_ = [(f, C.c_int) for f in _CONV_FIELDS] + [("epilogue", Epilogue)]


class LinearDesc(C.Structure):
    _fields_ = [(f, C.c_int) for f in ["m", "k", "n", "lda", "ldy", "ldr"]] + [
        ("epilogue", Epilogue)
    ]


class BmmDesc(C.Structure):
    _fields_ = [(f, C.c_int) for f in ["batch", "m", "n", "k"]] + [
        (f, C.c_long) for f in ["a_sb", "a_sm", "a_sk", "b_sb", "b_sk", "b_sn", "c_sb", "c_sm"]
    ]
    _fields_ += [("alpha", C.c_float)]


class AttentionDesc(C.Structure):
    _fields_ = [(f, C.c_int) for f in ["seq", "heads", "head_dim", "qkv_stride", "out_stride"]] + [
        ("scale", C.c_float)
    ]


_POOL_FIELDS = [
    "n",
    "in_h",
    "in_w",
    "c",
    "out_h",
    "out_w",
    "kh",
    "kw",
    "stride_h",
    "stride_w",
    "pad_h",
    "pad_w",
    "dil_h",
    "dil_w",
    "count_include_pad",
    "divisor_override",
    "x_stride",
    "y_stride",
]


class Pool2dDesc(C.Structure):
    _fields_ = [(f, C.c_int) for f in _POOL_FIELDS]


class BinaryDesc(C.Structure):
    _fields_ = [("op", C.c_int)]
    _fields_ += [
        (f, C.c_size_t)
        for f in ["n", "p", "c", "a_sn", "a_sp", "a_sc", "b_sn", "b_sp", "b_sc", "y_sn", "y_sp"]
    ]
    _fields_ += [("epilogue", Epilogue)]


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
        L = self.lib
        vp = C.c_void_p
        L.txk_ukernel_get.restype = C.POINTER(UkernelInfo)
        L.txk_ukernel_get.argtypes = [C.c_int, C.c_size_t]
        L.txk_ukernel_count.restype = C.c_size_t
        L.txk_ukernel_count.argtypes = [C.c_int]
        L.txk_isa_supported.argtypes = [C.c_int]
        L.txk_context_init.argtypes = [C.POINTER(Context), C.c_int]
        L.txk_context_set_ukernel.argtypes = [C.POINTER(Context), C.c_int, C.c_size_t]
        for fn in ("txk_conv2d_packed_size", "txk_conv2d_scratch_size"):
            getattr(L, fn).restype = C.c_size_t
            getattr(L, fn).argtypes = [C.POINTER(Conv2dDesc)]
        L.txk_linear_packed_size.restype = C.c_size_t
        L.txk_bmm_scratch_size.restype = C.c_size_t
        L.txk_attention_scratch_size.restype = C.c_size_t
        L.txk_conv2d.argtypes = [C.POINTER(Context), C.POINTER(Conv2dDesc), vp, vp, vp, vp, vp]
        L.txk_ref_conv2d.argtypes = [C.POINTER(Conv2dDesc), vp, vp, vp, vp, vp]
        L.txk_linear.argtypes = [C.POINTER(Context), C.POINTER(LinearDesc), vp, vp, vp, vp]
        L.txk_ref_linear.argtypes = [C.POINTER(LinearDesc), vp, vp, vp, vp, vp]
        L.txk_bmm.argtypes = [C.POINTER(Context), C.POINTER(BmmDesc), vp, vp, vp, vp]
        L.txk_ref_bmm.argtypes = [C.POINTER(BmmDesc), vp, vp, vp]
        L.txk_attention.argtypes = [
            C.POINTER(Context),
            C.POINTER(AttentionDesc),
            vp,
            vp,
            vp,
            vp,
            vp,
        ]
        L.txk_ref_attention.argtypes = [C.POINTER(AttentionDesc), vp, vp, vp, vp]
        sz = C.c_size_t
        f = C.c_float
        ctxp = C.POINTER(Context)
        L.txk_layernorm.argtypes = [ctxp, sz, sz, vp, sz, vp, sz, vp, vp, f]
        L.txk_ref_layernorm.argtypes = [sz, sz, vp, sz, vp, sz, vp, vp, f]
        L.txk_groupnorm.argtypes = [ctxp, sz, sz, sz, sz, vp, vp, vp, vp, f]
        L.txk_ref_groupnorm.argtypes = [sz, sz, sz, sz, vp, vp, vp, vp, f]
        L.txk_softmax.argtypes = [ctxp, sz, sz, vp, sz, vp, sz]
        L.txk_ref_softmax.argtypes = [sz, sz, vp, sz, vp, sz]
        L.txk_global_avgpool.argtypes = [ctxp, sz, sz, sz, vp, vp]
        L.txk_mean_channels.argtypes = [ctxp, sz, sz, vp, vp]
        for fn in ("txk_maxpool2d", "txk_avgpool2d", "txk_adaptive_avgpool2d"):
            getattr(L, fn).argtypes = [ctxp, C.POINTER(Pool2dDesc), vp, vp]
        L.txk_binary.argtypes = [ctxp, C.POINTER(BinaryDesc), vp, vp, vp]
        L.txk_ref_binary.argtypes = [C.POINTER(BinaryDesc), vp, vp, vp]
        L.txk_unary.argtypes = [ctxp, C.c_int, f, f, sz, vp, vp]
        L.txk_ref_unary.argtypes = [C.c_int, f, f, sz, vp, vp]
        L.txk_channel_scale.argtypes = [ctxp, sz, sz, sz, vp, vp, C.c_int, vp]
        L.txk_copy2d.argtypes = [sz, sz, vp, sz, vp, sz]
        L.txk_concat_channels.argtypes = [sz, sz, C.POINTER(vp), C.POINTER(sz), vp]
        L.txk_permute.argtypes = [sz, C.POINTER(sz), C.POINTER(sz), vp, vp]
        L.txk_pad_nhwc.argtypes = [sz, sz, sz, sz, sz, sz, sz, sz, f, vp, vp]
        for fn in ("txk_vexp", "txk_verf", "txk_vtanh", "txk_vsigmoid"):
            getattr(L, fn).argtypes = [ctxp, sz, vp, vp]

    def kernels(self, family: int) -> list[tuple[int, str, int, int, int]]:
        """(index, name, isa, mr, nr) of every enumerated kernel of a family."""
        out = []
        for i in range(self.lib.txk_ukernel_count(family)):
            k = self.lib.txk_ukernel_get(family, i).contents
            out.append((i, k.name.decode(), k.isa, k.mr, k.nr))
        return out

    def supported(self, isa: int) -> bool:
        return bool(self.lib.txk_isa_supported(isa))

    def context(self, family: int | None = None, index: int | None = None, isa: int = ISA_AUTO):
        ctx = Context()
        rc = self.lib.txk_context_init(C.byref(ctx), isa)
        assert rc == 0, f"txk_context_init({isa}) -> {rc}"
        if family is not None:
            rc = self.lib.txk_context_set_ukernel(C.byref(ctx), family, index)
            assert rc == 0, f"txk_context_set_ukernel({family}, {index}) -> {rc}"
        return ctx


_CACHE: dict[str, Lib] = {}


def shared_lib(tmp_root: Path) -> Lib:
    """The gcc-built library, compiled once per test session (process)."""
    if "gcc" not in _CACHE:
        _CACHE["gcc"] = Lib(build_shared(tmp_root / "txk_gcc"))
    return _CACHE["gcc"]
