"""The shared rich consoles: results go to stdout, progress and errors to stderr."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.status import Status

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class Spinner:
    """A spinner on stderr showing the current step, on an interactive terminal only.

    It starts on the first :meth:`update`, not before: the export forks its worker first, and
    a process must not fork while another of its threads (the spinner's) holds a lock.
    """

    def __init__(self, *, quiet: bool = False) -> None:
        self.enabled = not quiet and err_console.is_terminal
        self._status: Status | None = None

    def update(self, message: str) -> None:
        """Show ``message`` as the current step."""
        if not self.enabled:
            return
        if self._status is None:
            self._status = err_console.status(message)
            self._status.start()
        else:
            self._status.update(message)

    def __enter__(self) -> Spinner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
