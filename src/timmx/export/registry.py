"""The registry of export backends."""

import importlib.metadata

from timmx.errors import ConfigurationError
from timmx.export.base import ExportBackend

ENTRY_POINT_GROUP = "timmx.backends"


class BackendRegistry:
    """Backends by name; built-ins and plugins register the same way."""

    def __init__(self) -> None:
        self._backends: dict[str, ExportBackend] = {}

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


def _builtin_backends() -> list[ExportBackend]:
    from timmx.export.c_backend import CBackend
    from timmx.export.coreml_backend import CoreMLBackend
    from timmx.export.executorch_backend import ExecuTorchBackend
    from timmx.export.litert_backend import LiteRTBackend
    from timmx.export.ncnn_backend import NcnnBackend
    from timmx.export.onnx_backend import OnnxBackend
    from timmx.export.tensorrt_backend import TensorRTBackend
    from timmx.export.torch_export_backend import TorchExportBackend
    from timmx.export.torchscript_backend import TorchScriptBackend

    return [
        CBackend(),
        CoreMLBackend(),
        ExecuTorchBackend(),
        LiteRTBackend(),
        NcnnBackend(),
        OnnxBackend(),
        TorchExportBackend(),
        TorchScriptBackend(),
        TensorRTBackend(),
    ]


def _plugin_backends() -> list[ExportBackend]:
    backends = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        backend = entry_point.load()
        backends.append(backend() if isinstance(backend, type) else backend)
    return backends


def create_builtin_registry() -> BackendRegistry:
    """A registry holding every built-in backend and every installed plugin backend."""
    registry = BackendRegistry()
    for backend in _builtin_backends() + _plugin_backends():
        registry.register(backend)
    return registry


_default_registry: BackendRegistry | None = None


def default_registry() -> BackendRegistry:
    """The process-wide registry used by the CLI and the Python API (built on first use)."""
    global _default_registry
    if _default_registry is None:
        _default_registry = create_builtin_registry()
    return _default_registry
