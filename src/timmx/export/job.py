"""One export in flight: the options it was given and what has been learned so far."""

from __future__ import annotations

import difflib
import enum
import inspect
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from timmx.errors import ConfigurationError
from timmx.export.base import ExportBackend
from timmx.export.options import COMMON_NAMES
from timmx.export.types import Device

if TYPE_CHECKING:
    from timmx.export.common import PreparedModel


@dataclass
class CommonOptions:
    """The options every backend shares (see :func:`timmx.export.options.common_options`)."""

    output: Path | None = None
    pretrained: bool = False
    checkpoint: Path | None = None
    num_classes: int | None = None
    in_chans: int | None = None
    input_size: tuple[int, int, int] | None = None
    batch_size: int = 1
    device: Device = Device.cpu
    normalize: bool = False
    softmax: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    reparam: bool = True
    verify: bool = True
    atol: float | None = None
    rtol: float | None = None
    json_output: bool = False


class BackendOptions(types.SimpleNamespace):
    """A backend's own options as attributes (``job.options.opset``)."""


@dataclass
class ExportJob:
    """Everything one export needs; backends read options and the prepared model from here."""

    backend: ExportBackend
    model_name: str
    common: CommonOptions
    options: BackendOptions
    output: Path | None = None
    prepared: PreparedModel | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_options(cls, backend: ExportBackend, values: dict[str, object]) -> ExportJob:
        """Split the command's keyword arguments into shared and backend options."""
        values = dict(values)
        model = values.pop("model")
        common_fields = {f.name for f in fields(CommonOptions)}
        common = CommonOptions(**{k: v for k, v in values.items() if k in common_fields})
        specific = BackendOptions(**{k: v for k, v in values.items() if k not in COMMON_NAMES})
        return cls(backend=backend, model_name=str(model), common=common, options=specific)

    @property
    def model(self) -> PreparedModel:
        """The prepared model (available from ``convert()`` on)."""
        if self.prepared is None:
            raise RuntimeError("the model has not been prepared yet")
        return self.prepared


def _base_type(annotation: object) -> tuple[object, object | None, bool]:
    """Strip ``Annotated`` and ``| None``: (type, typer info, optional)."""
    info = None
    if typing.get_origin(annotation) is Annotated:
        annotation, *extras = typing.get_args(annotation)
        info = extras[0] if extras else None
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else annotation
    return annotation, info, optional


def _coerce(name: str, value: object, annotation: object) -> object:
    kind, info, optional = _base_type(annotation)
    flag = "--" + name.replace("_", "-")
    if value is None:
        if optional:
            return None
        raise ConfigurationError(f"Option {name!r} ({flag}) cannot be None.")
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(value.value if isinstance(value, enum.Enum) else value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in kind)
            raise ConfigurationError(
                f"Invalid value {value!r} for {name!r} ({flag}); choose one of: {choices}."
            ) from None
    if typing.get_origin(kind) is tuple:
        item_types = typing.get_args(kind)
        if not isinstance(value, list | tuple) or len(value) != len(item_types):
            raise ConfigurationError(
                f"Option {name!r} ({flag}) takes {len(item_types)} values, got {value!r}."
            )
        return tuple(_coerce(name, v, t) for v, t in zip(value, item_types, strict=True))
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigurationError(f"Option {name!r} ({flag}) takes True or False.")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigurationError(f"Option {name!r} ({flag}) takes a number, got {value!r}.")
        if kind is int and not float(value).is_integer():
            raise ConfigurationError(f"Option {name!r} ({flag}) takes an integer, got {value!r}.")
        value = kind(value)
        low = getattr(info, "min", None)
        if low is not None and value < low:
            raise ConfigurationError(f"Option {name!r} ({flag}) must be >= {low}, got {value}.")
        return value
    if kind is Path:
        if not isinstance(value, str | Path):
            raise ConfigurationError(f"Option {name!r} ({flag}) takes a path, got {value!r}.")
        return Path(value)
    if kind is str and not isinstance(value, str):
        raise ConfigurationError(f"Option {name!r} ({flag}) takes a string, got {value!r}.")
    return value


def coerce_options(
    parameters: dict[str, inspect.Parameter], supplied: dict[str, object]
) -> dict[str, object]:
    """Check Python-API keyword options against a command's parameters.

    Unknown names and invalid choices raise a ConfigurationError naming the valid ones; values
    are converted the way the CLI would (strings to enums and paths, lists to tuples).
    """
    unknown = [name for name in supplied if name not in parameters]
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, list(parameters), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        valid = ", ".join(sorted(parameters))
        raise ConfigurationError(f"Unknown option {name!r}.{hint} Valid options: {valid}.")
    values: dict[str, object] = {}
    for name, parameter in parameters.items():
        if name in supplied:
            values[name] = _coerce(name, supplied[name], parameter.annotation)
        elif parameter.default is inspect.Parameter.empty:
            raise ConfigurationError(f"Missing required argument {name!r}.")
        else:
            values[name] = parameter.default
    return values
