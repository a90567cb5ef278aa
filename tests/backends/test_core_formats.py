"""torchscript, torch-export and onnx: real exports of timm's tiny models, run and compared."""

import json
import zipfile

import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import assert_passed

import timmx

TINY_MODELS = ["test_resnet", "test_efficientnet", "test_convnext", "test_vit", "test_byobnet"]
FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "torch-export": ".pt2"}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("model", TINY_MODELS)
def test_tiny_model_exports_and_verifies(export_json, tmp_path, fmt, model):
    out = tmp_path / f"{model}{FORMATS[fmt]}"
    data = export_json(fmt, model, "-o", out)
    assert_passed(data, max_abs=1e-4)
    assert out.is_file() and data["size_bytes"] == out.stat().st_size, "size not reported"
    assert data["format"] == fmt and data["model"] == model, data
    assert data["verify"]["top1_agree"] == 1.0, data["verify"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name], "stray files left"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_normalize_softmax_grayscale(export_json, tmp_path, fmt):
    out = tmp_path / f"m{FORMATS[fmt]}"
    data = export_json(
        fmt,
        "test_efficientnet",
        "-o",
        out,
        "--normalize",
        "--softmax",
        "--in-chans",
        "1",
        "--mean",
        "0.4",
        "0.5",
        "0.6",
        "--std",
        "0.2",
        "0.25",
        "0.3",
    )
    assert_passed(data, max_abs=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "torch-export"])
def test_dynamic_batch_checks_a_second_batch_size(export_json, tmp_path, fmt):
    out = tmp_path / f"m{FORMATS[fmt]}"
    data = export_json(fmt, "test_convnext", "-o", out, "--dynamic-batch", "--batch-size", "2")
    assert_passed(data, max_abs=1e-4)
    assert sorted(set(data["verify"]["batch_sizes"])) == [2, 3], data["verify"]


def test_onnx_dynamic_batch_runs_any_batch(tmp_path):
    out = tmp_path / "m.onnx"
    timmx.export("onnx", "test_resnet", output=out, dynamic_batch=True, batch_size=2)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        y = session.run(None, {"input": torch.rand(batch, 3, 160, 160).numpy()})[0]
        assert y.shape == (batch, 1000), f"batch {batch} gave {y.shape}"


def test_onnx_metadata_props(tmp_path):
    out = tmp_path / "m.onnx"
    timmx.export("onnx", "test_vit", output=out, normalize=True)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["model"] == "test_vit", props
    assert json.loads(props["input_shape"]) == [1, 3, 160, 160], props
    assert json.loads(props["mean"]) == [0.5, 0.5, 0.5], props
    assert props["normalize_baked_in"] == "true" and props["softmax_baked_in"] == "false"
    assert len(json.loads(props["labels"])) == 1000, "labels missing"
    assert props["timmx_version"] == timmx.__version__, props
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["model"] == "test_vit", "ort cannot read it"


def test_onnx_external_data_and_no_slim(export_json, tmp_path):
    out = tmp_path / "m.onnx"
    data = export_json("onnx", "test_resnet", "-o", out, "--external-data", "--no-slim")
    assert_passed(data, max_abs=1e-4)
    assert (tmp_path / "m.onnx.data").is_file(), "external data file missing"
    assert out.stat().st_size < 100_000, "weights still inline"


def test_onnx_opset_is_applied(tmp_path):
    out = tmp_path / "m.onnx"
    timmx.export("onnx", "test_resnet", output=out, opset=20)
    opsets = {o.domain: o.version for o in onnx.load(str(out)).opset_import}
    assert opsets[""] == 20, opsets


def test_torchscript_script_method_and_metadata(export_json, tmp_path):
    out = tmp_path / "m.pt"
    data = export_json("torchscript", "test_resnet", "-o", out, "--method", "script")
    assert_passed(data, max_abs=1e-5)
    files = {"metadata.json": ""}
    torch.jit.load(str(out), _extra_files=files)
    assert json.loads(files["metadata.json"])["model"] == "test_resnet", files


@pytest.mark.parametrize("flags", [["--normalize"], ["--softmax"], ["--normalize", "--softmax"]])
def test_torchscript_script_method_with_the_wrapper(export_json, tmp_path, flags):
    """The normalize/softmax wrapper is scriptable (it was not: 'python value of type bool')."""
    out = tmp_path / "m.pt"
    data = export_json("torchscript", "test_resnet", "-o", out, "--method", "script", *flags)
    assert_passed(data, max_abs=1e-5)
    files = {"metadata.json": ""}
    torch.jit.load(str(out), _extra_files=files)
    meta = json.loads(files["metadata.json"])
    assert meta["normalize_baked_in"] == str("--normalize" in flags).lower(), meta
    assert meta["softmax_baked_in"] == str("--softmax" in flags).lower(), meta


def test_torch_export_metadata_and_strict(export_json, tmp_path):
    out = tmp_path / "m.pt2"
    data = export_json("torch-export", "test_resnet", "-o", out, "--strict")
    assert_passed(data, max_abs=1e-5)
    with zipfile.ZipFile(out) as archive:
        names = [n for n in archive.namelist() if n.endswith("metadata.json")]
        assert names, f"metadata.json not in the .pt2: {archive.namelist()}"
        meta = json.loads(archive.read(names[0]))
    assert meta["model"] == "test_resnet", meta


def test_overwrites_existing_output_only_on_success(tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    result = timmx.export("onnx", "test_resnet", output=out)
    assert result.verify.passed and out.read_bytes() != b"old", "existing output not replaced"


def test_default_output_name(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    result = cli("export", "torchscript", "test_resnet")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "test_resnet.pt").is_file(), list(tmp_path.iterdir())
    assert "Exported test_resnet to torchscript" in result.stdout, result.stdout
    assert "passed in torch.jit" in result.stdout, result.stdout


def test_api_returns_result(tmp_path):
    result = timmx.export("torchscript", "test_resnet", output=str(tmp_path / "m.pt"))
    assert result.output == tmp_path / "m.pt" and result.size_bytes > 0, result
    assert result.verify.passed and result.verify.runtime == "torch.jit", result.verify
    assert set(result.to_dict()) >= {"format", "model", "output", "size_bytes", "seconds"}
    assert "onnx" in timmx.backends(), timmx.backends()
