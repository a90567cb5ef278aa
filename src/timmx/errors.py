"""User-facing errors. The CLI prints them without a traceback and exits with code 2.

Every error pickles with its attributes, so an export that runs in a child process (see
:mod:`timmx.core.isolation`) raises the same error in the parent.
"""


class TimmxError(Exception):
    """Base class of every error timmx reports to the user."""


class ConfigurationError(TimmxError):
    """Bad input: an unknown model or option, an invalid flag combination, unreadable data."""


class DependencyError(ConfigurationError):
    """An optional dependency a backend needs is not installed."""

    def __init__(self, backend: str, missing: list[str], install: str) -> None:
        self.backend = backend
        self.missing = missing
        self.install = install
        names = ", ".join(missing)
        super().__init__(
            f"The {backend} backend needs {names}, which is not installed. Install it with:\n"
            f"  {install}"
        )

    def __reduce__(self):
        return (type(self), (self.backend, self.missing, self.install))


class ExportError(TimmxError):
    """The conversion itself failed."""


class VerificationError(ExportError):
    """The exported artifact does not compute what the PyTorch model computes."""

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report

    def __reduce__(self):
        return (type(self), (str(self), self.report))


class AccuracyError(ExportError):
    """The artifact lost more accuracy on --eval-data than --max-accuracy-drop allows."""

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report

    def __reduce__(self):
        return (type(self), (str(self), self.report))
