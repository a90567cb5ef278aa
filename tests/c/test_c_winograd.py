"""Winograd F(4x4, 3x3) convolution (kernels/src/winograd.c, packing.pack_conv2d_winograd)
against the library's reference conv and float64 PyTorch: tile edges (outputs not a multiple of
4), channel counts not a multiple of 16, padding, strided tensors, every epilogue; the error
it adds measured against the direct conv's; every enumerated transform micro-kernel (family
wino); the tile-block and three-pass drivers; bitwise the same at 1, 2, 3 and 7 threads."""

import ctypes as C
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from timmx.c import packing

sys.path.insert(0, str(Path(__file__).resolve().parent / "kernels"))
import txk_ctypes as T

RNG = np.random.default_rng(7)
TORCH_ACT = {
    "none": lambda y: y,
    "relu": torch.relu,
    "clamp": lambda y: y.clamp(-0.5, 0.75),
    "silu": F.silu,
    "hardswish": F.hardswish,
}
# n, h, w, ic, oc, pad (t, l, b, r), act, residual, (x, y, r) pixel strides
CASES = [
    (1, 8, 8, 16, 16, (1, 1, 1, 1), "relu", T.RES_NONE, (0, 0, 0)),
    (1, 7, 9, 5, 7, (1, 1, 1, 1), "none", T.RES_NONE, (0, 0, 0)),
    (2, 13, 6, 20, 33, (1, 1, 1, 1), "relu", T.RES_BEFORE, (0, 0, 0)),
    (1, 10, 11, 17, 18, (0, 0, 0, 0), "silu", T.RES_AFTER, (0, 0, 0)),
    (1, 6, 6, 8, 24, (0, 1, 2, 0), "clamp", T.RES_NONE, (0, 0, 0)),
    (1, 9, 5, 12, 16, (1, 1, 1, 1), "hardswish", T.RES_AFTER, (20, 40, 24)),
    (1, 14, 14, 64, 64, (1, 1, 1, 1), "relu", T.RES_NONE, (0, 0, 0)),
    # channels multiples of 16: interior tiles read x and write y in place (strided here)
    (1, 12, 13, 32, 48, (1, 1, 1, 1), "hardswish", T.RES_AFTER, (40, 56, 64)),
    (1, 11, 10, 16, 32, (1, 1, 1, 1), "clamp", T.RES_BEFORE, (0, 0, 0)),
    # 50 tiles of 32 -> 32 channels: several tile blocks at one thread
    (2, 20, 20, 32, 32, (1, 1, 1, 1), "relu", T.RES_BEFORE, (0, 0, 0)),
    # 256 -> 256 channels: transformed weights past L2, the three-pass driver
    (1, 9, 9, 256, 256, (1, 1, 1, 1), "relu", T.RES_NONE, (0, 0, 0)),
]


@pytest.fixture(scope="module")
def lib() -> T.Lib:
    """The kernel library as the exporter builds it (cached by sources and compiler, so
    usually already compiled)."""
    from timmx.c.build import find_compiler, kernel_library

    cc = find_compiler()
    if cc is None:
        pytest.skip("needs a C compiler (gcc or clang)")
    lib = T.Lib.__new__(T.Lib)
    lib.lib = kernel_library(cc)
    return lib


def _desc(case, algo: int) -> T.Conv2dDesc:
    n, h, w, ic, oc, (pt, pl, pb, pr), act, res, (xs, ys, rs) = case
    oh, ow = h + pt + pb - 2, w + pl + pr - 2
    d = T.Conv2dDesc(n, h, w, ic, oh, ow, oc, 3, 3, 1, 1, pt, pl, pb, pr, 1, 1, 1)
    d.x_stride, d.y_stride, d.r_stride = xs, ys, rs
    d.epilogue = T.Epilogue(T.ACT[act], -0.5, 0.75, res)
    d.algo = algo
    return d


def _data(case):
    n, h, w, ic, oc, _, _, _, (xs, _, _) = case
    x = RNG.uniform(-1, 1, n * h * w * (xs or ic)).astype(np.float32)
    wt = RNG.uniform(-1, 1, (oc, ic, 3, 3)).astype(np.float32) / np.sqrt(9 * ic)
    b = RNG.uniform(-0.5, 0.5, oc).astype(np.float32)
    return x, wt, b


def _run(lib, ctx, d, x, packed, r):
    npix = d.n * d.out_h * d.out_w
    ys = d.y_stride or d.out_c
    ssize = lib.lib.txk_conv2d_scratch_size(C.byref(d))
    scratch = T.aligned_empty(max(ssize // 4, 1), np.nan)
    y = np.full(npix * ys, np.nan, np.float32)
    use_r = r if d.epilogue.residual else None
    rc = lib.lib.txk_conv2d(
        C.byref(ctx), C.byref(d), T.ptr(x), T.ptr(packed), T.ptr(y), T.ptr(use_r), T.ptr(scratch)
    )
    assert rc == 0, f"txk_conv2d -> {rc}"
    if ys > d.out_c:
        assert np.isnan(y.reshape(npix, ys)[:, d.out_c :]).all(), "wrote between pixels"
    return y.reshape(npix, ys)[:, : d.out_c]


def _torch(case, x, wt, b, r) -> np.ndarray:
    n, h, w, ic, oc, (pt, pl, pb, pr), act, res, (xs, _, rs) = case
    xv = torch.from_numpy(x.reshape(n * h * w, xs or ic)[:, :ic].copy()).double()
    xv = F.pad(xv.reshape(n, h, w, ic).permute(0, 3, 1, 2), (pl, pr, pt, pb))
    y = F.conv2d(xv, torch.from_numpy(wt).double(), torch.from_numpy(b).double())
    y = y.permute(0, 2, 3, 1).reshape(-1, oc)
    rv = torch.from_numpy(r.reshape(-1, rs or oc)[:, :oc].copy()).double()
    if res == T.RES_BEFORE:
        y = y + rv
    y = TORCH_ACT[act](y)
    if res == T.RES_AFTER:
        y = y + rv
    return y.numpy()


def _wino_kernels(lib) -> list[int]:
    """Enumerator indices of the wino kernels this CPU runs."""
    return [i for i, _, isa, _, _ in lib.kernels(T.FAMILY_WINO) if lib.supported(isa)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[1]}x{c[2]}x{c[3]}to{c[4]}-{c[6]}")
def test_winograd_matches_reference(lib, case) -> None:
    """Winograd's error (vs float64) stays within the fp32 tolerance and within 4x the direct
    conv's (measured 1.2-3x with the points 0, -1, 1, 1/2, -2; Lavin & Gray's 0, +-1, +-2 gave
    3-8x), with every transform micro-kernel."""
    wd, dd = _desc(case, 1), _desc(case, 0)
    x, wt, b = _data(case)
    packed = T.aligned_copy(packing.pack_conv2d_winograd(wt, b))
    nbytes = lib.lib.txk_conv2d_packed_size(C.byref(wd))
    assert packed.nbytes == nbytes == packing.winograd_packed_nbytes(case[4], case[3])
    npix = wd.n * wd.out_h * wd.out_w
    r = RNG.uniform(-1, 1, npix * (case[8][2] or case[4])).astype(np.float32)
    want = _torch(case, x, wt, b, r)
    direct = _run(lib, lib.context(), dd, x, T.aligned_copy(packing.pack_conv2d(wt, b, 1)), r)
    err_d = float(np.abs(direct - want).max())
    indices = _wino_kernels(lib)
    assert indices, "no wino kernel runs here (the scalar one always should)"
    for index in indices:
        name = lib.kernels(T.FAMILY_WINO)[index][1]
        got = _run(lib, lib.context(T.FAMILY_WINO, index), wd, x, packed, r)
        err_w = float(np.abs(got - want).max())
        assert err_w < 1e-5, f"{name}: winograd max abs err {err_w:.3g} (direct {err_d:.3g})"
        assert err_w <= max(4 * err_d, 2e-6), f"{name}: err {err_w:.3g} vs direct {err_d:.3g}"


@pytest.mark.parametrize(
    "case",
    [
        (1, 23, 21, 40, 72, (1, 1, 1, 1), "relu", T.RES_AFTER, (0, 0, 0)),
        # 121 tiles of 32 channels: tile blocks at 1-3 threads, three passes at 7
        (1, 44, 44, 32, 32, (1, 1, 1, 1), "relu", T.RES_BEFORE, (0, 0, 0)),
        (1, 15, 14, 128, 144, (1, 1, 1, 1), "silu", T.RES_NONE, (0, 0, 0)),
    ],
    ids=lambda c: f"{c[1]}x{c[2]}x{c[3]}to{c[4]}",
)
def test_winograd_bitwise_equal_across_threads(lib, case) -> None:
    d = _desc(case, 1)
    x, wt, b = _data(case)
    packed = T.aligned_copy(packing.pack_conv2d_winograd(wt, b))
    r = RNG.uniform(-1, 1, d.n * d.out_h * d.out_w * d.out_c).astype(np.float32)
    one = _run(lib, lib.context(), d, x, packed, r)
    for threads in (2, 3, 7):
        got = _run(lib, lib.context(threads=threads), d, x, packed, r)
        assert got.tobytes() == one.tobytes(), f"{threads} threads: not bitwise equal"


def test_winograd_rejects_what_it_does_not_cover(lib) -> None:
    case = CASES[0]
    for field, value in (("stride_h", 2), ("dil_w", 2), ("groups", 2)):
        d = _desc(case, 1)
        setattr(d, field, value)
        if field == "stride_h":
            d.out_h = (d.in_h + 2 - 3) // 2 + 1
        if field == "dil_w":
            d.out_w = d.in_w + 2 - 4
        assert lib.lib.txk_conv2d_check(C.byref(d)) != 0, f"winograd accepted {field}={value}"


def test_winograd_and_threadpool_sources_are_strict_c99(tmp_path) -> None:
    import shutil
    import subprocess

    for cc in ("gcc", "clang"):
        if shutil.which(cc) is None:
            continue
        for name in ("winograd.c", "threadpool.c", "conv.c", "gemm.c", "matmul.c"):
            src, obj = str(T.SRC_DIR / name), str(tmp_path / "o.o")
            cmd = [cc, "-std=c99", "-pedantic-errors", "-Wall", "-Wextra", "-Werror",
                   f"-I{T.INCLUDE_DIR}", "-c", src, "-o", obj]  # fmt: skip
            res = subprocess.run(cmd, capture_output=True, text=True)
            assert res.returncode == 0, f"{cc}: {name} is not strict C99:\n{res.stderr[-2000:]}"
