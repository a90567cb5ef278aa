"""benchmarks/gpu_check.sh and its helper on a machine without a GPU (no GPU needed here)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
HELPER = ROOT / "benchmarks" / "gpu_check.py"
HAS_NVIDIA = bool(
    shutil.which("nvidia-smi")
    or Path("/proc/driver/nvidia/version").exists()
    or Path("/dev/nvidiactl").exists()
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHON": sys.executable}


def _run(cmd: list[str], timeout: float = 20, env: dict[str, str] | None = None):
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env or _env(), check=False
    )


@pytest.mark.skipif(HAS_NVIDIA, reason="this machine has an NVIDIA driver")
def test_no_gpu_exits_2_with_a_clear_message(tmp_path):
    out = tmp_path / "out"
    done = _run(["bash", str(SCRIPT), str(out)])
    assert done.returncode == 2, done.stdout + done.stderr
    assert "NO NVIDIA GPU" in done.stdout
    assert "NO NVIDIA GPU" in (out / "gpu_check.log").read_text()


def test_preflight_without_cuda_exits_2(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    done = _run([sys.executable, str(HELPER), "preflight", str(tmp_path)], timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no CUDA GPU usable by torch" in done.stdout


def _summary(out: Path) -> subprocess.CompletedProcess:
    return _run([sys.executable, str(HELPER), "summary", str(out)])


def test_summary_reports_skips_as_no_failure_and_failures_as_exit_1(tmp_path):
    steps = tmp_path / "steps"
    steps.mkdir()
    (tmp_path / "env.json").write_text(json.dumps({"gpu": "Test GPU", "tensorrt": None}))
    skipped = "not run: tensorrt not installed (pip install tensorrt)"
    (steps / "tensorrt-resnet50-fp32.status").write_text(skipped + "\n")
    (tmp_path / "timings.json").write_text(
        json.dumps(
            [
                {
                    "model": "resnet50",
                    "runtime": "pytorch-eager",
                    "precision": "fp32",
                    "batch": 1,
                    "median_ms": 2.5,
                    "p90_ms": 2.7,
                    "status": "ok",
                },
                {"model": "resnet50", "runtime": "tensorrt", "precision": "fp32", "batch": 1}
                | {"status": skipped},
            ]
        )
    )
    done = _summary(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    markdown = (tmp_path / "summary.md").read_text()
    assert "no failures" in markdown and skipped in markdown and "| 2.500 | 2.700 |" in markdown

    verify = {"checked": True, "passed": False, "max_abs_err": 3.0, "cosine": 0.9, "top1_agree": 0}
    (steps / "tensorrt-resnet50-fp16.status").write_text("ok\n")
    (steps / "tensorrt-resnet50-fp16.json").write_text(json.dumps({"verify": verify}) + "\n")
    done = _summary(tmp_path)
    assert done.returncode == 1
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["failures"] == ["tensorrt-resnet50-fp16"]


FAKE_PYTHON = r"""#!/usr/bin/env bash
# Stands in for python3: the helper's preflight/prepare/time, and timmx exports, are faked;
# the summary is the real helper's.
echo "$*" >>"$CALLS"
if [[ $1 == -m ]]; then
    if [[ " $* " == *" vit_tiny_patch16_224 "*"--mode fp16 "* ]]; then
        echo "Error: engine build failed (stand-in)" >&2
        exit 1
    fi
    echo '{"seconds": 1.5, "verify": {"checked": true, "passed": true, "max_abs_err": 0.001,'\
' "cosine": 1.0, "top1_agree": 1.0}}'
    exit 0
fi
case "$1" in
*gpu_check.py)
    case "$2" in
    preflight)
        out="$3"
        printf 'HAVE_TRT=1\nTRT_SKIP=""\nHAVE_TORCHAO=0\nHAVE_ORT_CUDA=0\n' >"$out/env.sh"
        printf 'HAVE_CLI=1\nCLI_ERROR=""\nHAVE_PHOTOS=1\n' >>"$out/env.sh"
        echo '{"gpu": "Fake GPU"}' >"$out/env.json" ;;
    prepare)
        mkdir -p "$3/photos" "$3/weights" && touch "$3/weights/resnet50.pth" ;;
    time) echo '[]' >"$3/timings.json" ;;
    summary) exec "$REAL_PYTHON" "$@" ;;
    esac ;;
esac
"""


@pytest.mark.skipif(not shutil.which("timeout"), reason="needs coreutils timeout")
def test_script_flow_with_stand_ins(tmp_path):
    """The script's control flow (steps, flags, skips, exit status) with a fake GPU and Python."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "fake-python"
    fake.write_text(FAKE_PYTHON)
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'Fake GPU'\n")
    for path in (fake, smi):
        path.chmod(0o755)
    out = tmp_path / "out"
    calls = tmp_path / "calls.txt"
    env = {
        **_env(),
        "PYTHON": str(fake),
        "REAL_PYTHON": sys.executable,
        "CALLS": str(calls),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    done = _run(["bash", str(SCRIPT), str(out)], env=env)
    assert done.returncode == 1, done.stdout + done.stderr  # the one failing export
    data = json.loads((out / "summary.json").read_text())
    assert data["failures"] == ["tensorrt-vit_tiny_patch16_224-fp16"]
    status = {s["step"]: s["status"] for s in data["steps"]}
    assert status["tensorrt-resnet50-fp32"] == "ok"
    assert status["tensorrt-resnet50-int8"].startswith("not run: torchao not installed")
    assert status["onnx-resnet50"].startswith("not run: no onnxruntime CUDAExecutionProvider")
    exports = [line for line in calls.read_text().splitlines() if line.startswith("-m timmx")]
    assert len(exports) == 6  # fp32 and fp16 of three models
    resnet = next(line for line in exports if " resnet50 " in line)
    assert f"--checkpoint {out}/weights/resnet50.pth --verify-data {out}/photos" in resnet
    assert "--dynamic-batch --batch-size 8 --batch-min 1 --batch-max 8" in resnet
    assert "--device cuda --mode fp32" in resnet
    assert "--checkpoint" not in next(line for line in exports if " vit_tiny" in line)
    assert "engine build failed (stand-in)" in (out / "summary.md").read_text()
    assert "engine build failed (stand-in)" in (out / "gpu_check.log").read_text()
