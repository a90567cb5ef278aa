"""Latency of timmx's generated C against onnxruntime and PyTorch eager, one thread each.

    uv run python benchmarks/bench_c.py                       # the five reference models
    uv run python benchmarks/bench_c.py resnet50 --runs 30    # any timm models
    uv run python benchmarks/bench_c.py --json results.json   # also write the figures

For each model (random weights, batch 1, the model's default input size) it exports the
generated C (compiled with $CC or cc, flags from --cflags), the ONNX file of timmx's onnx
backend (run by onnxruntime with 1 intra-op thread and ORT_ENABLE_ALL), and runs PyTorch eager
with torch.set_num_threads(1), all on the same input. It prints one table (median latency, ratio
to onnxruntime, GFLOP/s and percent of the machine's single-core FP32 peak). The table's columns
and their order are fixed so that outputs can be compared over time.
"""

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MODELS = [
    "resnet50",
    "mobilenetv3_large_100",
    "efficientnet_b0",
    "convnext_tiny",
    "vit_tiny_patch16_224",
]


def cpu_peak_gflops() -> tuple[float, str]:
    """Single-core FP32 peak: FLOPs/cycle from the ISA (2 FMA pipes) x the max clock."""
    flags, mhz, name = "", 0.0, platform.processor() or "unknown cpu"
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split()
        name = re.search(r"^model name\s*:(.*)$", text, re.M).group(1).strip()
        mhz = float(re.search(r"^cpu MHz\s*:(.*)$", text, re.M).group(1))
    except (OSError, AttributeError, ValueError):
        pass
    with contextlib.suppress(OSError, ValueError):
        mhz = max(
            mhz,
            int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1000,
        )
    if "avx512f" in flags:
        per_cycle, isa = 64, "avx512"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, isa = 32, "avx2"
    elif platform.machine() in ("aarch64", "arm64"):
        per_cycle, isa = 16, "neon"
    else:
        per_cycle, isa = 8, "sse"
    mhz = mhz or 3000.0
    return per_cycle * mhz / 1000.0, f"{name}, {isa}, {per_cycle} FLOP/cycle x {mhz:.0f} MHz"


PEAK_SRC = r"""
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
int main(void) {
  VEC acc[NACC];
  const VEC a = SET1(0.999999f), b = SET1(1e-7f);
  long i, iters = 20000000;
  int k;
  double t0, best = 1e30;
  float sink = 0;
  for (int rep = 0; rep < 5; rep++) {
    for (k = 0; k < NACC; k++) acc[k] = SET1((float)k);
    t0 = now();
    for (i = 0; i < iters; i++)
      for (k = 0; k < NACC; k++) acc[k] = FMA(acc[k], a, b);
    t0 = now() - t0;
    if (t0 < best) best = t0;
    for (k = 0; k < NACC; k++) sink += ((float*)&acc[k])[0];
  }
  printf("%f %f\n", 2.0 * LANES * NACC * (double)iters / best / 1e9, sink);
  return 0;
}
"""


def measured_peak_gflops(isa: str) -> float | None:
    """Single-core FP32 FMA throughput measured with a register-only loop (None if it fails)."""
    from timmx.c.build import find_compiler

    cc = find_compiler()
    if cc is None or isa not in ("avx512", "avx2"):
        return None
    if isa == "avx512":
        defs = [
            "-DVEC=__m512",
            "-DSET1=_mm512_set1_ps",
            "-DFMA=_mm512_fmadd_ps",
            "-DLANES=16",
            "-DNACC=16",
            "-mavx512f",
            "-mfma",
        ]
    else:
        defs = [
            "-DVEC=__m256",
            "-DSET1=_mm256_set1_ps",
            "-DFMA=_mm256_fmadd_ps",
            "-DLANES=8",
            "-DNACC=12",
            "-mavx2",
            "-mfma",
        ]
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "peak.c", Path(tmp) / "peak"
        src.write_text(PEAK_SRC)
        build = subprocess.run(
            [*cc, "-O3", "-funroll-loops", *defs, str(src), "-o", str(exe)], capture_output=True
        )
        if build.returncode != 0:
            return None
        out = subprocess.run([str(exe)], capture_output=True, text=True)
        try:
            return float(out.stdout.split()[0])
        except (IndexError, ValueError):
            return None


def median_ms(fn, runs: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def count_flops(module, x) -> float:
    """FLOPs of one forward pass (multiply-add = 2), from torch's flop counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(x)
    return float(counter.get_total_flops())


def bench_model(name: str, runs: int, cflags: list[str], work: Path) -> dict:
    """Time one model in the three runtimes."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from timmx.backends._onnx_graph import export_onnx
    from timmx.c.build import build_demo, require_compiler, run_demo
    from timmx.c.export import export_c
    from timmx.core.job import CommonOptions
    from timmx.core.model import prepare_model

    torch.manual_seed(0)
    prepared = prepare_model(name, CommonOptions())
    x = prepared.sample_input()
    ref = prepared.run(x).numpy()
    flops = count_flops(prepared.module, x)
    row: dict = {"model": name, "input": list(prepared.input_shape), "gflop": flops / 1e9}

    # generated C
    cc = require_compiler()
    t0 = time.perf_counter()
    gen = export_c(prepared, work / name / "c", prefix="m", cc=cc)
    row["c_export_s"] = time.perf_counter() - t0
    exe = build_demo(work / name / "c", "m", work / name / "build", cc=cc, flags=tuple(cflags))
    raw = work / name / "input.raw"
    out = work / name / "output.raw"
    x.numpy().astype(np.float32).tofile(raw)
    weights = str(work / name / "c" / "m_weights.bin")
    proc = run_demo(exe, ["--bench", str(runs), weights, str(raw), str(out)])
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: C demo failed: {proc.stderr}")
    match = re.search(r"median_ms ([0-9.]+) min_ms ([0-9.]+) runs \d+ isa (\S+)", proc.stdout)
    row["c_ms"] = float(match.group(1))
    row["c_isa"] = match.group(3)
    row["c_max_abs_err"] = float(
        np.abs(np.fromfile(out, np.float32).reshape(ref.shape) - ref).max()
    )
    row["c_steps"] = gen.steps
    row["c_arena_mb"] = gen.arena_bytes / 1e6

    # onnxruntime, the same model through timmx's onnx backend
    onnx_path = work / name / "model.onnx"
    export_onnx(prepared, onnx_path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x.numpy()}
    row["ort_ms"] = median_ms(lambda: sess.run(None, feed), runs)

    # PyTorch eager
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            row["torch_ms"] = median_ms(lambda: prepared.module(x), runs)
    finally:
        torch.set_num_threads(threads)
    return row


HEADER = (
    f"{'model':<24} {'GFLOP':>7} {'C ms':>9} {'ORT ms':>9} {'torch ms':>9} {'C/ORT':>6} "
    f"{'C GF/s':>7} {'C %pk':>6} {'ORT GF/s':>8} {'ORT %pk':>7} {'C maxerr':>9}"
)


def format_row(r: dict, peak: float) -> str:
    """One table line (fixed columns)."""
    c_gfs = r["gflop"] / (r["c_ms"] / 1e3)
    o_gfs = r["gflop"] / (r["ort_ms"] / 1e3)
    return (
        f"{r['model']:<24} {r['gflop']:>7.3f} {r['c_ms']:>9.2f} {r['ort_ms']:>9.2f} "
        f"{r['torch_ms']:>9.2f} {r['c_ms'] / r['ort_ms']:>6.2f} {c_gfs:>7.1f} "
        f"{100 * c_gfs / peak:>5.1f}% {o_gfs:>8.1f} {100 * o_gfs / peak:>6.1f}% "
        f"{r['c_max_abs_err']:>9.2e}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--runs", type=int, default=20, help="timed runs per runtime")
    parser.add_argument("--cflags", default="-O2", help="flags for the generated C")
    parser.add_argument("--peak-gflops", type=float, help="override the computed core peak")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    peak, how = cpu_peak_gflops()
    isa = how.split(", ")[1] if ", " in how else ""
    measured = measured_peak_gflops(isa)
    if measured:
        peak, how = measured, f"{how.split(',')[0]}, {isa}, measured FMA loop"
    if args.peak_gflops:
        peak, how = args.peak_gflops, "given with --peak-gflops"
    import onnxruntime
    import torch

    from timmx.c.build import compiler_id, require_compiler

    print(f"# timmx C target benchmark (batch 1, 1 thread, median of {args.runs} runs)")
    print(f"# cpu: {how}; peak {peak:.1f} GFLOP/s per core")
    print(
        f"# C: {compiler_id(require_compiler())} {args.cflags}; onnxruntime "
        f"{onnxruntime.__version__}; torch {torch.__version__}; python {sys.version.split()[0]}"
    )
    print(HEADER)
    rows = []
    with tempfile.TemporaryDirectory(prefix="timmx-bench-c-") as tmp:
        for name in args.models:
            row = bench_model(name, args.runs, args.cflags.split(), Path(tmp))
            rows.append(row)
            print(format_row(row, peak), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"peak_gflops": peak, "cpu": how, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
