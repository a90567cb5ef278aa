"""`timmx list` and `timmx info`."""

from __future__ import annotations

from pathlib import Path

from timmx.errors import ConfigurationError


def list_model_names(pattern: str | None, pretrained_only: bool) -> list[str]:
    """timm model names matching a substring or glob pattern."""
    from timmx.core.model_index import model_index

    if pattern and not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"
    return model_index().list(pattern or "*", pretrained=pretrained_only)


def describe_model(
    name: str,
    pretrained: bool = False,
    *,
    checkpoint: str | Path | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
) -> dict[str, object]:
    """Architecture, parameter count, input and preprocessing facts, classes, weights source.

    ``checkpoint``, ``num_classes`` and ``in_chans`` describe the model as ``timmx export``
    would build it with the same flags.
    """
    from timmx.core.job import CommonOptions, validate_common
    from timmx.core.model import check_model_name, prepare_model
    from timmx.core.options import parse_options

    given = {"checkpoint": checkpoint, "num_classes": num_classes, "in_chans": in_chans}
    common = parse_options(CommonOptions, {"pretrained": pretrained, "reparam": False, **given})
    validate_common(common)
    check_model_name(name)
    prepared = prepare_model(name, common)
    model = prepared.module
    cfg = getattr(model, "pretrained_cfg", None) or {}
    params = sum(p.numel() for p in model.parameters())
    if not params:
        raise ConfigurationError(f"{name} has no parameters.")
    source = cfg.get("hf_hub_id") or cfg.get("url") or "none"
    return {
        "model": name,
        "architecture": cfg.get("architecture", name),
        "class": type(model).__name__,
        "params": params,
        "params_millions": round(params / 1e6, 3),
        "input_size": list(prepared.input_size),
        "fixed_input_size": bool(cfg.get("fixed_input_size", False)),
        "mean": list(prepared.mean),
        "std": list(prepared.std),
        "interpolation": prepared.interpolation,
        "crop_pct": prepared.crop_pct,
        "num_classes": prepared.num_classes,
        "feature_dim": prepared.num_features,
        "labels": "imagenet" if prepared.labels else None,
        "weights": prepared.weights,
        "pretrained_source": source,
        "license": cfg.get("license"),
    }
