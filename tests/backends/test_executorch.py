"""ExecuTorch (.pte): XNNPACK fp32/int8 run in executorch.runtime; Core ML lowered here."""

import platform

import numpy as np
import pytest
import torch
from conftest import assert_passed, custom_prepared, leftovers
from PIL import Image

import timmx
from timmx.backends.executorch import read_metadata


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("et_images")
    rng = np.random.default_rng(2)
    for i in range(4):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        pixels = rng.integers(0, 256, (120, 100 + 10 * i, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"img{i}.{'webp' if i % 2 else 'bmp'}")
    return folder


def test_xnnpack_fp32_dynamic_batch_runs_two_batch_sizes(export_json, tmp_path):
    out = tmp_path / "resnet.pte"
    data = export_json(
        "executorch", "test_resnet", "-o", out, "--dynamic-batch", "--batch-size", "2"
    )
    assert_passed(data, max_abs=1e-4)
    assert data["verify"]["runtime"] == "executorch.runtime", data["verify"]
    assert sorted(set(data["verify"]["batch_sizes"])) == [2, 3], (
        f"two batch sizes: {data['verify']}"
    )
    meta = read_metadata(out)
    assert meta["model"] == "test_resnet", f"metadata carried in the program: {meta}"
    assert leftovers(tmp_path) == ["resnet.pte"], leftovers(tmp_path)


def test_xnnpack_int8_from_image_folder(export_json, tmp_path, image_folder):
    out = tmp_path / "resnet_int8.pte"
    data = export_json(
        "executorch",
        "test_resnet",
        "-o",
        out,
        "--mode",
        "int8",
        "--calibration-data",
        image_folder,
    )
    assert_passed(data)
    assert data["verify"]["precision"] == "int8", data["verify"]
    # 4 images: 3 calibrate, 1 is held out to verify on
    assert data["details"]["calibration"].startswith("3 samples in 3 batches of 1"), data["details"]
    assert "top-1 agreement" in data["details"]["accuracy"], data["details"]
    assert "held out of --calibration-data" in data["verify"]["inputs"], data["verify"]


def test_xnnpack_fp32_vit(export_json, tmp_path):
    data = export_json("executorch", "test_vit", "-o", tmp_path / "vit.pte")
    assert_passed(data, max_abs=1e-4)


def test_int8_from_tensor_file(tmp_path):
    calib = tmp_path / "calib.pt"
    torch.save(torch.rand(3, 3, 160, 160), calib)
    result = timmx.export(
        "executorch",
        "test_convnext",
        output=tmp_path / "convnext.pte",
        mode="int8",
        calibration_data=calib,
        normalize=True,
    )
    report = result.verify
    assert report.checked and report.passed, f"int8 verification: {report}"
    assert result.details["calibration"].startswith("3 samples in 3 batches of 1"), result.details


def test_xnnpack_int8_per_tensor_dynamic_batch(tmp_path):
    result = timmx.export(
        "executorch",
        "test_resnet",
        output=tmp_path / "resnet.pte",
        mode="int8",
        per_channel=False,
        random_calibration=True,
        calibration_samples=4,
        batch_size=2,
        dynamic_batch=True,
    )
    report = result.verify
    assert report.checked and report.passed, f"int8 per-tensor verification: {report}"
    assert "batch 3" in report.note, f"the second batch size is checked: {report.note}"


@pytest.mark.parametrize(
    "extra",
    [["--mode", "fp16"], ["--mode", "int8", "--random-calibration", "--calibration-samples", "2"]],
)
def test_coreml_delegate_lowers_here_and_says_unchecked(export_json, tmp_path, extra):
    out = tmp_path / "resnet_coreml.pte"
    data = export_json("executorch", "test_resnet", "-o", out, "--delegate", "coreml", *extra)
    assert out.is_file() and out.stat().st_size > 0, "the Core ML program is written"
    if platform.system() != "Darwin":
        assert not data["verify"]["checked"], "Core ML programs are not run off macOS"
        assert "macOS" in data["verify"]["note"], data["verify"]["note"]
    else:
        assert_passed(data)
    if "int8" in extra:
        assert "iOS 17" in data["details"]["coreml"], data["details"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "fp16"], "add --delegate coreml"),
        (["--compute-precision", "float32"], "only applies to --delegate coreml"),
        (
            ["--delegate", "coreml", "--mode", "fp16", "--compute-precision", "float32"],
            "computes in float16",
        ),
        (["--no-per-channel"], "only apply to --mode int8"),
        (["--dynamic-batch"], "--batch-size >= 2"),
        (["--calibration-data", "x.pt"], "would be ignored"),
        (["--mode", "int8"], "needs calibration data"),
        (["--mode", "int8", "--random-calibration", "--calibration-data", "."], "only one"),
        (["--std", "0.5", "0.5", "0.5"], "add --normalize"),
    ],
)
def test_bad_options_exit_2_and_leave_nothing(cli, tmp_path, args, message):
    result = cli("export", "executorch", "test_resnet", "-o", tmp_path / "m.pte", *args)
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.stdout} {result.stderr}"
    assert message in result.stderr, f"{message!r} not in {result.stderr!r}"
    assert leftovers(tmp_path) == [], f"nothing is written: {leftovers(tmp_path)}"


def test_wrong_calibration_tensor_exit_2(cli, tmp_path):
    wrong = tmp_path / "wrong.pt"
    torch.save(torch.zeros(2, 1, 160, 160), wrong)
    out = tmp_path / "out"
    out.mkdir()
    result = cli(
        "export",
        "executorch",
        "test_resnet",
        "-o",
        out / "m.pte",
        "--mode",
        "int8",
        "--calibration-data",
        wrong,
    )
    assert result.exit_code == 2, f"exit {result.exit_code}"
    assert "model takes (3, 160, 160)" in result.stderr, result.stderr
    assert leftovers(out) == [], leftovers(out)


def test_efficientformerv2_talking_heads_run_right_in_xnnpack(tmp_path):
    # ExecuTorch's XNNPACK delegate runs a softmax that follows a conv over the wrong axis:
    # EfficientFormer-V2's talking heads (1x1 convs over the heads around the softmax) gave
    # efficientformerv2_s0 cosine -0.12. The export swaps them for matrix products.
    from timmx._torch_env import import_timm

    import_timm()  # torchvision first
    from timm.models.efficientformer_v2 import Attention2d

    from timmx.backends._module_swaps import head_mixing_swaps, swapped
    from timmx.backends.executorch import executorch_runner, export_executorch

    torch.manual_seed(0)
    block = Attention2d(dim=16, key_dim=8, num_heads=4, attn_ratio=2, resolution=7)
    block.eval()  # (its train() returns None)
    with torch.no_grad():  # live: unit-gain norms, mixing heads that differ
        for m in block.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
        block.attention_biases.normal_()
    prepared = custom_prepared(block, (16, 7, 7))
    x = torch.randn(1, 16, 7, 7)
    with torch.no_grad():
        ref = block(x).numpy()
        twin, count = swapped(block, head_mixing_swaps())
        np.testing.assert_allclose(twin(x).numpy(), ref, rtol=1e-5, atol=1e-5)
    assert count == 1, "the swap must find timm's Attention2d"
    out = tmp_path / "attention2d.pte"
    export_executorch(prepared, out, compute_precision="float32")
    got = executorch_runner(out)(x.numpy())
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
