"""Signals during real exports of the ``timmx`` command (a subprocess, as a user runs it).

SIGINT and SIGTERM, sent while the model is prepared or converted and while the artifact is
verified, stop the export within seconds with exit code 130 / 143, leave nothing at or beside
the output, keep the existing artifact byte-identical and leave no process behind. SIGKILL
leaves a recognisable staging folder, no process, the existing artifact intact; the next
export into that folder removes the staging folder.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PREVIOUS = b"the previous export"
POLL_S = 0.02
STAGE_TIMEOUT_S = 300


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _staging(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".timmx-staging-" in p.name]


def _wait_for(condition, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + STAGE_TIMEOUT_S
    while not condition():
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"the export ended (exit {process.returncode}) before {what}: {err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(POLL_S)


def _foreground_signals() -> None:
    """In the child: SIGINT as in a foreground terminal. A shell that starts a job in the
    background (``pytest ... &``) leaves SIGINT ignored, the child inherits that and Python
    then keeps it ignored: a Ctrl-C test would test the shell, not timmx."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(folder: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("TIMMX_IN_PROCESS", "TIMMX_DEBUG")}
    return subprocess.Popen(
        [sys.executable, "-m", "timmx", "export", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_foreground_signals,
    )


def _staged(folder: Path, name: str):
    """A condition: the staged artifact (or, for folders, a file of ``name``) exists."""

    def check() -> bool:
        return any((stage / name).exists() for stage in _staging(folder))

    return check


# (format, output, the file whose appearance in staging means "converted, now verifying")
FORMATS = {
    "onnx": ("m.onnx", "m.onnx"),
    "litert": ("m.tflite", "m.tflite"),
    "c": ("m_c", "m_c/test_resnet.c"),
    "ncnn": ("m_ncnn", "m_ncnn/model.ncnn.bin"),
}


def _existing(folder: Path, output: str) -> Path:
    """The previous export at ``output`` (a file, or a folder with a timmx marker)."""
    path = folder / output
    if "." in output:
        path.write_bytes(PREVIOUS)
        return path
    path.mkdir()
    fmt = output.rsplit("_", 1)[1]
    (path / "timmx.json").write_text(f'{{"format": "{fmt}"}}')
    (path / "previous.bin").write_bytes(PREVIOUS)
    return path


def _unchanged(folder: Path, output: str) -> None:
    path = folder / output
    if path.is_dir():
        assert sorted(p.name for p in path.iterdir()) == ["previous.bin", "timmx.json"], (
            f"the previous folder changed: {sorted(p.name for p in path.iterdir())}"
        )
        assert (path / "previous.bin").read_bytes() == PREVIOUS, "the previous export changed"
    else:
        assert path.read_bytes() == PREVIOUS, "the previous export changed"


@pytest.mark.parametrize(
    ("fmt", "sig", "point"),
    [
        ("onnx", signal.SIGINT, "starting"),
        ("onnx", signal.SIGINT, "converting"),
        ("onnx", signal.SIGINT, "verifying"),
        ("onnx", signal.SIGTERM, "converting"),
        ("litert", signal.SIGINT, "starting"),
        ("litert", signal.SIGINT, "converting"),
        ("litert", signal.SIGINT, "verifying"),
        ("litert", signal.SIGTERM, "verifying"),
        ("c", signal.SIGINT, "converting"),
        ("c", signal.SIGINT, "verifying"),
        ("c", signal.SIGTERM, "verifying"),
        ("ncnn", signal.SIGINT, "verifying"),
    ],
    ids=lambda v: getattr(v, "name", v),
)
def test_signal_stops_the_export_and_keeps_the_previous_one(tmp_path, fmt, sig, point):
    output, marker = FORMATS[fmt]
    _existing(tmp_path, output)
    process = _start(tmp_path, fmt, "test_resnet", "-o", output)
    if point == "starting":
        _wait_for(lambda: bool(_staging(tmp_path)), process, "the staging folder appeared")
    elif point == "converting":  # the worker is well into preparing and converting
        _wait_for(lambda: bool(_children(process.pid)), process, "the worker started")
        time.sleep(3.0)
    else:
        _wait_for(_staged(tmp_path, marker), process, "the artifact was staged")
    children = _children(process.pid)
    sent = time.monotonic()
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    waited = time.monotonic() - sent
    expected = 130 if sig == signal.SIGINT else 143
    assert process.returncode == expected, f"exit {process.returncode} ({waited:.1f} s): {err}"
    assert "nothing was written" in err, err
    assert "Traceback" not in err, err
    assert waited < 30, f"took {waited:.1f} s to stop"
    assert sorted(p.name for p in tmp_path.iterdir()) == [output], list(tmp_path.iterdir())
    _unchanged(tmp_path, output)
    time.sleep(0.5)
    left = [pid for pid in children if _alive(pid)]
    assert not left, f"processes left running: {left}"


@pytest.mark.parametrize("fmt", ["onnx", "litert", "c", "ncnn"])
def test_sigkill_leaves_no_process_and_the_next_export_cleans_up(tmp_path, fmt):
    output, _ = FORMATS[fmt]
    _existing(tmp_path, output)
    process = _start(tmp_path, fmt, "test_resnet", "-o", output)
    _wait_for(lambda: bool(_staging(tmp_path)), process, "the staging folder appeared")
    _wait_for(lambda: bool(_children(process.pid)), process, "the worker started")
    children = _children(process.pid)
    process.kill()
    process.communicate(timeout=60)
    time.sleep(1.0)
    left = [pid for pid in children if _alive(pid)]
    assert not left, f"the worker outlived its killed parent: {left}"
    stale = _staging(tmp_path)
    assert len(stale) == 1 and stale[0].name.startswith(f".{Path(output).name}."), stale
    _unchanged(tmp_path, output)
    again = _start(tmp_path, "onnx", "test_resnet", "-o", "next.onnx", "--no-verify")
    _, err = again.communicate(timeout=STAGE_TIMEOUT_S)
    assert again.returncode == 0, err
    assert not _staging(tmp_path), f"the stale staging folder was not removed: {stale}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([output, "next.onnx"])
    _unchanged(tmp_path, output)
