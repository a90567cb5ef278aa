"""The shared rich consoles: results go to stdout, progress and errors to stderr."""

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@contextmanager
def status(message: str, *, quiet: bool = False) -> Iterator[None]:
    """Show a spinner with ``message`` while a long step runs, only on an interactive terminal."""
    if quiet or not err_console.is_terminal:
        yield
        return
    with err_console.status(message):
        yield
