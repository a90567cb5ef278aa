"""Every bad input: exit code 2, a message on stderr, no traceback, nothing left behind."""

import pytest
import torch

import timmx


def assert_user_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, f"exit code {result.exit_code}, stderr: {result.stderr}"
    assert "Traceback" not in result.stderr, f"traceback shown: {result.stderr}"
    assert result.stderr.startswith("Error:"), f"no error on stderr: {result.stderr!r}"
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in: {result.stderr}"


def test_unknown_model_suggests_close_names(cli, tmp_path):
    result = cli("export", "onnx", "resnet5", "-o", tmp_path / "m.onnx")
    assert_user_error(result, "Unknown model 'resnet5'", "resnet50", "timmx list")
    assert list(tmp_path.iterdir()) == [], "a failed export left files"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mean", "0.5", "0.5", "0.5"], "add --normalize"),
        (["--std", "1", "1", "1"], "add --normalize"),
        (["--normalize", "--std", "0", "1", "1"], "--std values must be > 0"),
        (["--in-chans", "2"], "--in-chans must be 1 or 3"),
        (["--input-size", "3", "64", "64", "--in-chans", "1"], "make them agree"),
        (["--input-size", "4", "64", "64"], "channels must be 1 or 3"),
        (["--dynamic-batch"], "--batch-size >= 2"),
        (["--opset", "11"], "use >= 18"),
        (["--pretrained", "--checkpoint", "x.pth"], "pass only one"),
        (["--checkpoint", "missing.pth"], "does not exist"),
    ],
)
def test_invalid_flags(cli, tmp_path, args, message):
    result = cli("export", "onnx", "test_resnet", "-o", tmp_path / "m.onnx", *args)
    assert_user_error(result, message)
    assert list(tmp_path.iterdir()) == [], "a rejected export left files"


def test_unknown_format(cli):
    result = cli("export", "nosuchformat", "test_resnet")
    assert result.exit_code == 2, f"exit code {result.exit_code}"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a checkpoint at all", "corrupt, truncated"),
        ("truncated", "corrupt, truncated"),
        ("pickled", "pickled Python objects"),
        ("wrong-shape", "does not fit the model"),
        ("no-tensors", "holds no state_dict"),
    ],
)
def test_bad_checkpoints(cli, tmp_path, content, message):
    path = tmp_path / "ckpt.pth"
    if content == "truncated":
        torch.save({"w": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:300])
    elif content == "pickled":
        torch.save({"state_dict": {}, "when": __import__("datetime").datetime.now()}, path)
    elif content == "wrong-shape":
        torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    elif content == "no-tensors":
        torch.save({"epoch": 3}, path)
    else:
        path.write_bytes(content)
    out = tmp_path / "out"
    out.mkdir()
    result = cli("export", "onnx", "test_resnet", "--checkpoint", path, "-o", out / "m.onnx")
    assert_user_error(result, "checkpoint", message)
    assert list(out.iterdir()) == [], "a failed export left files"


def test_unwritable_output(cli, tmp_path):
    result = cli("export", "onnx", "test_resnet", "-o", "/proc/timmx-test/m.onnx")
    assert_user_error(result, "Cannot create output folder")


def test_output_folder_without_write_access(cli, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if __import__("os").access(locked, __import__("os").W_OK):
            pytest.skip("running as a user that can write anywhere (root ignores permissions)")
        result = cli("export", "onnx", "test_resnet", "-o", locked / "m.onnx")
        assert_user_error(result, "not writable")
    finally:
        locked.chmod(0o700)


def test_output_under_a_file_is_rejected(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = cli("export", "onnx", "test_resnet", "-o", blocker / "m.onnx")
    assert_user_error(result, "is a file, not a folder")


def test_output_that_is_a_directory_is_rejected(cli, tmp_path):
    result = cli("export", "onnx", "test_resnet", "-o", tmp_path)
    assert_user_error(result, "is a directory")


def test_verification_failure_leaves_no_file_and_keeps_the_old_one(fake_backend, tmp_path):
    fake_backend("wrong")
    target = tmp_path / "m.fake"
    target.write_bytes(b"previous export")
    with pytest.raises(timmx.VerificationError, match="max abs err") as info:
        timmx.export("fake", "test_resnet", output=target)
    assert info.value.report.max_abs_err == pytest.approx(1.0, abs=1e-5), "figures not reported"
    assert target.read_bytes() == b"previous export", "the existing file was destroyed"
    assert [p.name for p in tmp_path.iterdir()] == ["m.fake"], "staging files were left"


@pytest.mark.parametrize("behaviour", ["crash", "interrupt"])
def test_failed_or_interrupted_export_keeps_existing_file(fake_backend, tmp_path, behaviour):
    fake_backend(behaviour)
    target = tmp_path / "m.fake"
    target.write_bytes(b"previous export")
    expected = KeyboardInterrupt if behaviour == "interrupt" else timmx.ExportError
    with pytest.raises(expected):
        timmx.export("fake", "test_resnet", output=target)
    assert target.read_bytes() == b"previous export", "the existing file was destroyed"
    assert [p.name for p in tmp_path.iterdir()] == ["m.fake"], "partial files were left"


def test_no_verify_keeps_a_mismatching_artifact(fake_backend, tmp_path):
    fake_backend("wrong")
    result = timmx.export("fake", "test_resnet", output=tmp_path / "m.fake", verify=False)
    assert result.verify is None, "verification ran despite verify=False"
    assert (tmp_path / "m.fake").read_bytes() == b"partial", "artifact not written"


def test_missing_dependency_prints_install_command(fake_backend, tmp_path):
    fake_backend("ok", requires=("timmx-no-such-package",))
    with pytest.raises(timmx.DependencyError) as info:
        timmx.export("fake", "test_resnet", output=tmp_path / "m.fake")
    message = str(info.value)
    assert "timmx-no-such-package" in message, message
    assert "pip install 'timmx[fake]'" in message, message
    assert list(tmp_path.iterdir()) == [], "files written before the dependency check"


def test_api_rejects_unknown_options_and_choices(fake_backend, tmp_path):
    fake_backend("ok")
    with pytest.raises(timmx.ConfigurationError, match="Did you mean: level"):
        timmx.export("fake", "test_resnet", output=tmp_path / "m.fake", levle=2)
    with pytest.raises(timmx.ConfigurationError, match="choose one of: cpu, cuda, mps"):
        timmx.export("fake", "test_resnet", output=tmp_path / "m.fake", device="tpu")
    with pytest.raises(timmx.ConfigurationError, match="must be >= 1"):
        timmx.export("fake", "test_resnet", output=tmp_path / "m.fake", level=0)
    with pytest.raises(timmx.ConfigurationError, match="takes 3 values"):
        timmx.export("fake", "test_resnet", output=tmp_path / "m.fake", input_size=(3, 64))
    with pytest.raises(timmx.ConfigurationError, match="Unknown export format"):
        timmx.export("nosuch", "test_resnet")
