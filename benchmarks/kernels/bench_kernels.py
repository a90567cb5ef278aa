"""Micro-benchmark of the timmx C kernels (GFLOP/s per enumerated kernel, one thread).

Run: uv run python benchmarks/kernels/bench_kernels.py [--quick]
Peak on the reference Zen 5 core is about 230 GFLOP/s (AVX-512), ~120 for 256-bit code.
"""

import argparse
import ctypes as C
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "c_kernels"))
sys.path.insert(0, str(ROOT / "src"))
import txk_ctypes as T  # noqa: E402

from timmx.c import packing  # noqa: E402

# name, n, h, w, ic, oc, k, stride, pad, groups[, act (default relu)]
CONVS = [
    ("resnet 3x3 64->64 @56", 1, 56, 56, 64, 64, 3, 1, 1, 1),
    ("resnet 1x1 64->256 @56", 1, 56, 56, 64, 256, 1, 1, 0, 1),
    ("resnet 1x1 256->64 @56", 1, 56, 56, 256, 64, 1, 1, 0, 1),
    ("resnet 3x3 128->128 @28", 1, 28, 28, 128, 128, 3, 1, 1, 1),
    ("resnet 3x3 512->512 @7", 1, 7, 7, 512, 512, 3, 1, 1, 1),
    ("resnet stem 7x7/2 3->64 @224", 1, 224, 224, 3, 64, 7, 2, 3, 1),
    ("vit patchify 16x16/16 3->192", 1, 224, 224, 3, 192, 16, 16, 0, 1),
    ("convnext 1x1 96->384 @56", 1, 56, 56, 96, 384, 1, 1, 0, 1),
    ("dw 3x3 144 @56", 1, 56, 56, 144, 144, 3, 1, 1, 144),
    ("dw 7x7 96 @56 (convnext)", 1, 56, 56, 96, 96, 7, 1, 3, 96),
    ("dw 5x5/2 240 @28", 1, 28, 28, 240, 240, 5, 2, 2, 240),
    # efficientnet_b0 / mobilenetv3 shapes with their fused activations
    ("effb0 stem 3x3/2 3->32 @224 silu", 1, 224, 224, 3, 32, 3, 2, 1, 1, "silu"),
    ("effb0 pw 16->96 @112 silu", 1, 112, 112, 16, 96, 1, 1, 0, 1, "silu"),
    ("effb0 pw 24->144 @56 silu", 1, 56, 56, 24, 144, 1, 1, 0, 1, "silu"),
    ("effb0 pwl 144->24 @56", 1, 56, 56, 144, 24, 1, 1, 0, 1, "none"),
    ("effb0 pw 80->480 @14 silu", 1, 14, 14, 80, 480, 1, 1, 0, 1, "silu"),
    ("effb0 dw 3x3 32 @112 silu", 1, 112, 112, 32, 32, 3, 1, 1, 32, "silu"),
    ("effb0 dw 3x3/2 96 @112 silu", 1, 112, 112, 96, 96, 3, 2, 1, 96, "silu"),
    ("effb0 dw 3x3 144 @56 silu", 1, 56, 56, 144, 144, 3, 1, 1, 144, "silu"),
    ("effb0 dw 5x5 240 @28 silu", 1, 28, 28, 240, 240, 5, 1, 2, 240, "silu"),
    ("effb0 dw 5x5/2 144 @56 silu", 1, 56, 56, 144, 144, 5, 2, 2, 144, "silu"),
    ("mnv3 dw 3x3 64 @112 relu", 1, 112, 112, 64, 64, 3, 1, 1, 64, "relu"),
    ("mnv3 dw 3x3 240 @28 hswish", 1, 28, 28, 240, 240, 3, 1, 1, 240, "hardswish"),
]


def bench(fn, min_time: float) -> float:
    """Best single-call time over at least min_time seconds (robust to a busy machine)."""
    fn()
    best, total = float("inf"), 0.0
    while total < min_time:
        t0 = time.perf_counter()
        fn()
        t = time.perf_counter() - t0
        best, total = min(best, t), total + t
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--filter", default="")
    args = ap.parse_args()
    min_time = 0.05 if args.quick else 0.3
    lib = T.Lib(T.build_shared(Path(tempfile.mkdtemp()), extra=[]))
    rng = np.random.default_rng(0)
    print(f"{'conv':32s} {'kernel':42s} {'ms':>8s} {'GFLOP/s':>8s}")
    for name, n, h, w, ic, oc, k, s, p, g, *rest in CONVS:
        act = rest[0] if rest else "relu"
        if args.filter not in name:
            continue
        oh = (h + 2 * p - k) // s + 1
        ow = (w + 2 * p - k) // s + 1
        d = T.Conv2dDesc(n, h, w, ic, oh, ow, oc, k, k, s, s, p, p, p, p, 1, 1, g)
        d.epilogue = T.Epilogue(T.ACT[act], 0, 0, 0)
        x = rng.standard_normal(n * h * w * ic).astype(np.float32)
        wt = rng.standard_normal((oc, ic // g, k, k)).astype(np.float32)
        packed = T.aligned_copy(packing.pack_conv2d(wt, np.zeros(oc, np.float32), g))
        ss = lib.lib.txk_conv2d_scratch_size(C.byref(d))
        scratch = T.aligned_empty(max(ss // 4, 1))
        y = np.empty(n * oh * ow * oc, np.float32)
        flops = 2.0 * n * oh * ow * oc * (ic // g) * k * k
        fam = T.FAMILY_DWCONV if g == ic == oc else T.FAMILY_GEMM
        for idx, kname, isa, _, _ in lib.kernels(fam):
            if not lib.supported(isa):
                continue
            if isa == T.ISA_SCALAR and args.quick:
                continue
            ctx = lib.context(fam, idx)
            args_ = (C.byref(ctx), C.byref(d), T.ptr(x), T.ptr(packed), T.ptr(y), None)
            args_ += (T.ptr(scratch),)

            def run(a=args_):
                rc = lib.lib.txk_conv2d(*a)
                assert rc == 0, rc

            t = bench(run, min_time)
            print(f"{name:32s} {kname:42s} {t * 1e3:8.3f} {flops / t / 1e9:8.1f}", flush=True)


if __name__ == "__main__":
    main()
