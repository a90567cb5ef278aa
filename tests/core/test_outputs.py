"""Output paths: which existing folders an export may replace, staging leftovers, and the
verification failure's output."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import timmx
from timmx.core.backend import ExportBackend
from timmx.core.options import NoOptions
from timmx.core.registry import default_registry
from timmx.core.staging import STAGING_TAG, _host_tag, remove_stale_staging
from timmx.core.verify import verify_with_runner


class FolderBackend(ExportBackend):
    """A directory format that writes two small files (no conversion work)."""

    name = "folderfake"
    help = "A fake directory format used by the tests."
    Options = NoOptions
    output_is_dir = True

    def convert(self, job, artifact: Path) -> None:
        (artifact / "model.bin").write_bytes(b"new model")

    def verify(self, job, artifact: Path):
        return verify_with_runner(
            job, lambda x: job.model.run(job.model.sample_input(x.shape[0])).numpy(), "fake"
        )


@pytest.fixture
def folder_backend():
    backend = FolderBackend()
    default_registry().register(backend)
    yield backend
    default_registry().unregister(backend.name)


def test_a_users_folder_is_never_replaced_without_overwrite(folder_backend, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("precious")
    with pytest.raises(timmx.ConfigurationError, match="not a timmx folderfake export"):
        timmx.export("folderfake", "test_resnet", output=target)
    assert [p.name for p in target.iterdir()] == ["notes.txt"], "the user's folder was touched"
    assert (target / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"], "something was left beside it"


def test_overwrite_replaces_the_folder(folder_backend, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("precious")
    timmx.export("folderfake", "test_resnet", output=target, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == ["model.bin", "timmx.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"], "the old folder was left"


def test_an_own_export_and_an_empty_folder_are_replaced(folder_backend, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    timmx.export("folderfake", "test_resnet", output=target)  # empty: fine
    marker = json.loads((target / "timmx.json").read_text())
    assert marker["format"] == "folderfake" and marker["model"] == "test_resnet", marker
    (target / "stale.bin").write_bytes(b"from the previous export")
    timmx.export("folderfake", "test_resnet", output=target)  # ours: replaced whole
    assert sorted(p.name for p in target.iterdir()) == ["model.bin", "timmx.json"]


def test_another_formats_export_is_not_replaced(folder_backend, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "timmx.json").write_text('{"format": "c"}')
    with pytest.raises(timmx.ConfigurationError, match="not a timmx folderfake export"):
        timmx.export("folderfake", "test_resnet", output=target)


@pytest.mark.parametrize(
    ("where", "reason"),
    [("cwd", "is the current folder"), ("parent", "holds the current folder"), ("home", "home")],
)
def test_protected_folders_are_refused_even_with_overwrite(
    folder_backend, tmp_path, monkeypatch, where, reason
):
    inner = tmp_path / "work"
    home = tmp_path / "home"
    for folder in (inner, home):
        folder.mkdir()
        (folder / "file.txt").write_text("x")
    monkeypatch.chdir(inner)
    monkeypatch.setenv("HOME", str(home))
    target = {"cwd": inner, "parent": tmp_path, "home": home}[where]
    with pytest.raises(timmx.ConfigurationError, match=reason):
        timmx.export("folderfake", "test_resnet", output=target, overwrite=True)
    assert (inner / "file.txt").exists() and (home / "file.txt").exists()


def test_real_c_export_over_a_users_folder(cli, tmp_path):
    target = tmp_path / "userdir"
    target.mkdir()
    (target / "notes.txt").write_text("precious")
    result = cli("export", "c", "test_resnet", "-o", target)
    assert result.exit_code == 2, result.stderr
    assert "--overwrite" in result.stderr, result.stderr
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_stale_staging_of_dead_processes_is_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    tag = _host_tag()
    stale = tmp_path / f".m.onnx{STAGING_TAG}{tag}-{dead_pid}-abc"
    live = tmp_path / f".m.onnx{STAGING_TAG}{tag}-{os.getpid()}-def"
    other_host = tmp_path / f".m.onnx{STAGING_TAG}00000000-{dead_pid}-ghi"
    user = tmp_path / ".m.onnx.backup"
    for folder in (stale, live, other_host, user):
        folder.mkdir()
        (folder / "m.onnx").write_bytes(b"x")
    removed = remove_stale_staging(tmp_path)
    assert removed == [stale], removed
    assert not stale.exists() and live.exists() and other_host.exists() and user.exists()


def test_verification_failure_prints_one_readable_error(cli, tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous")
    result = cli("export", "onnx", "test_resnet", "-o", target, "--atol", "0", "--rtol", "0")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("Error: Verification failed"), result.stderr
    assert "max abs err" in result.stderr, result.stderr
    assert "{" not in result.stderr, f"a raw JSON line was printed: {result.stderr}"
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
