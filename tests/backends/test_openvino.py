"""OpenVINO IR (.xml + .bin): every mode exported from timm's tiny models and run by the CPU
plugin; the default-precision report; telemetry never sent."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import assert_passed, leftovers
from PIL import Image

import timmx
import timmx.core.backend as backend_module
from timmx._torch_env import import_timm
from timmx.backends import openvino as openvino_backend
from timmx.backends.openvino import compile_ir, openvino_runner, read_metadata
from timmx.core.registry import default_registry
from timmx.testing import live_weights

TELEMETRY_VARIABLES = ("CI", "TF_BUILD", "JENKINS_URL", "NNCF_CI", "NNCF_DEV")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("openvino_images")
    rng = np.random.default_rng(3)
    for i in range(4):
        pixels = rng.integers(0, 256, (120 + 8 * i, 150, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.{'png' if i % 2 else 'jpg'}")
    return folder


def test_fp32_dynamic_batch_matches_pytorch_and_carries_metadata(export_json, tmp_path):
    out = tmp_path / "resnet.xml"
    data = export_json("openvino", "test_resnet", "-o", out, "--dynamic-batch", "--batch-size", 2)
    assert_passed(data, max_abs=1e-4)
    verify = data["verify"]
    assert verify["runtime"] == "OpenVINO CPU" and verify["precision"] == "fp32", verify
    assert sorted(set(verify["batch_sizes"])) == [2, 3], f"dynamic batch runs two sizes: {verify}"
    assert verify["default_precision"] in ("f32", "bf16", "f16"), verify
    assert verify["default_max_abs_err"] is not None, "the default precision's error is reported"
    assert "default precision" in data["details"]["default"], data["details"]
    assert leftovers(tmp_path) == ["resnet.bin", "resnet.xml"], leftovers(tmp_path)
    both = out.stat().st_size + out.with_suffix(".bin").stat().st_size
    assert data["size_bytes"] == both, "the size counts the .bin of weights beside the .xml"
    meta = read_metadata(out)
    assert meta["model"] == "test_resnet" and meta["openvino_mode"] == "fp32", meta
    assert json.loads(meta["input_shape"]) == [-1, 3, 160, 160], meta["input_shape"]
    compiled = compile_ir(out, {"INFERENCE_PRECISION_HINT": "f32"})
    names = compiled.inputs[0].get_names(), compiled.outputs[0].get_names()
    assert names == ({"input"}, {"output"}), f"tensor names {names}"
    assert str(compiled.inputs[0].get_partial_shape()) == "[?,3,160,160]", "batch is dynamic"
    run = openvino_runner(compiled)
    assert run(np.zeros((5, 3, 160, 160), np.float32)).shape == (5, 1000), "any batch runs"


def test_fp16_convnext_stores_half_weights(export_json, tmp_path):
    out = tmp_path / "convnext.xml"
    data = export_json("openvino", "test_convnext", "-o", out, "--mode", "fp16")
    assert_passed(data, max_abs=5e-2)
    assert data["verify"]["precision"] == "fp16", data["verify"]
    assert "fp16 vs fp32 PyTorch" in data["details"]["accuracy"], data["details"]
    xml = out.read_text()
    assert 'element_type="f16"' in xml, "fp16 mode stores float16 constants"
    assert "Convert" in xml, "float16 weights are decompressed to f32 at load"


def test_int8_vit_uses_the_transformer_scheme(export_json, tmp_path, photos):
    out = tmp_path / "vit.xml"
    data = export_json(
        "openvino",
        "test_vit",
        "-o",
        out,
        "--mode",
        "int8",
        "--calibration-data",
        photos,
    )
    assert_passed(data)
    assert data["verify"]["precision"] == "int8", data["verify"]
    assert data["details"]["nncf"] == "preset performance, model type transformer", data["details"]
    assert "FakeQuantize" in out.read_text(), "NNCF inserts FakeQuantize operations"
    meta = read_metadata(out)
    assert meta["nncf_model_type"] == "transformer" and meta["openvino_mode"] == "int8", meta


def test_int8_resnet_from_images_mixed_preset(tmp_path, image_folder):
    result = timmx.export(
        "openvino",
        "test_resnet",
        output=tmp_path / "resnet.xml",
        mode="int8",
        preset="mixed",
        calibration_data=image_folder,
        batch_size=2,
        dynamic_batch=True,
    )
    report = result.verify
    assert report.checked and report.passed, f"int8 verification: {report}"
    assert report.cosine >= 0.98, f"int8 cosine {report.cosine}"
    assert result.details["nncf"] == "preset mixed, model type cnn", result.details
    assert "batches of 2" in result.details["calibration"], result.details
    assert "batch 3:" in report.note, f"the dynamic batch is checked at 3 too: {report.note}"


def test_bf16_default_precision_is_reported_with_a_warning(tmp_path, monkeypatch):
    """On a CPU with native bf16 the plugin computes in bf16 by default. This CPU's default is
    emulated by giving the 'default' compile the bf16 hint (OpenVINO runs bf16 here too)."""
    timm = import_timm()
    model = timm.create_model("test_efficientnet")
    live_weights(model)  # realistic logits: random init's are ~1e-3 and hide bf16's error
    checkpoint = tmp_path / "live.pth"
    torch.save(model.state_dict(), checkpoint)
    monkeypatch.setattr(openvino_backend, "DEFAULT_CONFIG", {"INFERENCE_PRECISION_HINT": "bf16"})
    result = timmx.export(
        "openvino", "test_efficientnet", output=tmp_path / "m.xml", checkpoint=checkpoint
    )
    report = result.verify
    assert report.passed and report.max_abs_err < 1e-3, f"the f32 hint verifies: {report}"
    assert report.default_precision == "bf16", report
    assert report.default_max_abs_err > 10 * report.max_abs_err, report
    assert report.to_dict()["default_precision"] == "bf16", "the JSON carries the field"
    warnings = [note for note in result.notes if "default inference precision is bf16" in note]
    assert warnings and "INFERENCE_PRECISION_HINT': 'f32'" in warnings[0], result.notes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "mixed"], "only applies to --mode int8"),
        (["--model-type", "cnn", "--mode", "fp16"], "only applies to --mode int8"),
        (["--mode", "int8"], "needs calibration data"),
        (["--mode", "fp16", "--random-calibration"], "would be ignored"),
        (["-o", "model.onnx"], "name --output model.xml"),
    ],
)
def test_bad_options_exit_2_and_leave_nothing(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = cli("export", "openvino", "test_resnet", *args)
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.stdout} {result.stderr}"
    assert message in result.stderr, f"{message!r} not in {result.stderr!r}"
    assert leftovers(tmp_path) == [], f"nothing is written: {leftovers(tmp_path)}"


# The probe records every message openvino-telemetry would send and every consent/client-id
# file it would touch; it never reaches the network (the sender is replaced, not called).
PROBE = textwrap.dedent(
    """
    import json, os, sys
    from openvino_telemetry.utils import sender
    sent = []
    sender.TelemetrySender.send = lambda self, backend, message: sent.append(str(message))
    {body}
    home = os.environ["HOME"]
    print(json.dumps({{"sent": len(sent), "intel": os.path.exists(os.path.join(home, "intel")),
                      "ci": os.environ.get("CI"), "nncf_ci": os.environ.get("NNCF_CI")}}))
    """
)


def _probe(tmp_path, body: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in TELEMETRY_VARIABLES}
    env.update(HOME=str(tmp_path), TIMMX_IN_PROCESS="1")
    script = PROBE.format(body=textwrap.dedent(body))
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_openvino_alone_would_send_telemetry(tmp_path):
    """The control: a plain `import openvino` outside CI sends and writes ~/intel."""
    found = _probe(tmp_path, "import openvino")
    assert found["sent"] > 0 and found["intel"], f"the probe saw no telemetry: {found}"


def test_exports_send_no_telemetry_and_touch_no_home_files(tmp_path):
    found = _probe(
        tmp_path,
        """
        import timmx
        for mode in ("fp32", "int8"):
            extra = {"random_calibration": True, "calibration_samples": 2} if mode == "int8" else {}
            result = timmx.export("openvino", "test_resnet", output=f"m_{mode}.xml", mode=mode,
                                  **extra)
            assert result.verify.passed, result.verify
        """,
    )
    assert found["sent"] == 0, f"telemetry messages were queued: {found}"
    assert not found["intel"], "~/intel (consent / client id) was created"
    assert found["ci"] is None and found["nncf_ci"] is None, f"environment not restored: {found}"


def test_doctor_row_and_install_command(cli, monkeypatch):
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.stderr
    row = {r["backend"]: r for r in json.loads(result.stdout)["backends"]}["openvino"]
    assert row["available"], f"openvino should be available here: {row}"
    assert row["versions"]["openvino"] and row["versions"]["nncf"], row
    backend = default_registry().get("openvino")
    real = backend_module.installed_version
    monkeypatch.setattr(
        backend_module, "installed_version", lambda d: None if d == "nncf" else real(d)
    )
    state = backend.check_dependencies()
    assert not state.available and state.missing == ["nncf"], state
    assert "pip install 'timmx[openvino]'" in state.install_hint, state.install_hint
    assert "uv sync --extra openvino" in state.install_hint, state.install_hint
