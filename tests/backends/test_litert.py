"""LiteRT (.tflite): every mode exported from timm's tiny models and run in the interpreter."""

import json

import numpy as np
import pytest
import torch
from ai_edge_litert.interpreter import Interpreter
from conftest import assert_passed, leftovers
from PIL import Image
from typer.testing import CliRunner

import timmx
from timmx.backends.litert import read_metadata
from timmx.cli.app import app


def tensor_details(path):
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("litert_images")
    rng = np.random.default_rng(1)
    for i in range(4):
        pixels = rng.integers(0, 256, (96 + 8 * i, 128, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.{'png' if i % 2 else 'jpg'}")
    return folder


def test_fp32_resnet_matches_pytorch_and_carries_metadata(export_json, tmp_path):
    out = tmp_path / "resnet.tflite"
    data = export_json("litert", "test_resnet", "-o", out)
    assert_passed(data, max_abs=1e-4)
    assert data["verify"]["runtime"] == "ai-edge-litert", data["verify"]
    assert data["verify"]["precision"] == "fp32", data["verify"]
    meta = read_metadata(out)
    assert meta["model"] == "test_resnet", f"metadata names the model: {meta}"
    assert meta["litert_mode"] == "fp32" and meta["input_layout"] == "NCHW", meta
    assert leftovers(tmp_path) == ["resnet.tflite"], f"only the artifact: {leftovers(tmp_path)}"


def test_fp16_convnext_has_fp16_weights_and_reports_accuracy(export_json, tmp_path):
    out = tmp_path / "convnext.tflite"
    data = export_json("litert", "test_convnext", "-o", out, "--mode", "fp16")
    assert_passed(data, max_abs=5e-2)
    assert data["verify"]["precision"] == "fp16", data["verify"]
    assert data["verify"]["top1_agree"] is not None, "fp16 reports top-1 agreement"
    assert "fp16 vs fp32 PyTorch on 16 samples" in data["details"]["accuracy"], data["details"]
    dtypes = {d["dtype"] for d in tensor_details(out).get_tensor_details()}
    assert np.float16 in dtypes, f"fp16 mode stores float16 weights, found {dtypes}"


def test_dynamic_int8_efficientnet(export_json, tmp_path):
    out = tmp_path / "effnet.tflite"
    data = export_json("litert", "test_efficientnet", "-o", out, "--mode", "dynamic-int8")
    assert_passed(data)
    assert data["verify"]["precision"] == "dynamic-int8", data["verify"]
    assert "top-1 agreement" in data["details"]["accuracy"], data["details"]
    interpreter = tensor_details(out)
    assert interpreter.get_input_details()[0]["dtype"] == np.float32, "float input kept"
    dtypes = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.int8 in dtypes, f"dynamic-int8 stores int8 weights, found {dtypes}"


def test_int8_from_image_folder_with_normalize_and_nhwc(export_json, tmp_path, image_folder):
    out = tmp_path / "resnet_int8.tflite"
    data = export_json(
        "litert",
        "test_resnet",
        "-o",
        out,
        "--mode",
        "int8",
        "--calibration-data",
        image_folder,
        "--normalize",
        "--nhwc-input",
        "--batch-size",
        "2",
    )
    assert_passed(data)
    assert data["verify"]["precision"] == "int8", data["verify"]
    # 4 images: 3 calibrate, 1 is held out to verify on
    assert data["details"]["calibration"].startswith("3 samples in 2 batches of 2"), data["details"]
    assert "held out of --calibration-data" in data["verify"]["inputs"], data["verify"]
    interpreter = tensor_details(out)
    source = interpreter.get_input_details()[0]
    dtypes = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.int8 in dtypes, f"int8 mode has int8 tensors, found {dtypes}"
    assert list(source["shape"]) == [2, 160, 160, 3], f"NHWC input: {source['shape']}"
    meta = read_metadata(out)
    assert meta["input_layout"] == "NHWC" and json.loads(meta["input_shape"]) == [2, 160, 160, 3]


def test_int8_vit_from_tensor_file_python_api(tmp_path):
    calib = tmp_path / "calib.pt"
    torch.save(torch.rand(3, 3, 160, 160) * 4 - 2, calib)
    result = timmx.export(
        "litert",
        "test_vit",
        output=tmp_path / "vit.tflite",
        mode="int8",
        calibration_data=calib,
    )
    report = result.verify
    assert report.checked and report.passed, f"int8 ViT verification: {report}"
    assert report.cosine >= 0.98, f"int8 cosine {report.cosine}"
    assert any("int8" in note for note in result.notes), f"int8 I/O is noted: {result.notes}"
    assert result.details["calibration"].startswith("3 samples in 3 batches of 1"), result.details


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "fp16", "--random-calibration"], "would be ignored"),
        (["--mode", "dynamic-int8", "--calibration-samples", "4"], "would be ignored"),
        (["--mode", "int8"], "needs calibration data"),
        (["--mean", "0.5", "0.5", "0.5"], "add --normalize"),
        (["--mode", "int8", "--random-calibration", "--device", "cuda"], "exports on the CPU"),
        (["--mode", "int8", "--calibration-data", "/nonexistent/x.pt"], "does not exist"),
    ],
)
def test_bad_options_exit_2_and_leave_nothing(cli, tmp_path, args, message):
    result = cli("export", "litert", "test_resnet", "-o", tmp_path / "m.tflite", *args)
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.stdout} {result.stderr}"
    assert message in result.stderr, f"{message!r} not in {result.stderr!r}"
    assert leftovers(tmp_path) == [], f"nothing is written: {leftovers(tmp_path)}"


def test_bad_calibration_data_exit_2(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    result = cli(
        "export",
        "litert",
        "test_resnet",
        "-o",
        out / "m.tflite",
        "--mode",
        "int8",
        "--calibration-data",
        empty,
    )
    assert result.exit_code == 2 and "holds no images" in result.stderr, result.stderr
    wrong = tmp_path / "wrong.pt"
    torch.save(torch.zeros(2, 3, 64, 64), wrong)
    result = cli(
        "export",
        "litert",
        "test_resnet",
        "-o",
        out / "m.tflite",
        "--mode",
        "int8",
        "--calibration-data",
        wrong,
    )
    assert result.exit_code == 2, f"wrong tensor shape exits 2, got {result.exit_code}"
    assert "model takes (3, 160, 160)" in result.stderr, result.stderr
    assert leftovers(out) == [], f"nothing is written: {leftovers(out)}"


def test_help_lists_litert_flags():
    result = CliRunner().invoke(app, ["export", "litert", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    for flag in (
        "--mode",
        "--nhwc-input",
        "--calibration-data",
        "--calibration-samples",
        "--calibration-steps",
        "--random-calibration",
    ):
        assert flag in result.stdout, f"{flag} missing from help"


def test_doctor_shows_litert_with_versions(cli):
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {row["backend"]: row for row in json.loads(result.stdout)["backends"]}
    row = rows["litert"]
    assert row["available"], f"litert is installed here: {row}"
    assert row["versions"].get("litert-torch"), f"litert-torch version shown: {row}"
