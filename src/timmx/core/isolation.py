"""Running the heavy part of an export in a child process, so signals are always honoured.

Some converters swallow Ctrl-C: a KeyboardInterrupt raised inside a callback from native code
is printed and dropped, and the export goes on. So on Linux, when this process is
single-threaded (always so for the ``timmx`` command, which loads no torch before it forks),
the model preparation, conversion and verification run in a forked child in its own process
group. The parent only waits: on SIGINT or SIGTERM it kills the child's whole group at once
and cleans up; if the parent itself is killed, the kernel kills the child
(``PR_SET_PDEATHSIG``). The child reports progress and its result through a pipe.

Elsewhere (another OS, a process with threads, where forking is unsafe, ``TIMMX_IN_PROCESS=1``
or ``TIMMX_DEBUG=1``, which wants the converter's tracebacks) the work runs in this process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from timmx.errors import ExportError

T = TypeVar("T")
PR_SET_PDEATHSIG = 1
_HEADER = struct.Struct("!Q")


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived during an export (handled like Ctrl-C; the CLI exits 143)."""


def fork_safe() -> bool:
    """Whether the export may run in a forked child: Linux, one thread, not switched off."""
    if os.environ.get("TIMMX_IN_PROCESS") or os.environ.get("TIMMX_DEBUG"):
        return False  # asked for (a debugger, tracebacks through the converter)
    if not sys.platform.startswith("linux"):
        return False
    if threading.active_count() != 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into a :class:`Terminated` exception for the block (main thread only)."""

    def handler(signum, frame):
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _send(fd: int, message: object) -> None:
    data = pickle.dumps(message)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _receive(fd: int) -> object | None:
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    body = _read_exact(fd, _HEADER.unpack(header)[0])
    return None if body is None else pickle.loads(body)


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _child(write_fd: int, work: Callable[[Callable[..., None]], object], parent: int) -> None:
    os.setpgid(0, 0)
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before PDEATHSIG was armed
        os._exit(1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        result = work(lambda *args: _send(write_fd, ("progress", args)))
        _send(write_fd, ("done", result))
    except BaseException as exc:  # everything goes back to the parent
        code = 1
        try:
            _send(write_fd, ("error", exc))
        except Exception:  # an exception that does not pickle
            _send(write_fd, ("error", ExportError(f"{type(exc).__name__}: {exc}")))
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _describe_death(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else ""
        hint = " (out of memory?)" if number == signal.SIGKILL else ""
        return f"was killed by signal {number} {name}{hint}"
    return f"exited with code {os.WEXITSTATUS(status)} without a result"


def run_isolated(
    work: Callable[[Callable[..., None]], T], progress: Callable[..., None], what: str
) -> T:
    """Run ``work(report)`` in a forked child when :func:`fork_safe`, else here.

    ``work`` gets a function to report progress (its arguments reach ``progress`` here). The
    result (or the exception) comes back as if the call had been local. ``what`` names the
    work in the message when the child dies without an answer (a crash, the OOM killer).
    """
    if not fork_safe():
        return work(progress)
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        _child(write_fd, work, parent)
    outcome: tuple[str, object] | None = None
    try:
        os.close(write_fd)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also here: no window in which a kill misses the group
        while True:
            message = _receive(read_fd)
            if message is None:
                break
            kind, payload = message
            if kind == "progress":
                progress(*payload)
            else:
                outcome = (kind, payload)
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if outcome is None:
        raise ExportError(
            f"{what} {_describe_death(status)}; nothing was written. Run with TIMMX_DEBUG=1 "
            "to see the converter's own output."
        )
    kind, payload = outcome
    if kind == "error":
        if isinstance(payload, BaseException):
            raise payload
        raise ExportError(str(payload))
    return payload  # type: ignore[return-value]


def _kill(pid: int) -> None:
    """Kill the child's process group (converters may have started their own processes)."""
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            target()
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
