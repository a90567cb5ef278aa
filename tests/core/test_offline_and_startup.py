"""No network: --pretrained fails once, fast, naming --checkpoint, and uses cached weights.
Errors that need no model answer without importing torch."""

import os
import subprocess
import sys

import onnx
import pytest
from safetensors.torch import save_file

import timmx
from timmx._torch_env import import_timm
from timmx.core.model_index import model_index

UNREACHABLE = "http://127.0.0.1:9"  # the discard port on loopback: nothing answers


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """A hub endpoint that refuses connections and an empty hub cache of our own."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    monkeypatch.setattr(constants, "ENDPOINT", UNREACHABLE)  # read at import time
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cache


def test_pretrained_without_network_fails_once_naming_checkpoint(cli, offline, tmp_path):
    result = cli("export", "onnx", "resnet18", "--pretrained", "-o", tmp_path / "r.onnx")
    assert result.exit_code == 2, result.stderr
    assert "unreachable" in result.stderr and "--checkpoint" in result.stderr, result.stderr
    assert "Retrying" not in result.stdout + result.stderr, "huggingface_hub retried"
    assert result.stderr.count("\n") <= 2, f"more than one message: {result.stderr}"
    assert not (tmp_path / "r.onnx").exists()


def test_pretrained_without_network_loads_cached_weights(offline, tmp_path):
    model = import_timm().create_model("test_resnet")
    repo = offline / "models--timm--test_resnet.r160_in1k"
    revision = "0" * 40
    (repo / "snapshots" / revision).mkdir(parents=True)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, repo / "snapshots" / revision / "model.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    result = timmx.export("onnx", "test_resnet", output=tmp_path / "m.onnx", pretrained=True)
    assert result.verify.passed, result.verify
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props["weights"] == "pretrained timm/test_resnet.r160_in1k", props["weights"]


PROBE = """
import sys
from typer.testing import CliRunner
from timmx.cli.app import app
result = CliRunner().invoke(app, {args!r})
heavy = [m for m in ("torch", "timm", "torchvision") if m in sys.modules]
print(result.exit_code, ",".join(heavy))
print(result.stderr, file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["export", "onnx", "resnet5"], 2, "Did you mean: resnet50"),
        (["export", "c", "resnet5", "-o", "x"], 2, "Unknown model"),
        (["export", "onnx", "test_resnet", "--device", "cuda"], 2, "--device cuda needs"),
        (["export", "onnx", "test_resnet", "--input-size", "3", "99999", "99999"], 2, "GiB"),
        (["list", "convnext_t"], 0, ""),
        (["info", "resnet5"], 2, "Unknown model"),
    ],
)
def test_errors_without_a_model_import_no_torch(tmp_path, args, code, message):
    model_index()  # the index exists (built once per timm version)
    env = {**os.environ}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=args)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    exit_code, heavy = (
        done.stdout.strip().split(" ", 1)
        if " " in done.stdout.strip()
        else (
            done.stdout.strip(),
            "",
        )
    )
    assert int(exit_code) == code, done.stderr
    assert heavy == "", f"{args} imported {heavy}"
    assert message in done.stderr, done.stderr
