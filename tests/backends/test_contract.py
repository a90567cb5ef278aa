"""The backend contract, checked on every registered backend, and third-party plugins."""

import dataclasses
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import typer

from timmx.cli.app import app
from timmx.cli.commands import flags
from timmx.core.backend import ExportBackend
from timmx.core.job import validate_common
from timmx.core.options import specs
from timmx.core.pipeline import make_job
from timmx.core.registry import (
    ENTRY_POINT_GROUP,
    create_builtin_registry,
    default_registry,
)
from timmx.errors import ConfigurationError

BACKENDS = default_registry().backends()


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_same_shape(backend):
    assert isinstance(backend, ExportBackend), f"{backend!r} is not an ExportBackend"
    assert backend.name and backend.help, "name and help must be set"
    assert dataclasses.is_dataclass(backend.Options), "Options must be a dataclass"
    for spec in specs(backend.Options):  # raises if a field is not declared with option()
        assert spec.info.help, f"{backend.name} --{spec.name} has no help"


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_help_lists_every_option(cli, backend):
    result = cli("export", backend.name, "--help")
    assert result.exit_code == 0, result.stderr
    command = typer.main.get_command(app).commands["export"].commands[backend.name]
    shown = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    missing = [flag for flag in flags(backend) if flag not in shown]
    assert not missing, f"`timmx export {backend.name} --help` lacks {missing}"


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_cheap_validation_runs(backend):
    job = make_job(backend, "test_resnet", {})
    try:
        validate_common(job.common, backend)
        backend.validate(job)
    except ConfigurationError as exc:  # e.g. tensorrt wants --device cuda
        assert "--" in str(exc), f"a validation error names no flag: {exc}"


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_default_output_path(backend):
    job = make_job(backend, "resnet50", {})
    path = backend.default_output(job)
    assert path.parent == Path("."), f"default output {path} is not in the current folder"
    assert path.name.startswith("resnet50"), path
    if backend.writes_directory(job) and backend.output_is_dir:
        assert path.name == f"resnet50_{backend.name.replace('-', '_')}", path
    elif backend.suffix:
        assert path.suffix == backend.suffix, path


def test_unknown_option_names_the_formats_that_have_it(cli, tmp_path):
    result = cli("export", "onnx", "test_resnet", "--mode", "int8", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 2, result.stderr
    message = " ".join(result.stderr.replace("│", " ").split())  # Rich wraps the box
    formats = "executorch, litert, mnn, openvino, tensorrt"
    assert f"--mode is an option of: {formats}" in message, result.stderr
    with pytest.raises(ConfigurationError, match=f"belongs to {formats}"):
        make_job(default_registry().get("onnx"), "test_resnet", {"mode": "int8"})


def _plugin_site(tmp_path: Path, entry_points: str) -> Path:
    site = tmp_path / "site"
    info = site / "timmx_test_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: timmx-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n")
    return site


def _run_timmx(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(Path(__file__).parents[1])])}
    return subprocess.run(
        [sys.executable, "-m", "timmx", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_failing_plugin_is_reported_by_doctor_and_spares_help(tmp_path):
    site = _plugin_site(tmp_path, "broken = timmx_no_such_plugin_module:Backend")
    help_run = _run_timmx(site, "--help")
    assert help_run.returncode == 0, f"--help broke: {help_run.stderr}"
    doctor = _run_timmx(site, "doctor", "--json")
    assert doctor.returncode == 0, doctor.stderr
    rows = {row["backend"]: row for row in json.loads(doctor.stdout)["backends"]}
    assert "broken" in rows, f"the failing plugin is not in doctor: {sorted(rows)}"
    assert not rows["broken"]["available"], rows["broken"]
    assert "timmx_no_such_plugin_module" in rows["broken"]["detail"], rows["broken"]


def test_working_plugin_gets_a_command(tmp_path, monkeypatch):
    site = _plugin_site(tmp_path, "fake = fakes:FakeBackend")
    run = _run_timmx(site, "export", "fake", "--help")
    assert run.returncode == 0, run.stderr
    assert "--shout" in run.stdout, "the plugin's own option is not in its help"
    monkeypatch.syspath_prepend(str(site))
    registry = create_builtin_registry()
    assert "fake" in registry.names() and not registry.failures, registry.failures


def test_deprecated_export_package_still_imports():
    sys.modules.pop("timmx.export.base", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from timmx.export import base
    assert base.ExportBackend is ExportBackend, "the shim re-exports another class"
    assert any(issubclass(w.category, DeprecationWarning) for w in caught), "no warning"
