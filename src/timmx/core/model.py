"""Model preparation shared by every backend: create, load weights, wrap, describe."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass

from timmx._version import __version__
from timmx.core.job import CommonOptions
from timmx.core.types import Device
from timmx.errors import ConfigurationError

SAMPLE_SEED = 0


def check_model_name(name: str) -> None:
    """Raise a ConfigurationError naming close matches when timm does not know ``name``.

    Answered from the model index (no torch import once it is cached).
    """
    from timmx.core.model_index import model_index

    if name.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
        return
    index = model_index()
    if index.is_model(name):
        return
    close = difflib.get_close_matches(name, index.models, n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ConfigurationError(
        f"Unknown model {name!r}.{hint} Run `timmx list PATTERN` to search timm's models."
    )


def channel_stats(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    """Fit RGB statistics to ``channels``: averaged for 1 channel, kept for 3."""
    values = tuple(float(v) for v in values)
    if channels == len(values):
        return values
    if channels == 1:
        return (sum(values) / len(values),)
    if len(values) == 1:
        return values * channels
    raise ConfigurationError(f"Cannot fit {len(values)} statistics to {channels} input channels.")


@dataclass
class PreparedModel:
    """The model ready to export (wrapper included) and what an artifact says about it."""

    name: str
    module: object  # torch.nn.Module, in eval mode, on ``device``
    input_size: tuple[int, int, int]
    batch_size: int
    device: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    normalize: bool
    softmax: bool
    interpolation: str
    crop_pct: float
    num_classes: int
    num_features: int
    labels: list[str] | None
    weights: str

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(batch, channels, height, width) of the sample input."""
        return (self.batch_size, *self.input_size)

    def sample_input(self, batch_size: int | None = None, seed: int = SAMPLE_SEED):
        """A seeded input in the range the exported graph expects.

        Images in [0, 1] when normalization is baked in, else those images normalized with the
        model's mean/std (what the model sees after timm's eval transform).
        """
        import torch

        generator = torch.Generator().manual_seed(seed)
        shape = (batch_size or self.batch_size, *self.input_size)
        x = torch.rand(shape, generator=generator)
        if not self.normalize:
            mean = torch.tensor(self.mean).view(1, -1, 1, 1)
            std = torch.tensor(self.std).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x.to(self.device)

    def run(self, x):
        """Run the PyTorch model on ``x`` without gradients."""
        import torch

        with torch.inference_mode():
            return self.module(x)

    def metadata(self) -> dict[str, str]:
        """Key/value metadata embedded in every artifact (values are strings; lists as JSON)."""
        from timmx._torch_env import import_timm

        data = {
            "model": self.name,
            "timm_version": import_timm().__version__,
            "timmx_version": __version__,
            "input_shape": json.dumps(list(self.input_shape)),
            "input_layout": "NCHW",
            "input_range": "[0, 1]" if self.normalize else "normalized with mean/std",
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "interpolation": self.interpolation,
            "crop_pct": str(self.crop_pct),
            "num_classes": str(self.num_classes),
            "normalize_baked_in": str(self.normalize).lower(),
            "softmax_baked_in": str(self.softmax).lower(),
            "weights": self.weights,
        }
        if self.labels:
            data["labels"] = json.dumps(self.labels)
        return data


def export_wrapper(model, mean, std, normalize: bool, softmax: bool):
    """The timm model with optional baked-in normalization and softmax (scriptable)."""
    import torch

    class ExportWrapper(torch.nn.Module):
        """The timm model with optional baked-in normalization and softmax."""

        __constants__ = ["normalize", "softmax"]  # TorchScript folds the branches

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.normalize = normalize
            self.softmax = softmax
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

        def forward(self, x):
            if self.normalize:
                x = (x - self.mean) / self.std
            x = self.model(x)
            if self.softmax:
                x = x.softmax(dim=-1)
            return x

    return ExportWrapper().eval()


def _labels(timm, model, num_classes: int) -> list[str] | None:
    try:
        subset = timm.data.infer_imagenet_subset(model)
        if not subset:
            return None
        names = list(timm.data.ImageNetInfo(subset).label_descriptions(as_dict=False))
    except Exception:
        return None
    return names if len(names) == num_classes else None


def check_device(device: Device) -> None:
    """Raise a ConfigurationError when ``device`` is not usable here (imports torch)."""
    import torch

    if device == Device.cuda and not torch.cuda.is_available():
        raise ConfigurationError("--device cuda needs an NVIDIA GPU with CUDA; none is visible.")
    if device == Device.mps and not torch.backends.mps.is_available():
        raise ConfigurationError("--device mps needs Apple silicon with MPS; it is unavailable.")


def create_timm_model(name: str, common: CommonOptions):
    """Create the timm model (``exportable=True``) with the requested classes/channels/size."""
    from timmx._torch_env import import_timm

    timm = import_timm()
    kwargs: dict[str, object] = {"pretrained": common.pretrained, "exportable": True}
    if common.num_classes is not None:
        kwargs["num_classes"] = common.num_classes
    in_chans = common.in_chans or (common.input_size[0] if common.input_size else None)
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    if common.input_size is not None:
        cfg = timm.models.get_pretrained_cfg(name.split(".", 1)[0])
        fixed = bool(cfg and getattr(cfg, "fixed_input_size", False))
        if fixed and tuple(common.input_size[1:]) != tuple(cfg.input_size[1:]):
            kwargs["img_size"] = tuple(common.input_size[1:])
    needs_download = common.pretrained or name.startswith(("hf-hub:", "hf_hub:"))
    try:
        if needs_download:
            from timmx.core.hub import pretrained_access

            with pretrained_access(timm, name):
                return timm.create_model(name, **kwargs)
        return timm.create_model(name, **kwargs)
    except (RuntimeError, OSError, ValueError, TypeError, AssertionError) as exc:
        what = "download or load pretrained weights" if common.pretrained else "create"
        raise ConfigurationError(
            f"Could not {what} {name!r}: {type(exc).__name__}: {exc}".rstrip()
        ) from exc


def prepare_model(name: str, common: CommonOptions) -> PreparedModel:
    """Build the model to export: weights, re-parameterization, wrapper, eval mode, device."""
    from timmx._torch_env import import_timm
    from timmx.core.checkpoint import apply_checkpoint

    timm = import_timm()
    check_device(common.device)
    model = create_timm_model(name, common)
    if common.checkpoint is not None:
        apply_checkpoint(model, common.checkpoint)
        weights = f"checkpoint {common.checkpoint.name}"
    elif common.pretrained:
        cfg = model.pretrained_cfg or {}
        weights = f"pretrained {cfg.get('hf_hub_id') or cfg.get('url') or name}"
    else:
        weights = "random init"
    model.eval()
    if common.reparam:
        from timm.utils.model import reparameterize_model

        model = reparameterize_model(model)
    config = timm.data.resolve_data_config({}, model=model)
    channels = common.in_chans or (common.input_size[0] if common.input_size else None)
    channels = channels or int(config["input_size"][0])
    if common.input_size is not None:
        input_size = tuple(int(v) for v in common.input_size)
    else:
        input_size = (channels, *(int(v) for v in config["input_size"][1:]))
    mean = channel_stats(common.mean if common.mean is not None else config["mean"], channels)
    std = channel_stats(common.std if common.std is not None else config["std"], channels)
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    num_features = int(getattr(model, "num_features", 0) or 0)
    labels = _labels(timm, model, num_classes) if num_classes else None
    wrapped = model
    if common.normalize or common.softmax:
        wrapped = export_wrapper(model, mean, std, common.normalize, common.softmax)
    wrapped = wrapped.to(common.device.value).eval()
    return PreparedModel(
        name=name,
        module=wrapped,
        input_size=input_size,
        batch_size=common.batch_size,
        device=common.device.value,
        mean=mean,
        std=std,
        normalize=common.normalize,
        softmax=common.softmax,
        interpolation=str(config.get("interpolation", "bilinear")),
        crop_pct=float(config.get("crop_pct", 1.0)),
        num_classes=num_classes,
        num_features=num_features,
        labels=labels,
        weights=weights,
    )
