"""Fused kernels of the C target. The 1x1 conv fused into the depthwise conv after it
(txk_conv2d_pw_dw): against PyTorch, and bitwise against the two separate calls at 1, 2, 3 and
7 threads; then a model whose inverted residual the exporter fuses, run at 1, 2 and 3 threads;
the SE gate folded into weights; convs writing concat slices; a basic block run as Winograd."""

import ctypes as C
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import custom_prepared

sys.path.insert(0, str(Path(__file__).resolve().parent / "kernels"))
import txk_ctypes as T

from timmx.c import abi, packing
from timmx.c.build import find_compiler

CC = find_compiler()
needs_cc = pytest.mark.skipif(CC is None, reason="needs a C compiler (gcc or clang)")
RNG = np.random.default_rng(77)


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> T.Lib:
    return T.shared_lib(tmp_path_factory.getbasetemp())


def _conv(n, h, w, ic, oc, k, s, pad, groups, act) -> abi.Conv2dDesc:
    out = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
    d = abi.Conv2dDesc(
        n=n, in_h=h, in_w=w, in_c=ic, out_h=out[0], out_w=out[1], out_c=oc, kh=k, kw=k,
        stride_h=s, stride_w=s, pad_top=pad, pad_left=pad, pad_bottom=pad, pad_right=pad,
        dil_h=1, dil_w=1, groups=groups,
    )  # fmt: skip
    d.epilogue.act = abi.ENUMS["TXK_ACT_"][act]
    return d


# (n, h, w, in_c, channels, k, stride, pad): a slot holds every row; several bands per task
# (rows carried between bands); bands of one row (a row is wider than a slot), stride 2, 5x5
CASES = [
    (1, 9, 11, 5, 19, 3, 1, 1),
    (1, 37, 64, 24, 160, 3, 1, 1),
    (2, 40, 56, 16, 144, 5, 2, 2),
    (1, 13, 250, 8, 300, 3, 2, 1),
]


@needs_cc
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_pw_dw_matches_pytorch_and_the_separate_calls(lib, case) -> None:
    n, h, w, ic, c, k, s, pad = case
    x = RNG.standard_normal((n, ic, h, w)).astype(np.float32)
    wp = (RNG.standard_normal((c, ic, 1, 1)) / np.sqrt(ic)).astype(np.float32)
    wd = (RNG.standard_normal((c, 1, k, k)) / k).astype(np.float32)
    bp, bd = (RNG.standard_normal(c).astype(np.float32) for _ in range(2))
    e = F.silu(F.conv2d(torch.from_numpy(x), torch.from_numpy(wp), torch.from_numpy(bp)))
    ref = F.hardswish(F.conv2d(e, torch.from_numpy(wd), torch.from_numpy(bd), stride=s,
                               padding=pad, groups=c)).numpy()  # fmt: skip
    d = abi.PwDwDesc(
        pw=_conv(n, h, w, ic, c, 1, 1, 0, 1, "SILU"),
        dw=_conv(n, h, w, c, c, k, s, pad, c, "HARDSWISH"),
    )
    assert lib.lib.txk_pwdw_check(C.byref(d)) == 0, "a valid descriptor is rejected"
    xn = T.aligned_copy(x.transpose(0, 2, 3, 1))
    pkp = T.aligned_copy(packing.pack_conv2d(wp, bp, 1))
    pkd = T.aligned_copy(packing.pack_conv2d(wd, bd, c))
    scratch = T.aligned_empty(lib.lib.txk_pwdw_scratch_size(C.byref(d)) // 4)
    ny = ref.size
    one = lib.context()
    mid, apart = T.aligned_empty(n * h * w * c), T.aligned_empty(ny)
    args = (T.ptr(xn), T.ptr(pkp), T.ptr(mid), None, None)
    assert lib.lib.txk_conv2d(C.byref(one), C.byref(d.pw), *args) == 0, "separate 1x1 failed"
    args = (T.ptr(mid), T.ptr(pkd), T.ptr(apart), None, None)
    assert lib.lib.txk_conv2d(C.byref(one), C.byref(d.dw), *args) == 0, "separate dw failed"
    for threads in (1, 2, 3, 7):
        ctx = lib.context(threads=threads)
        y = T.aligned_empty(ny, fill=np.nan)
        args = (T.ptr(xn), T.ptr(pkp), T.ptr(pkd), T.ptr(y), None, T.ptr(scratch))
        assert lib.lib.txk_conv2d_pw_dw(C.byref(ctx), C.byref(d), *args) == 0, f"{threads} thr"
        assert y.tobytes() == apart.tobytes(), f"{threads} threads: not bitwise the separate calls"
    got = y.reshape(n, ref.shape[2], ref.shape[3], c).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)


@needs_cc
def test_pw_dw_rejects_what_it_cannot_fuse(lib) -> None:
    d = abi.PwDwDesc(
        pw=_conv(1, 8, 8, 4, 16, 1, 1, 0, 1, "NONE"), dw=_conv(1, 8, 8, 16, 16, 3, 1, 1, 16, "NONE")
    )
    scratch = T.aligned_empty(lib.lib.txk_pwdw_scratch_size(C.byref(d)) // 4)
    buf = T.aligned_empty(8 * 8 * 16 * 16)
    ctx = lib.context()
    call = lib.lib.txk_conv2d_pw_dw
    assert call(C.byref(ctx), C.byref(d), *(T.ptr(buf),) * 4, None, T.ptr(scratch)) == 0
    einval = abi.ENUMS["TXK_"]["EINVAL"]
    assert call(C.byref(ctx), C.byref(d), *(T.ptr(buf),) * 4, None, None) == einval
    d.pw.kh = d.pw.kw = 3
    d.pw.pad_top = d.pw.pad_left = d.pw.pad_bottom = d.pw.pad_right = 1
    assert lib.lib.txk_pwdw_check(C.byref(d)) != 0, "a 3x3 first conv is accepted"
    assert lib.lib.txk_pwdw_scratch_size(C.byref(d)) == 0, "scratch for an invalid descriptor"


def _live_batchnorms(module: torch.nn.Module, seed: int) -> None:
    """BatchNorm statistics and affine terms that are not the identity (drawn from ``seed``)."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.2)


def _matches_pytorch_at_1_2_3_threads(module, prepared, tmp_path: Path, prefix: str) -> None:
    """The demo of the export in ``tmp_path / "out"`` matches PyTorch (1e-4) and is bitwise the
    same at 1, 2 and 3 threads."""
    from timmx.c.export import c_runner

    x = prepared.sample_input()
    with torch.no_grad():
        ref = module(x).numpy().reshape(-1)
    outs = {}
    for threads in (1, 2, 3):
        run = c_runner(tmp_path / "out", prefix, tmp_path / f"b{threads}", cc=CC, threads=threads)
        outs[threads] = np.asarray(run(x.numpy()), dtype=np.float32).reshape(-1)
    np.testing.assert_allclose(outs[1], ref, atol=1e-4, rtol=1e-4)
    for threads in (2, 3):
        assert outs[threads].tobytes() == outs[1].tobytes(), f"{threads} threads differ from 1"


class _InvertedResidual(torch.nn.Module):
    """1x1 expand (BN, SiLU) -> 3x3 stride-2 depthwise (BN, SiLU) -> 1x1 project (BN), with
    BatchNorm statistics that are not the identity."""

    def __init__(self) -> None:
        super().__init__()
        bn = torch.nn.BatchNorm2d
        self.pw = torch.nn.Sequential(
            torch.nn.Conv2d(16, 96, 1, bias=False), bn(96), torch.nn.SiLU()
        )
        self.dw = torch.nn.Sequential(
            torch.nn.Conv2d(96, 96, 3, 2, 1, groups=96, bias=False), bn(96), torch.nn.SiLU()
        )
        self.pwl = torch.nn.Sequential(torch.nn.Conv2d(96, 24, 1, bias=False), bn(24))
        _live_batchnorms(self, seed=5)

    def forward(self, x):
        return self.pwl(self.dw(self.pw(x)))


@needs_cc
def test_inverted_residual_is_fused_and_matches_pytorch(tmp_path) -> None:
    """64x64x96 expanded (1.5 MiB, above the exporter's fusion threshold): one fused call;
    the demo's output matches PyTorch and is bitwise the same at 1, 2 and 3 threads."""
    from timmx.c.export import export_c

    module = _InvertedResidual()
    prepared = custom_prepared(module, (16, 64, 64))
    gen = export_c(prepared, tmp_path / "out", prefix="ir", cc=CC)
    assert gen.kinds.get("conv_pw_dw") == 1, f"not fused: {gen.kinds}"
    assert "txk_conv2d_pw_dw(" in (tmp_path / "out" / "ir.c").read_text()
    _matches_pytorch_at_1_2_3_threads(module, prepared, tmp_path, "ir")


@needs_cc
@pytest.mark.parametrize("gate", ["SIGMOID", "HARDSIGMOID", "NONE"])
def test_gate_weights_conv_matches_the_gated_image(lib, gate) -> None:
    """conv(x, gated weights) against PyTorch's conv(x * gate(s)); the gated weights are
    bitwise the same at 1, 2, 3 and 7 threads."""
    h, w, k, n = 9, 13, 70, 37
    x = RNG.standard_normal((1, k, h, w)).astype(np.float32)
    s = RNG.standard_normal(k).astype(np.float32)
    wt = (RNG.standard_normal((n, k, 1, 1)) / np.sqrt(k)).astype(np.float32)
    b = RNG.standard_normal(n).astype(np.float32)
    act = {"SIGMOID": torch.sigmoid, "HARDSIGMOID": F.hardsigmoid, "NONE": lambda t: t}[gate]
    xt = torch.from_numpy(x) * act(torch.from_numpy(s)).reshape(1, k, 1, 1)
    ref = F.conv2d(xt, torch.from_numpy(wt), torch.from_numpy(b)).numpy()
    packed = T.aligned_copy(packing.pack_conv2d(wt, b, 1))
    outs = []
    for threads in (1, 2, 3, 7):
        ctx = lib.context(threads=threads)
        gated = T.aligned_empty(packed.size, fill=np.nan)
        args = (k, n, T.ptr(packed), T.ptr(s), abi.ENUMS["TXK_ACT_"][gate], T.ptr(gated))
        assert lib.lib.txk_gate_weights(C.byref(ctx), *args) == 0, f"{threads} threads"
        outs.append(gated.tobytes())
    assert all(o == outs[0] for o in outs), "gated weights differ across thread counts"
    d = _conv(1, h, w, k, n, 1, 1, 0, 1, "NONE")
    xn = T.aligned_copy(x.transpose(0, 2, 3, 1))
    y = T.aligned_empty(h * w * n)
    ctx = lib.context()
    args = (T.ptr(xn), T.ptr(gated), T.ptr(y), None, None)
    assert lib.lib.txk_conv2d(C.byref(ctx), C.byref(d), *args) == 0
    got = y.reshape(1, h, w, n).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, ref, atol=2e-5, rtol=1e-5)


class _GatedProjection(torch.nn.Module):
    """Depthwise conv -> squeeze-excite (timm's) -> 1x1 projection with a residual: at 48x48
    the projection's 24 outputs are few for the 2304 pixels, so the gate goes into its
    weights."""

    def __init__(self) -> None:
        super().__init__()
        from timm.layers import SqueezeExcite

        self.dw = torch.nn.Conv2d(24, 24, 3, 1, 1, groups=24)
        self.se = SqueezeExcite(24, rd_ratio=0.25)
        self.pwl = torch.nn.Conv2d(24, 24, 1)

    def forward(self, x):
        return x + self.pwl(self.se(torch.nn.functional.silu(self.dw(x))))


@needs_cc
def test_se_gate_is_folded_into_the_projection_and_matches_pytorch(tmp_path) -> None:
    from timmx.c.export import c_runner, export_c

    torch.manual_seed(3)
    module = _GatedProjection()
    prepared = custom_prepared(module, (24, 48, 48))
    gen = export_c(prepared, tmp_path / "out", prefix="se", cc=CC)
    assert gen.kinds.get("gate_weights") == 1 and "channel_scale" not in gen.kinds, gen.kinds
    x = prepared.sample_input()
    with torch.no_grad():
        ref = module(x).numpy().reshape(-1)
    got = c_runner(tmp_path / "out", "se", tmp_path / "b", cc=CC, threads=2)(x.numpy())
    np.testing.assert_allclose(np.asarray(got).reshape(-1), ref, atol=1e-4, rtol=1e-4)


class _Concat(torch.nn.Module):
    """Two convs and the input concatenated, then a DenseNet-like second concatenation that
    holds the first one and a conv of it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(8, 12, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 20, 1)
        self.c = torch.nn.Conv2d(40, 16, 3, padding=1, groups=8)

    def forward(self, x):
        y = torch.cat([torch.relu(self.a(x)), self.b(x), x], 1)
        return torch.cat([y, torch.nn.functional.silu(self.c(y))], 1) * 1.5


@needs_cc
def test_convs_write_their_concat_slices_and_match_pytorch(tmp_path) -> None:
    """The three convs write straight into their channel slices of the concatenations (no
    copy reads a conv's output); the C matches PyTorch."""
    from timmx.c.export import c_runner, export_c, lower
    from timmx.c.lower.ir import StepKind, pixel_stride

    torch.manual_seed(4)
    module = _Concat()
    prepared = custom_prepared(module, (8, 15, 13))
    steps = lower(prepared).steps
    convs = [s for s in steps if s.kind is StepKind.CONV]
    assert [pixel_stride(s.out) for s in convs] == [40, 40, 56], "convs do not write slices"
    writers: dict[int, list] = {}
    for s in steps:
        writers.setdefault(id(s.out.buf), []).append(s.kind)
    copies = [s for s in steps if s.kind is StepKind.COPY]
    left = [s for s in copies if writers.get(id(s.ins[0].buf)) == [StepKind.CONV]]
    assert not left, "a conv's output is still copied into a concatenation"
    # left: the input's layout change for each of its three readers, the first concatenation
    # into the second (the third conv reads it) and the NCHW output
    assert len(copies) == 5, [str(s.kind) for s in steps]
    export_c(prepared, tmp_path / "out", prefix="cc", cc=CC)
    x = prepared.sample_input()
    with torch.no_grad():
        ref = module(x).numpy().reshape(-1)
    got = c_runner(tmp_path / "out", "cc", tmp_path / "b", cc=CC, threads=2)(x.numpy())
    np.testing.assert_allclose(np.asarray(got).reshape(-1), ref, atol=1e-4, rtol=1e-4)


class _BasicBlock(torch.nn.Module):
    """A ResNet basic block (3x3 conv, BN, ReLU, 3x3 conv, BN, + x, ReLU) of 32 channels, with
    BatchNorm statistics that are not the identity: at 45x47 both convs are Winograd shapes
    (edge tiles on both sides)."""

    def __init__(self) -> None:
        super().__init__()
        bn = torch.nn.BatchNorm2d
        self.c1 = torch.nn.Sequential(torch.nn.Conv2d(32, 32, 3, 1, 1, bias=False), bn(32))
        self.c2 = torch.nn.Sequential(torch.nn.Conv2d(32, 32, 3, 1, 1, bias=False), bn(32))
        _live_batchnorms(self, seed=6)

    def forward(self, x):
        return torch.relu(x + self.c2(torch.relu(self.c1(x))))


@needs_cc
def test_basic_block_runs_winograd_and_matches_pytorch(tmp_path) -> None:
    """Both 3x3 convs are exported as Winograd F(4x4, 3x3) (weights in its layout); the demo's
    output matches PyTorch and is bitwise the same at 1, 2 and 3 threads."""
    from timmx.c.export import export_c
    from timmx.c.lower.passes.winograd import wins

    assert wins(1, 32, 32, 45, 47) and not wins(1, 32, 32, 7, 7) and not wins(1, 16, 16, 56, 56)
    module = _BasicBlock()
    prepared = custom_prepared(module, (32, 45, 47))
    gen = export_c(prepared, tmp_path / "out", prefix="bb", cc=CC)
    assert gen.kinds.get("conv") == 2, gen.kinds
    assert (tmp_path / "out" / "bb.c").read_text().count("TXK_CONV_WINOGRAD") == 2
    _matches_pytorch_at_1_2_3_threads(module, prepared, tmp_path, "bb")
