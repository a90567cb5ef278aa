"""Run MNN's model converter with no way to install packages or reach the network.

Run by :mod:`timmx.backends.mnn` as ``python -I _convert.py REQUEST.json`` in a private folder,
never imported. Importing MNN's converter wrapper (``MNN.tools.mnnconvert``) imports its
usage logger (``MNN.tools.utils.log``), which runs ``pip install -U aliyun-log-python-sdk``
through the first ``pip`` on PATH when that SDK is missing and uploads usage logs, including the
machine id. So, before anything of MNN is imported:

1. an audit hook refuses, for the life of this process, every way to start a program
   (``os.system``, ``subprocess``, ``exec``/``spawn``, ``fork``) or to use the network
   (``socket`` connect/bind/send/name look-ups, ``urllib`` requests), and records each attempt
   (reported back to timmx);
2. MNN's usage-log module is replaced by a stub without a logger, and the aliyun SDK by empty
   modules (so even the real log module would neither install it nor upload);
3. only the converter itself is called (``MNN.tools.mnnconvert.convert``), never ``main()``,
   which is where the upload happens.

The parent also gives this process an environment of its own: a PATH holding no ``pip``, pip
switched off by its own settings, the proxies pointed at a closed loopback port, HOME and TMPDIR
in the private folder. Standard library only until MNN is imported.
"""

import json
import sys
import types

BLOCKED_EVENTS = (
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.startfile",
    "subprocess.Popen",
    "pty.spawn",
    "socket.connect",
    "socket.bind",
    "socket.sendto",
    "socket.sendmsg",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyaddr",
    "urllib.Request",
    "http.client.connect",
    "ftplib.connect",
    "smtplib.connect",
)
STUBBED_MODULES = ("MNN.tools.utils.log", "aliyun", "aliyun.log", "aliyun.log.logitem")


def _install_guard(attempts: list[str]) -> None:
    def hook(event: str, args: tuple) -> None:
        if event in BLOCKED_EVENTS:
            attempts.append(f"{event} {args!r}"[:300])
            raise PermissionError(f"timmx: {event} is blocked in the MNN converter process")

    sys.addaudithook(hook)
    for name in STUBBED_MODULES:
        stub = types.ModuleType(name)
        stub.__doc__ = "timmx: replaced so that MNN's converter neither installs nor uploads."
        sys.modules[name] = stub
    sys.modules["MNN.tools.utils.log"].mnn_logger = None


def main() -> int:
    """Convert as the request file says; write the report; 0 when the model was written."""
    with open(sys.argv[1], encoding="utf-8") as handle:
        request = json.load(handle)
    attempts: list[str] = []
    _install_guard(attempts)
    sys.path[:0] = [p for p in request["paths"] if p not in sys.path]
    report = {"blocked": attempts, "stubbed": list(STUBBED_MODULES), "error": None}
    try:
        from MNN.tools import mnnconvert

        mnnconvert.convert(["mnnconvert", *request["arguments"]])
    except BaseException as exc:  # report it; the parent turns it into an ExportError
        report["error"] = f"{type(exc).__name__}: {exc}"
    report["modules"] = sorted(
        name for name in sys.modules if name.startswith(("MNN", "aliyun", "_tools"))
    )
    with open(request["report"], "w", encoding="utf-8") as handle:
        json.dump(report, handle)
    return 0 if report["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
