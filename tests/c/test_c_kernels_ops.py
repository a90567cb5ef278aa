"""Tests of the timmx C kernel library's non-conv ops: vectorised transcendentals (error
bounds), activations, elementwise broadcasting, norms, softmax, pooling, data movement."""

import ctypes as C
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent / "kernels"))
import txk_ctypes as T

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
