"""Image folders as model inputs: timm's eval transform for the prepared model, shared by
calibration (--calibration-data), verification (--verify-data) and evaluation (--eval-data)."""

from __future__ import annotations

import random
from pathlib import Path

from timmx.errors import ConfigurationError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
SUBSET_SEED = 0


def image_files(folder: Path, flag: str = "--calibration-data") -> list[Path]:
    """Image files under ``folder`` (recursive, sorted); ConfigurationError if none/unreadable."""
    try:
        files = sorted(
            p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        )
        if not files:
            next(folder.iterdir(), None)  # raises PermissionError on an unreadable folder
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot read {flag} folder {folder}: {exc.strerror or exc}; check its permissions."
        ) from exc
    if not files:
        kinds = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
        raise ConfigurationError(
            f"{flag} folder {folder} holds no images ({kinds}); point {flag} at a folder of images."
        )
    return files


def subset(files: list[Path], limit: int | None, seed: int = SUBSET_SEED) -> list[Path]:
    """A deterministic subset of at most ``limit`` files, in sorted order."""
    if limit is None or len(files) <= limit:
        return list(files)
    return sorted(random.Random(seed).sample(files, limit))


def eval_transform(prepared):
    """timm's eval transform for the prepared model: resize, center crop, interpolation, and
    the model's mean/std, or none of the normalization when it is baked in."""
    from timmx._torch_env import import_timm

    channels = prepared.input_size[0]
    stats = (
        {"mean": (0.0,) * channels, "std": (1.0,) * channels}
        if prepared.normalize
        else {"mean": prepared.mean, "std": prepared.std}
    )
    return import_timm().data.create_transform(
        input_size=prepared.input_size,
        is_training=False,
        interpolation=prepared.interpolation,
        crop_pct=prepared.crop_pct,
        **stats,
    )


def load_image(path: Path, transform, channels: int):
    """One image through ``transform``; raises OSError/ValueError when it cannot be decoded."""
    from PIL import Image

    with Image.open(path) as image:
        return transform(image.convert("L" if channels == 1 else "RGB"))


def load_images(prepared, files: list[Path], *, strict: bool, flag: str):
    """Decode and transform ``files`` into one (N, C, H, W) float32 tensor.

    ``strict``: an undecodable image is an error naming it; otherwise it is skipped (returns
    (tensor, skipped count)).
    """
    import torch
    from PIL import UnidentifiedImageError

    transform = eval_transform(prepared)
    channels = prepared.input_size[0]
    tensors = []
    skipped = 0
    for path in files:
        try:
            tensors.append(load_image(path, transform, channels))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            if strict:
                raise ConfigurationError(
                    f"{flag}: cannot decode image {path} ({type(exc).__name__}); remove or "
                    "replace it."
                ) from exc
            skipped += 1
    if not tensors:
        raise ConfigurationError(
            f"None of the {len(files)} images for {flag} could be decoded; check the files."
        )
    return torch.stack(tensors).float(), skipped
