"""Helper of ``benchmarks/gpu_check.sh``: preflight, inputs, GPU timing and the summary.

Subcommands (each takes the output folder of the check):

- ``preflight OUT``: prints the Python, torch/CUDA, TensorRT, onnxruntime (providers) and timmx
  environment, writes ``OUT/env.json`` and ``OUT/env.sh`` (flags the shell script sources);
  exit 2 when there is no usable CUDA GPU (or no torch), 0 otherwise.
- ``prepare OUT MODEL...``: real photographs into ``OUT/photos`` and a live-weights checkpoint
  per model into ``OUT/weights`` (:mod:`timmx.testing`; nothing is downloaded). Without
  scikit-image/scikit-learn it says so and writes neither (the script then falls back to timm's
  random init, random verification images and ``--random-calibration``).
- ``time OUT MODEL...``: median and p90 latency on the GPU of PyTorch eager (fp32 with TF32 off,
  fp16), onnxruntime's CUDA execution provider on ``OUT/artifacts/<model>.onnx`` (fp32, TF32
  off) and each TensorRT engine ``OUT/artifacts/<model>-<mode>.engine``; inputs and outputs stay
  on the GPU, every timed call is followed by ``torch.cuda.synchronize()``. Writes
  ``OUT/timings.json``.
- ``summary OUT``: ``OUT/summary.json`` and ``OUT/summary.md`` from the step records the script
  wrote (``OUT/steps``), the export results and the timings; exit 1 when anything failed.

Runs with ``PYTHONPATH=src python3`` (any torch/timm install) as well as under ``uv run``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

MODES = ("fp32", "fp16", "int8")
NO_GPU = 2
FAILED = 1


def _version(module: str) -> str | None:
    """The ``__version__`` of an importable module, else None (never raises)."""
    try:
        return str(getattr(importlib.import_module(module), "__version__", "unknown"))
    except Exception:
        return None


def _import_error(module: str) -> str | None:
    """None when ``module`` imports, else the error in one line."""
    try:
        importlib.import_module(module)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def ort_cuda_ready(ort) -> bool:
    """Whether onnxruntime offers the CUDA execution provider (its CUDA libraries preloaded from
    the pip nvidia packages where onnxruntime can, after torch has loaded its own)."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as exc:  # a best effort: the session creation reports real problems
            print(f"note: onnxruntime.preload_dlls() failed: {exc}")
    return True


def preflight(out: Path) -> int:
    """Print and record the environment; 2 when no CUDA GPU can be used."""
    env: dict[str, object] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "executable": sys.executable,
    }
    print(f"python       {env['python']} ({sys.executable})")
    if sys.version_info < (3, 11):  # noqa: UP036 (the helper may run under an older python3)
        print("ERROR: timmx needs Python >= 3.11; run with a newer python3 (PYTHON=...).")
        return NO_GPU
    try:
        import torch
    except Exception as exc:
        print(f"ERROR: torch is not importable ({exc}); install a CUDA build of PyTorch.")
        return NO_GPU
    env["torch"] = torch.__version__
    env["torch_cuda"] = torch.version.cuda
    cuda = torch.cuda.is_available()
    env["cuda_available"] = cuda
    print(f"torch        {torch.__version__} (CUDA {torch.version.cuda}), cuda available: {cuda}")
    if not cuda:
        print(
            "ERROR: no CUDA GPU usable by torch (torch.cuda.is_available() is False"
            + ("; this torch is a CPU-only build" if torch.version.cuda is None else "")
            + "). The GPU check needs an NVIDIA GPU and a CUDA build of PyTorch."
        )
        (out / "env.json").write_text(json.dumps(env, indent=2))
        return NO_GPU
    major, minor = torch.cuda.get_device_capability()
    env["gpu"] = torch.cuda.get_device_name()
    env["compute_capability"] = f"{major}.{minor}"
    print(f"gpu          {env['gpu']} (compute capability {major}.{minor})")
    for module in ("timm", "onnx", "onnxscript", "onnxslim", "torchao", "tensorrt"):
        env[module] = _version(module)
        print(f"{module:<12} {env[module] or 'not installed'}")
    try:
        import onnxruntime as ort

        env["onnxruntime"] = ort.__version__
        env["ort_providers"] = list(ort.get_available_providers())
        ort_cuda = ort_cuda_ready(ort)
    except Exception as exc:
        env["onnxruntime"], env["ort_providers"], ort_cuda = None, [], False
        print(f"note: onnxruntime not importable ({exc})")
    print(f"onnxruntime  {env['onnxruntime']}, providers {env['ort_providers']}")
    cli_error = _import_error("timmx.cli.app")
    photos_error = _import_error("skimage") or _import_error("sklearn")
    env["timmx_cli_error"] = cli_error
    env["photos_error"] = photos_error
    print(f"timmx cli    {'ok' if cli_error is None else cli_error}")
    trt_skip = ""
    if env["tensorrt"] is None:
        trt_skip = "not run: tensorrt not installed (pip install tensorrt)"
        print(
            "NOTE: TensorRT is not installed: the TensorRT rows are not run "
            "(pip install tensorrt). PyTorch CUDA eager (and onnxruntime CUDA if present) run."
        )
    elif (
        not str(env["tensorrt"]).split(".")[0].isdigit()
        or int(str(env["tensorrt"]).split(".")[0]) < 10
    ):
        trt_skip = f"not run: TensorRT {env['tensorrt']} is older than 10 (pip install -U tensorrt)"
    elif missing := [m for m in ("onnx", "onnxscript", "onnxslim") if env[m] is None]:
        trt_skip = f"not run: {', '.join(missing)} not installed (pip install 'timmx[onnx]')"
    if not ort_cuda:
        print(
            "NOTE: onnxruntime has no CUDAExecutionProvider (the CPU build?): the onnxruntime "
            "rows are not run (pip install onnxruntime-gpu)."
        )
    flags = {
        "HAVE_TRT": int(not trt_skip),
        "TRT_SKIP": trt_skip,
        "HAVE_TORCHAO": int(env["torchao"] is not None),
        "HAVE_ORT_CUDA": int(ort_cuda and None not in (env["onnx"], env["onnxscript"])),
        "HAVE_CLI": int(cli_error is None),
        "CLI_ERROR": cli_error or "",
        "HAVE_PHOTOS": int(photos_error is None),
    }
    env["flags"] = flags
    (out / "env.json").write_text(json.dumps(env, indent=2))
    lines = [f"{key}={shlex.quote(str(value))}" for key, value in flags.items()]
    (out / "env.sh").write_text("\n".join(lines) + "\n")
    return 0


def prepare(out: Path, models: list[str]) -> int:
    """Photos and live-weights checkpoints (scikit-image/scikit-learn ship the photos)."""
    missing = _import_error("skimage") or _import_error("sklearn") or _import_error("PIL")
    if missing:
        print(
            f"NOTE: no real photos ({missing}; pip install scikit-image scikit-learn pillow): "
            "timm's random init, seeded random verification images, --random-calibration."
        )
        return 0
    from timmx.testing import write_photo_folder
    from timmx.testing.checkpoint import save_live_checkpoint

    photos = write_photo_folder(out / "photos")
    print(f"photos: {len(list(photos.iterdir()))} in {photos}")
    weights = out / "weights"
    weights.mkdir(exist_ok=True)
    for model in models:
        start = time.perf_counter()
        path = save_live_checkpoint(model, weights)
        print(f"live weights: {path} ({time.perf_counter() - start:.1f} s)")
    return 0


def latency(call, *, warmup: int, runs: int) -> dict[str, float]:
    """Median, p90 and min of ``runs`` synchronised calls (ms) after ``warmup`` untimed ones."""
    import torch

    for _ in range(warmup):
        call()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    ordered = sorted(times)
    return {
        "median_ms": round(statistics.median(ordered), 4),
        "p90_ms": round(ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)], 4),
        "min_ms": round(ordered[0], 4),
        "runs": runs,
    }


def _torch_model(model: str, checkpoint: Path | None):
    """The model as timmx builds it for export (eval, on the GPU), with the check's weights."""
    from timmx.core.checkpoint import apply_checkpoint
    from timmx.core.job import CommonOptions
    from timmx.core.model import create_timm_model

    net = create_timm_model(model, CommonOptions())
    if checkpoint is not None and checkpoint.exists():
        apply_checkpoint(net, checkpoint)
    return net.eval().cuda()


def _ort_call(path: Path, x, out):
    """A call running ``path`` with onnxruntime's CUDA EP, I/O bound to torch CUDA tensors."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:  # TF32 off, like TensorRT's fp32 engines and the PyTorch fp32 rows
        cuda = ("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 0})
        session = ort.InferenceSession(str(path), options, providers=[cuda])
    except Exception:  # an onnxruntime without the use_tf32 option
        session = ort.InferenceSession(str(path), options, providers=["CUDAExecutionProvider"])
    if session.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(f"onnxruntime fell back to {session.get_providers()}")
    binding = session.io_binding()
    for arg, tensor, bind in (
        (session.get_inputs()[0], x, binding.bind_input),
        (session.get_outputs()[0], out, binding.bind_output),
    ):
        bind(arg.name, "cuda", 0, np.float32, list(tensor.shape), tensor.data_ptr())
    return lambda: session.run_with_iobinding(binding)


def _trt_call(path: Path, x):
    """A call running the engine at ``path`` on torch's current stream (buffers preallocated)."""
    import torch

    from timmx.backends.tensorrt.build import EngineRunner, _torch_dtype

    runner = EngineRunner(path.read_bytes(), device="cuda")
    trt, engine, context = runner.trt, runner.engine, runner.context
    data = x.to(_torch_dtype(trt, engine.get_tensor_dtype(runner.input_name))).contiguous()
    if not context.set_input_shape(runner.input_name, tuple(data.shape)):
        raise RuntimeError(f"the engine does not accept input shape {tuple(data.shape)}")
    shape = tuple(int(d) for d in context.get_tensor_shape(runner.output_name))
    out_dtype = _torch_dtype(trt, engine.get_tensor_dtype(runner.output_name))
    output = torch.empty(shape, dtype=out_dtype, device="cuda")
    context.set_tensor_address(runner.input_name, data.data_ptr())
    context.set_tensor_address(runner.output_name, output.data_ptr())

    def call():
        if not context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("execute_async_v3 failed")

    call.keep = (runner, data, output)  # buffers live as long as the call
    return call


def _runtimes(model: str, nets, x, out: Path, flags: dict) -> list[tuple[str, str, object]]:
    """(runtime, precision, maker or 'not run: ...') of every timed row of one model (``nets``:
    its float32 and float16 modules) at one batch; a maker returns the call to time."""
    import torch

    net, half = nets
    y = torch.empty(tuple(net(x).shape), device="cuda")
    xh = x.half()
    onnx = out / "artifacts" / f"{model}.onnx"
    if not flags.get("HAVE_ORT_CUDA"):
        ort_make: object = "not run: no onnxruntime CUDAExecutionProvider"
    elif not onnx.exists():
        ort_make = "not run: no ONNX file (export failed or skipped)"
    else:
        ort_make = lambda: _ort_call(onnx, x, y)  # noqa: E731
    rows = [
        ("pytorch-eager", "fp32", lambda: lambda: net(x)),
        ("pytorch-eager", "fp16", lambda: lambda: half(xh)),
        ("onnxruntime-cuda", "fp32", ort_make),
    ]
    for mode in MODES:
        engine = out / "artifacts" / f"{model}-{mode}.engine"
        if not flags.get("HAVE_TRT"):
            trt_make: object = flags.get("TRT_SKIP") or "not run: tensorrt not installed"
        elif not engine.exists():
            trt_make = "not run: no engine (export failed or skipped)"
        else:
            trt_make = lambda engine=engine: _trt_call(engine, x)  # noqa: E731
        rows.append(("tensorrt", mode, trt_make))
    return rows


def time_models(out: Path, models: list[str], args) -> int:
    """Time every runtime of every model at every batch size; writes ``OUT/timings.json``."""
    import copy

    import torch

    from timmx._torch_env import import_timm
    from timmx.backends.tensorrt.build import exact_fp32_torch

    flags = json.loads((out / "env.json").read_text()).get("flags", {})
    if flags.get("HAVE_ORT_CUDA"):
        import onnxruntime as ort

        ort_cuda_ready(ort)
    rows: list[dict[str, object]] = []

    def record(model: str, runtime: str, precision: str, batch: int, make) -> None:
        row: dict[str, object] = {
            "model": model,
            "runtime": runtime,
            "precision": precision,
            "batch": batch,
        }
        if isinstance(make, str):
            row["status"] = make
        elif time.time() > args.deadline:
            row["status"] = "not run: time budget"
        else:
            try:
                row.update(latency(make(), warmup=args.warmup, runs=args.runs))
                row["status"] = "ok"
            except Exception as exc:
                row["status"] = f"failed: {type(exc).__name__}: {exc}".splitlines()[0][:300]
        rows.append(row)
        (out / "timings.json").write_text(json.dumps(rows, indent=2))  # kept if stopped
        shown = row["status"]
        if "median_ms" in row:
            shown = f"{row['median_ms']:.3f} ms (p90 {row['p90_ms']:.3f})"
        print(f"{model:<24} {runtime:<18} {precision:<5} b{batch:<3} {shown}", flush=True)

    torch.manual_seed(0)
    for model in models:
        try:
            net = _torch_model(model, out / "weights" / f"{model}.pth")
        except Exception as exc:
            record(model, "pytorch-eager", "fp32", 0, f"failed: {type(exc).__name__}: {exc}")
            continue
        size = import_timm().data.resolve_data_config({}, model=net)["input_size"]
        nets = (net, copy.deepcopy(net).half())
        with torch.inference_mode(), exact_fp32_torch():
            for batch in (int(b) for b in args.batches.split(",")):
                x = torch.randn(batch, *size, device="cuda")
                for runtime, precision, make in _runtimes(model, nets, x, out, flags):
                    record(model, runtime, precision, batch, make)
        del net, nets
        torch.cuda.empty_cache()
    (out / "timings.json").write_text(json.dumps(rows, indent=2))
    return 0


def _read_steps(out: Path) -> list[dict[str, object]]:
    """The script's step records (``OUT/steps/<name>.status``) with their export results."""
    steps = []
    folder = out / "steps"
    order = folder / "order"
    if order.exists():  # the order the script ran them in
        names = list(dict.fromkeys(order.read_text().split()))
    else:
        names = sorted(p.stem for p in folder.glob("*.status"))
    for name in names:
        status_file = folder / f"{name}.status"
        step: dict[str, object] = {"step": name, "status": status_file.read_text().strip()}
        err_file = folder / f"{name}.err"
        if not step["status"].startswith(("ok", "not run")) and err_file.exists():
            errors = [line for line in err_file.read_text().splitlines() if line.strip()]
            step["error"] = errors[-1].strip()[:300] if errors else ""
        result_file = status_file.with_suffix(".json")
        lines = result_file.read_text().strip().splitlines() if result_file.exists() else []
        if lines:
            try:
                result = json.loads(lines[-1])
            except json.JSONDecodeError:
                result = None
            if isinstance(result, dict):
                step["seconds"] = result.get("seconds")
                step["size_bytes"] = result.get("size_bytes")
                step["verify"] = result.get("verify")
                step["details"] = result.get("details")
        verify = step.get("verify")
        checked = isinstance(verify, dict) and verify.get("checked")
        if (
            step["status"] == "ok"
            and isinstance(verify, dict)
            and not (checked and verify["passed"])
        ):
            step["status"] = "failed: verification " + (
                "did not pass" if checked else "not checked"
            )
        steps.append(step)
    return steps


def _verify_cell(verify: object) -> str:
    if not isinstance(verify, dict):
        return ""
    verdict = "passed" if verify.get("passed") else "FAILED"
    return (
        f"{verdict}: max abs {verify.get('max_abs_err', float('nan')):.2e}, cosine "
        f"{verify.get('cosine', float('nan')):.6f}, top-1 {verify.get('top1_agree', 0):.0%}"
    )


def summary(out: Path) -> int:
    """Write ``summary.json`` and ``summary.md``; 1 when a step or a timing failed."""
    env = json.loads((out / "env.json").read_text()) if (out / "env.json").exists() else {}
    steps = _read_steps(out)
    timings_file = out / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else []
    failures = [s["step"] for s in steps if str(s["status"]).startswith(("failed", "timed out"))]
    failures += [
        f"time {t['model']} {t['runtime']} {t['precision']} b{t['batch']}"
        for t in timings
        if str(t["status"]).startswith("failed")
    ]
    data = {"env": env, "steps": steps, "timings": timings, "failures": failures}
    (out / "summary.json").write_text(json.dumps(data, indent=2))
    md = ["# timmx GPU check", ""]
    md.append(
        f"- GPU: {env.get('gpu')} (cc {env.get('compute_capability')}); torch {env.get('torch')}"
        f" (CUDA {env.get('torch_cuda')}); TensorRT {env.get('tensorrt') or 'not installed'}; "
        f"onnxruntime {env.get('onnxruntime')} {env.get('ort_providers')}"
    )
    md.append(f"- result: {'FAILED: ' + ', '.join(failures) if failures else 'no failures'}")
    md += ["", "## Exports", "", "| step | status | s | verification (or error) |"]
    md.append("|---|---|---|---|")
    for step in steps:
        seconds = step.get("seconds")
        md.append(
            f"| {step['step']} | {step['status']} | {seconds if seconds is not None else ''} "
            f"| {_verify_cell(step.get('verify')) or step.get('error', '')} |"
        )
    md += [
        "",
        "## GPU latency (ms; inputs and outputs on the GPU, synchronised)",
        "",
        "| model | runtime | precision | batch | median | p90 | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in timings:
        median = f"{t['median_ms']:.3f}" if "median_ms" in t else ""
        p90 = f"{t['p90_ms']:.3f}" if "p90_ms" in t else ""
        md.append(
            f"| {t['model']} | {t['runtime']} | {t['precision']} | {t['batch']} | {median} "
            f"| {p90} | {t['status']} |"
        )
    (out / "summary.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return FAILED if failures else 0


def main(argv: list[str] | None = None) -> int:
    """Parse the subcommand and run it; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("preflight", "prepare", "time", "summary"):
        command = sub.add_parser(name)
        command.add_argument("out", type=Path)
        if name in ("prepare", "time"):
            command.add_argument("models", nargs="+")
        if name == "time":
            command.add_argument("--batches", default="1,8")
            command.add_argument("--warmup", type=int, default=10)
            command.add_argument("--runs", type=int, default=50)
            command.add_argument("--deadline", type=float, default=math.inf, help="epoch s")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.command == "preflight":
        return preflight(args.out)
    if args.command == "prepare":
        return prepare(args.out, args.models)
    if args.command == "time":
        return time_models(args.out, args.models, args)
    return summary(args.out)


if __name__ == "__main__":
    sys.exit(main())
