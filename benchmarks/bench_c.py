"""Latency of timmx's generated C against onnxruntime, LiteRT and ExecuTorch at the same thread
counts, on the same live-weights model and the same input, in one run.

    uv run python benchmarks/bench_c.py --threads 1,2                # the five reference models
    uv run python benchmarks/bench_c.py resnet50 --threads 1,2,4 --runs 30
    uv run python benchmarks/bench_c.py --threads 1,2 --profile      # + the C profile per kind
    uv run python benchmarks/bench_c.py --json results.json          # also write the figures

For each model (batch 1, the model's default input size, one real photo through its eval
transform, weights from :func:`timmx.testing.live_weights`, seed 0, cached under --weights-dir)
it exports

- the generated C (compiled with $CC or cc and --cflags into a shared object with the kernel
  library), loaded with ctypes: ``m_init(..., N)`` starts the pool, each timed call is one
  ``m_run``;
- the ONNX file of timmx's onnx backend, run by onnxruntime (CPU provider, ORT_ENABLE_ALL,
  ``intra_op_num_threads`` = N, sequential execution);
- where installed, the LiteRT file of timmx's litert backend (fp32; the interpreter's XNNPACK
  delegate with ``num_threads`` = N) and the ExecuTorch program of its executorch backend (fp32,
  XNNPACK; the runtime's threadpool reset to N threads);

and times them in the same process on the same input, interleaved: --rounds rounds of
RUNS / rounds calls of each runtime in turn (after 3 warm-up calls each), so that a change in
the machine's load hits all of them alike. It prints one row per model and thread count (the
median ms over RUNS calls; ratios are C's latency over each peer's), then the 1 -> N scaling
of each runtime. Artifacts are kept in --work (reused when present: delete it after changing the
generator or the kernels).
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


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _peer_export(fmt: str, name: str, checkpoint, path: Path, reuse: bool) -> str | None:
    """Export ``name`` to ``fmt`` (fp32) at ``path`` with timmx (None), or why it failed."""
    import timmx

    if reuse and path.exists():
        return None
    weights = {} if checkpoint is None else {"checkpoint": checkpoint}
    try:
        with contextlib.redirect_stdout(sys.stderr):
            timmx.export(fmt, name, output=path, verify=False, **weights)
    except Exception as exc:  # a peer that does not export is reported, not fatal
        return f"{type(exc).__name__}: {str(exc).strip()[:200]}"
    return None


def _max_err(out, ref) -> float:
    import numpy as np

    return float(np.abs(np.asarray(out, dtype=np.float32).reshape(ref.shape) - ref).max())


def _c_demo(exe: Path, weights: str, raw: Path, out: Path, threads: int, runs: int):
    """(median ms, stderr) of the demo at ``threads`` threads."""
    args = ["--threads", str(threads), "--bench", str(runs), weights, str(raw), str(out)]
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"C demo failed: {proc.stderr[-2000:]}")
    match = re.search(r"median_ms ([0-9.]+) .* isa (\S+) threads (\d+)", proc.stdout)
    if int(match.group(3)) != threads:
        raise RuntimeError(f"the demo ran {match.group(3)} threads, not {threads}")
    return float(match.group(1)), match.group(2), proc.stderr


def parse_profile(text: str) -> list[dict]:
    """The per-step-kind lines of a -DTXM_PROFILE demo's stderr."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 7 and parts[0] == "kind" and parts[1] != "total":
            kind, steps, ms, pct, gflop, gfs = parts[1:]
            rows.append(
                {
                    "kind": kind,
                    "steps": int(steps),
                    "ms": float(ms),
                    "pct": float(pct.rstrip("%")),
                    "gflop": float(gflop),
                    "gflops": float(gfs),
                }
            )
    return rows


def photo_input(prepared):
    """One real photo through the model's eval transform (the model's sample input if the
    photos are not available)."""
    try:
        from timmx.testing.images import photo_batch

        config = {
            "mean": prepared.mean,
            "std": prepared.std,
            "interpolation": prepared.interpolation,
            "crop_pct": prepared.crop_pct,
        }
        x = photo_batch(tuple(prepared.input_shape[-3:]), config, 1, seed=0)
        return x.reshape(prepared.sample_input().shape).float()
    except Exception as exc:  # the photos are optional test data
        print(f"# no photo input ({type(exc).__name__}: {exc}); using the sample input")
        return prepared.sample_input()


def bench_model(name: str, args, work: Path) -> list[dict]:
    """Time one model in every runtime at every thread count; one row per thread count."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from timmx.backends._onnx_graph import export_onnx
    from timmx.c.build import build_demo, require_compiler
    from timmx.c.export import export_c
    from timmx.c.inprocess import LoadedModel, build_shared
    from timmx.core.bench.worker import live_checkpoint
    from timmx.core.job import CommonOptions
    from timmx.core.model import prepare_model

    here = work / name
    here.mkdir(parents=True, exist_ok=True)
    checkpoint = None if args.random_weights else live_checkpoint(name, {}, args.weights_dir)
    torch.manual_seed(0)
    prepared = prepare_model(name, CommonOptions(checkpoint=checkpoint))
    x = photo_input(prepared)
    ref = prepared.run(x).numpy()
    xn = x.numpy().astype(np.float32)
    base = {"model": name, "input": list(prepared.input_shape)}
    base["gflop"] = count_flops(prepared.module, x) / 1e9
    base["weights"] = "random" if checkpoint is None else "live (seed 0)"

    # generated C: the timing build and (--profile) a -DTXM_PROFILE build
    cc = require_compiler()
    cdir = here / "c"
    if not (args.reuse and (cdir / "m.h").exists()):
        gen = export_c(prepared, cdir, prefix="m", cc=cc)
        (here / "c_steps.txt").write_text(str(gen.steps))
    base["c_steps"] = int((here / "c_steps.txt").read_text())
    flags = tuple(args.cflags.split())
    c_lib = build_shared(cdir, "m", here / "build-so", cc, flags)
    prof_exe = None
    if args.profile:
        prof_exe = build_demo(
            cdir, "m", here / "build-prof", cc=cc, flags=(*flags, "-DTXM_PROFILE")
        )
    raw = here / "input.raw"
    xn.tofile(raw)
    weights = str(cdir / "m_weights.bin")

    # peers
    onnx_path = here / "model.onnx"
    if not (args.reuse and onnx_path.exists()):
        export_onnx(prepared, onnx_path)
    peers: dict[str, Path | None] = {}
    for fmt, module, suffix, flag in (
        ("litert", "ai_edge_litert", ".tflite", args.no_litert),
        ("executorch", "executorch", ".pte", args.no_executorch),
    ):
        if flag or not _installed(module):
            base[f"{fmt}_note"] = "skipped" if flag else f"{module} not installed"
            continue
        path = here / f"model{suffix}"
        why = _peer_export(fmt, name, checkpoint, path, args.reuse)
        if why:
            base[f"{fmt}_note"] = why
            print(f"# {name}: {fmt} export failed: {why}", file=sys.stderr)
            continue
        peers[fmt] = path

    rows = []
    for threads in args.threads:
        row = dict(base, threads=threads)
        runners: dict = {}
        closers = []
        c_model = LoadedModel(c_lib, cdir, "m", threads)
        c_model.set_input(xn)
        closers.append(c_model.close)
        runners["c"] = (c_model.run, c_model.output)
        row["c_isa"], row["c_threads"] = c_model.isa, c_model.threads

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: xn}
        ort_out: list = []
        runners["ort"] = (
            lambda s=sess, f=feed, o=ort_out: o.__setitem__(slice(None), s.run(None, f)),
            lambda o=ort_out: o[0],
        )

        if "litert" in peers:
            from ai_edge_litert.interpreter import Interpreter

            it = Interpreter(model_path=str(peers["litert"]), num_threads=threads)
            it.allocate_tensors()
            src, dst = it.get_input_details()[0], it.get_output_details()[0]
            it.set_tensor(src["index"], xn)
            runners["litert"] = (it.invoke, lambda i=it, k=dst["index"]: i.get_tensor(k))

        if "executorch" in peers:
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime

            portable_lib._unsafe_reset_threadpool(int(threads))
            row["executorch_threads"] = int(portable_lib._threadpool_get_thread_count())
            method = Runtime.get().load_program(peers["executorch"]).load_method("forward")
            et_out: list = []
            runners["executorch"] = (
                lambda m=method, o=et_out: o.__setitem__(slice(None), m.execute((x,))),
                lambda o=et_out: o[0].numpy(),
            )

        # the pause matters only where pools spin (1 thread: none); at 1 thread it made
        # onnxruntime's median 2-5% slower (resnet50 59.3 -> 60.6 ms, vit_tiny 25.2 -> 26.6)
        settle = args.settle if threads > 1 else 0.0
        times = interleaved(runners, args.runs, args.rounds, settle=settle)
        for key, samples in times.items():
            row[f"{key}_ms"] = statistics.median(samples)
            row[f"{key}_min_ms"] = min(samples)
            row[f"{key}_max_abs_err"] = _max_err(runners[key][1](), ref)
        for close in closers:
            close()

        if prof_exe is not None:
            _, _, err = _c_demo(prof_exe, weights, raw, here / "prof.raw", threads, args.runs)
            row["c_profile"] = parse_profile(err)
        gfs = row["gflop"] / (row["c_ms"] / 1e3)
        row["c_pct_peak"] = 100 * gfs / (args.peak * threads)
        rows.append(row)
        print(format_row(row, args.peak), flush=True)
    return rows


def interleaved(
    runners: dict, runs: int, rounds: int, warmup: int = 3, settle: float = 0.5, rewarm: int = 2
) -> dict:
    """Wall times (ms) of ``runs`` calls of each runner, taken in ``rounds`` interleaved rounds
    (C, ORT, LiteRT, ExecuTorch, C, ...) so that a change in the machine's load hits all alike.

    Before each runner's batch the process sleeps ``settle`` seconds and the runner makes
    ``rewarm`` untimed calls: thread pools keep spinning after their last call (onnxruntime's
    workers for tens of ms by default), and on 2 cores the next runtime's threads would share
    the cores with them. Without it the C's median at 2 threads on mobilenetv3_large_100 went
    from 3.1 ms to 7.2 ms right after onnxruntime's batches."""
    for fn, _ in runners.values():
        for _ in range(warmup):
            fn()
    times: dict = {key: [] for key in runners}
    rounds = max(1, min(rounds, runs))
    for r in range(rounds):
        n = runs * (r + 1) // rounds - runs * r // rounds
        for key, (fn, _) in runners.items():
            time.sleep(settle)
            for _ in range(rewarm):
                fn()
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                times[key].append((time.perf_counter() - t0) * 1e3)
    return times


PEERS = (("ort", "ORT"), ("litert", "LiteRT"), ("executorch", "ExecuTorch"))
HEADER = (
    f"{'model':<24} {'GFLOP':>6} {'thr':>3} {'C ms':>8} {'ORT ms':>8} {'C/ORT':>6} "
    f"{'LiteRT ms':>9} {'C/LiteRT':>8} {'ExecuTorch ms':>13} {'C/ET':>6} {'C GF/s':>7} "
    f"{'C %pk':>6} {'C maxerr':>9}"
)


def _cell(row: dict, key: str, width: int, ratio: bool = False) -> str:
    value = row.get(f"{key}_ms")
    if value is None:
        return f"{'-':>{width}}"
    if ratio:
        return f"{row['c_ms'] / value:>{width}.2f}"
    return f"{value:>{width}.2f}"


def format_row(r: dict, peak: float) -> str:
    """One table line (fixed columns; ratios are C's latency over the peer's: < 1 = C faster)."""
    gfs = r["gflop"] / (r["c_ms"] / 1e3)
    return (
        f"{r['model']:<24} {r['gflop']:>6.2f} {r['threads']:>3} {r['c_ms']:>8.2f} "
        f"{_cell(r, 'ort', 8)} {_cell(r, 'ort', 6, True)} {_cell(r, 'litert', 9)} "
        f"{_cell(r, 'litert', 8, True)} {_cell(r, 'executorch', 13)} "
        f"{_cell(r, 'executorch', 6, True)} {gfs:>7.1f} "
        f"{100 * gfs / (peak * r['threads']):>5.1f}% {r['c_max_abs_err']:>9.2e}"
    )


def scaling_table(rows: list[dict]) -> list[str]:
    """Speed-up from the first thread count to each other, per model and runtime."""
    lines = []
    by_model: dict[str, dict[int, dict]] = {}
    for r in rows:
        by_model.setdefault(r["model"], {})[r["threads"]] = r
    for model, per in by_model.items():
        counts = sorted(per)
        for t in counts[1:]:
            a, b = per[counts[0]], per[t]
            cells = []
            for key, label in (("c", "C"), *PEERS):
                if a.get(f"{key}_ms") and b.get(f"{key}_ms"):
                    cells.append(f"{label} {a[f'{key}_ms'] / b[f'{key}_ms']:.2f}x")
            lines.append(f"{model:<24} {counts[0]} -> {t} threads: " + ", ".join(cells))
    return lines


def profile_lines(rows: list[dict]) -> list[str]:
    """The C's per-step-kind profile of every row that has one (markdown-ready)."""
    lines = []
    for r in rows:
        if not r.get("c_profile"):
            continue
        lines.append(
            f"# profile {r['model']} {r['threads']} thread(s) (C total {r['c_ms']:.2f} ms)"
        )
        for k in sorted(r["c_profile"], key=lambda k: -k["ms"]):
            gfs = f"{k['gflops']:.1f}" if k["gflop"] else "-"
            lines.append(
                f"#   {k['kind']:<16} {k['steps']:>4} steps {k['ms']:>9.3f} ms {k['pct']:>5.1f}% "
                f"{k['gflop']:>7.3f} GFLOP {gfs:>7} GFLOP/s"
            )
    return lines


def markdown(rows: list[dict], header: list[str]) -> str:
    """The figures as markdown: the latency table, the scaling and each model's profile per
    step kind side by side for every thread count (for docs/c.md)."""
    out = [*(f"    {h}" for h in header), ""]
    out.append(
        "| model | threads | C ms | ORT ms | C/ORT | LiteRT ms | C/LiteRT | ExecuTorch ms | C/ET "
        "| C GFLOP/s | C % of peak x threads |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")

    def cell(r: dict, key: str, ratio: bool = False) -> str:
        v = r.get(f"{key}_ms")
        if v is None:
            return "-"
        return f"{r['c_ms'] / v:.2f}" if ratio else f"{v:.2f}"

    for r in rows:
        gfs = r["gflop"] / (r["c_ms"] / 1e3)
        out.append(
            f"| {r['model']} | {r['threads']} | {r['c_ms']:.2f} | {cell(r, 'ort')} | "
            f"{cell(r, 'ort', True)} | {cell(r, 'litert')} | {cell(r, 'litert', True)} | "
            f"{cell(r, 'executorch')} | {cell(r, 'executorch', True)} | {gfs:.1f} | "
            f"{r['c_pct_peak']:.1f}% |"
        )
    scaling = scaling_table(rows)
    if scaling:
        out += ["", "Scaling (latency at the first thread count / latency at the other):", ""]
        out += [f"- {line.strip()}" for line in scaling]
    by_model: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("c_profile"):
            by_model.setdefault(r["model"], []).append(r)
    for model, per in by_model.items():
        kinds: list[str] = []
        for r in per:
            for k in sorted(r["c_profile"], key=lambda k: -k["ms"]):
                if k["kind"] not in kinds:
                    kinds.append(k["kind"])
        cols = " | ".join(f"{r['threads']} thr ms | GFLOP/s" for r in per)
        out += [
            "",
            f"**{model}** (C, -DTXM_PROFILE: each step's fastest call, summed per step kind, ms)",
            "",
        ]
        out.append(f"| kind | steps | GFLOP | {cols} |")
        out.append("|---|---|---|" + "---|---|" * len(per))
        for kind in kinds:
            first = next(k for r in per for k in r["c_profile"] if k["kind"] == kind)
            cells = []
            for r in per:
                k = next((k for k in r["c_profile"] if k["kind"] == kind), None)
                if k is None:
                    cells.append("- | -")
                else:
                    gfs = f"{k['gflops']:.1f}" if k["gflop"] else "-"
                    cells.append(f"{k['ms']:.3f} | {gfs}")
            out.append(
                f"| {kind} | {first['steps']} | {first['gflop']:.3f} | {' | '.join(cells)} |"
            )
        totals = []
        for r in per:
            totals += [f"{sum(k['ms'] for k in r['c_profile']):.2f}", ""]
        out.append("| total | | | " + " | ".join(totals) + " |")
    return "\n".join(out) + "\n"


def add_weights_dir(parser: argparse.ArgumentParser) -> None:
    """The --weights-dir option: where the live-weights checkpoints are cached (one cache for
    every benchmark script)."""
    parser.add_argument(
        "--weights-dir",
        type=Path,
        default=Path(os.path.expanduser("~/.cache/timmx/live-weights")),
        help="where the live-weights checkpoints are cached",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--threads", default="1", help="thread counts, e.g. 1,2")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per runtime")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the runs")
    parser.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="seconds of sleep before each runtime's batch at 2+ threads (spinning pools park)",
    )
    parser.add_argument("--cflags", default="-O2", help="flags for the generated C")
    parser.add_argument("--peak-gflops", type=float, help="override the computed core peak")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--markdown", type=Path, help="also write the tables as markdown here")
    parser.add_argument("--profile", action="store_true", help="also profile the C per step kind")
    parser.add_argument("--work", type=Path, help="keep (and reuse) the artifacts here")
    add_weights_dir(parser)
    parser.add_argument("--random-weights", action="store_true", help="timm's random init")
    parser.add_argument("--no-litert", action="store_true")
    parser.add_argument("--no-executorch", action="store_true")
    args = parser.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    if any(t < 1 for t in args.threads):
        parser.error("--threads: counts >= 1")
    args.reuse = args.work is not None
    peak, how = cpu_peak_gflops()
    isa = how.split(", ")[1] if ", " in how else ""
    measured = measured_peak_gflops(isa)
    if measured:
        peak, how = measured, f"{how.split(',')[0]}, {isa}, measured FMA loop"
    if args.peak_gflops:
        peak, how = args.peak_gflops, "given with --peak-gflops"
    args.peak = peak
    import onnxruntime

    from timmx.c.build import compiler_id, require_compiler

    versions = [f"onnxruntime {onnxruntime.__version__}"]
    for dist in ("ai-edge-litert", "executorch"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions.append(f"{dist} {version(dist)}")
    threads = ",".join(map(str, args.threads))
    header = [
        f"# timmx C target benchmark (batch 1, threads {threads}, median of {args.runs} runs)",
        f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"# cpu: {how}; peak {peak:.1f} GFLOP/s per core; {os.cpu_count()} cpus",
        f"# load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}",
        f"# C: {compiler_id(require_compiler())} {args.cflags}; {'; '.join(versions)}; "
        f"python {sys.version.split()[0]}",
        "# ratios: C ms / peer ms (< 1: C is faster); C %pk: of the peak x threads",
    ]
    print("\n".join(header))
    print(HEADER, flush=True)
    rows = []
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for name in args.models:
            rows.extend(bench_model(name, args, work))
    header.append(f"# load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    print(header[-1])
    for line in scaling_table(rows):
        print(f"# scaling {line}")
    for line in profile_lines(rows):
        print(line)
    if args.markdown:
        args.markdown.write_text(markdown(rows, header))
    if args.json:
        args.json.write_text(json.dumps({"peak_gflops": peak, "cpu": how, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
