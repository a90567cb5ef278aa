"""Real photographs that ship inside PyPI packages (scikit-image's data module and
scikit-learn's sample images): nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

# Colour photographs bundled in the scikit-image wheel (skimage.data), then greyscale ones.
SKIMAGE_COLOUR = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "retina",
)
SKIMAGE_GREY = ("camera", "coins", "moon", "brick", "grass", "gravel", "clock", "page")


def real_photos(*, grey: bool = True) -> list[tuple[str, object]]:
    """(name, PIL RGB image) pairs: 10 colour photographs, and 8 greyscale ones as RGB.

    Sources: scikit-image's bundled data (astronaut, chelsea the cat, coffee, a rocket, a
    motorcycle pair, the Hubble deep field, a retina; camera, coins, moon, brick, grass, gravel,
    a clock, a page) and scikit-learn's two sample images (china, flower).
    """
    from PIL import Image
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = []
    for name in SKIMAGE_COLOUR:
        photos.append((name, Image.fromarray(getattr(data, name)()).convert("RGB")))
    left, right, _ = data.stereo_motorcycle()
    photos.append(("motorcycle_left", Image.fromarray(left).convert("RGB")))
    photos.append(("motorcycle_right", Image.fromarray(right).convert("RGB")))
    sample = load_sample_images()
    for path, array in zip(sample.filenames, sample.images, strict=True):
        photos.append((Path(path).stem, Image.fromarray(array).convert("RGB")))
    if grey:
        for name in SKIMAGE_GREY:
            photos.append((name, Image.fromarray(getattr(data, name)()).convert("RGB")))
    return photos


def write_photo_folder(folder: Path, *, grey: bool = True) -> Path:
    """Write :func:`real_photos` into ``folder`` as PNG files; returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, image in real_photos(grey=grey):
        image.save(folder / f"{name}.png")
    return folder


def photo_batch(input_size: tuple[int, int, int], config: dict, count: int, seed: int = 0):
    """``count`` real-photo crops (N, C, H, W) through timm's eval transform with ``config``
    (mean/std/interpolation/crop_pct), varied by random resized crops and flips beyond the
    photos themselves."""
    import random

    import torch
    from PIL import Image

    from timmx._torch_env import import_timm

    timm = import_timm()
    channels = input_size[0]
    evaluate = timm.data.create_transform(
        input_size=input_size,
        is_training=False,
        interpolation=config.get("interpolation", "bilinear"),
        crop_pct=config.get("crop_pct", 1.0),
        mean=config["mean"],
        std=config["std"],
    )
    photos = [image for _, image in real_photos()]
    rng = random.Random(seed)
    tensors = []
    for index in range(count):
        image = photos[index % len(photos)]
        if index >= len(photos):  # vary: a random part of a photo, maybe mirrored
            side = min(image.size)
            scale = rng.uniform(0.3, 1.0)
            crop = int(side * scale)
            left = rng.randint(0, image.size[0] - crop)
            top = rng.randint(0, image.size[1] - crop)
            image = image.crop((left, top, left + crop, top + crop))
            if rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if channels == 1:
            image = image.convert("L")
        tensors.append(evaluate(image))
    return torch.stack(tensors)
