"""One way to silence converters: their warnings, loggers, prints and native (C++) output.

Everything is shown again with ``TIMMX_DEBUG=1``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator


def debugging() -> bool:
    """Whether TIMMX_DEBUG asks for tracebacks and converter output."""
    return bool(os.environ.get("TIMMX_DEBUG"))


@contextlib.contextmanager
def quiet(
    loggers: Iterable[str] = (), *, streams: bool = True, native: bool = True
) -> Iterator[None]:
    """Silence a converter for the duration of the block (unless TIMMX_DEBUG is set).

    Always: Python warnings, and the named ``loggers`` raised to ERROR. ``streams``: Python-level
    ``sys.stdout``/``sys.stderr`` (progress bars, prints). ``native``: file descriptors 1 and 2,
    which native libraries write to directly; Python's streams are flushed first so nothing of
    ours is lost.
    """
    if debugging():
        yield
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        for name in loggers:
            logger = logging.getLogger(name)
            stack.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.ERROR)
        if native:
            stack.enter_context(_quiet_file_descriptors())
        if streams:
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        yield


@contextlib.contextmanager
def _quiet_file_descriptors() -> Iterator[None]:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
