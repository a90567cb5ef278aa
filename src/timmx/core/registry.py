"""The registry of export backends: built-ins and plugins load through the same path.

Every backend is named by an entry point (``module:Class``). The built-ins are listed here; a
third-party package adds its own under the entry point group ``timmx.backends``. A plugin that
fails to load is recorded in :attr:`BackendRegistry.failures` (``timmx doctor`` shows it) and
never takes the command line down.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field

from timmx.core.backend import ExportBackend
from timmx.core.options import specs
from timmx.errors import ConfigurationError

ENTRY_POINT_GROUP = "timmx.backends"
BUILTIN_BACKENDS = {
    "c": "timmx.backends.c:CBackend",
    "coreai": "timmx.backends.coreai:CoreAIBackend",
    "coreml": "timmx.backends.coreml:CoreMLBackend",
    "executorch": "timmx.backends.executorch:ExecuTorchBackend",
    "litert": "timmx.backends.litert:LiteRTBackend",
    "mnn": "timmx.backends.mnn:MNNBackend",
    "ncnn": "timmx.backends.ncnn:NcnnBackend",
    "onnx": "timmx.backends.onnx:OnnxBackend",
    "openvino": "timmx.backends.openvino:OpenVINOBackend",
    "tensorrt": "timmx.backends.tensorrt:TensorRTBackend",
    "torch-export": "timmx.backends.torch_export:TorchExportBackend",
    "torchscript": "timmx.backends.torchscript:TorchScriptBackend",
}


@dataclass(frozen=True)
class PluginFailure:
    """A plugin backend that could not be loaded."""

    name: str
    source: str
    error: str


@dataclass
class BackendRegistry:
    """Backends by name."""

    _backends: dict[str, ExportBackend] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)

    def register(self, backend: ExportBackend) -> None:
        """Add ``backend``; a second backend with the same name is an error."""
        if backend.name in self._backends:
            raise ValueError(f"an export backend named {backend.name!r} is already registered")
        self._backends[backend.name] = backend

    def unregister(self, name: str) -> None:
        """Remove the backend called ``name`` (used by tests that register fakes)."""
        self._backends.pop(name, None)

    def get(self, name: str) -> ExportBackend:
        """The backend called ``name``; unknown names raise a ConfigurationError."""
        try:
            return self._backends[name]
        except KeyError:
            known = ", ".join(sorted(self._backends))
            raise ConfigurationError(
                f"Unknown export format {name!r}. Available formats: {known}."
            ) from None

    def names(self) -> list[str]:
        """Registered backend names, sorted."""
        return sorted(self._backends)

    def backends(self) -> list[ExportBackend]:
        """Registered backends, sorted by name."""
        return [self._backends[name] for name in self.names()]

    def formats_with_option(self, option_name: str) -> list[str]:
        """The formats whose own options include ``option_name`` (a Python name)."""
        return [
            backend.name
            for backend in self.backends()
            if any(spec.name == option_name for spec in specs(backend.Options))
        ]


def _builtin_entry_points() -> list[importlib.metadata.EntryPoint]:
    return [
        importlib.metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)
        for name, value in BUILTIN_BACKENDS.items()
    ]


def _plugin_entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def load_backend(entry_point: importlib.metadata.EntryPoint) -> ExportBackend:
    """Load one entry point: a backend class (instantiated) or instance."""
    loaded = entry_point.load()
    backend = loaded() if isinstance(loaded, type) else loaded
    if not isinstance(backend, ExportBackend):
        raise TypeError(f"{entry_point.value} is not a timmx ExportBackend")
    return backend


def create_builtin_registry() -> BackendRegistry:
    """A registry holding every built-in backend and every installed plugin backend."""
    registry = BackendRegistry()
    for entry_point in _builtin_entry_points():
        registry.register(load_backend(entry_point))
    for entry_point in _plugin_entry_points():
        try:
            registry.register(load_backend(entry_point))
        except Exception as exc:  # a broken plugin must not take timmx down
            registry.failures.append(
                PluginFailure(entry_point.name, entry_point.value, f"{type(exc).__name__}: {exc}")
            )
    return registry


_default_registry: BackendRegistry | None = None


def default_registry() -> BackendRegistry:
    """The process-wide registry used by the CLI and the Python API (built on first use)."""
    global _default_registry
    if _default_registry is None:
        _default_registry = create_builtin_registry()
    return _default_registry
