"""MNN (.mnn): every mode exported from timm's tiny models and run in MNN's runtime; the
converter's guard (no pip, no network) holds."""

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from conftest import assert_passed, leftovers

import timmx
import timmx.core.backend as backend_module
from timmx._torch_env import import_timm
from timmx.backends import mnn as mnn_backend
from timmx.backends.mnn import CONVERTER_SCRIPT, converter_environment, read_metadata
from timmx.core.registry import default_registry
from timmx.errors import ExportError

# Bytes of the .mnn file per weight: fp32 4, fp16 2, int8 1 (+ scales and graph).
BYTES_PER_WEIGHT = {"fp32": (3.6, 4.6), "fp16": (1.8, 2.6), "int8-weights": (0.9, 1.6)}


def weight_count(model_name: str) -> int:
    return sum(p.numel() for p in import_timm().create_model(model_name).parameters())


@pytest.mark.parametrize(
    ("model", "mode"),
    [("test_resnet", "fp32"), ("test_convnext", "fp16"), ("test_efficientnet", "int8-weights")],
)
def test_modes_run_in_mnn_and_carry_metadata(export_json, tmp_path, model, mode):
    out = tmp_path / f"{model}.mnn"
    data = export_json("mnn", model, "-o", out, "--mode", mode)
    assert_passed(data, max_abs=1e-4 if mode == "fp32" else None)
    assert data["verify"]["runtime"] == "MNN (precision high, Winograd level 0)", data["verify"]
    assert "default Winograd memory level 3: max abs err" in data["details"]["default"], data
    assert data["verify"]["precision"] == mode, data["verify"]
    assert leftovers(tmp_path) == [out.name], f"converter files left: {leftovers(tmp_path)}"
    meta = read_metadata(out)
    assert meta["model"] == model and meta["mnn_mode"] == mode, meta
    low, high = BYTES_PER_WEIGHT[mode]
    ratio = out.stat().st_size / weight_count(model)
    assert low < ratio < high, f"{mode}: {ratio:.2f} bytes per weight, expected {low}..{high}"
    assert not any("refused" in note for note in data["notes"]), data["notes"]


def test_batch_of_two_and_python_api(tmp_path):
    result = timmx.export("mnn", "test_resnet", output=tmp_path / "b2.mnn", batch_size=2)
    assert result.verify.passed and result.verify.batch_sizes == (2,), result.verify


@pytest.mark.parametrize(
    ("args", "message"),
    [(["-o", "model.onnx"], "name --output model.mnn"), (["--mode", "int8"], "Invalid value")],
)
def test_bad_options_exit_2_and_leave_nothing(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = cli("export", "mnn", "test_resnet", *args)
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.stdout} {result.stderr}"
    assert message in result.stderr, f"{message!r} not in {result.stderr!r}"
    assert leftovers(tmp_path) == [], f"nothing is written: {leftovers(tmp_path)}"


# --- the guard -----------------------------------------------------------------------------


def recorder_bin(folder: Path) -> tuple[Path, Path]:
    """A folder of fake pip, pip3, python and python3 that log their arguments and exit 0."""
    folder.mkdir()
    log = folder / "calls.log"
    for name in ("pip", "pip3", "python", "python3", "uv"):
        script = folder / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexit 0\n')
        script.chmod(0o755)
    return folder, log


class Listener:
    """A loopback TCP server counting the connections it accepts (a fake proxy)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.server.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def recorded(log: Path) -> str:
    return log.read_text() if log.exists() else ""


def test_unguarded_mnn_converter_import_runs_pip(tmp_path):
    """The control: importing MNN's converter wrapper as is runs `pip install` (here the fake
    pip, the only program on PATH) because its usage-log SDK is missing."""
    folder, log = recorder_bin(tmp_path / "bin")
    env = {"PATH": str(folder), "HOME": str(tmp_path), "PYTHONNOUSERSITE": "1"}
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[name] = "http://127.0.0.1:9"
    done = subprocess.run(
        [sys.executable, "-c", "import MNN.tools.mnnconvert"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install -U aliyun-log-python-sdk" in recorded(log), recorded(log)


def test_export_spawns_no_pip_and_uses_no_network(tmp_path, monkeypatch, listener):
    folder, log = recorder_bin(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{listener.port}")
        monkeypatch.setenv(name.upper(), f"http://127.0.0.1:{listener.port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    result = timmx.export("mnn", "test_resnet", output=tmp_path / "m.mnn")
    assert result.verify.passed, result.verify
    assert recorded(log) == "", f"a pip/python was started: {recorded(log)}"
    assert listener.accepted == 0, f"{listener.accepted} connection(s) reached the proxy"
    assert not any("refused" in note for note in result.notes), result.notes


def test_converter_environment_has_no_pip_and_no_way_out(tmp_path):
    env = converter_environment(tmp_path)
    for program in ("pip", "pip3", "python", "python3", "curl", "uv"):
        assert shutil.which(program, path=env["PATH"]) is None, f"{program} is on PATH"
    assert env["PIP_NO_INDEX"] == "1" and env["PIP_CONFIG_FILE"] == os.devnull, env
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        assert env[name] == "http://127.0.0.1:9", f"{name}={env[name]}"
    assert env["no_proxy"] == env["NO_PROXY"] == "", "nothing bypasses the proxy"
    assert env["HOME"] == env["TMPDIR"] == str(tmp_path), env
    assert not {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"} & set(env), env


HOSTILE_CONVERTER = textwrap.dedent(
    """
    import os, socket, subprocess, urllib.request
    from MNN.tools.utils.log import mnn_logger
    outcome = {{"logger": repr(mnn_logger)}}
    attempts = {{
        "system": lambda: os.system("pip install -U aliyun-log-python-sdk"),
        "popen": lambda: subprocess.run(["pip3", "install", "x"]),
        "urlopen": lambda: urllib.request.urlopen("http://127.0.0.1:{port}/", timeout=2),
        "resolve": lambda: socket.create_connection(("localhost", {port}), timeout=2),
        "socket": lambda: socket.socket().connect(("127.0.0.1", {port})),
    }}
    for name, attempt in attempts.items():
        try:
            attempt()
            outcome[name] = "ran"
        except PermissionError as exc:
            outcome[name] = "blocked"
        except Exception as exc:
            outcome[name] = f"failed otherwise: {{exc!r}}"

    def convert(args):
        with open(args[args.index("--MNNModel") + 1], "w") as handle:
            handle.write(repr(outcome))
    """
)


def test_guard_blocks_what_a_converter_might_try(tmp_path, listener):
    """The converter process run on a hostile stand-in for MNN's wrapper: its import of the
    usage logger gets the stub, and pip, subprocess and network attempts are refused."""
    fake = tmp_path / "site" / "MNN" / "tools"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "mnnconvert.py").write_text(HOSTILE_CONVERTER.format(port=listener.port))
    folder, log = recorder_bin(tmp_path / "bin")
    work = tmp_path / "work"
    work.mkdir()
    target = work / "out.mnn"
    report = work / "report.json"
    request = work / "request.json"
    request.write_text(
        json.dumps(
            {
                "arguments": ["--MNNModel", str(target)],
                "paths": [str(tmp_path / "site")],
                "report": str(report),
            }
        )
    )
    env = converter_environment(work)
    env["PATH"] = f"{folder}{os.pathsep}{env['PATH']}"  # even with a pip on PATH
    done = subprocess.run(
        [sys.executable, "-I", str(CONVERTER_SCRIPT), str(request)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = ast.literal_eval(target.read_text())  # the hostile module's own record
    assert outcome["logger"] == "None", f"MNN's logger was not stubbed: {outcome}"
    for attempt in ("system", "popen", "urlopen", "resolve", "socket"):
        assert outcome[attempt] == "blocked", f"{attempt}: {outcome[attempt]}"
    blocked = json.loads(report.read_text())["blocked"]
    events = {entry.split()[0] for entry in blocked}
    expected = {"os.system", "subprocess.Popen", "urllib.Request", "socket.getaddrinfo"}
    assert expected | {"socket.connect"} <= events, blocked
    assert recorded(log) == "", f"a program ran: {recorded(log)}"
    assert listener.accepted == 0, "a connection reached the loopback listener"


def test_runtime_loads_without_the_converter_or_its_logger(tmp_path):
    """Verification imports MNN's runtime in the export process: it must not load the
    converter wrapper or its logger (which would run pip)."""
    out = tmp_path / "m.mnn"
    timmx.export("mnn", "test_resnet", output=out, verify=False)
    folder, log = recorder_bin(tmp_path / "bin")
    probe = (
        "import sys, numpy as np\n"
        "from timmx.backends.mnn import mnn_runner\n"
        f"run = mnn_runner({str(out)!r})\n"
        "print(run(np.zeros((1, 3, 160, 160), np.float32)).shape)\n"
        "log = sys.modules.get('MNN.tools.utils.log')\n"
        "print(sorted(m for m in sys.modules if m.startswith('MNN.tools')),"
        " getattr(log, 'mnn_logger', 'absent'))\n"
    )
    env = {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-2] == "(1, 1000)", done.stdout
    assert lines[-1] == "['MNN.tools.utils.log'] None", f"only the stub is present: {lines[-1]}"
    assert recorded(log) == "", f"a program ran: {recorded(log)}"


def test_converter_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(
        mnn_backend,
        "MODE_ARGUMENTS",
        {**mnn_backend.MODE_ARGUMENTS, mnn_backend.MNNMode.fp32: ["-f", "NOPE"]},
    )
    with pytest.raises(ExportError, match="MNN's converter"):
        timmx.export("mnn", "test_resnet", output=tmp_path / "bad.mnn")
    assert leftovers(tmp_path) == [], leftovers(tmp_path)


def test_doctor_row_and_install_command(cli, monkeypatch):
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.stderr
    row = {r["backend"]: r for r in json.loads(result.stdout)["backends"]}["mnn"]
    assert row["available"], f"mnn should be available here: {row}"
    assert row["versions"]["mnn"] and row["versions"]["onnx"], row
    backend = default_registry().get("mnn")
    real = backend_module.installed_version
    monkeypatch.setattr(
        backend_module, "installed_version", lambda d: None if d == "onnx" else real(d)
    )
    state = backend.check_dependencies()
    assert not state.available and state.missing == ["onnx"], state
    assert "pip install 'timmx[mnn]'" in state.install_hint, state.install_hint
    assert "uv sync --extra mnn" in state.install_hint, state.install_hint
