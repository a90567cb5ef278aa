"""Atomic artifact output: write into a staging folder, move into place only on success."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from timmx.errors import ConfigurationError


def ensure_writable(output: Path) -> None:
    """Create the output's parent folder if needed and check it accepts new files."""
    parent = output.parent if str(output.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"Cannot create output folder {parent}: {exc.strerror}.") from exc
    if not parent.is_dir():
        raise ConfigurationError(f"Output folder {parent} is not a directory.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"Output folder {parent} is not writable; choose another --output."
        )


class Staging:
    """A hidden folder beside the output; ``path`` is where the backend writes.

    Sidecar files written next to ``path`` (ONNX external data) move with it. On ``commit()``
    every entry replaces its namesake in the output folder; without a commit (an error, a
    Ctrl-C) the staging folder is deleted and any existing output is left untouched.
    """

    def __init__(self, output: Path, *, is_dir: bool = False) -> None:
        self.output = output
        self.is_dir = is_dir
        self._folder: Path | None = None
        self.committed = False

    @property
    def path(self) -> Path:
        """Where the backend writes the artifact (same name as the final output)."""
        if self._folder is None:
            raise RuntimeError("staging folder not created")
        return self._folder / self.output.name

    def __enter__(self) -> Staging:
        parent = self.output.parent
        try:
            self._folder = Path(
                tempfile.mkdtemp(prefix=f".{self.output.name}.timmx-", dir=parent or ".")
            )
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot write to {parent or Path('.')}: {exc.strerror}; choose another --output."
            ) from exc
        if self.is_dir:
            self.path.mkdir()
        return self

    def commit(self) -> None:
        """Move everything staged into the output folder, replacing what was there."""
        assert self._folder is not None
        for entry in sorted(self._folder.iterdir()):
            _replace(entry, self.output.parent / entry.name)
        self.committed = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def _replace(source: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        backup = target.with_name(f".{target.name}.timmx-old")
        shutil.rmtree(backup, ignore_errors=True)
        os.replace(target, backup)
        os.replace(source, target)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        if target.exists() and source.is_dir():
            target.unlink()
        os.replace(source, target)
