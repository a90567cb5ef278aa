"""One worker process per measured format (``timmx benchmark``) or per pair (``timmx matrix``).

A worker is ``python -m timmx.core.bench.worker REQUEST RESULT``: a fresh interpreter, so no two
runtimes share a thread pool, an allocator or a peak-memory figure, and nothing is forked from a
process that already runs torch threads. It writes one-line progress messages to a pipe (the
file descriptor named by ``TIMMX_BENCH_PROGRESS_FD``) and its result as JSON to RESULT. Its own
stdout and stderr (converter chatter) go to a log whose tail explains a worker that died.

The parent never blocks on one worker: :func:`wait_any` waits on the progress pipes of every
running worker at once, so ``--jobs K`` needs no threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PROGRESS_FD_ENV = "TIMMX_BENCH_PROGRESS_FD"
LOG_TAIL_LINES = 12


class Worker:
    """A running worker process: its request, progress pipe, log and result file."""

    def __init__(self, request: dict, *, timeout: float | None = None, tag: object = None):
        self.request = request
        self.tag = tag
        self.timeout = timeout
        self.folder = Path(tempfile.mkdtemp(prefix="timmx-worker-"))
        self.result_path = self.folder / "result.json"
        request_path = self.folder / "request.json"
        request_path.write_text(json.dumps(request, default=str), encoding="utf-8")
        self.log_path = self.folder / "log.txt"
        read_fd, write_fd = os.pipe()
        env = {**os.environ, PROGRESS_FD_ENV: str(write_fd)}
        command = [sys.executable, "-m", "timmx.core.bench.worker"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*command, str(request_path), str(self.result_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                env=env,
                start_new_session=True,  # its own process group: killed as a whole
            )
        os.close(write_fd)
        self.progress_fd = read_fd
        self.started = time.monotonic()
        self._buffer = b""
        self.last_message = "starting"

    def fileno(self) -> int:
        """The progress pipe (for select)."""
        return self.progress_fd

    def read_messages(self) -> list[str] | None:
        """Progress messages that arrived (None once the pipe is closed: the worker ended)."""
        try:
            chunk = os.read(self.progress_fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            return None
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        messages = [line.decode("utf-8", "replace") for line in lines if line.strip()]
        if messages:
            self.last_message = messages[-1]
        return messages

    def overdue(self) -> bool:
        """Whether the worker ran past its timeout."""
        return self.timeout is not None and time.monotonic() - self.started > self.timeout

    def kill(self) -> None:
        """Kill the worker's whole process group (converters start processes of their own)."""
        for target in (
            lambda: os.killpg(self.process.pid, signal.SIGKILL),
            lambda: self.process.kill(),
        ):
            with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
                target()
        with contextlib.suppress(Exception):
            self.process.wait(timeout=30)

    def abandon(self) -> None:
        """Kill the worker and forget it (Ctrl-C, SIGTERM): no result."""
        self.kill()
        with contextlib.suppress(OSError):
            os.close(self.progress_fd)
        self._cleanup()

    def finish(self, *, timed_out: bool = False) -> dict:
        """Wait for the process, clean up, and return its result (or why there is none)."""
        if timed_out:
            self.kill()
        code = self.process.wait()
        with contextlib.suppress(OSError):
            os.close(self.progress_fd)
        result = None
        if not timed_out:
            with contextlib.suppress(OSError, ValueError):
                result = json.loads(self.result_path.read_text(encoding="utf-8"))
        if result is None:
            result = {"worker_error": self._death(code, timed_out), "timed_out": timed_out}
        result["worker_seconds"] = round(time.monotonic() - self.started, 3)
        self._cleanup()
        return result

    def _death(self, code: int, timed_out: bool) -> str:
        if timed_out:
            return f"timed out after {self.timeout:.0f} s (last step: {self.last_message})"
        if code < 0:
            number = -code
            name = (
                signal.Signals(number).name if number in signal.Signals._value2member_map_ else ""
            )
            hint = " (out of memory?)" if number == signal.SIGKILL else ""
            what = f"was killed by signal {number} {name}{hint}"
        else:
            what = f"exited with code {code} without a result"
        return f"the worker process {what} during: {self.last_message}. {self.log_tail()}".strip()

    def log_tail(self) -> str:
        """The last lines the worker (or a converter in it) printed."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        lines = [line for line in text.splitlines() if line.strip()][-LOG_TAIL_LINES:]
        return ("Its last output:\n" + "\n".join(lines)) if lines else ""

    def _cleanup(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


def wait_any(
    workers: list[Worker],
    on_message: Callable[[Worker, str], None],
    poll_s: float = 0.5,
) -> list[tuple[Worker, dict]]:
    """Wait until at least one of ``workers`` ended (or ran past its timeout); return those
    with their results. Progress messages go to ``on_message`` as they arrive."""
    finished: list[tuple[Worker, dict]] = []
    while not finished:
        ready, _, _ = select.select(workers, [], [], poll_s)
        for worker in ready:
            messages = worker.read_messages()
            if messages is None:
                finished.append((worker, worker.finish()))
                continue
            for message in messages:
                on_message(worker, message)
        done = {id(w) for w, _ in finished}
        for worker in workers:
            if id(worker) in done:
                continue
            if worker.overdue():
                finished.append((worker, worker.finish(timed_out=True)))
            elif worker.process.poll() is not None and worker not in ready:
                # ended, but something it started still holds the pipe open
                finished.append((worker, worker.finish()))
    return finished


def run_one(request: dict, on_message: Callable[[str], None], timeout: float | None = None):
    """Run one worker to the end; Ctrl-C or SIGTERM kill it before they propagate."""
    from timmx.core.isolation import sigterm_as_interrupt

    worker = Worker(request, timeout=timeout)
    try:
        with sigterm_as_interrupt():
            return wait_any([worker], lambda _, message: on_message(message))[0][1]
    except BaseException:
        worker.abandon()
        raise


def report_progress(message: str) -> None:
    """Inside a worker: tell the parent what is happening (one line; never fails)."""
    fd = os.environ.get(PROGRESS_FD_ENV)
    if not fd:
        return
    with contextlib.suppress(OSError, ValueError):
        os.write(int(fd), (" ".join(message.split()) + "\n").encode("utf-8"))
