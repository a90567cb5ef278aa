"""Core ML backend: every mode exports timm's tiny models; the saved spec is checked on Linux,
predictions are compared with PyTorch on macOS."""

import json
import platform
from pathlib import Path

import pytest
from conftest import assert_passed, leftovers

import timmx
from timmx.backends import coreml as coreml_backend
from timmx.backends.coreml import (
    ConvertTo,
    check_structure,
    import_coremltools,
    inspect_coreml,
    unique_labels,
)
from timmx.core.registry import create_builtin_registry
from timmx.errors import ConfigurationError, ExportError

ON_MACOS = platform.system() == "Darwin"


def assert_structure_checked(data: dict) -> None:
    """On Linux the report must say plainly that numerics were not checked; on macOS, pass."""
    verify = data["verify"]
    assert verify is not None, "verification did not run"
    if ON_MACOS:
        assert_passed(data)
        return
    assert verify["checked"] is False, f"numerics cannot be checked off macOS: {verify}"
    assert verify["passed"] is None, f"an unchecked report must not claim a verdict: {verify}"
    assert "macOS" in verify["note"], f"the note must name macOS: {verify['note']}"
    assert data["details"]["structure"], f"no structure summary: {data['details']}"


def spec_of(path: Path):
    """The saved model's protobuf spec."""
    return import_coremltools().utils.load_spec(str(path))


def test_help_lists_coreml_options(cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # rich would otherwise wrap/cut long flag names
    monkeypatch.setenv("TERMINAL_WIDTH", "250")
    result = cli("export", "coreml", "--help")
    assert result.exit_code == 0, f"help failed: {result.stderr}"
    for flag in (
        "--source",
        "--convert-to",
        "--compute-precision",
        "--half",
        "--int8",
        "--int4",
        "--dynamic-batch",
        "--batch-upper-bound",
        "--classifier",
    ):
        assert flag in result.stdout, f"{flag} missing from help"


def test_registry_and_doctor(cli) -> None:
    assert "coreml" in create_builtin_registry().names(), "coreml is not registered"
    result = cli("doctor", "--json")
    assert result.exit_code == 0, f"doctor failed: {result.stderr}"
    rows = {row["backend"]: row for row in json.loads(result.stdout)["backends"]}
    assert rows["coreml"]["available"], f"coreml should be available here: {rows['coreml']}"
    assert rows["coreml"]["versions"]["coremltools"], "doctor shows no coremltools version"


def test_mlprogram_classifier_with_metadata(export_json, tmp_path: Path) -> None:
    out = tmp_path / "resnet.mlpackage"
    data = export_json("coreml", "test_resnet", "-o", out)
    assert_structure_checked(data)
    assert out.is_dir(), "an ML Program is saved as a .mlpackage folder"
    assert leftovers(tmp_path) == ["resnet.mlpackage"], f"stray files: {leftovers(tmp_path)}"
    assert data["details"]["classifier"] is True, "timm knows ImageNet labels: a classifier"
    spec = spec_of(out)
    assert spec.WhichOneof("Type") == "mlProgram", "expected an ML Program"
    assert [f.name for f in spec.description.input] == ["input"], "input must be named input"
    assert list(spec.description.input[0].type.multiArrayType.shape) == [1, 3, 160, 160], (
        "input shape must be the model's"
    )
    assert {f.name for f in spec.description.output} == {"classLabel", "classLabel_probs"}, (
        "a classifier outputs classLabel and classLabel_probs"
    )
    meta = spec.description.metadata
    assert meta.author.startswith("timmx"), f"author not set: {meta.author!r}"
    assert "test_resnet" in meta.shortDescription, "description must name the model"
    assert meta.userDefined["model"] == "test_resnet", "model name missing from metadata"
    assert json.loads(meta.userDefined["input_shape"]) == [1, 3, 160, 160], "input shape meta"
    assert len(json.loads(meta.userDefined["mean"])) == 3, "mean missing from metadata"
    assert len(json.loads(meta.userDefined["labels"])) == 1000, "labels missing from metadata"
    assert inspect_coreml(out)["labels"] == 1000, "the classifier must hold 1000 labels"


def test_reexport_replaces_existing_package(export_json, tmp_path: Path) -> None:
    out = tmp_path / "m.mlpackage"
    export_json("coreml", "test_resnet", "-o", out, "--no-classifier")
    data = export_json("coreml", "test_resnet", "-o", out, "--compute-precision", "float32")
    assert_structure_checked(data)
    outputs = [f.name for f in spec_of(out).description.output]
    assert outputs == ["classLabel", "classLabel_probs"], f"old package not replaced: {outputs}"
    assert leftovers(tmp_path) == ["m.mlpackage"], f"stray files: {leftovers(tmp_path)}"


@pytest.mark.parametrize(
    ("model", "args", "needle"),
    [
        ("test_vit", [], "1000 class labels"),
        ("test_convnext", ["--int8"], "8-bit weight tensors"),
        ("test_efficientnet", ["--int4"], "4-bit weight tensors"),
        ("test_efficientnet", ["--half", "--source", "torch-export"], "ops"),
        ("test_convnext", ["--compute-precision", "float32", "--no-classifier"], "output float32"),
    ],
)
def test_mlprogram_modes(export_json, tmp_path: Path, model, args, needle) -> None:
    out = tmp_path / f"{model}.mlpackage"
    data = export_json("coreml", model, "-o", out, *args)
    assert_structure_checked(data)
    assert needle in data["details"]["structure"], f"{needle!r} not in {data['details']}"
    assert leftovers(tmp_path) == [out.name], f"stray files: {leftovers(tmp_path)}"


@pytest.mark.parametrize(
    ("args", "precision"),
    [([], "fp32"), (["--half"], "fp16"), (["--int8"], "int8")],
)
def test_neuralnetwork_modes(export_json, tmp_path: Path, args, precision) -> None:
    out = tmp_path / "net.mlmodel"
    data = export_json(
        "coreml", "test_efficientnet", "-o", out, "--convert-to", "neuralnetwork", *args
    )
    assert_structure_checked(data)
    assert out.is_file(), "a neural network is saved as one .mlmodel file"
    assert data["verify"]["precision"] == precision, f"precision: {data['verify']}"
    spec = spec_of(out)
    assert spec.WhichOneof("Type") == "neuralNetworkClassifier", "expected a NN classifier"
    assert spec.description.predictedProbabilitiesName == "classLabel_probs", "probs name"
    if args:
        bits = 16 if args == ["--half"] else 8
        assert f"{bits}-bit weights" in data["details"]["structure"], data["details"]


def test_default_output_depends_on_convert_to(export_json, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = export_json("coreml", "test_resnet", "--convert-to", "neuralnetwork")
    assert data["output"] == "test_resnet.mlmodel", f"default output: {data['output']}"
    assert (tmp_path / "test_resnet.mlmodel").is_file(), "default .mlmodel not written"


@pytest.mark.parametrize("source", ["trace", "torch-export"])
def test_dynamic_batch(export_json, tmp_path: Path, source) -> None:
    out = tmp_path / "dyn.mlpackage"
    data = export_json(
        "coreml",
        "test_efficientnet",
        "-o",
        out,
        "--dynamic-batch",
        "--batch-size",
        "2",
        "--batch-upper-bound",
        "4",
        "--source",
        source,
    )
    assert_structure_checked(data)
    assert "[1..4, 3, 160, 160]" in data["details"]["structure"], data["details"]
    assert data["details"]["classifier"] is False, "a classifier labels one image at a time"
    assert any("class labels not embedded" in n for n in data["notes"]), data["notes"]


def test_python_api(tmp_path: Path) -> None:
    result = timmx.export("coreml", "test_resnet", output=tmp_path / "api.mlpackage", int4=True)
    assert result.verify is not None, "verification did not run"
    assert result.verify.precision == "int4", f"precision: {result.verify.precision}"
    assert (tmp_path / "api.mlpackage").is_dir(), "API export wrote nothing"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--convert-to", "neuralnetwork", "--compute-precision", "float16"], "ML Programs only"),
        (["--half", "--int8"], "exclusive"),
        (["--int8", "--int4"], "exclusive"),
        (["--int4", "--convert-to", "neuralnetwork"], "needs an ML Program"),
        (["--half", "--compute-precision", "float32"], "contradicts"),
        (["--dynamic-batch", "--source", "torch-export"], "--batch-size >= 2"),
        (
            ["--dynamic-batch", "--batch-size", "9", "--batch-upper-bound", "8"],
            "exceeds --batch-upper-bound",
        ),
        (["--convert-to", "neuralnetwork", "-o", "x.mlpackage"], "writes a .mlmodel"),
        (["-o", "x.mlmodel"], "writes a .mlpackage"),
    ],
)
def test_bad_options(cli, tmp_path: Path, monkeypatch, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("export", "coreml", "test_resnet", *args)
    assert result.exit_code == 2, f"expected exit 2, got {result.exit_code}: {result.stderr}"
    assert message in result.stderr, f"{message!r} not in: {result.stderr}"
    assert leftovers(tmp_path) == [], f"a failed export left files: {leftovers(tmp_path)}"


def test_int4_without_scikit_learn(cli, tmp_path: Path, monkeypatch) -> None:
    real = coreml_backend.installed_version
    monkeypatch.setattr(
        coreml_backend,
        "installed_version",
        lambda name: None if name == "scikit-learn" else real(name),
    )
    result = cli("export", "coreml", "test_resnet", "--int4", "-o", tmp_path / "m.mlpackage")
    assert result.exit_code == 2, f"expected exit 2, got {result.exit_code}: {result.stderr}"
    assert "pip install scikit-learn" in result.stderr, f"no install hint: {result.stderr}"
    assert leftovers(tmp_path) == [], f"a failed export left files: {leftovers(tmp_path)}"


def test_bad_upper_bound_via_api(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="batch-upper-bound"):
        timmx.export("coreml", "test_resnet", output=tmp_path / "m.mlpackage", batch_upper_bound=1)
    assert leftovers(tmp_path) == [], f"a failed export left files: {leftovers(tmp_path)}"


def test_failed_conversion_leaves_nothing(cli, tmp_path: Path) -> None:
    # torch.export keeps test_vit's antialiased bicubic position-embedding resize, which
    # coremltools cannot convert: the error must say so and suggest the trace source.
    out = tmp_path / "vit.mlpackage"
    result = cli("export", "coreml", "test_vit", "-o", out, "--source", "torch-export")
    assert result.exit_code == 2, f"expected exit 2, got {result.exit_code}: {result.stderr}"
    assert "--source trace" in result.stderr, f"no hint in: {result.stderr}"
    assert leftovers(tmp_path) == [], f"a failed export left files: {leftovers(tmp_path)}"


def test_structure_check_rejects_mismatch(export_json, tmp_path: Path) -> None:
    out = tmp_path / "m.mlpackage"
    export_json("coreml", "test_resnet", "-o", out, "--no-classifier", "--no-verify")
    summary = check_structure(
        out,
        input_shape=(1, 3, 160, 160),
        num_classes=1000,
        convert_to=ConvertTo.mlprogram,
        classifier=False,
        bits=32,
        dynamic_batch=False,
        batch_upper_bound=8,
    )
    assert "input float32 [1, 3, 160, 160]" in summary, f"summary: {summary}"
    with pytest.raises(ExportError, match="input shape"):
        check_structure(
            out,
            input_shape=(1, 3, 224, 224),
            num_classes=1000,
            convert_to=ConvertTo.mlprogram,
            classifier=False,
            bits=32,
            dynamic_batch=False,
            batch_upper_bound=8,
        )
    with pytest.raises(ExportError, match="4-bit"):
        check_structure(
            out,
            input_shape=(1, 3, 160, 160),
            num_classes=1000,
            convert_to=ConvertTo.mlprogram,
            classifier=False,
            bits=4,
            dynamic_batch=False,
            batch_upper_bound=8,
        )


@pytest.mark.skipif(not ON_MACOS, reason="Core ML prediction runs only on macOS")
@pytest.mark.parametrize("args", [["--compute-precision", "float32"], ["--int8"]])
def test_numerics_on_macos(export_json, tmp_path: Path, args) -> None:
    data = export_json("coreml", "test_efficientnet", "-o", tmp_path / "m.mlpackage", *args)
    assert_passed(data)
    data = export_json(
        "coreml",
        "test_resnet",
        "-o",
        tmp_path / "d.mlpackage",
        "--dynamic-batch",
        "--batch-size",
        "2",
        *args,
    )
    assert_passed(data)


def test_classifier_labels_are_unique(tmp_path: Path) -> None:
    # ImageNet-1k has two "crane" classes; a label -> score dict would merge them.
    assert unique_labels(["crane", "cat", "crane"]) == ["crane (0)", "cat", "crane (2)"], "dedupe"
    result = timmx.export("coreml", "test_efficientnet", output=tmp_path / "m.mlpackage")
    assert result.details["classifier"] is True, "expected a classifier"
    spec = spec_of(tmp_path / "m.mlpackage")
    ops = [
        op
        for block in spec.mlProgram.functions["main"].block_specializations.values()
        for op in block.operations
        if op.type == "classify"
    ]
    assert len(ops) == 1, "the ML Program must end in one classify op"
    values = ops[0].inputs["classes"].arguments[0].value.immediateValue.list.values
    labels = [v.immediateValue.tensor.strings.values[0] for v in values]
    assert len(set(labels)) == len(labels) == 1000, "class labels must be 1000 unique strings"


def test_auto_source_falls_back_to_torch_export(export_json, tmp_path: Path) -> None:
    # coremltools cannot convert skresnet18's trace (its selective-kernel split leaves 1-element
    # arrays NumPy 2 will not turn into ints); the default --source auto retries torch.export.
    out = tmp_path / "sk.mlpackage"
    data = export_json("coreml", "skresnet18", "-o", out, "--input-size", "3", "64", "64")
    assert_structure_checked(data)
    assert data["details"]["source"] == "torch-export", f"capture: {data['details']}"
    assert any("first tried --source trace" in n for n in data["notes"]), data["notes"]
    assert leftovers(tmp_path) == [out.name], f"stray files: {leftovers(tmp_path)}"


def test_grn_addcmul_is_decomposed(export_json, tmp_path: Path) -> None:
    # ConvNeXt-V2's GlobalResponseNorm ends in torch.addcmul, which coremltools converts from
    # neither capture; the export swaps in x + bias + weight * (x * x_n) (12 GRN layers)
    out = tmp_path / "cnv2.mlpackage"
    data = export_json("coreml", "convnextv2_atto", "-o", out, "--input-size", "3", "64", "64")
    assert_structure_checked(data)
    assert data["details"]["source"] == "trace", f"capture: {data['details']}"


def test_torch_export_aliases_are_dropped(export_json, tmp_path: Path) -> None:
    # EfficientViT-M (and Swin): the trace fails on 1-element int arrays, and torch.export's
    # program holds aten.alias, which coremltools 9 has no converter for; the export drops them
    out = tmp_path / "ev.mlpackage"
    data = export_json("coreml", "efficientvit_m0", "-o", out)
    assert_structure_checked(data)
    assert data["details"]["source"] == "torch-export", f"capture: {data['details']}"
