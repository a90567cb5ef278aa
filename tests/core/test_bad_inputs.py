"""The standing bad-input catalogue: every case exits 2 (or raises ConfigurationError from the
API) with a message naming the problem, shows no traceback, leaves nothing at or beside the
output, and keeps an existing artifact byte-identical.

Each case runs in an empty folder holding only the "existing artifacts" below; afterwards the
folder must hold exactly them, unchanged.
"""

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

import timmx

EXISTING = {
    "keep.onnx": b"an earlier onnx export",
    "keep.tflite": b"an earlier tflite export",
    "keep.pte": b"an earlier pte export",
    "keep.mlpackage/Manifest.json": b"{}",
    "userdir/notes.txt": b"the user's own notes",
    "c_export/timmx.json": b'{"format": "c"}',
    "c_export/model.c": b"/* an earlier C export */",
    "afile": b"a plain file",
    "emptydir/.keep": b"",
}


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def _files(tmp: Path) -> None:
    """Inputs the cases refer to (made beside the existing artifacts, in inputs/)."""
    inputs = tmp / "inputs"
    inputs.mkdir()
    (inputs / "garbage.pth").write_bytes(b"not a checkpoint at all")
    (inputs / "empty.pth").write_bytes(b"")
    torch.save({"w": torch.zeros(1000)}, inputs / "truncated.pth")
    data = (inputs / "truncated.pth").read_bytes()
    (inputs / "truncated.pth").write_bytes(data[:300])
    torch.save({"state_dict": {}, "x": _Evil()}, inputs / "code.pth")
    torch.save({"when": datetime.datetime(2026, 1, 1)}, inputs / "datetime.pth")
    torch.save({"fc.weight": torch.zeros(3, 3)}, inputs / "wrong_shape.pth")
    torch.save({"epoch": 3}, inputs / "no_tensors.pth")
    (inputs / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken json")
    torch.save(torch.zeros(4, 3, 160, 160).tolist(), inputs / "list.pt")
    torch.save(torch.zeros(4, 3, 64, 64), inputs / "wrong_size.pt")
    torch.save({"x": _Evil()}, inputs / "code.pt")
    (inputs / "garbage.pt").write_bytes(b"garbage")
    (inputs / "no_images").mkdir()
    (inputs / "no_images" / "readme.txt").write_text("no images here")


@dataclass
class Case:
    """One bad input: CLI arguments (or API keywords) and a fragment the message must hold."""

    id: str
    args: tuple = ()
    message: str = ""
    api: dict | None = None
    api_format: str = "onnx"
    gone: tuple[str, ...] = field(default=())  # paths that must not exist afterwards


def cli_case(id: str, message: str, *args: object, gone: tuple[str, ...] = ()) -> Case:
    return Case(id, tuple(str(a) for a in args), message, gone=gone)


def api_case(id: str, message: str, fmt: str = "onnx", **options: object) -> Case:
    return Case(id, (), message, api=options, api_format=fmt)


M = "test_resnet"
ONNX = ("export", "onnx", M, "-o", "keep.onnx")
LITERT = ("export", "litert", M, "-o", "keep.tflite")
LITERT_INT8 = (*LITERT, "--mode", "int8")

CASES = [
    # model names and formats
    cli_case("unknown-model", "Unknown model 'resnet5'", "export", "onnx", "resnet5"),
    cli_case("empty-model", "model name", "export", "onnx", "", "-o", "keep.onnx"),
    cli_case("unknown-format", "No such command", "export", "nosuch", M),
    cli_case("other-format-flag", "--mode is an option of", *ONNX, "--mode", "int8"),
    cli_case("unknown-flag", "No such option", *ONNX, "--nosuch"),
    # normalization and tolerances
    cli_case("mean-without-normalize", "add --normalize", *ONNX, "--mean", "0.5", "0.5", "0.5"),
    cli_case("std-without-normalize", "add --normalize", *ONNX, "--std", "1", "1", "1"),
    cli_case("std-zero", "must be > 0", *ONNX, "--normalize", "--std", "0", "1", "1"),
    cli_case("std-inf", "finite", *ONNX, "--normalize", "--std", "inf", "1", "1"),
    cli_case(
        "mean-nan", "--mean must be a finite", *ONNX, "--normalize", "--mean", "nan", "0", "0"
    ),
    cli_case("atol-nan", "--atol must be a finite", *ONNX, "--atol", "nan"),
    cli_case("atol-negative", "--atol must be >= 0", *ONNX, "--atol", "-1"),
    cli_case("rtol-inf", "--rtol must be a finite", *ONNX, "--rtol", "inf"),
    # shapes and sizes
    cli_case("in-chans-2", "--in-chans must be 1 or 3", *ONNX, "--in-chans", "2"),
    cli_case("input-channels-4", "channels must be 1 or 3", *ONNX, "--input-size", "4", "64", "64"),
    cli_case("input-zero", "must be >= 1", *ONNX, "--input-size", "3", "0", "64"),
    cli_case("input-huge", "GiB of memory", *ONNX, "--input-size", "3", "100000", "100000"),
    cli_case(
        "input-vs-in-chans",
        "make them agree",
        *ONNX,
        "--input-size",
        "3",
        "64",
        "64",
        "--in-chans",
        "1",
    ),
    cli_case("batch-zero", "--batch-size must be >= 1", *ONNX, "--batch-size", "0"),
    cli_case("classes-zero", "--num-classes must be >= 1", *ONNX, "--num-classes", "0"),
    cli_case("dynamic-batch-1", "--batch-size >= 2", *ONNX, "--dynamic-batch"),
    cli_case("opset-11", "use >= 18", *ONNX, "--opset", "11"),
    cli_case("opset-text", "opset", *ONNX, "--opset", "eighteen"),
    # weights
    cli_case(
        "pretrained-and-checkpoint", "pass only one", *ONNX, "--pretrained", "--checkpoint", "x"
    ),
    cli_case("checkpoint-missing", "does not exist", *ONNX, "--checkpoint", "inputs/missing.pth"),
    cli_case("checkpoint-dir", "is not a file", *ONNX, "--checkpoint", "inputs"),
    cli_case("checkpoint-garbage", "corrupt", *ONNX, "--checkpoint", "inputs/garbage.pth"),
    cli_case("checkpoint-empty", "corrupt", *ONNX, "--checkpoint", "inputs/empty.pth"),
    cli_case("checkpoint-truncated", "corrupt", *ONNX, "--checkpoint", "inputs/truncated.pth"),
    cli_case("checkpoint-code", "pickled Python objects", *ONNX, "--checkpoint", "inputs/code.pth"),
    cli_case("checkpoint-datetime", "pickled Python", *ONNX, "--checkpoint", "inputs/datetime.pth"),
    cli_case("checkpoint-shape", "does not fit", *ONNX, "--checkpoint", "inputs/wrong_shape.pth"),
    cli_case(
        "checkpoint-empty-dict", "no state_dict", *ONNX, "--checkpoint", "inputs/no_tensors.pth"
    ),
    cli_case("safetensors-corrupt", "corrupt", *ONNX, "--checkpoint", "inputs/bad.safetensors"),
    cli_case(
        "checkpoint-new-folders",
        "corrupt",
        "export",
        "onnx",
        M,
        "-o",
        "new/sub/dir/r.onnx",
        "--checkpoint",
        "inputs/garbage.pth",
        gone=("new",),
    ),
    # devices
    cli_case("device-cuda", "--device cuda needs an NVIDIA GPU", *ONNX, "--device", "cuda"),
    cli_case("device-mps", "--device mps needs", *ONNX, "--device", "mps"),
    cli_case("device-tpu", "tpu", *ONNX, "--device", "tpu"),
    # outputs
    cli_case("output-empty", "--output is empty", "export", "onnx", M, "-o", ""),
    cli_case("output-dot-file-format", "names a folder", "export", "onnx", M, "-o", "."),
    cli_case("output-is-dir", "is a directory", "export", "onnx", M, "-o", "userdir"),
    cli_case(
        "output-under-file", "is a file, not a folder", "export", "onnx", M, "-o", "afile/x.onnx"
    ),
    cli_case("output-proc", "does not accept new files", "export", "onnx", M, "-o", "/proc/x.onnx"),
    cli_case(
        "output-proc-sub", "Cannot create output folder", "export", "onnx", M, "-o", "/proc/a/x"
    ),
    cli_case("c-user-folder", "not a timmx c export", "export", "c", M, "-o", "userdir"),
    cli_case("c-dot", "names a folder", "export", "c", M, "-o", "."),
    cli_case("c-parent", "names a folder", "export", "c", M, "-o", ".."),
    cli_case("c-over-file", "is a file", "export", "c", M, "-o", "afile"),
    cli_case(
        "ncnn-over-c-export", "not a timmx ncnn export", "export", "ncnn", M, "-o", "c_export"
    ),
    # format rules
    cli_case(
        "c-prefix", "not a valid C identifier", "export", "c", M, "--prefix", "1bad", "-o", "cx"
    ),
    cli_case("c-prefix-reserved", "collides", "export", "c", M, "--prefix", "txk_m", "-o", "cx"),
    cli_case("c-cuda", "exports on the CPU", "export", "c", M, "--device", "cuda", "-o", "cx"),
    cli_case("litert-int8-no-data", "needs calibration data", *LITERT_INT8),
    cli_case("litert-ignored-calibration", "would be ignored", *LITERT, "--random-calibration"),
    cli_case(
        "calibration-missing", "does not exist", *LITERT_INT8, "--calibration-data", "inputs/x"
    ),
    cli_case(
        "calibration-no-images",
        "holds no images",
        *LITERT_INT8,
        "--calibration-data",
        "inputs/no_images",
    ),
    cli_case(
        "calibration-code",
        "pickled Python objects",
        *LITERT_INT8,
        "--calibration-data",
        "inputs/code.pt",
    ),
    cli_case(
        "calibration-garbage", "corrupt", *LITERT_INT8, "--calibration-data", "inputs/garbage.pt"
    ),
    cli_case(
        "calibration-not-tensor",
        "not a tensor",
        *LITERT_INT8,
        "--calibration-data",
        "inputs/list.pt",
    ),
    cli_case(
        "calibration-wrong-size",
        "resize the data",
        *LITERT_INT8,
        "--calibration-data",
        "inputs/wrong_size.pt",
    ),
    cli_case(
        "calibration-two-sources",
        "pass only one",
        *LITERT_INT8,
        "--random-calibration",
        "--calibration-data",
        "inputs/garbage.pt",
    ),
    cli_case(
        "calibration-samples-0",
        "must be >= 1",
        *LITERT_INT8,
        "--random-calibration",
        "--calibration-samples",
        "0",
    ),
    cli_case(
        "executorch-fp16-xnnpack",
        "--delegate coreml",
        "export",
        "executorch",
        M,
        "--mode",
        "fp16",
        "-o",
        "keep.pte",
    ),
    cli_case(
        "executorch-per-channel-fp32",
        "only apply to --mode int8",
        "export",
        "executorch",
        M,
        "--per-channel",
        "-o",
        "keep.pte",
    ),
    cli_case(
        "coreml-two-quantizations",
        "exclusive",
        "export",
        "coreml",
        M,
        "--half",
        "--int8",
        "-o",
        "keep.mlpackage",
    ),
    cli_case(
        "coreml-int4-neuralnetwork",
        "needs an ML Program",
        "export",
        "coreml",
        M,
        "--int4",
        "--convert-to",
        "neuralnetwork",
        "-o",
        "m.mlmodel",
    ),
    cli_case("coreml-suffix", "name --output", "export", "coreml", M, "-o", "m.mlmodel"),
    cli_case("tensorrt-cpu", "add --device cuda", "export", "tensorrt", M, "-o", "m.engine"),
    cli_case("ncnn-batch", "no batch dimension", "export", "ncnn", M, "--batch-size", "2"),
    cli_case(
        "torch-export-dynamic-1",
        "--batch-size >= 2",
        "export",
        "torch-export",
        M,
        "--dynamic-batch",
    ),
    # other commands
    cli_case("info-unknown", "Unknown model", "info", "resnet5"),
    cli_case("info-classes-0", "--num-classes must be >= 1", "info", M, "--num-classes", "0"),
    cli_case("info-checkpoint", "does not exist", "info", M, "--checkpoint", "inputs/missing.pth"),
    cli_case(
        "info-code-checkpoint", "pickled Python", "info", M, "--checkpoint", "inputs/code.pth"
    ),
    cli_case("info-in-chans", "--in-chans must be 1 or 3", "info", M, "--in-chans", "2"),
    # the Python API
    api_case("api-unknown-option", "Did you mean: opset", opsett=18),
    api_case("api-bad-choice", "choose one of: cpu, cuda, mps", device="tpu"),
    api_case("api-tuple-length", "takes 3 values", input_size=(3, 64)),
    api_case(
        "api-other-format-option", "belongs to executorch, litert, mnn, openvino", mode="int8"
    ),
    api_case("api-empty-output", "--output is empty", output=""),
    api_case("api-number-as-text", "takes a number", batch_size="2"),
    api_case("api-nan", "finite", atol=float("nan")),
    api_case("api-bool-as-text", "True or False", normalize="yes"),
    api_case("api-float-opset", "takes an integer", opset=18.5),
    api_case("api-unknown-format", "Unknown export format", "nosuch"),
    api_case("api-checkpoint-code", "pickled Python", checkpoint="inputs/code.pth"),
    api_case("api-c-user-folder", "not a timmx c export", "c", output="userdir"),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    for name, data in EXISTING.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def test_catalogue_is_large_enough():
    assert len(CASES) >= 60, f"only {len(CASES)} cases"
    assert len({case.id for case in CASES}) == len(CASES), "duplicate case ids"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case, workdir, cli):
    before = _snapshot(workdir)
    if case.api is None:
        result = cli(*case.args)
        output = result.stdout + result.stderr
        assert result.exit_code == 2, f"exit {result.exit_code}: {output}"
        assert "Traceback" not in output, f"traceback shown: {output}"
        assert case.message in result.stderr, f"{case.message!r} not in: {result.stderr}"
        assert result.stdout.strip() == "", f"something on stdout: {result.stdout}"
    else:
        options = dict(case.api)
        model = options.pop("model", M)
        with pytest.raises(timmx.ConfigurationError) as info:
            timmx.export(case.api_format, model, **options)
        assert case.message in str(info.value), f"{case.message!r} not in: {info.value}"
    after = _snapshot(workdir)
    assert after == before, (
        "the folder changed: "
        f"added {sorted(set(after) - set(before))}, removed {sorted(set(before) - set(after))}, "
        f"changed {sorted(k for k in before if k in after and before[k] != after[k])}"
    )
    for path in case.gone:
        assert not (workdir / path).exists(), f"{path} was left behind"
