"""Tests of the timmx C kernel library: reference kernels vs PyTorch, every enumerated
fast kernel vs the reference (tile-edge sizes, strides, paddings, dilations, groups)."""

import ctypes as C
import math
import platform
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent / "kernels"))
import txk_ctypes as T

from timmx.c import packing


@pytest.fixture(scope="session")
def lib(tmp_path_factory) -> T.Lib:
    return T.shared_lib(tmp_path_factory.getbasetemp())


RNG = np.random.default_rng(1234)

TORCH_ACT = {
    "none": lambda x: x,
    "relu": F.relu,
    "clamp": lambda x: torch.clamp(x, -0.5, 0.75),
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "silu": F.silu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}


def epilogue(act: str = "none", res: int = T.RES_NONE) -> T.Epilogue:
    return T.Epilogue(T.ACT[act], -0.5, 0.75, res)


def torch_epilogue(y: torch.Tensor, act: str, res: int, r: torch.Tensor | None) -> torch.Tensor:
    if res == T.RES_BEFORE:
        y = y + r
    y = TORCH_ACT[act](y)
    if res == T.RES_AFTER:
        y = y + r
    return y


def conv_desc(n, h, w, ic, oc, kh, kw, stride, pad, dil, groups, act, res, xs=0, ys=0, rs=0):
    sh, sw = stride
    pt, pl, pb, pr = pad
    dh, dw = dil
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    d = T.Conv2dDesc(n, h, w, ic, oh, ow, oc, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, groups)
    d.x_stride, d.y_stride, d.r_stride = xs, ys, rs
    d.epilogue = epilogue(act, res)
    return d


def strided(pixels: int, c: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """A buffer of `pixels` rows of `stride` floats; returns (buffer, dense [pixels, c] view)."""
    s = stride or c
    buf = RNG.uniform(-1, 1, pixels * s).astype(np.float32)
    return buf, buf.reshape(pixels, s)[:, :c]


class ConvCase:
    """Random data for one conv descriptor, with the reference result."""

    def __init__(self, lib: T.Lib, d: T.Conv2dDesc, bias: bool = True):
        self.d = d
        icg = d.in_c // d.groups
        self.x, self.xv = strided(d.n * d.in_h * d.in_w, d.in_c, d.x_stride)
        scale = 1.0 / math.sqrt(icg * d.kh * d.kw)
        self.w = RNG.uniform(-scale, scale, (d.out_c, icg, d.kh, d.kw)).astype(np.float32)
        self.b = RNG.uniform(-0.5, 0.5, d.out_c).astype(np.float32) if bias else None
        npix = d.n * d.out_h * d.out_w
        self.r, self.rv = strided(npix, d.out_c, d.r_stride)
        self.ys = d.y_stride or d.out_c
        self.npix = npix
        self.yref = np.full(npix * self.ys, np.nan, np.float32)
        use_r = self.r if d.epilogue.residual else None
        rc = lib.lib.txk_ref_conv2d(
            C.byref(d), T.ptr(self.x), T.ptr(self.w), T.ptr(self.b), T.ptr(self.yref), T.ptr(use_r)
        )
        assert rc == 0, f"txk_ref_conv2d -> {rc}"

    def ref_view(self) -> np.ndarray:
        return self.yref.reshape(self.npix, self.ys)[:, : self.d.out_c]

    def run(self, lib: T.Lib, ctx: T.Context) -> np.ndarray:
        d = self.d
        packed = T.aligned_copy(packing.pack_conv2d(self.w, self.b, d.groups))
        nbytes = lib.lib.txk_conv2d_packed_size(C.byref(d))
        assert packed.nbytes == nbytes, f"packed {packed.nbytes} B, C says {nbytes} B"
        ssize = lib.lib.txk_conv2d_scratch_size(C.byref(d))
        scratch = T.aligned_empty(ssize // 4, np.nan) if ssize else None
        y = np.full(self.npix * self.ys, np.nan, np.float32)
        use_r = self.r if d.epilogue.residual else None
        rc = lib.lib.txk_conv2d(
            C.byref(ctx),
            C.byref(d),
            T.ptr(self.x),
            T.ptr(packed),
            T.ptr(y),
            T.ptr(use_r),
            T.ptr(scratch),
        )
        assert rc == 0, f"txk_conv2d -> {rc}"
        if self.ys > d.out_c:  # gaps between pixels must be untouched
            gaps = y.reshape(self.npix, self.ys)[:, d.out_c :]
            assert np.isnan(gaps).all(), "conv wrote outside its output channels"
        return y.reshape(self.npix, self.ys)[:, : d.out_c]


def torch_conv(case: ConvCase) -> np.ndarray:
    d = case.d
    x = torch.from_numpy(np.ascontiguousarray(case.xv)).reshape(d.n, d.in_h, d.in_w, d.in_c)
    x = F.pad(x.permute(0, 3, 1, 2), (d.pad_left, d.pad_right, d.pad_top, d.pad_bottom))
    b = torch.from_numpy(case.b) if case.b is not None else None
    y = F.conv2d(
        x.double(),
        torch.from_numpy(case.w).double(),
        b.double() if b is not None else None,
        (d.stride_h, d.stride_w),
        0,
        (d.dil_h, d.dil_w),
        d.groups,
    )
    y = y.permute(0, 2, 3, 1).reshape(-1, d.out_c)
    r = torch.from_numpy(np.ascontiguousarray(case.rv)).double()
    act = next(k for k, v in T.ACT.items() if v == d.epilogue.act)
    return torch_epilogue(y, act, d.epilogue.residual, r).float().numpy()


# --------------------------------------------------------------------------- reference
REF_CONV_CASES = [
    # n, h, w, ic, oc, kh, kw, stride, pad(t,l,b,r), dil, groups, act, res
    (1, 9, 11, 5, 7, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, "relu", T.RES_NONE),
    (2, 8, 8, 4, 6, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1, "none", T.RES_BEFORE),
    (1, 10, 9, 6, 4, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2), 2, "silu", T.RES_AFTER),
    (1, 12, 12, 3, 8, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1), 1, "clamp", T.RES_NONE),
    (1, 9, 7, 8, 8, 5, 5, (2, 1), (0, 1, 2, 3), (1, 1), 8, "hardswish", T.RES_NONE),
    (1, 8, 8, 3, 10, 4, 4, (4, 4), (0, 0, 0, 0), (1, 1), 1, "gelu", T.RES_NONE),
    (1, 6, 6, 12, 9, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 3, "gelu_tanh", T.RES_AFTER),
    (1, 5, 5, 4, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 4, "hardsigmoid", T.RES_NONE),
    (1, 5, 6, 4, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, "sigmoid", T.RES_NONE),
    (1, 5, 6, 4, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1, "tanh", T.RES_BEFORE),
]


@pytest.mark.parametrize("case", REF_CONV_CASES, ids=lambda c: f"{c[3]}x{c[4]}k{c[5]}g{c[10]}")
def test_ref_conv2d_vs_torch(lib, case):
    d = conv_desc(*case)
    cc = ConvCase(lib, d)
    got = cc.ref_view()
    want = torch_conv(cc)
    np.testing.assert_allclose(
        got, want, rtol=1e-5, atol=1e-5, err_msg=f"txk_ref_conv2d != torch for {case}"
    )


# --------------------------------------------------------------------------- fast gemm-conv
def gemm_kernels(lib):
    return [k for k in lib.kernels(T.FAMILY_GEMM) if lib.supported(k[2])]


def tile_sizes(t: int) -> list[int]:
    return sorted({1, max(1, t - 1), t, t + 1, 2 * t, 3 * t + 1})


# The list of micro-kernels (src/internal/txk_ukernels.h) is the one source of truth: the
# tests read it (all ISAs, whatever this machine is) and check the library enumerates it.
UKERNELS_H = T.SRC_DIR / "internal" / "txk_ukernels.h"
PUBLIC_H = T.INCLUDE_DIR / "timmx_kernels.h"
# ISAs whose kernels each architecture compiles (the TXK_IF_ISA_<isa> macros of the list)
ARCH_ISAS = {"x86_64": {"scalar", "avx2", "avx512"}, "aarch64": {"scalar", "neon"}}


def _macro_body(text: str, name: str) -> str:
    start = text.index(f"#define {name}(")
    end = start
    while True:  # a macro ends at the first line without a continuation backslash
        nl = text.index("\n", end)
        if not text[end:nl].rstrip().endswith("\\"):
            return text[start:nl]
        end = nl + 1


def ukernel_list() -> list[tuple[str, int, int, str]]:
    """(family, MR, NR, isa) of every X(...) entry of TXK_UKERNELS, in list order."""
    body = _macro_body(UKERNELS_H.read_text(), "TXK_UKERNELS")
    entries = re.findall(r"X\(\s*(\w+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\w+)\s*\)", body)
    assert entries, f"no X(...) entries in {UKERNELS_H}"
    return [(f, int(mr), int(nr), isa) for f, mr, nr, isa in entries]


def ukernel_name(family: str, mr: int, nr: int, isa: str) -> str:
    """The naming grammar (README.md): txk_f32_<family>_ukernel_<MR>x<NR>__<isa>."""
    return f"txk_f32_{family}_ukernel_{mr}x{nr}__{isa}"


def _token_enum(list_macro: str) -> dict[str, int]:
    """token -> enum value for F(token, TXK_...) / I(token, TXK_...) lists of the list header."""
    body = _macro_body(UKERNELS_H.read_text(), list_macro)
    public = PUBLIC_H.read_text()
    out = {}
    for token, enum in re.findall(r"\w\(\s*(\w+)\s*,\s*(TXK_\w+)\s*\)", body):
        out[token] = int(re.search(rf"\b{enum}\s*=\s*(\d+)", public).group(1))
    return out


def family_ids() -> dict[str, int]:
    return _token_enum("TXK_UKERNEL_FAMILIES")


def isa_ids() -> dict[str, int]:
    return _token_enum("TXK_UKERNEL_ISAS")


def test_enumeration_is_the_list(lib):
    """txk_ukernel_count/get enumerate exactly the list's entries this architecture compiles,
    in list order, with name, isa, MR and NR from the entry; every family has a scalar kernel."""
    arch = platform.machine().lower()
    if arch not in ARCH_ISAS:
        pytest.skip(f"unknown architecture {arch}")
    fams, isas = family_ids(), isa_ids()
    entries = ukernel_list()
    count = int(re.search(r"TXK_FAMILY_COUNT\s*=\s*(\d+)", PUBLIC_H.read_text()).group(1))
    assert sorted(fams.values()) == list(range(count)), "TXK_UKERNEL_FAMILIES != the public enum"
    for fam, fid in fams.items():
        want = [
            (ukernel_name(f, mr, nr, isa), isas[isa], mr, nr)
            for f, mr, nr, isa in entries
            if f == fam and isa in ARCH_ISAS[arch]
        ]
        got = [(name, isa, mr, nr) for _, name, isa, mr, nr in lib.kernels(fid)]
        assert got == want, f"family {fam}: library enumerates {got}, the list says {want}"
        assert any(isa == "scalar" for f, _, _, isa in entries if f == fam), f"{fam}: no scalar"
    assert len({ukernel_name(*e) for e in entries}) == len(entries), "duplicate list entries"
    ctx = lib.context()
    assert ctx.isa in isas.values(), "bad selected isa"


def check(got, want, msg, rtol=1e-4, atol=1e-4):
    assert np.isfinite(got).all(), f"{msg}: non-finite output"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=msg)


def enumerated_names(family: str) -> list[str]:
    """Names of the list's kernels of one family (all ISAs, whatever this CPU is)."""
    return [ukernel_name(*e) for e in ukernel_list() if e[0] == family]


def find_kernel(lib, family: int, name: str):
    for k in lib.kernels(family):
        if k[1] == name:
            if not lib.supported(k[2]):
                pytest.skip(f"{name}: ISA not supported on this CPU")
            return k
    pytest.skip(f"{name}: not compiled for this architecture")


@pytest.mark.parametrize("name", enumerated_names("gemm"))
def test_gemm_ukernel_tile_edges(lib, name):
    """1x1 conv (= GEMM) over M and N around the tile, with odd pixel strides."""
    idx, name, _isa, mr, nr = find_kernel(lib, T.FAMILY_GEMM, name)
    ctx = lib.context(T.FAMILY_GEMM, idx)
    for m in tile_sizes(mr):
        for n_out in [*tile_sizes(nr), 16, 17, 48]:
            for k in (1, 3, 16, 37):
                xs = k + 3 if (m + n_out) % 2 else 0
                ys = n_out + 5 if m % 2 else 0
                d = conv_desc(
                    1,
                    1,
                    m,
                    k,
                    n_out,
                    1,
                    1,
                    (1, 1),
                    (0,) * 4,
                    (1, 1),
                    1,
                    "none",
                    T.RES_AFTER if n_out % 2 else T.RES_NONE,
                    xs,
                    ys,
                    0,
                )
                cc = ConvCase(lib, d)
                check(cc.run(lib, ctx), cc.ref_view(), f"{name} m={m} n={n_out} k={k}")


CONV_SHAPES = [
    # h, w, ic, oc, k, stride, pad(t,l,b,r), dil, groups
    (7, 9, 8, 32, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (9, 9, 5, 33, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1),
    (8, 10, 16, 17, 3, (1, 2), (0, 1, 2, 1), (1, 1), 1),
    (11, 11, 3, 24, 7, (2, 2), (3, 3, 3, 3), (1, 1), 1),
    (10, 10, 6, 20, 3, (1, 1), (2, 2, 2, 2), (2, 2), 1),
    (8, 8, 12, 24, 3, (1, 1), (1, 1, 1, 1), (1, 1), 3),
    (6, 6, 32, 64, 3, (2, 2), (1, 1, 1, 1), (1, 1), 2),
    (16, 16, 3, 40, 4, (4, 4), (0, 0, 0, 0), (1, 1), 1),
    (32, 32, 3, 19, 16, (16, 16), (0, 0, 0, 0), (1, 1), 1),
    (5, 13, 7, 45, 5, (1, 1), (2, 2, 2, 2), (1, 2), 1),
    (7, 7, 64, 100, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1),
    # one-sided paddings: only the padded border of the scratch image is zeroed
    (6, 7, 5, 18, 3, (1, 1), (1, 0, 0, 2), (1, 1), 1),
    (9, 8, 4, 16, 3, (2, 1), (0, 2, 1, 0), (1, 1), 1),
]


@pytest.mark.parametrize(
    "shape", CONV_SHAPES, ids=lambda s: f"{s[2]}x{s[3]}k{s[4]}s{s[5][0]}g{s[8]}"
)
def test_conv2d_fast_vs_ref(lib, shape):
    h, w, ic, oc, k, stride, pad, dil, groups = shape
    for idx, name, _, _, _ in gemm_kernels(lib):
        ctx = lib.context(T.FAMILY_GEMM, idx)
        # every activation, each with a residual mode: the kernels apply the cheap ones
        # (TXK_ACT_IS_CHEAP) straight from the accumulators and the others from a stored tile
        for act, res, xs, ys in (
            ("relu", T.RES_BEFORE, 0, 0),
            ("gelu", T.RES_AFTER, ic + 1, oc + 3),
            ("clamp", T.RES_NONE, 0, 0),
            ("hardswish", T.RES_AFTER, 0, oc + 3),
            ("hardsigmoid", T.RES_BEFORE, ic + 1, 0),
            ("none", T.RES_BEFORE, 0, 0),
            ("silu", T.RES_NONE, 0, 0),
        ):
            d = conv_desc(
                2 if k == 1 or pad[0] != pad[2] else 1,  # batch 2: scratch reused per image
                h,
                w,
                ic,
                oc,
                k,
                k,
                stride,
                pad,
                dil,
                groups,
                act,
                res,
                xs,
                ys,
                oc + 2 if res else 0,
            )
            cc = ConvCase(lib, d, bias=act != "clamp")
            check(cc.run(lib, ctx), cc.ref_view(), f"{name} {shape} {act} res={res}")


DW_SHAPES = [
    # h, w, c, k, stride, pad(t,l,b,r), dil
    (7, 9, 1, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    (8, 8, 7, 3, (2, 2), (1, 1, 1, 1), (1, 1)),
    (9, 12, 16, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    (10, 11, 17, 5, (2, 2), (2, 2, 2, 2), (1, 1)),
    (12, 12, 33, 5, (1, 1), (2, 2, 2, 2), (1, 1)),
    (14, 14, 72, 7, (1, 1), (3, 3, 3, 3), (1, 1)),
    (9, 10, 24, 3, (1, 1), (2, 2, 2, 2), (2, 2)),
    (9, 9, 40, 3, (2, 2), (0, 0, 1, 1), (1, 1)),
    (5, 20, 8, 3, (1, 1), (0, 0, 0, 0), (1, 1)),
    # tile edges of the specialised kernels (interior tiles of 8/4/2 pixels, pairs of
    # channel vectors, masked tails), kernels larger than the image, rows with no valid tap
    (4, 26, 48, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    (3, 11, 32, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    (3, 10, 40, 3, (1, 1), (0, 1, 2, 0), (1, 1)),
    (5, 37, 24, 3, (2, 2), (1, 1, 1, 1), (1, 1)),
    (6, 23, 33, 5, (1, 1), (2, 2, 2, 2), (1, 1)),
    (7, 40, 17, 5, (2, 2), (2, 1, 2, 3), (1, 1)),
    (8, 27, 64, 7, (1, 1), (3, 3, 3, 3), (1, 1)),
    (3, 4, 16, 7, (1, 1), (3, 3, 3, 3), (1, 1)),
    (4, 5, 17, 3, (1, 1), (3, 3, 3, 3), (1, 1)),
    (5, 19, 31, 7, (2, 1), (3, 2, 3, 4), (1, 1)),
    (6, 30, 20, 3, (1, 3), (1, 1, 1, 1), (1, 3)),
]


@pytest.mark.parametrize("shape", DW_SHAPES, ids=lambda s: f"c{s[2]}k{s[3]}s{s[4][0]}")
def test_dwconv_fast_vs_ref(lib, shape):
    h, w, c, k, stride, pad, dil = shape
    for idx, name, isa, _, _ in lib.kernels(T.FAMILY_DWCONV):
        if not lib.supported(isa):
            continue
        ctx = lib.context(T.FAMILY_DWCONV, idx)
        for act, res, xs, ys in (
            ("relu", T.RES_NONE, 0, 0),
            ("silu", T.RES_AFTER, c + 3, c + 1),
            ("hardswish", T.RES_BEFORE, 0, 0),
        ):
            d = conv_desc(
                2, h, w, c, c, k, k, stride, pad, dil, c, act, res, xs, ys, c + 5 if res else 0
            )
            cc = ConvCase(lib, d)
            check(cc.run(lib, ctx), cc.ref_view(), f"{name} {shape} {act} res={res}")


def test_dwconv_ref_vs_torch(lib):
    for shape in DW_SHAPES[:4]:
        h, w, c, k, stride, pad, dil = shape
        d = conv_desc(
            1, h, w, c, c, k, k, stride, pad, dil, c, "relu6" if False else "clamp", T.RES_NONE
        )
        cc = ConvCase(lib, d)
        np.testing.assert_allclose(
            cc.ref_view(), torch_conv(cc), rtol=1e-5, atol=1e-5, err_msg=f"dw ref {shape}"
        )


# --------------------------------------------------------------------------- linear / bmm
@pytest.mark.parametrize("mkn", [(1, 64, 10), (7, 33, 50), (13, 192, 64), (197, 48, 31)])
def test_linear(lib, mkn):
    m, k, n = mkn
    a = RNG.uniform(-1, 1, (m, k + 2)).astype(np.float32)
    w = RNG.uniform(-1, 1, (n, k)).astype(np.float32) / math.sqrt(k)
    b = RNG.uniform(-1, 1, n).astype(np.float32)
    r = RNG.uniform(-1, 1, (m, n)).astype(np.float32)
    want = torch_epilogue(
        F.linear(
            torch.from_numpy(a[:, :k]).double(),
            torch.from_numpy(w).double(),
            torch.from_numpy(b).double(),
        ),
        "gelu",
        T.RES_AFTER,
        torch.from_numpy(r).double(),
    ).numpy()
    d = T.LinearDesc(m, k, n, k + 2, 0, 0, epilogue("gelu", T.RES_AFTER))
    yref = np.empty((m, n), np.float32)
    assert (
        lib.lib.txk_ref_linear(C.byref(d), T.ptr(a), T.ptr(w), T.ptr(b), T.ptr(yref), T.ptr(r)) == 0
    )
    np.testing.assert_allclose(yref, want, rtol=1e-5, atol=1e-5, err_msg="ref linear vs torch")
    packed = T.aligned_copy(packing.pack_linear(w, b))
    assert packed.nbytes == lib.lib.txk_linear_packed_size(C.byref(d)), "linear packed size"
    for idx, name, _, _, _ in gemm_kernels(lib):
        ctx = lib.context(T.FAMILY_GEMM, idx)
        y = np.empty((m, n), np.float32)
        rc = lib.lib.txk_linear(
            C.byref(ctx), C.byref(d), T.ptr(a), T.ptr(packed), T.ptr(y), T.ptr(r)
        )
        assert rc == 0, f"txk_linear -> {rc}"
        check(y, yref, f"{name} linear {mkn}")


def test_bmm_and_attention(lib):
    seq, heads, hd = 37, 3, 20
    dim = heads * hd
    qkv = RNG.uniform(-1, 1, (seq, 3 * dim)).astype(np.float32)
    q, k, v = (torch.from_numpy(qkv[:, i * dim : (i + 1) * dim]).double() for i in range(3))
    q, k, v = (t.reshape(seq, heads, hd).transpose(0, 1) for t in (q, k, v))
    scale = hd**-0.5
    want = F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(0, 1).reshape(seq, dim)
    want = want.numpy()
    d = T.AttentionDesc(seq, heads, hd, 3 * dim, 0, scale)
    base = qkv.reshape(-1)
    qp, kp, vp = (base[i * dim :] for i in range(3))
    yref = np.empty((seq, dim), np.float32)
    rc = lib.lib.txk_ref_attention(C.byref(d), T.ptr(qp), T.ptr(kp), T.ptr(vp), T.ptr(yref))
    assert rc == 0, "ref attention failed"
    np.testing.assert_allclose(yref, want, rtol=1e-5, atol=1e-5, err_msg="ref attention vs torch")
    ssz = lib.lib.txk_attention_scratch_size(C.byref(d))
    # QK^T as a bmm: A = Q_h (batch stride hd), B[k][j] = K_h[j][k]
    bd = T.BmmDesc(heads, seq, seq, hd, hd, 3 * dim, 1, hd, 1, 3 * dim, seq * seq, seq, scale)
    s_want = (q @ k.transpose(1, 2) * scale).numpy()
    for idx, name, _, _, _ in gemm_kernels(lib):
        ctx = lib.context(T.FAMILY_GEMM, idx)
        y = np.empty((seq, dim), np.float32)
        scratch = T.aligned_empty(ssz // 4)
        rc = lib.lib.txk_attention(
            C.byref(ctx), C.byref(d), T.ptr(qp), T.ptr(kp), T.ptr(vp), T.ptr(y), T.ptr(scratch)
        )
        assert rc == 0, f"txk_attention -> {rc}"
        check(y, yref, f"{name} attention", rtol=1e-4, atol=2e-5)
        s = np.empty((heads, seq, seq), np.float32)
        bs = T.aligned_empty(lib.lib.txk_bmm_scratch_size(C.byref(bd)) // 4)
        rc = lib.lib.txk_bmm(C.byref(ctx), C.byref(bd), T.ptr(qp), T.ptr(kp), T.ptr(s), T.ptr(bs))
        assert rc == 0, f"txk_bmm -> {rc}"
        check(s, s_want, f"{name} bmm QK^T")
        sr = np.empty_like(s)
        assert lib.lib.txk_ref_bmm(C.byref(bd), T.ptr(qp), T.ptr(kp), T.ptr(sr)) == 0
        check(sr, s_want, "ref bmm", rtol=1e-5, atol=1e-5)
        # a transposed A operand (a_sk != 1) goes through the A copy path
        bd2 = T.BmmDesc(1, hd, hd, seq, 0, 1, 3 * dim, 0, 3 * dim, 1, 0, hd, 1.0)
        o = np.empty((hd, hd), np.float32)
        bs2 = T.aligned_empty(lib.lib.txk_bmm_scratch_size(C.byref(bd2)) // 4)
        rc = lib.lib.txk_bmm(C.byref(ctx), C.byref(bd2), T.ptr(qp), T.ptr(vp), T.ptr(o), T.ptr(bs2))
        assert rc == 0, f"txk_bmm (a_sk != 1) -> {rc}"
        o_want = (q[0].T @ v[0]).numpy()
        check(o, o_want, f"{name} bmm with transposed A", atol=2e-4)
