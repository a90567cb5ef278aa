"""A timm model trained on real data: scikit-learn's handwritten digits (1,797 8x8 scans).

:func:`write_digits` writes them as 32x32 RGB PNG files into ImageFolder trees (``train/0/``,
..., ``test/9/``; a seeded, stratified 80/20 split). :func:`train_digits` trains a small timm
model on the train split, with exactly the inputs timmx feeds an exported model (the same
files through timm's eval transform), and returns its state_dict and held-out accuracy. Export
it with ``--checkpoint`` plus :data:`EXPORT_FLAGS`; calibrate with ``--calibration-data train``
and measure with ``--eval-data test``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODEL = "test_resnet"
SIZE = 32
CLASSES = 10
SPLIT_SEED = 0
TEST_FRACTION = 0.2
# The flags that rebuild the trained model at export time.
EXPORT_FLAGS = ("--num-classes", str(CLASSES), "--input-size", "3", str(SIZE), str(SIZE))


@dataclass
class Digits:
    """The image folders and the trained model."""

    train: Path
    test: Path
    checkpoint: Path
    accuracy: float  # held-out top-1 of the trained PyTorch model, percent
    seconds: float  # training time


def write_digits(root: Path) -> tuple[Path, Path]:
    """Write the digits as 32x32 RGB PNGs into ``root/train/<digit>/`` and ``root/test/...``."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    rng = np.random.default_rng(SPLIT_SEED)
    root = Path(root)
    for digit in range(CLASSES):
        indices = np.flatnonzero(data.target == digit)
        rng.shuffle(indices)
        cut = round(len(indices) * TEST_FRACTION)
        for split, chosen in (("test", indices[:cut]), ("train", indices[cut:])):
            folder = root / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for index in chosen:
                pixels = (data.images[index] * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
                image = Image.fromarray(pixels).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
                image.convert("RGB").save(folder / f"{index:04d}.png")
    return root / "train", root / "test"


def _tensors(prepared, folder: Path):
    """(images, labels) of an ImageFolder through timmx's own eval transform for the model."""
    import torch

    from timmx.core.evaluate import class_folders
    from timmx.core.images import load_images

    files, labels = [], []
    for name, paths in class_folders(folder):
        files.extend(paths)
        labels.extend([int(name)] * len(paths))
    images, _ = load_images(prepared, files, strict=True, flag="digits")
    return images, torch.tensor(labels)


def train_digits(root: Path, *, model_name: str = MODEL, epochs: int = 10, seed: int = 0) -> Digits:
    """Write the digits under ``root``, train ``model_name`` on them, save the checkpoint.

    Trains on one thread: for a model this small more threads only add synchronisation (and, on
    a busy machine, spinning).
    """
    import time

    import torch

    from timmx.core.job import CommonOptions
    from timmx.core.model import prepare_model

    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_dir, test_dir = write_digits(root)
        prepared = prepare_model(
            model_name, CommonOptions(num_classes=CLASSES, input_size=(3, SIZE, SIZE))
        )
        train = _tensors(prepared, train_dir)
        test = _tensors(prepared, test_dir)
        model, accuracy = _train(model_name, train, test, epochs, seed)
    finally:
        torch.set_num_threads(threads)
    checkpoint = Path(root) / "digits.pth"
    torch.save(model.state_dict(), checkpoint)
    return Digits(
        train=train_dir,
        test=test_dir,
        checkpoint=checkpoint,
        accuracy=accuracy,
        seconds=time.perf_counter() - started,
    )


def _train(model_name: str, train, test, epochs: int, seed: int):
    """AdamW with a one-cycle schedule and +-2 pixel shifts; returns (model, test accuracy %)."""
    import torch

    from timmx._torch_env import import_timm

    (x_train, y_train), (x_test, y_test) = train, test
    torch.manual_seed(seed)
    model = import_timm().create_model(model_name, num_classes=CLASSES)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * -(-len(x_train) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            if len(batch) < 2:  # BatchNorm needs two samples
                continue
            shift = torch.randint(-2, 3, (2,), generator=generator).tolist()
            x = torch.roll(x_train[batch], shifts=shift, dims=(2, 3))  # a little translation
            loss = torch.nn.functional.cross_entropy(model(x), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1) == y_test).float().mean()) * 100.0
    return model, accuracy
