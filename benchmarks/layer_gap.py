"""Where the generated C loses or wins against onnxruntime, layer by layer, at one thread.

    uv run python benchmarks/bench_c.py --work /tmp/bc --runs 10      # exports the artifacts
    uv run python benchmarks/layer_gap.py --work /tmp/bc              # the five models
    uv run python benchmarks/layer_gap.py --work /tmp/bc resnet50 --runs 60 --markdown gap.md

It reads the artifacts `bench_c.py --work` keeps for each model (the generated C, the ONNX file
and the input photo, so both runtimes see the same live weights and the same input) and times
every step of each:

- the C with `-DTXM_PROFILE` (each step's fastest call over --runs runs);
- onnxruntime with its profiler (each node's fastest call over --runs runs; CPU provider,
  ORT_ENABLE_ALL, one intra-op thread).

Both are run twice, in turn, and each step keeps its faster figure, so a burst of load on this
shared machine inflates neither side. Steps and nodes that do multiply-adds (C: conv, linear,
attention, bmm; ORT: Conv, MatMul, Gemm and their fused forms) are grouped by their FLOPs, so
that, for example, resnet50's 16 3x3 convs of 231 MFLOP are one row on each side. The other
steps (pools, norms, elementwise, layout) are summed per kind. A row where only one side has
entries is a difference in fusion (the C's attention step is one row; onnxruntime runs its
two matrix products and the softmax as three nodes).
"""

import argparse
import collections
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_c import DEFAULT_MODELS

STEP = re.compile(
    r"step +\d+ +([\d.]+) ms +[\d.]+ GFLOP/s +([\d.]+) MFLOP  (\S+)(?: \[[^]]*\])? (\S+)"
)
MAC_OPS = {"Conv", "FusedConv", "MatMul", "Gemm", "FusedMatMul", "FusedGemm", "NhwcFusedConv"}


def c_steps(demo: Path, here: Path, runs: int) -> list[tuple[str, float, float]]:
    """(kind and first module, fastest ms, FLOPs) of every step of the C's profiling demo."""
    files = [str(here / "c" / "m_weights.bin"), str(here / "input.raw")]
    proc = subprocess.run(
        [str(demo), "--threads", "1", "--bench", str(runs), *files],
        capture_output=True,
        text=True,
        check=True,
    )
    # kind: the step's kernel and its first module (e.g. "conv blocks.1.0.conv_dw")
    return [
        (f"{m.group(3)} {m.group(4)}", float(m.group(1)), float(m.group(2)) * 1e6)
        for m in map(STEP.match, proc.stderr.splitlines())
        if m
    ]


def _node_flops(op: str, ins: list[list[int]], outs: list[list[int]]) -> float:
    if op not in MAC_OPS or len(ins) < 2 or not outs:
        return 0.0
    if "Conv" in op:  # weights [oc, ic / groups, kh, kw]: per output, ic/groups x kh x kw
        return 2.0 * math.prod(outs[0]) * math.prod(ins[1][1:])
    return 2.0 * math.prod(outs[0]) * ins[0][-1]


def ort_nodes(onnx_path: Path, here: Path, runs: int) -> list[tuple[str, float, float]]:
    """(op, fastest ms, FLOPs) of every node onnxruntime ran, from its profiler."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        opts.profile_file_prefix = os.path.join(tmp, "ort")
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = np.fromfile(here / "input.raw", dtype=np.float32).reshape([1, *inp.shape[1:]])
        for _ in range(runs):
            sess.run(None, {inp.name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    times: dict[str, list[float]] = collections.defaultdict(list)
    info: dict[str, tuple[str, float]] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name, args = e["name"], e["args"]
        times[name].append(e["dur"] / 1000.0)
        if name not in info:
            shapes = [
                [next(iter(t.values())) for t in args.get(key, [])]
                for key in ("input_type_shape", "output_type_shape")
            ]
            info[name] = (args.get("op_name", "?"), _node_flops(args.get("op_name", ""), *shapes))
    return [(info[n][0], min(t), info[n][1]) for n, t in times.items()]


def _fastest(a: list, b: list) -> list:
    """Two passes over the same steps: each step's faster figure."""
    return [(x[0], min(x[1], y[1]), x[2]) for x, y in zip(a, b, strict=True)]


def _group(items: list[tuple[str, float, float]], side: str) -> dict:
    groups: dict = collections.defaultdict(lambda: [0, 0.0, ""])
    for kind, ms, flops in items:
        key = float(f"{flops:.3g}") if flops > 0 else f"{side}: {kind.split()[0]}"
        g = groups[key]
        g[0] += 1
        g[1] += ms
        g[2] = g[2] or kind
    return groups


def gap_table(c: list, o: list) -> list[str]:
    """Markdown rows: FLOPs group (or step kind), count, ms and GFLOP/s on each side."""
    cg, og = _group(c, "C"), _group(o, "ORT")
    keys = sorted(set(cg) | set(og), key=lambda k: -abs(cg[k][1] - og[k][1]))
    out = [
        "| MFLOP per step | C steps | C ms | C GFLOP/s | ORT nodes | ORT ms | ORT GFLOP/s "
        "| C - ORT ms | what |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k in keys:
        (cn, cms, ck), (on, oms, ok) = cg[k], og[k]
        if isinstance(k, float):
            rate = [f"{k * n / ms / 1e6:.1f}" if ms else "" for n, ms in ((cn, cms), (on, oms))]
            label, what = f"{k / 1e6:.1f}", " / ".join(x for x in (ck, ok) if x)
        else:
            rate, label, what = ["", ""], "-", k
        out.append(
            f"| {label} | {cn or ''} | {cms:.3f} | {rate[0]} | {on or ''} | {oms:.3f} | {rate[1]} "
            f"| {cms - oms:+.3f} | {what} |"
        )
    tc, to = sum(x[1] for x in c), sum(x[1] for x in o)
    out.append(f"| total | {len(c)} | {tc:.3f} | | {len(o)} | {to:.3f} | | {tc - to:+.3f} | |")
    return out


def main(argv: list[str] | None = None) -> int:
    """Profile each model's C and onnxruntime and print the per-layer comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--work", type=Path, required=True, help="a bench_c.py --work folder")
    parser.add_argument("--runs", type=int, default=40, help="timed runs per pass")
    parser.add_argument("--cflags", default="-O2", help="flags for the generated C")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    args = parser.parse_args(argv)
    from timmx.c.build import build_demo, require_compiler

    cc = require_compiler()
    lines = [f"# load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}"]
    print(lines[0], flush=True)
    for name in args.models:
        here = args.work / name
        if not (here / "c" / "m.h").exists() or not (here / "model.onnx").exists():
            print(
                f"{here}: no artifacts; run bench_c.py --work {args.work} {name}", file=sys.stderr
            )
            return 2
        demo = build_demo(
            here / "c",
            "m",
            here / "build-gap",
            cc=cc,
            flags=(*args.cflags.split(), "-DTXM_PROFILE"),
        )
        passes = [(c_steps(demo, here, args.runs), ort_nodes(here / "model.onnx", here, args.runs))]
        passes.append(
            (c_steps(demo, here, args.runs), ort_nodes(here / "model.onnx", here, args.runs))
        )
        c, o = _fastest(passes[0][0], passes[1][0]), _fastest(passes[0][1], passes[1][1])
        block = ["", f"**{name}** (1 thread; fastest call of each step, ms)", "", *gap_table(c, o)]
        print("\n".join(block), flush=True)
        lines += block
    lines.append(f"# load after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    print(lines[-1])
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
