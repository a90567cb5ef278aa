"""The command line: help, version, doctor, list, info, and start-up cost."""

import json
import subprocess
import sys

import torch

import timmx
from timmx._torch_env import import_timm
from timmx.core.registry import default_registry

CORE_FORMATS = {"onnx", "torch-export", "torchscript"}


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"timmx {timmx.__version__}", result.stdout


def test_export_help_lists_every_registered_format(cli):
    result = cli("export", "--help")
    assert result.exit_code == 0, result.stderr
    for name in default_registry().names():
        assert name in result.stdout, f"{name} missing from `timmx export --help`"


def test_backend_help_shows_shared_and_own_flags(cli):
    result = cli("export", "onnx", "--help")
    assert result.exit_code == 0, result.stderr
    for flag in ("--output", "--checkpoint", "--normalize", "--verify", "--json", "--opset"):
        assert flag in result.stdout, f"{flag} missing from onnx help"


def test_help_and_doctor_do_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from timmx.cli.app import app\n"
        "for args in (['--help'], ['doctor'], ['export', 'onnx', '--help']):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        "heavy = [m for m in ('torch', 'timm', 'onnx', 'onnxruntime', 'coremltools', 'numpy')\n"
        "         if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported at start-up: {out.stdout}"


def test_import_timmx_does_not_import_torch():
    code = "import sys, timmx; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", "import timmx imported torch"


def test_doctor_reports_core_backends(cli):
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    rows = {row["backend"]: row for row in data["backends"]}
    assert set(rows) >= CORE_FORMATS, f"doctor misses backends: {set(rows)}"
    assert rows["onnx"]["available"], f"onnx reported unavailable: {rows['onnx']}"
    assert rows["onnx"]["versions"]["onnxruntime"], "onnxruntime version missing"
    assert data["core"]["torch"].startswith("2."), data["core"]
    text = cli("doctor")
    assert text.exit_code == 0 and "onnx" in text.stdout, text.stdout


def test_doctor_survives_a_backend_whose_check_explodes(cli, monkeypatch):
    backend = default_registry().get("onnx")

    def explode():
        raise ImportError("broken install")

    monkeypatch.setattr(backend, "check_dependencies", explode)
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {row["backend"]: row for row in json.loads(result.stdout)["backends"]}
    assert not rows["onnx"]["available"], "a broken backend was reported available"
    assert "broken install" in rows["onnx"]["detail"], rows["onnx"]


def test_list_substring_and_glob(cli):
    result = cli("list", "test_vit")
    assert result.exit_code == 0, result.stderr
    names = result.stdout.split()
    assert "test_vit" in names and "test_vit2" in names, names
    glob = cli("list", "test_conv*").stdout.split()
    assert glob and all(n.startswith("test_conv") for n in glob), glob


def test_list_pretrained_only_is_a_subset(cli):
    everything = set(cli("list", "resnet1").stdout.split())
    pretrained = set(cli("list", "resnet1", "--pretrained-only").stdout.split())
    assert pretrained, "no pretrained resnet1* weights listed"
    assert all("." in name for name in pretrained), "pretrained names should carry their tag"
    bare = {name.split(".", 1)[0] for name in pretrained}
    assert bare <= everything, f"pretrained-only listed unknown models: {bare - everything}"


def test_info_json(cli):
    result = cli("info", "test_vit", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["input_size"] == [3, 160, 160], data
    assert data["params"] > 0 and data["num_classes"] == 1000, data
    assert data["mean"] == [0.5, 0.5, 0.5] and data["interpolation"] == "bicubic", data
    assert data["feature_dim"] == 64, data
    assert data["weights"] == "random init", data


def test_info_describes_the_model_as_exported(cli, tmp_path):
    """--num-classes, --in-chans and --checkpoint change what info describes, as in export."""
    result = cli("info", "test_resnet", "--num-classes", "7", "--in-chans", "1", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["num_classes"] == 7 and data["input_size"][0] == 1, data
    assert len(data["mean"]) == 1, data
    model = import_timm().create_model("test_resnet", num_classes=10)
    checkpoint = tmp_path / "ten.pth"
    torch.save(model.state_dict(), checkpoint)
    result = cli("info", "test_resnet", "--num-classes", "10", "--checkpoint", checkpoint, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["num_classes"] == 10 and data["weights"] == "checkpoint ten.pth", data


def test_info_unknown_model(cli):
    result = cli("info", "vit_tiny_patch16_2244")
    assert result.exit_code == 2, result.stdout
    assert "vit_tiny_patch16_224" in result.stderr, result.stderr
