"""The shared rich consoles: results go to stdout, progress and errors to stderr."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.status import Status

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class Spinner:
    """On an interactive terminal only: a spinner on stderr showing the current step, or a
    progress bar for a counted step (evaluation over images).

    It starts on the first :meth:`update`, not before: the export forks its worker first, and
    a process must not fork while another of its threads (the spinner's) holds a lock.
    """

    def __init__(self, *, quiet: bool = False) -> None:
        self.enabled = not quiet and err_console.is_terminal
        self._status: Status | None = None
        self._bar: Progress | None = None
        self._task = None

    def update(self, message: str, done: int | None = None, total: int | None = None) -> None:
        """Show ``message`` as the current step (with a bar when ``total`` is given)."""
        if not self.enabled:
            return
        if total is not None:
            self._show_bar(message, done or 0, total)
            return
        self._stop_bar()
        if self._status is None:
            self._status = err_console.status(message)
            self._status.start()
        else:
            self._status.update(message)

    def _show_bar(self, message: str, done: int, total: int) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        self._stop_bar()
        if self._bar is None:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(message, total=total)
        self._bar.update(self._task, completed=done, total=total, description=message)

    def _stop_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

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
        self._stop_bar()
