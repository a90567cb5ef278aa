"""ncnn backend: pnnx conversion of timm's tiny models, verified in the ncnn runtime."""

import json
import subprocess
from pathlib import Path

import pytest
from conftest import assert_passed, leftovers

import timmx
from timmx.backends import ncnn as ncnn_backend
from timmx.backends.ncnn import NCNN_FILES, unlowered_operators
from timmx.core.registry import create_builtin_registry
from timmx.core.tolerances import tolerance_for

EXPECTED_FILES = sorted([*NCNN_FILES, "timmx.json"])


def test_help_lists_ncnn_options(cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TERMINAL_WIDTH", "250")
    result = cli("export", "ncnn", "--help")
    assert result.exit_code == 0, f"help failed: {result.stderr}"
    assert "--fp16" in result.stdout and "--no-fp16" in result.stdout, "fp16 toggle missing"


def test_registry_and_doctor(cli) -> None:
    assert "ncnn" in create_builtin_registry().names(), "ncnn is not registered"
    result = cli("doctor", "--json")
    assert result.exit_code == 0, f"doctor failed: {result.stderr}"
    row = {r["backend"]: r for r in json.loads(result.stdout)["backends"]}["ncnn"]
    assert row["available"], f"ncnn should be available here: {row}"
    assert row["versions"]["pnnx"] and row["versions"]["ncnn"], f"versions missing: {row}"


@pytest.mark.parametrize(
    ("model", "args", "precision"),
    [
        ("test_resnet", [], "fp16"),
        ("test_efficientnet", ["--no-fp16"], "fp32"),
        ("test_convnext", [], "fp16"),
    ],
)
def test_export_runs_in_ncnn(export_json, tmp_path: Path, model, args, precision) -> None:
    out = tmp_path / "out"
    data = export_json("ncnn", model, "-o", out, *args)
    assert_passed(data)
    assert data["verify"]["precision"] == precision, f"precision: {data['verify']}"
    assert data["verify"]["top1_agree"] == 1.0, f"top-1 must agree: {data['verify']}"
    assert leftovers(out) == EXPECTED_FILES, f"unexpected files: {leftovers(out)}"
    assert leftovers(tmp_path) == ["out"], (
        f"pnnx left files beside the output: {leftovers(tmp_path)}"
    )
    meta = json.loads((out / "timmx.json").read_text())
    assert meta["model"] == model, f"metadata names {meta['model']}"
    assert meta["fp16_weights"] == ("false" if args else "true"), f"fp16 flag: {meta}"
    assert meta["ncnn_input"] == "in0" and meta["ncnn_output"] == "out0", f"blobs: {meta}"
    if precision == "fp32":
        # fp16 storage off: float32 rounding only (live weights' logits reach ~10; fp16: ~1e-2)
        assert data["verify"]["max_abs_err"] < 1e-4, f"fp32 should be near exact: {data['verify']}"


def test_fp16_halves_the_weights(export_json, tmp_path: Path) -> None:
    half = export_json("ncnn", "test_resnet", "-o", tmp_path / "h")
    full = export_json("ncnn", "test_resnet", "-o", tmp_path / "f", "--no-fp16")
    ratio = (tmp_path / "h" / "model.ncnn.bin").stat().st_size / (
        tmp_path / "f" / "model.ncnn.bin"
    ).stat().st_size
    assert 0.45 < ratio < 0.55, f"fp16 bin should be half the fp32 one, ratio {ratio:.2f}"
    assert half["verify"]["passed"] and full["verify"]["passed"], "both must verify"


def test_default_output_dir_and_cwd_untouched(export_json, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = export_json("ncnn", "test_resnet", "--softmax")
    assert_passed(data)
    assert data["output"] == "test_resnet_ncnn", f"default output: {data['output']}"
    assert leftovers(tmp_path) == ["test_resnet_ncnn"], f"stray files in cwd: {leftovers(tmp_path)}"


def test_python_api_and_model_ncnn_py(tmp_path: Path) -> None:
    out = tmp_path / "api"
    result = timmx.export("ncnn", "test_efficientnet", output=out, normalize=True)
    assert result.verify is not None and result.verify.passed, f"verify: {result.verify}"
    script = (out / "model_ncnn.py").read_text()
    assert "model.ncnn.param" in script and "in0" in script, "pnnx's example script is missing"


def test_unlowered_model_fails_clearly(cli, tmp_path: Path) -> None:
    # test_vit3 pools with timm's AttentionPoolLatent (a 5-D kv split, not rewritten)
    out = tmp_path / "vit"
    result = cli("export", "ncnn", "test_vit3", "-o", out)
    assert result.exit_code == 2, f"expected exit 2, got {result.exit_code}: {result.stderr}"
    assert "could not convert" in result.stderr, f"unclear error: {result.stderr}"
    assert "torch.unbind" in result.stderr, f"the failing operator is not named: {result.stderr}"
    assert leftovers(tmp_path) == [], f"a failed export left files: {leftovers(tmp_path)}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "2"], "ncnn has no batch dimension"),
    ],
)
def test_bad_options(cli, tmp_path: Path, monkeypatch, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("export", "ncnn", "test_resnet", *args)
    assert result.exit_code == 2, f"expected exit 2, got {result.exit_code}: {result.stderr}"
    assert message in result.stderr, f"{message!r} not in: {result.stderr}"
    assert leftovers(tmp_path) == [], f"a failed export left files: {leftovers(tmp_path)}"


def test_output_is_a_file(cli, tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_text("keep")
    result = cli("export", "ncnn", "test_resnet", "-o", target)
    assert result.exit_code == 2, f"expected exit 2, got {result.exit_code}: {result.stderr}"
    assert "writes a directory" in result.stderr, f"unclear error: {result.stderr}"
    assert target.read_text() == "keep", "the existing file must be left alone"


def _fake_pnnx(tmp_path: Path, script: str) -> Path:
    binary = tmp_path / "fake_pnnx"
    binary.write_text("#!/bin/sh\n" + script)
    binary.chmod(0o755)
    return binary


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("echo 'segfault in pass_ncnn' >&2\nexit 3\n", "exit code 3"),
        (
            "echo 'pass_ncnn failed' \ntouch model.ncnn.param model.ncnn.bin\nexit 0\n",
            "did not write",
        ),
    ],
)
def test_silent_pnnx_failures_are_caught(cli, tmp_path: Path, monkeypatch, script, message) -> None:
    # pnnx can fail without raising (exit 0, files missing or empty): the export must say so.
    binary = _fake_pnnx(tmp_path, script)
    monkeypatch.setattr(ncnn_backend, "pnnx_executable", lambda: binary)
    out_dir = tmp_path / "outputs"
    out_dir.mkdir()
    result = cli("export", "ncnn", "test_resnet", "-o", out_dir / "m")
    assert result.exit_code == 2, f"expected exit 2, got {result.exit_code}: {result.stderr}"
    assert message in result.stderr, f"{message!r} not in: {result.stderr}"
    assert leftovers(out_dir) == [], f"a failed export left files: {leftovers(out_dir)}"


def test_unlowered_operator_detection(tmp_path: Path) -> None:
    param = tmp_path / "model.ncnn.param"
    param.write_text(
        "7767517\n3 3\nInput in0 0 1 in0\ntorch.unbind u 1 3 in0 a b c\nSoftmax s 1 1 a out0\n"
    )
    found = unlowered_operators(param, "ignore Tensor.reshape r param shape=(3,1,2)\n")
    assert found == ["Tensor.reshape", "torch.unbind"], f"found {found}"
    param.write_text("7767517\n2 2\nInput in0 0 1 in0\nSoftmax s 1 1 in0 out0\n")
    assert unlowered_operators(param, "") == [], "a clean param has no unlowered ops"


def test_pnnx_binary_is_bundled() -> None:
    binary = ncnn_backend.pnnx_executable()
    assert binary.is_file(), f"pnnx binary missing at {binary}"
    done = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60)
    assert "pnnx" in (done.stdout + done.stderr).lower(), "pnnx binary did not print its usage"


def test_tolerance_includes_top1() -> None:
    for precision in ("fp16", "fp32"):
        tolerance = tolerance_for("ncnn", precision)
        assert tolerance.min_top1 == 1.0, f"ncnn {precision}: top-1 must be part of the check"
    assert tolerance_for("ncnn", "fp16").atol >= 1e-2, "fp16 storage drifts ~1e-2: atol too tight"
