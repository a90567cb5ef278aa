"""timm's model names without importing timm: an index cached per timm version.

``timmx list``, and the errors for an unknown model name, answer from this index, so they need
no torch: it is built once per installed timm version (which takes one import of timm) and kept
in ``$TIMMX_CACHE_DIR`` (default ``$XDG_CACHE_HOME/timmx``, i.e. ``~/.cache/timmx``). When timm is
already imported (a Python session that built models, or registered its own), timm itself is
asked instead.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from timmx.core.backend import installed_version

INDEX_VERSION = 1


def cache_dir() -> Path:
    """Where timmx keeps its caches."""
    if os.environ.get("TIMMX_CACHE_DIR"):
        return Path(os.environ["TIMMX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "timmx"


def _natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text.lower())]


@dataclass
class ModelIndex:
    """Model names of one timm version: listed, deprecated aliases, and pretrained tags."""

    timm_version: str
    models: list[str]
    deprecated: list[str]
    pretrained: list[str]
    index_version: int = INDEX_VERSION

    def is_model(self, name: str) -> bool:
        """Whether timm can create ``name`` (a tag such as ``.a1_in1k`` is ignored)."""
        base = name.split(".", 1)[0]
        return base in self._known

    @property
    def _known(self) -> set[str]:
        cached = self.__dict__.get("_known_set")
        if cached is None:
            cached = self.__dict__["_known_set"] = {*self.models, *self.deprecated}
        return cached

    def list(self, pattern: str | None = None, pretrained: bool = False) -> list[str]:
        """Names matching a glob, like ``timm.list_models(pattern, pretrained=...)``."""
        names = self.pretrained if pretrained else self.models
        pattern = pattern or "*"
        patterns = [pattern]
        if pretrained and "." not in pattern:
            patterns.insert(0, f"{pattern}.*")
        found: set[str] = set()
        for each in patterns:
            found.update(fnmatch.filter(names, each))
        return sorted(found, key=_natural_key)


def _from_timm(timm) -> ModelIndex:
    from timm.models import _registry

    return ModelIndex(
        timm_version=timm.__version__,
        models=list(timm.list_models()),
        deprecated=sorted(getattr(_registry, "_deprecated_models", {})),
        pretrained=list(timm.list_models(pretrained=True)),
    )


def _cache_file(version: str) -> Path:
    return cache_dir() / f"model-index-timm-{version}.json"


def _read(path: Path, version: str) -> ModelIndex | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        index = ModelIndex(**data)
    except (OSError, ValueError, TypeError):
        return None
    if index.timm_version != version or index.index_version != INDEX_VERSION:
        return None
    return index


def _write(path: Path, index: ModelIndex) -> None:
    """Write atomically; a cache that cannot be written is simply not kept."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".model-index-", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(asdict(index), handle)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def model_index() -> ModelIndex:
    """The index of the installed timm: live when timm is imported, else cached (or built)."""
    if "timm" in sys.modules:
        return _from_timm(sys.modules["timm"])
    version = installed_version("timm") or "unknown"
    path = _cache_file(version)
    index = _read(path, version)
    if index is None:
        from timmx._torch_env import import_timm

        index = _from_timm(import_timm())
        _write(path, index)
    return index
