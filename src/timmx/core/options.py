"""Options as data: dataclass fields whose metadata carries the flag, its help and its bounds.

A backend declares its own flags as a dataclass::

    @dataclass
    class OnnxOptions:
        opset: int = option(18, "ONNX opset (>= 18).")
        dynamic_batch: bool = dynamic_batch_option()

The command line (:mod:`timmx.cli.commands`) and the Python API (:func:`timmx.export`) are both
generated from these declarations, so the schema is written once. Values reach a backend as an
instance of its dataclass (``job.options.opset``), checked by :func:`parse_options`: types,
choices, bounds, finiteness, unknown names (with suggestions).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timmx.errors import ConfigurationError

METADATA_KEY = "timmx.option"


@dataclass(frozen=True)
class OptionInfo:
    """How one dataclass field appears as a flag.

    ``flags`` are the declared names (``("--output", "-o")``, ``("--fp16/--no-fp16",)``); empty
    means ``--<name>`` (``--<name>/--no-<name>`` for a bool). ``min``/``max`` bound numbers
    inclusively; ``argument`` makes it a positional argument.
    """

    help: str
    flags: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    show_default: bool = True
    argument: bool = False


def option(
    default: Any,
    help: str,
    *flags: str,
    min: float | None = None,
    max: float | None = None,
    show_default: bool = True,
) -> Any:
    """A dataclass field declaring one flag (see :class:`OptionInfo`)."""
    info = OptionInfo(help=help, flags=flags, min=min, max=max, show_default=show_default)
    return field(default=default, metadata={METADATA_KEY: info})


@dataclass(frozen=True)
class OptionSpec:
    """One declared option: its Python name, resolved type, default and flag metadata."""

    name: str
    annotation: Any
    default: Any
    info: OptionInfo

    @property
    def flag(self) -> str:
        """The primary flag (``--dynamic-batch``), used in messages."""
        if self.info.flags:
            return self.info.flags[0].split("/", 1)[0]
        return "--" + self.name.replace("_", "-")

    @property
    def base_type(self) -> Any:
        """The type without ``| None``."""
        return _strip_optional(self.annotation)[0]

    @property
    def optional(self) -> bool:
        """Whether None is a valid value."""
        return _strip_optional(self.annotation)[1]


def specs(cls: type) -> list[OptionSpec]:
    """The option specs of an options dataclass, in declaration order."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not an options dataclass")
    hints = typing.get_type_hints(cls)
    result = []
    for f in dataclasses.fields(cls):
        info = f.metadata.get(METADATA_KEY)
        if info is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with option()")
        default = f.default if f.default is not dataclasses.MISSING else None
        result.append(OptionSpec(f.name, hints[f.name], default, info))
    return result


@dataclass
class NoOptions:
    """A backend without options of its own."""


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        return (args[0] if len(args) == 1 else annotation), optional
    return annotation, False


def _check_number(spec: OptionSpec, value: float) -> None:
    flag = spec.flag
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigurationError(f"{flag} must be a finite number, got {value}.")
    low, high = spec.info.min, spec.info.max
    if low is not None and value < low:
        raise ConfigurationError(f"{flag} must be >= {low:g}, got {value}.")
    if high is not None and value > high:
        raise ConfigurationError(f"{flag} must be <= {high:g}, got {value}.")


def coerce(spec: OptionSpec, value: Any, kind: Any = None) -> Any:
    """Check ``value`` against ``spec`` and convert it the way the command line would.

    Strings become enums and paths, lists become tuples; numbers are bounds-checked and must be
    finite. Raises a ConfigurationError naming the flag.
    """
    kind = spec.base_type if kind is None else kind
    flag = spec.flag
    if value is None:
        if spec.optional:
            return None
        raise ConfigurationError(f"{flag} ({spec.name}) cannot be None.")
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(value.value if isinstance(value, enum.Enum) else value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in kind)
            raise ConfigurationError(
                f"Invalid value {value!r} for {flag}; choose one of: {choices}."
            ) from None
    if typing.get_origin(kind) is tuple:
        item_types = typing.get_args(kind)
        if not isinstance(value, list | tuple) or len(value) != len(item_types):
            raise ConfigurationError(f"{flag} takes {len(item_types)} values, got {value!r}.")
        return tuple(coerce(spec, v, t) for v, t in zip(value, item_types, strict=True))
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigurationError(f"{flag} ({spec.name}) takes True or False, got {value!r}.")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigurationError(f"{flag} takes a number, got {value!r}.")
        if kind is int and not (math.isfinite(value) and float(value).is_integer()):
            raise ConfigurationError(f"{flag} takes an integer, got {value!r}.")
        value = kind(value)
        _check_number(spec, value)
        return value
    if kind is Path:
        if not isinstance(value, str | Path):
            raise ConfigurationError(f"{flag} takes a path, got {value!r}.")
        return Path(value)
    if kind is str and not isinstance(value, str):
        raise ConfigurationError(f"{flag} takes a string, got {value!r}.")
    return value


def parse_options(cls: type, supplied: dict[str, Any]) -> Any:
    """An instance of ``cls`` from ``supplied`` (names it does not declare are ignored).

    Missing names take their defaults; every given value goes through :func:`coerce`.
    """
    values = {}
    for spec in specs(cls):
        if spec.name in supplied:
            values[spec.name] = coerce(spec, supplied[spec.name])
    return cls(**values)


def reject_unknown(
    supplied: dict[str, Any],
    known: list[str],
    elsewhere: dict[str, list[str]],
    format_name: str,
) -> None:
    """Raise a ConfigurationError for the first name of ``supplied`` not in ``known``.

    The message suggests close names and, from ``elsewhere`` (option name -> formats that
    declare it), the formats that do have the option.
    """
    for name in supplied:
        if name in known:
            continue
        flag = "--" + name.replace("_", "-")
        owners = elsewhere.get(name)
        if owners:
            raise ConfigurationError(
                f"{flag} is not an option of the {format_name} format; it belongs to "
                f"{', '.join(owners)} (see `timmx export FORMAT --help`)."
            )
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigurationError(
            f"Unknown option {name!r}.{hint} Valid options: {', '.join(sorted(known))}."
        )
