"""MNN (.mnn) via ONNX and MNN's converter, verified in MNN's Python runtime.

The model is exported to ONNX (the dynamo exporter, as ``timmx export onnx``) and converted with
MNN's ``mnnconvert`` in a child process that cannot install packages or reach the network (see
:mod:`timmx.backends.mnn._convert`: MNN's converter wrapper otherwise runs ``pip install`` and
uploads usage logs). Modes:

- ``fp32``: float32 weights.
- ``fp16``: float16 weights (``--fp16``); computed in float32 at ``precision=high``.
- ``int8-weights``: 8-bit weights (``--weightQuantBits 8``, per channel, symmetric), float
  activations; no calibration.

timmx's metadata is the model's ``bizCode`` string, as JSON (``module.get_info()["bizCode"]``).
Verification runs the model with ``MNN.nn.load_module_from_file`` on the CPU at
``precision=high``.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from timmx.backends._onnx_graph import INPUT_NAME, OUTPUT_NAME, export_onnx
from timmx.core.backend import ExportBackend, installed_version
from timmx.core.calibration import verify_quantized
from timmx.core.options import option
from timmx.core.quiet import quiet
from timmx.core.tolerances import tolerance_for
from timmx.core.types import Device
from timmx.core.verify import VerifyReport, compare, verify_with_runner
from timmx.errors import ConfigurationError, ExportError

RUNTIME = "MNN (precision high, Winograd level 0)"
# MNN's Interpreter::HintMode::WINOGRAD_MEMORY_LEVEL. At its default (3) MNN picks large Winograd
# tiles for 3x3 convolutions, whose transforms cost float32 accuracy: resnet50 (live weights, real
# photos) differs from PyTorch by 1.7e-2 (logits up to 17), against 1.6e-4 at level 0, which
# keeps the small tiles. Verification runs at 0; the default's error is reported beside it.
WINOGRAD_MEMORY_LEVEL = 3
VERIFIED_WINOGRAD_LEVEL = 0
MNN_DEFAULT_WINOGRAD_LEVEL = 3
CONVERTER_SCRIPT = Path(__file__).with_name("_convert.py")
CONVERTER_TIMEOUT_S = 1800
# Every proxy variable a Python, curl or pip client reads, pointed at a closed loopback port.
BLACKHOLE_PROXY = "http://127.0.0.1:9"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "ftp_proxy", "all_proxy")
# What the converter process may inherit: nothing about the network, pip or Python paths.
INHERITED = ("LANG", "LC_ALL", "LD_LIBRARY_PATH", "SYSTEMROOT")


class MNNMode(StrEnum):
    """Weight storage of the .mnn model."""

    fp32 = "fp32"
    fp16 = "fp16"
    int8_weights = "int8-weights"


MODE_ARGUMENTS = {
    MNNMode.fp32: [],
    MNNMode.fp16: ["--fp16"],
    MNNMode.int8_weights: ["--weightQuantBits", "8"],
}


@dataclass
class MNNOptions:
    """``timmx export mnn`` flags."""

    mode: MNNMode = option(
        MNNMode.fp32, "Weights: fp32, fp16, or int8-weights (8-bit weights, float compute)."
    )


def converter_environment(work: Path) -> dict[str, str]:
    """The converter process's whole environment (nothing else is inherited).

    PATH is an empty folder of ``work`` (no pip, no python, no curl); pip is switched off by its
    own settings; every proxy points at a closed loopback port and nothing is exempt; HOME and
    TMPDIR are ``work``, so nothing is written to the user's home.
    """
    empty = work / "bin"
    empty.mkdir(exist_ok=True)
    env = {name: os.environ[name] for name in INHERITED if name in os.environ}
    env.update(
        {
            "PATH": str(empty),
            "HOME": str(work),
            "TMPDIR": str(work),
            "PYTHONNOUSERSITE": "1",
            "PIP_NO_INDEX": "1",
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "no_proxy": "",
            "NO_PROXY": "",
        }
    )
    for name in PROXY_VARIABLES:
        env[name] = env[name.upper()] = BLACKHOLE_PROXY
    return env


def _search_paths() -> list[str]:
    """The folders MNN's Python package and its converter extension are imported from."""
    import importlib.util

    paths = []
    for name in ("MNN", "_tools"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ConfigurationError("MNN is not installed; pip install 'timmx[mnn]'.")
        folder = Path(spec.origin).parent
        paths.append(str(folder.parent if name == "MNN" else folder))
    return list(dict.fromkeys(paths))


def _tail(text: str, lines: int = 8) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def run_converter(arguments: list[str], work: Path) -> dict[str, object]:
    """Run ``mnnconvert ARGUMENTS`` in the guarded child process; returns its report."""
    request = work / "request.json"
    report_path = work / "report.json"
    request.write_text(
        json.dumps({"arguments": arguments, "paths": _search_paths(), "report": str(report_path)}),
        encoding="utf-8",
    )
    command = [sys.executable, "-I", str(CONVERTER_SCRIPT), str(request)]
    try:
        done = subprocess.run(
            command,
            cwd=work,
            env=converter_environment(work),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=CONVERTER_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportError(f"Could not run MNN's converter: {exc}") from exc
    log = f"{done.stdout}\n{done.stderr}"
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ExportError(
            f"MNN's converter process died (exit code {done.returncode}); its last lines:\n"
            f"{_tail(log)}"
        ) from None
    if report.get("error"):
        raise ExportError(f"MNN's converter failed: {report['error']}\n{_tail(log)}")
    report["log"] = log
    return report


def export_mnn(prepared, path: Path, *, mode: MNNMode | str = MNNMode.fp32) -> dict[str, object]:
    """Export ``prepared`` to ONNX and convert it to ``path`` (.mnn) in the guarded process.

    The ONNX file and the converter's files live in a private folder beside ``path``, removed
    afterwards. Returns the converter process's report (``blocked``: attempts it refused).
    """
    mode = MNNMode(mode)
    work = Path(tempfile.mkdtemp(prefix=".mnnconvert-", dir=Path(path).parent))
    try:
        onnx_path = work / "model.onnx"
        export_onnx(prepared, onnx_path)
        target = work / "model.mnn"
        metadata = dict(prepared.metadata())
        metadata["mnn_mode"] = mode.value
        metadata["mnn_input"], metadata["mnn_output"] = INPUT_NAME, OUTPUT_NAME
        arguments = [
            "-f",
            "ONNX",
            "--modelFile",
            str(onnx_path),
            "--MNNModel",
            str(target),
            "--bizCode",
            json.dumps(metadata, separators=(",", ":")),
            *MODE_ARGUMENTS[mode],
        ]
        report = run_converter(arguments, work)
        if not target.is_file() or not target.stat().st_size:
            raise ExportError(
                "MNN's converter did not write the model; its last lines:\n"
                f"{_tail(str(report.get('log', '')))}"
            )
        shutil.move(str(target), str(path))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _log_stub() -> types.ModuleType:
    stub = types.ModuleType("MNN.tools.utils.log")
    stub.__doc__ = "timmx: MNN's usage logger, disabled (it would pip-install and upload)."
    stub.mnn_logger = None
    return stub


def import_mnn():
    """``import MNN`` (the runtime), with MNN's usage logger stubbed out beforehand.

    The runtime never imports the converter's logger itself; the stub keeps it that way should
    anything in this process later import ``MNN.tools``.
    """
    sys.modules.setdefault("MNN.tools.utils.log", _log_stub())
    with quiet():
        import MNN
    return MNN


def load_module(path: Path, *, threads: int | None = None, winograd_level: int | None = None):
    """The .mnn model loaded with MNN's Module API on the CPU at precision high.

    ``winograd_level`` sets the WINOGRAD_MEMORY_LEVEL hint (None: MNN's default, 3).
    """
    mnn = import_mnn()
    config = {"precision": "high", "backend": "CPU", "numThread": int(threads or 1)}
    with quiet():
        manager = mnn.nn.create_runtime_manager((config,))
        if winograd_level is not None:
            manager.set_hint(WINOGRAD_MEMORY_LEVEL, int(winograd_level))
        return mnn.nn.load_module_from_file(
            str(path), [INPUT_NAME], [OUTPUT_NAME], runtime_manager=manager
        )


def read_metadata(path: Path) -> dict[str, str]:
    """The timmx metadata in a .mnn model's bizCode ({} when it is not timmx's JSON)."""
    try:
        data = json.loads(load_module(path).get_info().get("bizCode") or "")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def mnn_runner(path: Path, *, threads: int | None = None, winograd_level: int | None = None):
    """A function running the .mnn model on float32 NCHW batches (numpy in and out)."""
    import numpy as np

    mnn = import_mnn()
    module = load_module(path, threads=threads, winograd_level=winograd_level)

    def run(x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        value = mnn.expr.const(x, list(x.shape), mnn.expr.NCHW)
        out = module.forward([value])
        out = out[0] if isinstance(out, list | tuple) else out
        out = mnn.expr.convert(out, mnn.expr.NCHW)
        return np.array(out.read(), dtype=np.float32).reshape(out.shape)

    run.module = module  # keeps the module alive as long as the runner
    return run


class MNNBackend(ExportBackend):
    """MNN export (ONNX, then MNN's converter in a guarded process), verified in MNN."""

    name = "mnn"
    help = (
        "Export to MNN (.mnn) via ONNX and MNN's converter (run without network or pip): fp32, "
        "fp16 or 8-bit weights; verified in MNN's runtime."
    )
    suffix = ".mnn"
    Options = MNNOptions
    requires = ("mnn", "onnx", "onnxscript", "onnxslim")
    extra = "mnn"
    devices = (Device.cpu,)

    def validate(self, job) -> None:
        """The output is a .mnn file."""
        output = job.common.output
        if output is not None and output.suffix != ".mnn":
            raise ConfigurationError(
                f"MNN models are .mnn files; name --output {output.with_suffix('.mnn')}."
            )

    def precision(self, job) -> str:
        """fp32, fp16 or int8-weights."""
        return MNNMode(job.options.mode).value

    def convert(self, job, artifact: Path) -> None:
        """ONNX export, then the guarded converter; metadata as bizCode JSON."""
        report = export_mnn(job.model, artifact, mode=job.options.mode)
        job.details["converter"] = f"MNN {installed_version('mnn') or '?'} (no network, no pip)"
        blocked = report.get("blocked") or []
        if blocked:
            job.notes.append(
                f"refused {len(blocked)} attempt(s) of MNN's converter to start a program or "
                f"use the network: {'; '.join(blocked[:3])}"
            )

    @contextlib.contextmanager
    def runtime(self, job, artifact: Path, *, threads: int | None = None):
        """MNN's Module API on the CPU, precision high, Winograd memory level 0 (``threads``:
        numThread)."""
        yield mnn_runner(artifact, threads=threads, winograd_level=VERIFIED_WINOGRAD_LEVEL)

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Run in MNN; fp16/int8 weights report their accuracy cost; MNN's default Winograd
        setting is measured on the same inputs and reported."""
        mode = MNNMode(job.options.mode)
        seen: list = []
        with self.runtime(job, artifact) as run:

            def recording(x):
                seen.append(x)
                return run(x)

            if mode == MNNMode.fp32:
                report = verify_with_runner(job, recording, RUNTIME)
            else:
                report = verify_quantized(job, recording, RUNTIME, mode.value)
        self._check_default_winograd(job, artifact, seen)
        return report

    def _check_default_winograd(self, job, artifact: Path, inputs) -> None:
        import torch

        runner = mnn_runner(artifact)
        tolerance = tolerance_for(self.name, self.precision(job))
        worst, within = 0.0, True
        for x in inputs:
            reference = job.model.run(torch.from_numpy(x).to(job.model.device))
            figures = compare(reference.float().cpu().numpy(), runner(x), tolerance)
            worst = max(worst, figures.max_abs_err)
            within = within and figures.within_tolerance
        job.details["default"] = (
            f"MNN's default Winograd memory level {MNN_DEFAULT_WINOGRAD_LEVEL}: max abs err "
            f"{worst:.3g} vs PyTorch (verified above at level {VERIFIED_WINOGRAD_LEVEL})"
        )
        if not within:
            job.notes.append(
                f"at MNN's default Winograd memory level ({MNN_DEFAULT_WINOGRAD_LEVEL}) this "
                f"model is beyond the {self.precision(job)} tolerance (max abs err {worst:.3g}): "
                "set runtime_manager.set_hint(3, 0) (C++: Interpreter::WINOGRAD_MEMORY_LEVEL, "
                "0) for the verified accuracy"
            )
