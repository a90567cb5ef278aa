"""Atomic artifact output: write into a staging folder, move into place only on success.

The staging folder sits beside the output (same file system, so the final move is a rename)
and is named ``.<output>.timmx-staging-<host>-<pid>-<random>``. A process killed outright
(SIGKILL, the OOM killer) cannot remove its own; the next export into the same folder removes
the staging folders of this host whose process is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import tempfile
from pathlib import Path
from types import TracebackType

from timmx.errors import ConfigurationError

STAGING_TAG = ".timmx-staging-"


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(folder: Path) -> list[Path]:
    """Remove the staging folders in ``folder`` left by dead processes of this host."""
    removed = []
    prefix = f"{STAGING_TAG}{_host_tag()}-"
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(".") or prefix not in name:
            continue
        pid_text = name.split(prefix, 1)[1].split("-", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def missing_parents(output: Path) -> list[Path]:
    """The folders above ``output`` that do not exist yet, outermost first.

    Raises a ConfigurationError when an existing ancestor is a file.
    """
    missing = []
    parent = output.absolute().parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigurationError(
            f"--output {output}: {parent} is a file, not a folder; choose another --output."
        )
    return list(reversed(missing))


class Staging:
    """A hidden folder beside the output; ``path`` is where the backend writes.

    Entering creates the output's missing parent folders (removed again when the export
    fails) and removes stale staging folders. Sidecar files written next to ``path`` (ONNX
    external data) move with it. On ``commit()`` every entry replaces its namesake in the
    output folder; without a commit (an error, a Ctrl-C) the staging folder is deleted and any
    existing output is left untouched.
    """

    def __init__(self, output: Path, *, is_dir: bool = False) -> None:
        self.output = output
        self.is_dir = is_dir
        self._folder: Path | None = None
        self._created: list[Path] = []
        self.committed = False

    @property
    def folder(self) -> Path:
        """The staging folder itself."""
        if self._folder is None:
            raise RuntimeError("staging folder not created")
        return self._folder

    @property
    def path(self) -> Path:
        """Where the backend writes the artifact (same name as the final output)."""
        return self.folder / self.output.name

    def __enter__(self) -> Staging:
        parent = self.output.absolute().parent
        for folder in missing_parents(self.output):
            try:
                folder.mkdir()
            except OSError as exc:
                self._remove_created()
                raise ConfigurationError(
                    f"Cannot create output folder {folder}: {exc.strerror}; choose another "
                    "--output."
                ) from exc
            self._created.append(folder)
        remove_stale_staging(parent)
        prefix = f".{self.output.name}{STAGING_TAG}{_host_tag()}-{os.getpid()}-"
        try:
            self._folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        except OSError as exc:
            self._remove_created()
            raise ConfigurationError(
                f"Output folder {parent} does not accept new files ({exc.strerror}); choose "
                "another --output."
            ) from exc
        if self.is_dir:
            self.path.mkdir()
        return self

    def commit(self) -> None:
        """Move everything staged into the output folder, replacing what was there."""
        parent = self.output.absolute().parent
        for entry in sorted(self.folder.iterdir()):
            if entry.name.startswith(".old-"):
                continue
            _replace(entry, parent / entry.name, self.folder)
        self.committed = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
        if not self.committed:
            self._remove_created()

    def _remove_created(self) -> None:
        for folder in reversed(self._created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only while empty: never removes anything but our own
        self._created.clear()


def _replace(source: Path, target: Path, staging: Path) -> None:
    """Move ``source`` to ``target``; an existing folder there is first moved into ``staging``
    (deleted with it), so a crash in between never leaves a half-written artifact."""
    if target.is_dir() and not target.is_symlink():
        os.replace(target, staging / f".old-{target.name}")
    elif target.exists() and source.is_dir():
        target.unlink()
    os.replace(source, target)
