"""Tests of the timmx C kernel library's non-conv ops: vectorised transcendentals (error
bounds), activations, elementwise broadcasting, norms, softmax, pooling, data movement."""

import ctypes as C
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent / "kernels"))
import txk_ctypes as T

from timmx.c import packing

RNG = np.random.default_rng(4321)


@pytest.fixture(scope="session")
def lib(tmp_path_factory) -> T.Lib:
    return T.shared_lib(tmp_path_factory.getbasetemp())


def vunary_contexts(lib):
    for idx, name, isa, _, _ in lib.kernels(T.FAMILY_VUNARY):
        if lib.supported(isa):
            yield name, lib.context(T.FAMILY_VUNARY, idx)


# Documented bounds (README.md), in units of float32 ulp of the exact result.
ULP_BOUNDS = {"vexp": 2.0, "verf": 3.0, "vtanh": 3.0, "vsigmoid": 4.0}
TORCH_FN = {"vexp": torch.exp, "verf": torch.erf, "vtanh": torch.tanh, "vsigmoid": torch.sigmoid}


@pytest.mark.parametrize("fn", sorted(ULP_BOUNDS))
def test_transcendental_error_bounds(lib, fn):
    x = np.concatenate(
        [
            np.linspace(-20, 20, 400_001),
            np.linspace(-104, 89, 100_001),
            np.linspace(-1e-3, 1e-3, 2001),
        ]
    ).astype(np.float32)
    ref = TORCH_FN[fn](torch.from_numpy(x).double()).numpy()
    fin = (np.abs(ref) > 1e-37) & (np.abs(ref) < 3e38)
    ulp = np.spacing(np.abs(ref[fin]).astype(np.float32)).astype(np.float64)
    for name, ctx in vunary_contexts(lib):
        y = np.empty_like(x)
        rc = getattr(lib.lib, "txk_" + fn)(C.byref(ctx), x.size, T.ptr(x), T.ptr(y))
        assert rc == 0, f"{name} {fn} -> {rc}"
        err = np.max(np.abs(y[fin] - ref[fin]) / ulp)
        assert err <= ULP_BOUNDS[fn], f"{name} {fn}: {err:.2f} ulp > bound {ULP_BOUNDS[fn]}"
        # NaN propagates, infinities saturate
        sp = np.array([np.nan, np.inf, -np.inf, 0.0], np.float32)
        ys = np.empty_like(sp)
        getattr(lib.lib, "txk_" + fn)(C.byref(ctx), sp.size, T.ptr(sp), T.ptr(ys))
        want = TORCH_FN[fn](torch.from_numpy(sp)).numpy()
        assert np.isnan(ys[0]), f"{name} {fn}(nan) = {ys[0]}"
        np.testing.assert_allclose(ys[1:], want[1:], err_msg=f"{name} {fn} special values")


ACTS = {
    "relu": F.relu,
    "clamp": lambda t: torch.clamp(t, -1.5, 2.0),
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "silu": F.silu,
    "gelu": F.gelu,
    "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "none": lambda t: t,
}


@pytest.mark.parametrize("act", sorted(ACTS))
def test_unary_activations(lib, act):
    for n in (1, 7, 16, 33, 1000):
        x = (RNG.standard_normal(n) * 4).astype(np.float32)
        want = ACTS[act](torch.from_numpy(x).double()).numpy()
        y = np.empty_like(x)
        rc = lib.lib.txk_ref_unary(T.ACT[act], -1.5, 2.0, n, T.ptr(x), T.ptr(y))
        assert rc == 0, "txk_ref_unary failed"
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6, err_msg=f"ref {act} n={n}")
        for name, ctx in vunary_contexts(lib):
            y = x.copy()  # in place
            rc = lib.lib.txk_unary(C.byref(ctx), T.ACT[act], -1.5, 2.0, n, T.ptr(y), T.ptr(y))
            assert rc == 0, f"{name} txk_unary failed"
            np.testing.assert_allclose(y, want, rtol=2e-6, atol=1e-6, err_msg=f"{name} {act} n={n}")


BROADCASTS = {
    # name: (b shape given x [n, p, c], b strides (sn, sp, sc))
    "full": (lambda n, p, c: (n, p, c), lambda n, p, c: (p * c, c, 1)),
    "channel": (lambda n, p, c: (1, 1, c), lambda n, p, c: (0, 0, 1)),
    "scalar": (lambda n, p, c: (1, 1, 1), lambda n, p, c: (0, 0, 0)),
    "se_gate": (lambda n, p, c: (n, 1, c), lambda n, p, c: (c, 0, 1)),
    "pixel": (lambda n, p, c: (n, p, 1), lambda n, p, c: (p, 1, 0)),
}
TORCH_BIN = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "max": torch.maximum,
    "min": torch.minimum,
}


@pytest.mark.parametrize("op", sorted(TORCH_BIN))
@pytest.mark.parametrize("bc", sorted(BROADCASTS))
def test_binary_broadcast(lib, op, bc):
    n, p, c = 2, 5, 19
    a = RNG.standard_normal((n, p, c)).astype(np.float32)
    bshape = BROADCASTS[bc][0](n, p, c)
    b = (RNG.uniform(0.5, 2, bshape) * RNG.choice([-1, 1], bshape)).astype(np.float32)
    act = "relu" if op == "add" else ("sigmoid" if op == "mul" else "none")
    want = ACTS[act](TORCH_BIN[op](torch.from_numpy(a).double(), torch.from_numpy(b).double()))
    d = T.BinaryDesc(T.BIN[op], n, p, c, p * c, c, 1, *BROADCASTS[bc][1](n, p, c), p * c, c)
    d.epilogue = T.Epilogue(T.ACT[act], 0, 0, 0)
    ctx = lib.context()
    for fn, args in (("txk_ref_binary", ()), ("txk_binary", (C.byref(ctx),))):
        y = np.empty_like(a)
        rc = getattr(lib.lib, fn)(*args, C.byref(d), T.ptr(a), T.ptr(b), T.ptr(y))
        assert rc == 0, f"{fn} -> {rc}"
        np.testing.assert_allclose(y, want.numpy(), rtol=1e-6, atol=1e-6, err_msg=f"{fn} {op} {bc}")
    # scalar on the left: y = 3 - x
    s = np.array([3.0], np.float32)
    d2 = T.BinaryDesc(T.BIN["sub"], n, p, c, 0, 0, 0, p * c, c, 1, p * c, c)
    y = np.empty_like(a)
    assert lib.lib.txk_binary(C.byref(ctx), C.byref(d2), T.ptr(s), T.ptr(a), T.ptr(y)) == 0
    np.testing.assert_allclose(y, 3.0 - a, rtol=1e-6, err_msg="scalar - tensor")


@pytest.mark.parametrize("gate", ["none", "sigmoid", "hardsigmoid"])
def test_channel_scale(lib, gate):
    n, p, c = 2, 13, 300
    x = RNG.standard_normal((n, p, c)).astype(np.float32)
    s = RNG.standard_normal((n, c)).astype(np.float32)
    want = x * ACTS[gate](torch.from_numpy(s).double()).numpy()[:, None, :]
    for name, ctx in vunary_contexts(lib):
        y = x.copy()
        rc = lib.lib.txk_channel_scale(
            C.byref(ctx), n, p, c, T.ptr(y), T.ptr(s), T.ACT[gate], T.ptr(y)
        )
        assert rc == 0, f"{name} channel_scale failed"
        np.testing.assert_allclose(y, want, rtol=2e-6, atol=1e-6, err_msg=f"{name} gate={gate}")


@pytest.mark.parametrize("rows,c", [(1, 1), (3, 7), (197, 192), (5, 768)])
def test_layernorm_softmax(lib, rows, c):
    x = (RNG.standard_normal((rows, c + 3)) * 3 + 1).astype(np.float32)
    g = RNG.standard_normal(c).astype(np.float32)
    b = RNG.standard_normal(c).astype(np.float32)
    xt = torch.from_numpy(np.ascontiguousarray(x[:, :c])).double()
    want_ln = F.layer_norm(
        xt, (c,), torch.from_numpy(g).double(), torch.from_numpy(b).double(), 1e-6
    )
    want_sm = torch.softmax(xt, -1).numpy()
    y = np.empty((rows, c), np.float32)
    assert (
        lib.lib.txk_ref_layernorm(rows, c, T.ptr(x), c + 3, T.ptr(y), 0, T.ptr(g), T.ptr(b), 1e-6)
        == 0
    )
    np.testing.assert_allclose(y, want_ln.numpy(), rtol=1e-5, atol=1e-5, err_msg="ref layernorm")
    assert lib.lib.txk_ref_softmax(rows, c, T.ptr(x), c + 3, T.ptr(y), 0) == 0
    np.testing.assert_allclose(y, want_sm, rtol=1e-6, atol=1e-7, err_msg="ref softmax")
    for name, ctx in vunary_contexts(lib):
        y = np.empty((rows, c), np.float32)
        rc = lib.lib.txk_layernorm(
            C.byref(ctx), rows, c, T.ptr(x), c + 3, T.ptr(y), 0, T.ptr(g), T.ptr(b), 1e-6
        )
        assert rc == 0, "layernorm failed"
        np.testing.assert_allclose(
            y, want_ln.numpy(), rtol=1e-4, atol=2e-5, err_msg=f"{name} layernorm"
        )
        xi = np.ascontiguousarray(x[:, :c])  # in place softmax
        assert lib.lib.txk_softmax(C.byref(ctx), rows, c, T.ptr(xi), 0, T.ptr(xi), 0) == 0
        np.testing.assert_allclose(xi, want_sm, rtol=2e-6, atol=1e-7, err_msg=f"{name} softmax")


def test_groupnorm(lib):
    n, h, w, c, g = 2, 5, 6, 12, 3
    x = RNG.standard_normal((n, h, w, c)).astype(np.float32)
    ga, be = RNG.standard_normal(c).astype(np.float32), RNG.standard_normal(c).astype(np.float32)
    want = F.group_norm(
        torch.from_numpy(x).permute(0, 3, 1, 2).double(),
        g,
        torch.from_numpy(ga).double(),
        torch.from_numpy(be).double(),
        1e-5,
    )
    want = want.permute(0, 2, 3, 1).numpy()
    ctx = lib.context()
    for fn, args in (("txk_ref_groupnorm", ()), ("txk_groupnorm", (C.byref(ctx),))):
        y = np.empty_like(x)
        rc = getattr(lib.lib, fn)(
            *args, n, h * w, c, g, T.ptr(x), T.ptr(y), T.ptr(ga), T.ptr(be), 1e-5
        )
        assert rc == 0, f"{fn} failed"
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5, err_msg=fn)


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).contiguous().float().numpy()


def test_reductions(lib):
    x = RNG.standard_normal((2, 7, 9, 33)).astype(np.float32)
    ctx = lib.context()
    y = np.empty((2, 33), np.float32)
    assert lib.lib.txk_global_avgpool(C.byref(ctx), 2, 63, 33, T.ptr(x), T.ptr(y)) == 0
    np.testing.assert_allclose(y, x.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6, err_msg="global avg")
    y = np.empty((2, 7, 9), np.float32)
    assert lib.lib.txk_mean_channels(C.byref(ctx), 2 * 63, 33, T.ptr(x), T.ptr(y)) == 0
    np.testing.assert_allclose(y, x.mean(axis=3), rtol=1e-5, atol=1e-6, err_msg="mean channels")


POOLS = [
    # h, w, k, s, p, ceil, count_include_pad
    (112, 112, 3, 2, 1, False, True),
    (7, 9, 3, 2, 1, True, True),
    (7, 9, 3, 2, 1, True, False),
    (8, 8, 2, 2, 0, False, True),
    (6, 7, 3, 1, 1, False, False),
    (5, 5, 2, 2, 0, True, True),
]


def pool_out(n: int, k: int, s: int, p: int, ceil: bool) -> int:
    o = (n + 2 * p - k + (s - 1 if ceil else 0)) // s + 1
    if ceil and (o - 1) * s >= n + p:
        o -= 1
    return o


@pytest.mark.parametrize("cfg", POOLS)
def test_pooling(lib, cfg):
    h, w, k, s, p, ceil, cip = cfg
    c = 5 if h > 100 else 19
    xt = torch.randn(2, c, h, w, dtype=torch.float64)
    x = nhwc(xt)
    oh, ow = pool_out(h, k, s, p, ceil), pool_out(w, k, s, p, ceil)
    d = T.Pool2dDesc(2, h, w, c, oh, ow, k, k, s, s, p, p, 1, 1, int(cip), 0, 0, 0)
    ctx = lib.context()
    want_max = nhwc(F.max_pool2d(xt, k, s, p, ceil_mode=ceil))
    want_avg = nhwc(F.avg_pool2d(xt, k, s, p, ceil_mode=ceil, count_include_pad=cip))
    for fn, want in (("txk_maxpool2d", want_max), ("txk_avgpool2d", want_avg)):
        assert want.shape == (2, oh, ow, c), f"out size mismatch {want.shape} vs {(oh, ow)}"
        y = np.empty_like(want)
        assert getattr(lib.lib, fn)(C.byref(ctx), C.byref(d), T.ptr(x), T.ptr(y)) == 0, fn
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6, err_msg=f"{fn} {cfg}")


@pytest.mark.parametrize("hw,out", [((7, 7), (1, 1)), ((10, 13), (3, 4)), ((5, 5), (7, 7))])
def test_adaptive_avgpool(lib, hw, out):
    xt = torch.randn(1, 6, *hw, dtype=torch.float64)
    want = nhwc(F.adaptive_avg_pool2d(xt, out))
    d = T.Pool2dDesc(1, hw[0], hw[1], 6, out[0], out[1])
    y = np.empty_like(want)
    ctx = lib.context()
    assert lib.lib.txk_adaptive_avgpool2d(C.byref(ctx), C.byref(d), T.ptr(nhwc(xt)), T.ptr(y)) == 0
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6, err_msg=f"adaptive {hw}->{out}")


def test_data_movement(lib):
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    for perm in ((0, 3, 1, 2), (0, 2, 3, 1), (3, 2, 1, 0), (0, 1, 2, 3), (1, 0, 3, 2)):
        y = np.empty(x.size, np.float32)
        shape = (C.c_size_t * 4)(*x.shape)
        pm = (C.c_size_t * 4)(*perm)
        assert lib.lib.txk_permute(4, shape, pm, T.ptr(x), T.ptr(y)) == 0, f"permute {perm}"
        np.testing.assert_array_equal(y, x.transpose(perm).reshape(-1), err_msg=f"permute {perm}")
    y = np.empty((2, 3 + 3, 4 + 1, 5), np.float32)
    assert lib.lib.txk_pad_nhwc(2, 3, 4, 5, 1, 2, 0, 1, -7.0, T.ptr(x), T.ptr(y)) == 0
    want = F.pad(torch.from_numpy(x).permute(0, 3, 1, 2), (0, 1, 1, 2), value=-7.0)
    np.testing.assert_array_equal(y, nhwc(want), err_msg="pad_nhwc")
    a = RNG.standard_normal((10, 3)).astype(np.float32)
    b = RNG.standard_normal((10, 5)).astype(np.float32)
    y = np.empty((10, 8), np.float32)
    ptrs = (C.c_void_p * 2)(a.ctypes.data, b.ctypes.data)
    chans = (C.c_size_t * 2)(3, 5)
    assert lib.lib.txk_concat_channels(10, 2, ptrs, chans, T.ptr(y)) == 0
    np.testing.assert_array_equal(y, np.concatenate([a, b], 1), err_msg="concat channels")
    z = np.zeros((10, 8), np.float32)
    assert lib.lib.txk_copy2d(10, 5, T.ptr(b), 5, C.c_void_p(z.ctypes.data + 3 * 4), 8) == 0
    np.testing.assert_array_equal(z[:, 3:], b, err_msg="copy2d into a channel slice")
    assert not z[:, :3].any(), "copy2d wrote outside its columns"


def test_status_codes(lib):
    ctx = lib.context()
    d = T.Conv2dDesc(1, 4, 4, 3, 3, 3, 8, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 1)  # out_h wrong: 2
    assert lib.lib.txk_conv2d_check(C.byref(d)) == -1, "bad out size must be TXK_EINVAL"
    d.out_h = d.out_w = 2
    assert lib.lib.txk_conv2d_check(C.byref(d)) == 0, "valid descriptor rejected"
    x = np.zeros(48, np.float32)
    w = T.aligned_empty(2000, 0.0)
    y = np.zeros(32, np.float32)
    misaligned = w[1:]
    rc = lib.lib.txk_conv2d(
        C.byref(ctx), C.byref(d), T.ptr(x), T.ptr(misaligned), T.ptr(y), None, None
    )
    assert rc == -3, f"misaligned weights must give TXK_EALIGN, got {rc}"
    assert lib.lib.txk_context_init(C.byref(T.Context()), 12345) != 0, "bad isa accepted"


# --------------------------------------------------------------------------- row-op kernels
ROW_SIZES = [1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 64, 100, 300]


def rowop_contexts(lib):
    for idx, name, isa, _, _ in lib.kernels(T.FAMILY_ROWOP):
        if lib.supported(isa):
            yield name, lib.context(T.FAMILY_ROWOP, idx)


def test_global_avgpool_chunks_and_threads(lib):
    """The pool sums fixed chunks of pixels, then the chunks in order, 512 channels at a time:
    pixel counts below the chunk count (empty chunks), channel counts across the 512 blocks,
    against float64, and bitwise the same at 1, 2, 3 and 7 threads."""
    for hw, c in ((1, 16), (3, 600), (49, 1100), (3136, 96), (196, 1280)):
        x = (RNG.standard_normal((2, hw, c)) * 2 + 0.5).astype(np.float32)
        outs = []
        for threads in (1, 2, 3, 7):
            ctx = lib.context(threads=threads)
            y = np.full((2, c), np.nan, np.float32)
            assert lib.lib.txk_global_avgpool(C.byref(ctx), 2, hw, c, T.ptr(x), T.ptr(y)) == 0
            outs.append(y)
        np.testing.assert_allclose(
            outs[0], x.astype(np.float64).mean(1), rtol=1e-5, atol=1e-6, err_msg=f"{hw}x{c}"
        )
        for threads, y in zip((2, 3, 7), outs[1:], strict=True):
            assert np.array_equal(y, outs[0]), f"gap {hw}x{c} differs at {threads} threads"


def test_rowop_kernels_vs_reference(lib):
    """Every enumerated row-op kernel (layernorm, softmax, global avgpool, SE gate, binary
    with broadcasts) on channel counts below, at and above multiples of its vector width."""
    for name, ctx in rowop_contexts(lib):
        for c in ROW_SIZES:
            rows = 3
            x = (RNG.standard_normal((rows, c + 5)) * 3 + 1).astype(np.float32)
            g = RNG.uniform(0.5, 1.5, c).astype(np.float32)
            b = RNG.uniform(-1, 1, c).astype(np.float32)
            for gg, bb in ((g, b), (None, b), (g, None)):
                want = np.empty((rows, c), np.float32)
                got = np.full((rows, c + 2), np.nan, np.float32)
                args = (T.ptr(gg), T.ptr(bb), C.c_float(1e-5))
                assert (
                    lib.lib.txk_ref_layernorm(rows, c, T.ptr(x), c + 5, T.ptr(want), 0, *args) == 0
                )
                rc = lib.lib.txk_layernorm(
                    C.byref(ctx), rows, c, T.ptr(x), c + 5, T.ptr(got), c + 2, *args
                )
                assert rc == 0, f"{name} layernorm"
                np.testing.assert_allclose(
                    got[:, :c], want, rtol=1e-4, atol=2e-5, err_msg=f"{name} layernorm c={c}"
                )
                assert np.isnan(got[:, c:]).all(), f"{name} layernorm wrote past the row"
            want = np.empty((rows, c), np.float32)
            assert lib.lib.txk_ref_softmax(rows, c, T.ptr(x), c + 5, T.ptr(want), 0) == 0
            got = np.full((rows, c + 2), np.nan, np.float32)
            rc = lib.lib.txk_softmax(C.byref(ctx), rows, c, T.ptr(x), c + 5, T.ptr(got), c + 2)
            assert rc == 0, f"{name} softmax"
            np.testing.assert_allclose(
                got[:, :c], want, rtol=2e-6, atol=1e-7, err_msg=f"{name} softmax c={c}"
            )
            assert np.isnan(got[:, c:]).all(), f"{name} softmax wrote past the row"
            # global average pool over 5 pixels, SE gate
            xp = RNG.standard_normal((2, 5, c)).astype(np.float32)
            y = np.full((2, c), np.nan, np.float32)
            assert lib.lib.txk_global_avgpool(C.byref(ctx), 2, 5, c, T.ptr(xp), T.ptr(y)) == 0
            np.testing.assert_allclose(
                y, xp.mean(1), rtol=1e-5, atol=1e-6, err_msg=f"{name} gap c={c}"
            )
            s = RNG.standard_normal((2, c)).astype(np.float32)
            y = np.empty_like(xp)
            rc = lib.lib.txk_channel_scale(
                C.byref(ctx), 2, 5, c, T.ptr(xp), T.ptr(s), T.ACT["none"], T.ptr(y)
            )
            assert rc == 0, f"{name} channel_scale"
            np.testing.assert_allclose(y, xp * s[:, None, :], rtol=1e-6, err_msg=f"{name} se")
            # binary: full, per-channel, scalar b, scalar a; all ops; fused acts
            for op in sorted(T.BIN):
                for act in ("none", "relu", "clamp", "silu"):
                    for a_sc, b_sn, b_sp, b_sc in (
                        (1, 5 * c, c, 1),
                        (1, 0, 0, 1),
                        (1, 0, 0, 0),
                        (0, 5 * c, c, 1),
                    ):
                        a_s = (5 * c, c) if a_sc else (0, 0)
                        bsrc = xp + 0.25 if b_sc else np.array([0.5], np.float32)
                        if b_sc and b_sn == 0:
                            bsrc = s[0].copy()
                        d = T.BinaryDesc(T.BIN[op], 2, 5, c, *a_s, a_sc, b_sn, b_sp, b_sc, 5 * c, c)
                        d.epilogue = T.Epilogue(T.ACT[act], -0.5, 0.75, 0)
                        asrc = xp if a_sc else np.array([1.5], np.float32)
                        ref = np.empty_like(xp)
                        got = np.empty_like(xp)
                        assert (
                            lib.lib.txk_ref_binary(C.byref(d), T.ptr(asrc), T.ptr(bsrc), T.ptr(ref))
                            == 0
                        )
                        assert (
                            lib.lib.txk_binary(
                                C.byref(ctx), C.byref(d), T.ptr(asrc), T.ptr(bsrc), T.ptr(got)
                            )
                            == 0
                        )
                        np.testing.assert_allclose(
                            got,
                            ref,
                            rtol=1e-5,
                            atol=1e-6,
                            err_msg=f"{name} {op} {act} c={c} a_sc={a_sc} b={b_sn},{b_sp},{b_sc}",
                        )


# --------------------------------------------------------------------------- NaN and signed zero
# The library's semantics on NaN and +-0 (src/internal/txk_scalar_math.h, README.md) are
# PyTorch's. Every path is checked against torch on special values: the reference kernels,
# every enumerated vunary / rowop / gemm / dwconv kernel (fused epilogues included), the
# portable strided driver loops and the generic txg_* ops.
NAN, INF = float("nan"), float("inf")
SPECIAL = np.array(
    [NAN, -NAN, INF, -INF, -0.0, 0.0, -3.0, 3.0, -4.0, -1e-30, 1e-30, -0.5, 0.5, -20.0, 20.0,
     -100.0, 100.0],
    np.float32,
)  # fmt: skip
# label: (txk_act, lo, hi, torch); the txg_unop code of these acts equals the txk_act code
SPECIAL_ACTS = {
    "none": (0, 0.0, 0.0, lambda t: t),
    "relu": (1, 0.0, 0.0, F.relu),
    "relu6": (2, 0.0, 6.0, F.relu6),
    "clamp": (2, -1.5, 2.0, lambda t: torch.clamp(t, -1.5, 2.0)),
    "hardswish": (3, 0.0, 0.0, F.hardswish),
    "hardsigmoid": (4, 0.0, 0.0, F.hardsigmoid),
    "silu": (5, 0.0, 0.0, F.silu),
    "gelu": (6, 0.0, 0.0, F.gelu),
    "gelu_tanh": (7, 0.0, 0.0, lambda t: F.gelu(t, approximate="tanh")),
    "sigmoid": (8, 0.0, 0.0, torch.sigmoid),
    "tanh": (9, 0.0, 0.0, torch.tanh),
}
# generic-only activations: label: (txg_unop, p0, torch)
SPECIAL_TXG_ACTS = {
    "softplus": (36, 0.0, F.softplus),
    "mish": (37, 0.0, F.mish),
    "elu": (38, 0.7, lambda t: F.elu(t, 0.7)),
    "leaky_relu": (39, 0.1, lambda t: F.leaky_relu(t, 0.1)),
    "gelu_sigmoid": (40, 0.0, lambda t: t * torch.sigmoid(1.702 * t)),
}
# Deliberate differences from PyTorch's CPU kernels (README.md): gelu(+inf) is +inf here,
# NaN in torch.
DEVIATIONS = {("gelu", INF): INF}
TXG_MAX, TXG_MIN, TXG_RED_MAX, TXG_RED_MIN = 4, 5, 2, 3


def torch_special(label: str, fn, x: np.ndarray) -> np.ndarray:
    want = fn(torch.from_numpy(x)).numpy().copy()
    for i, v in enumerate(x):
        if (label, float(v)) in DEVIATIONS:
            want[i] = DEVIATIONS[(label, float(v))]
    return want


def assert_special(got: np.ndarray, want: np.ndarray, x, what: str, zero_sign=None) -> None:
    """NaN where torch has NaN; a zero of torch's sign where torch has a zero (a denormal
    counts as zero: the vector exp underflows gradually where libm / torch flush; the sign
    is not checked where zero_sign[i] is False); equal infinities; else close."""
    bad = []
    for i, (g, w) in enumerate(zip(got.tolist(), want.tolist(), strict=True)):
        if math.isnan(w):
            ok = math.isnan(g)
        elif abs(w) < 1e-37:
            ok = abs(g) < 1e-37 and (
                (zero_sign is not None and not zero_sign[i])
                or math.copysign(1, g) == math.copysign(1, w)
            )
        elif math.isinf(w):
            ok = g == w
        else:
            ok = abs(g - w) <= 2e-6 * abs(w) + 1e-6
        if not ok:
            bad.append(f"x={x[i]!r}: got {g!r}, torch {w!r}")
    assert not bad, f"{what}: " + "; ".join(bad)


def _txg_signatures(L) -> None:
    lp, vp = C.POINTER(C.c_long), C.c_void_p
    L.txg_unary.argtypes = [C.c_int, C.c_float, C.c_float, C.c_int, lp, vp, lp, vp, lp]
    L.txg_binary.argtypes = [C.c_int, C.c_int, lp, vp, lp, vp, lp, vp, lp]
    L.txg_reduce.argtypes = [C.c_int, C.c_float, C.c_int, lp, vp, lp, vp, lp, C.c_int, lp, lp]


def longs(*v: int):
    return (C.c_long * len(v))(*v)


def special_conv(lib, ctx, act: int, lo: float, hi: float, dw: bool) -> np.ndarray:
    """act(bias) through a conv's fused epilogue: input -1, weights +0, so every product is
    -0 and the accumulator is the bias (NaN, +-inf); only a -0 bias may come out +0 (kernels
    that sum taps in partial sums from +0: the sign of an exact-zero sum is unspecified)."""
    c = SPECIAL.size
    h, w, k = (3, 4, 3) if dw else (1, 3, 1)
    d = T.Conv2dDesc(1, h, w, c, h, w, c, k, k, 1, 1, k // 2, k // 2, k // 2, k // 2, 1, 1)
    d.groups = c if dw else 1
    d.epilogue = T.Epilogue(act, lo, hi, 0)
    wt = np.zeros((c, 1 if dw else c, k, k), np.float32)
    packed = T.aligned_copy(packing.pack_conv2d(wt, SPECIAL, d.groups))
    x = np.full(h * w * c, -1.0, np.float32)
    y = np.full(h * w * c, 7.0, np.float32)
    ss = lib.lib.txk_conv2d_scratch_size(C.byref(d))
    scratch = T.aligned_empty(ss // 4, 0.0) if ss else None
    rc = lib.lib.txk_conv2d(
        C.byref(ctx), C.byref(d), T.ptr(x), T.ptr(packed), T.ptr(y), None, T.ptr(scratch)
    )
    assert rc == 0, f"txk_conv2d -> {rc}"
    return y.reshape(h * w, c)


@pytest.mark.parametrize("label", sorted(SPECIAL_ACTS))
def test_nan_and_signed_zero_activations(lib, label):
    act, lo, hi, fn = SPECIAL_ACTS[label]
    L = lib.lib
    _txg_signatures(L)
    x, n = SPECIAL, SPECIAL.size
    want = torch_special(label, fn, x)
    y = np.empty_like(x)
    assert L.txk_ref_unary(act, lo, hi, n, T.ptr(x), T.ptr(y)) == 0
    assert_special(y, want, x, f"txk_ref_unary {label}")
    y = np.empty_like(x)
    assert L.txg_unary(act, lo, hi, 1, longs(n), T.ptr(x), longs(1), T.ptr(y), longs(1)) == 0
    assert_special(y, want, x, f"txg_unary {label}")
    for idx, name, isa, _, _ in lib.kernels(T.FAMILY_VUNARY):
        if lib.supported(isa):
            ctx = lib.context(T.FAMILY_VUNARY, idx)
            y = np.empty_like(x)
            assert L.txk_unary(C.byref(ctx), act, lo, hi, n, T.ptr(x), T.ptr(y)) == 0
            assert_special(y, want, x, f"{name} (txk_unary) {label}")
    one = np.array([1.0], np.float32)  # x * 1 keeps NaN, infinities and the sign of zero
    xs = np.zeros(2 * n, np.float32)
    xs[::2] = x
    for idx, name, isa, _, _ in lib.kernels(T.FAMILY_ROWOP):
        if lib.supported(isa):
            ctx = lib.context(T.FAMILY_ROWOP, idx)
            for a, a_sc, path in ((x, 1, "row kernel"), (xs, 2, "strided driver loop")):
                d = T.BinaryDesc(T.BIN["mul"], 1, 1, n, 0, 0, a_sc, 0, 0, 0, 0, 0)
                d.epilogue = T.Epilogue(act, lo, hi, 0)
                y = np.empty_like(x)
                assert L.txk_binary(C.byref(ctx), C.byref(d), T.ptr(a), T.ptr(one), T.ptr(y)) == 0
                assert_special(y, want, x, f"{name} txk_binary x*1 + {label} ({path})")
    for fam, dw in ((T.FAMILY_GEMM, False), (T.FAMILY_DWCONV, True)):
        for idx, name, isa, _, _ in lib.kernels(fam):
            if lib.supported(isa):
                y = special_conv(lib, lib.context(fam, idx), act, lo, hi, dw)
                for p in range(y.shape[0]):
                    what = f"{name} fused epilogue {label} pixel {p}"
                    assert_special(y[p], want, x, what, zero_sign=x != 0)


@pytest.mark.parametrize("label", sorted(SPECIAL_TXG_ACTS))
def test_nan_and_signed_zero_generic_activations(lib, label):
    op, p0, fn = SPECIAL_TXG_ACTS[label]
    _txg_signatures(lib.lib)
    x, n = SPECIAL, SPECIAL.size
    y = np.empty_like(x)
    rc = lib.lib.txg_unary(op, p0, 0.0, 1, longs(n), T.ptr(x), longs(1), T.ptr(y), longs(1))
    assert rc == 0
    assert_special(y, torch_special(label, fn, x), x, f"txg_unary {label}")


def test_nan_and_signed_zero_max_min(lib):
    """max/min: NaN if either operand is NaN (torch.maximum / minimum); of +0 and -0 the
    second operand (torch's vectorised path). Reductions (max pool, txg_reduce) keep the
    first of equal values, like F.max_pool2d / amax / amin."""
    L = lib.lib
    _txg_signatures(L)
    vals = [NAN, -0.0, 0.0, 1.0, -1.0, INF, -INF]
    a = np.array([u for u in vals for _ in vals], np.float32)
    b = np.array([v for _ in vals for v in vals], np.float32)
    n = a.size
    for op, tfn, gop in (("max", torch.maximum, TXG_MAX), ("min", torch.minimum, TXG_MIN)):
        want = tfn(torch.from_numpy(a), torch.from_numpy(b)).numpy().copy()
        zeros = (a == 0) & (b == 0)
        want[zeros] = b[zeros]  # the documented rule for equal values
        pairs = list(zip(a.tolist(), b.tolist(), strict=True))
        d = T.BinaryDesc(T.BIN[op], 1, 1, n, 0, 0, 1, 0, 0, 1, 0, 0)
        y = np.empty_like(a)
        assert L.txk_ref_binary(C.byref(d), T.ptr(a), T.ptr(b), T.ptr(y)) == 0
        assert_special(y, want, pairs, f"txk_ref_binary {op}")
        y = np.empty_like(a)
        one = longs(1)
        assert L.txg_binary(gop, 1, longs(n), T.ptr(a), one, T.ptr(b), one, T.ptr(y), one) == 0
        assert_special(y, want, pairs, f"txg_binary {op}")
        a2 = np.zeros(2 * n, np.float32)
        a2[::2] = a
        for idx, name, isa, _, _ in lib.kernels(T.FAMILY_ROWOP):
            if not lib.supported(isa):
                continue
            ctx = lib.context(T.FAMILY_ROWOP, idx)
            for src, a_sc, path in ((a, 1, "row kernel"), (a2, 2, "strided driver loop")):
                d = T.BinaryDesc(T.BIN[op], 1, 1, n, 0, 0, a_sc, 0, 0, 1, 0, 0)
                y = np.empty_like(a)
                assert L.txk_binary(C.byref(ctx), C.byref(d), T.ptr(src), T.ptr(b), T.ptr(y)) == 0
                assert_special(y, want, pairs, f"{name} txk_binary {op} ({path})")
    # reductions over the window / axis [a, b]: torch decides, first of equal values stays
    win = torch.from_numpy(np.stack([a, b], 1))  # [n, 2]
    for gop, want in (
        (TXG_RED_MAX, torch.amax(win, 1).numpy()),
        (TXG_RED_MIN, torch.amin(win, 1).numpy()),
    ):
        y = np.empty(n, np.float32)
        x = np.ascontiguousarray(win.numpy())
        rc = L.txg_reduce(
            gop, 0.0, 1, longs(n), T.ptr(x), longs(2), T.ptr(y), longs(1), 1, longs(2), longs(1)
        )
        assert rc == 0
        assert_special(y, want, pairs, f"txg_reduce {'max' if gop == TXG_RED_MAX else 'min'}")
    want = F.max_pool2d(win.reshape(1, n, 1, 2), (1, 2)).reshape(n).numpy()  # NCHW
    x = np.ascontiguousarray(np.stack([a, b]))  # NHWC [1][1][2][n]
    d = T.Pool2dDesc(1, 1, 2, n, 1, 1, 1, 2, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0)
    y = np.empty(n, np.float32)
    assert L.txk_maxpool2d(C.byref(lib.context()), C.byref(d), T.ptr(x), T.ptr(y)) == 0
    assert_special(y, want, pairs, "txk_maxpool2d")
