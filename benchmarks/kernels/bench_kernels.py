"""Micro-benchmark of the timmx C kernels (one thread, or --threads): every micro-kernel the
library enumerates (txk_ukernel_count/get, i.e. the list src/timmx/c/kernels/src/internal/
txk_ukernels.h) on model-sized cases of its family: GEMM and depthwise convs (GFLOP/s),
elementwise activations and row ops (Gelem/s), Winograd F(4x4, 3x3) convs against the direct
conv (GFLOP/s in direct-conv multiply-adds, and the speed-up).

Run: uv run python benchmarks/kernels/bench_kernels.py [--quick] [--filter TEXT] [--threads N]
     [--cc clang]       (the compiler; default $CC, else gcc)
     [--kernels DIR]    (another copy of src/timmx/c/kernels, e.g. an older commit's, to
                        compare before/after in one session: git archive <rev>
                        src/timmx/c/kernels | tar -x -C /tmp/old)
Peak on the reference Zen 5 core is about 230 GFLOP/s (AVX-512), ~120 for 256-bit code.
"""

import argparse
import ctypes as C
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "c" / "kernels"))
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


def build(kernels: Path, out: Path, cc: str = "gcc") -> Path:
    """Compile kernels/src/*.c (as the generated Makefile does, plus -fPIC) into a .so."""
    flags = [*T.CFLAGS, f"-I{kernels / 'include'}", f"-I{kernels / 'src'}"]

    def one(src: Path) -> str:
        obj = out / (src.stem + ".o")
        subprocess.run([cc, *flags, "-c", str(src), "-o", str(obj)], check=True)
        return str(obj)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        objs = list(ex.map(one, sorted((kernels / "src").glob("*.c"))))
    lib = out / "libtxk.so"
    subprocess.run([cc, "-shared", *objs, "-o", str(lib), "-lm"], check=True)
    return lib


def row(family: str, name: str, kname: str, t: float, work: float, unit: str) -> None:
    print(f"{family:7s} {name:32s} {kname:42s} {t * 1e3:8.3f} {work / t / 1e9:8.2f} {unit}")


def kernels_of(lib: T.Lib, family: int, quick: bool, threads: int = 1):
    for idx, kname, isa, _, _ in lib.kernels(family):
        if lib.supported(isa) and not (quick and isa == T.ISA_SCALAR):
            yield kname, lib.context(family, idx, threads=threads)


def bench_convs(lib: T.Lib, args, min_time: float, rng) -> None:
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
        dw = g == ic == oc
        fam = T.FAMILY_DWCONV if dw else T.FAMILY_GEMM
        for kname, ctx in kernels_of(lib, fam, args.quick, args.threads):
            args_ = (C.byref(ctx), C.byref(d), T.ptr(x), T.ptr(packed), T.ptr(y), None)
            args_ += (T.ptr(scratch),)

            def run(a=args_):
                rc = lib.lib.txk_conv2d(*a)
                assert rc == 0, rc

            row("dwconv" if dw else "gemm", name, kname, bench(run, min_time), flops, "GFLOP/s")


# name, output size, in channels, out channels (3x3, stride 1, pad 1, ReLU)
WINOGRAD = [
    ("resnet 3x3 64->64 @56", 56, 64, 64),
    ("resnet 3x3 128->128 @28", 28, 128, 128),
    ("resnet 3x3 256->256 @14", 14, 256, 256),
    ("resnet 3x3 512->512 @7", 7, 512, 512),
    ("3x3 32->32 @112", 112, 32, 32),
    ("densenet 3x3 128->32 @28", 28, 128, 32),
]


def bench_winograd(lib: T.Lib, args, min_time: float, rng) -> None:
    """Each wino kernel's Winograd conv against the direct conv on the default GEMM kernel."""
    for name, hw, ic, oc in WINOGRAD:
        if args.filter not in name:
            continue
        descs = []
        for algo in (0, 1):
            d = T.Conv2dDesc(1, hw, hw, ic, hw, hw, oc, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1)
            d.epilogue = T.Epilogue(T.ACT["relu"], 0, 0, 0)
            d.algo = algo
            descs.append(d)
        x = rng.standard_normal(hw * hw * ic).astype(np.float32)
        wt = rng.standard_normal((oc, ic, 3, 3)).astype(np.float32)
        b = np.zeros(oc, np.float32)
        packs = [packing.pack_conv2d(wt, b, 1), packing.pack_conv2d_winograd(wt, b)]
        y = np.empty(hw * hw * oc, np.float32)
        flops = 2.0 * hw * hw * oc * ic * 9
        times = {}
        runs = [("direct", 0, lib.context(threads=args.threads))]
        runs += [(k, 1, c) for k, c in kernels_of(lib, T.FAMILY_WINO, args.quick, args.threads)]
        for kname, algo, ctx in runs:
            d, packed = descs[algo], T.aligned_copy(packs[algo])
            scratch = T.aligned_empty(max(lib.lib.txk_conv2d_scratch_size(C.byref(d)) // 4, 1))
            a = (C.byref(ctx), C.byref(d), T.ptr(x), T.ptr(packed), T.ptr(y), None, T.ptr(scratch))

            def run(a=a):
                rc = lib.lib.txk_conv2d(*a)
                assert rc == 0, rc

            times[kname] = bench(run, min_time)
            note = "" if algo == 0 else f"  x{times['direct'] / times[kname]:.2f} vs direct"
            row("wino", name, kname, times[kname], flops, "GFLOP/s" + note)


# name, act, elements (txk_unary: the VUNARY family)
UNARY = [
    ("silu 56x56x144", "silu", 56 * 56 * 144),
    ("gelu 197x3072 (vit mlp)", "gelu", 197 * 3072),
    ("hardswish 28x28x240", "hardswish", 28 * 28 * 240),
    ("sigmoid 1x1x960 (se gate)", "sigmoid", 960),
]
# name, op, rows, c (txk_layernorm / txk_softmax / txk_binary: the ROWOP family)
ROWOPS = [
    ("layernorm 197x768 (vit)", "layernorm", 197, 768),
    ("layernorm 3136x96 (convnext)", "layernorm", 3136, 96),
    ("softmax 3x197x197 (vit attn)", "softmax", 3 * 197, 197),
    ("add+relu 56x56x256 (resnet)", "add_relu", 56 * 56, 256),
]


def bench_unary(lib: T.Lib, args, min_time: float, rng) -> None:
    for name, act, n in UNARY:
        if args.filter not in name:
            continue
        x = rng.standard_normal(n).astype(np.float32)
        y = np.empty_like(x)
        for kname, ctx in kernels_of(lib, T.FAMILY_VUNARY, args.quick, args.threads):
            a = (C.byref(ctx), T.ACT[act], 0.0, 6.0, n, T.ptr(x), T.ptr(y))

            def run(a=a):
                assert lib.lib.txk_unary(*a) == 0

            row("vunary", name, kname, bench(run, min_time), n, "Gelem/s")


def bench_rowops(lib: T.Lib, args, min_time: float, rng) -> None:
    for name, op, rows, c in ROWOPS:
        if args.filter not in name:
            continue
        x = rng.standard_normal(rows * c).astype(np.float32)
        b = rng.standard_normal(rows * c).astype(np.float32)
        g = rng.standard_normal(c).astype(np.float32)
        y = np.empty_like(x)
        for kname, ctx in kernels_of(lib, T.FAMILY_ROWOP, args.quick, args.threads):
            if op == "layernorm":
                a = (C.byref(ctx), rows, c, T.ptr(x), 0, T.ptr(y), 0, T.ptr(g), T.ptr(g))
                a += (C.c_float(1e-6),)
                fn = lib.lib.txk_layernorm
            elif op == "softmax":
                a = (C.byref(ctx), rows, c, T.ptr(x), 0, T.ptr(y), 0)
                fn = lib.lib.txk_softmax
            else:
                d = T.BinaryDesc(T.BIN["add"], 1, rows, c, 0, c, 1, 0, c, 1, 0, c)
                d.epilogue = T.Epilogue(T.ACT["relu"], 0, 0, 0)
                a = (C.byref(ctx), C.byref(d), T.ptr(x), T.ptr(b), T.ptr(y))
                fn = lib.lib.txk_binary

            def run(fn=fn, a=a):
                assert fn(*a) == 0

            row("rowop", name, kname, bench(run, min_time), rows * c, "Gelem/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter runs, no scalar kernels")
    ap.add_argument("--filter", default="", help="only cases whose name contains this")
    ap.add_argument("--threads", type=int, default=1, help="threads of the kernels' pool")
    ap.add_argument("--kernels", type=Path, default=T.KERNELS_DIR, help="kernel library dir")
    ap.add_argument(
        "--cc", default=os.environ.get("CC") or "gcc", help="compiler (default $CC, gcc)"
    )
    args = ap.parse_args()
    min_time = 0.05 if args.quick else 0.3
    lib = T.Lib(build(args.kernels.resolve(), Path(tempfile.mkdtemp()), args.cc))
    rng = np.random.default_rng(0)
    print(f"{'family':7s} {'case':32s} {'kernel':42s} {'ms':>8s} {'rate':>8s}")
    bench_convs(lib, args, min_time, rng)
    bench_winograd(lib, args, min_time, rng)
    bench_unary(lib, args, min_time, rng)
    bench_rowops(lib, args, min_time, rng)


if __name__ == "__main__":
    main()
