"""Core AI (.aimodel): coreai-torch conversion of timm's tiny models; the saved asset's structure
is checked and the asset is run in coreai-core's runtime (its portable CPU runtime on Linux)."""

import json

import pytest
from conftest import assert_passed, leftovers

import timmx
import timmx.core.backend as backend_module
from timmx.backends import coreai as coreai_backend
from timmx.backends.coreai import (
    HASH_FILE,
    METADATA_FILE,
    PROGRAM_FILE,
    check_structure,
    read_metadata,
)
from timmx.core.registry import default_registry
from timmx.errors import ExportError

ASSET_FILES = sorted([HASH_FILE, METADATA_FILE, PROGRAM_FILE])


def test_resnet_runs_in_coreai_and_carries_metadata(export_json, tmp_path):
    out = tmp_path / "resnet.aimodel"
    data = export_json("coreai", "test_resnet", "-o", out, "--softmax")
    assert_passed(data, max_abs=1e-4)
    assert data["verify"]["runtime"].startswith("Core AI"), data["verify"]
    structure = data["details"]["structure"]
    assert structure.startswith("function main: input 1x3x160x160 -> output 1x1000"), structure
    assert leftovers(tmp_path) == ["resnet.aimodel"], leftovers(tmp_path)
    assert leftovers(out) == ASSET_FILES, f"only Core AI's files: {leftovers(out)}"
    meta = read_metadata(out)
    assert meta["model"] == "test_resnet" and meta["softmax_baked_in"] == "true", meta
    description = json.loads((out / METADATA_FILE).read_text())["description"]
    assert description == "test_resnet exported by timmx", description


def test_convnext_dynamic_batch_runs_two_sizes(export_json, tmp_path):
    """ConvNeXt's channels-last pooling needs timmx's decomposition (no as_strided)."""
    out = tmp_path / "convnext.aimodel"
    data = export_json("coreai", "test_convnext", "-o", out, "--dynamic-batch", "--batch-size", 2)
    assert_passed(data, max_abs=1e-4)
    assert sorted(set(data["verify"]["batch_sizes"])) == [2, 3], data["verify"]
    assert "input ?x3x160x160 -> output ?x1000" in data["details"]["structure"], data["details"]
    assert json.loads(read_metadata(out)["input_shape"]) == [-1, 3, 160, 160]


def test_vit_with_fixed_position_embedding(tmp_path):
    result = timmx.export("coreai", "test_vit", output=tmp_path / "vit.aimodel")
    assert result.verify.checked and result.verify.passed, result.verify


def test_reexport_replaces_its_own_asset_but_not_a_foreign_folder(cli, export_json, tmp_path):
    out = tmp_path / "m.aimodel"
    export_json("coreai", "test_resnet", "-o", out, "--no-verify")
    first = (out / PROGRAM_FILE).stat().st_mtime_ns
    export_json("coreai", "test_resnet", "-o", out, "--no-verify", "--normalize")
    assert (out / PROGRAM_FILE).stat().st_mtime_ns != first, "the asset was replaced"
    assert read_metadata(out)["normalize_baked_in"] == "true"
    foreign = tmp_path / "other.aimodel"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    result = cli("export", "coreai", "test_resnet", "-o", foreign)
    assert result.exit_code == 2 and "not a timmx coreai export" in result.stderr, result.stderr
    assert (foreign / "notes.txt").read_text() == "keep", "a foreign folder is left alone"


def test_structure_check_catches_a_changed_program(tmp_path):
    out = tmp_path / "m.aimodel"
    timmx.export("coreai", "test_resnet", output=out, verify=False)
    shape = (1, 3, 160, 160)
    assert "1000" in check_structure(out, input_shape=shape, num_classes=1000, dynamic_batch=False)
    with pytest.raises(ExportError, match="input"):
        check_structure(out, input_shape=(2, 3, 160, 160), num_classes=1000, dynamic_batch=False)
    program = out / PROGRAM_FILE
    program.write_bytes(program.read_bytes() + b"\0")
    with pytest.raises(ExportError, match="does not match"):
        check_structure(out, input_shape=shape, num_classes=1000, dynamic_batch=False)


def test_where_the_runtime_cannot_load_numerics_are_not_checked(cli, tmp_path, monkeypatch):
    """Stands in for a platform without coreai-core's runtime: structure only, said plainly."""
    monkeypatch.setattr(coreai_backend, "_load_runtime", lambda: None)
    monkeypatch.setenv("COLUMNS", "250")
    result = cli("export", "coreai", "test_efficientnet", "-o", tmp_path / "e.aimodel")
    assert result.exit_code == 0, result.stderr
    assert "numerics NOT checked" in result.stdout, result.stdout
    assert "structure" in result.stdout and "function main" in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "model.mlpackage"], "name --output model.aimodel"),
        (["--dynamic-batch"], "--dynamic-batch needs --batch-size >= 2"),
    ],
)
def test_bad_options_exit_2_and_leave_nothing(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = cli("export", "coreai", "test_resnet", *args)
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.stdout} {result.stderr}"
    assert message in result.stderr, f"{message!r} not in {result.stderr!r}"
    assert leftovers(tmp_path) == [], f"nothing is written: {leftovers(tmp_path)}"


def test_doctor_row_and_install_command(cli, monkeypatch):
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.stderr
    row = {r["backend"]: r for r in json.loads(result.stdout)["backends"]}["coreai"]
    assert row["available"], f"coreai should be available here: {row}"
    assert row["versions"]["coreai-torch"] and row["versions"]["coreai-core"], row
    backend = default_registry().get("coreai")
    real = backend_module.installed_version
    monkeypatch.setattr(
        backend_module, "installed_version", lambda d: None if d == "coreai-core" else real(d)
    )
    state = backend.check_dependencies()
    assert not state.available and state.missing == ["coreai-core"], state
    assert "pip install 'timmx[coreai]'" in state.install_hint, state.install_hint
    assert "uv sync --extra coreai" in state.install_hint, state.install_hint
