"""Accuracy on labelled data (``--eval-data``): top-1/top-5 of PyTorch and of the artifact.

The folder holds one sub-folder per class (an ImageFolder). Sub-folder names are class indices
(``0``, ``1``, ...), ImageNet synsets (``n01440764``) for a 1000-class model, or names listed one
per line, in class order, in a ``labels.txt`` beside the sub-folders. Images go through timm's
eval transform for the model (no normalization when it is baked in), the same inputs reach
PyTorch and the artifact's runtime, and the report gives both accuracies, their agreement and
the drop in top-1 points.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from timmx.core.images import IMAGE_EXTENSIONS, eval_transform, load_image, subset
from timmx.errors import ConfigurationError

SYNSET = re.compile(r"^n\d{8}$")
LABELS_FILE = "labels.txt"
EVAL_SEED = 0

# Told how far evaluation got: (message, images done, images in all).
EvalProgress = Callable[[str, int, int], None]


@dataclass
class EvalReport:
    """Accuracy of PyTorch and of the artifact on labelled images (percentages)."""

    n: int
    top1_torch: float | None = None
    top1_artifact: float | None = None
    top5_torch: float | None = None
    top5_artifact: float | None = None
    agreement: float | None = None
    drop: float | None = None
    max_drop: float | None = None
    passed: bool | None = None
    checked: bool = True
    classes: int = 0
    data: str = ""
    note: str | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return asdict(self)

    def line(self) -> str:
        """One line for the summary."""
        if not self.checked:
            return f"NOT run: {self.note}"
        text = (
            f"top-1 {self.top1_artifact:.2f}% (PyTorch {self.top1_torch:.2f}%, drop "
            f"{self.drop:+.2f} points), top-5 {self.top5_artifact:.2f}% (PyTorch "
            f"{self.top5_torch:.2f}%), agreement {self.agreement:.2f}% on {self.n} images, "
            f"{self.classes} classes"
        )
        if self.max_drop is not None:
            text += f"; max drop {self.max_drop:g} {'passed' if self.passed else 'EXCEEDED'}"
        return text


def class_folders(folder: Path) -> list[tuple[str, list[Path]]]:
    """(class folder name, image files) for every sub-folder holding images; cheap checks."""
    if not folder.is_dir():
        raise ConfigurationError(
            f"--eval-data {folder} is not a folder; give a folder with one sub-folder of images "
            "per class."
        )
    try:
        subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError as exc:
        raise ConfigurationError(f"Cannot read --eval-data {folder}: {exc.strerror}.") from exc
    classes = []
    for sub in subdirs:
        files = sorted(
            p for p in sub.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        )
        if files:
            classes.append((sub.name, files))
    if not classes:
        raise ConfigurationError(
            f"--eval-data {folder} holds no class folders with images; it needs one sub-folder "
            "of images per class (e.g. 0/, 1/, ... or ImageNet synsets n01440764/, ...)."
        )
    return classes


def class_index(folder: Path, names: list[str], num_classes: int) -> dict[str, int]:
    """The model's class index for every class folder name (see the module docstring)."""
    labels_file = folder / LABELS_FILE
    if labels_file.is_file():
        labels = [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]
        lookup = {label: i for i, label in enumerate(labels)}
        unknown = [n for n in names if n not in lookup]
        if unknown:
            raise ConfigurationError(
                f"--eval-data: class folders {_few(unknown)} are not listed in {labels_file}."
            )
        mapping = {n: lookup[n] for n in names}
    elif all(n.isdigit() for n in names):
        mapping = {n: int(n) for n in names}
    elif all(SYNSET.match(n) for n in names):
        if num_classes != 1000:
            raise ConfigurationError(
                f"--eval-data names its classes by ImageNet synset, but the model has "
                f"{num_classes} classes, not ImageNet's 1000; name the folders by class index."
            )
        from timmx._torch_env import import_timm

        synsets = list(import_timm().data.ImageNetInfo().label_names())
        lookup = {s: i for i, s in enumerate(synsets)}
        unknown = [n for n in names if n not in lookup]
        if unknown:
            raise ConfigurationError(f"--eval-data: {_few(unknown)} are not ImageNet-1k synsets.")
        mapping = {n: lookup[n] for n in names}
    else:
        odd = [n for n in names if not n.isdigit() and not SYNSET.match(n)]
        raise ConfigurationError(
            f"--eval-data: class folders {_few(odd)} match no class of the model. Name them by "
            f"class index (0, 1, ...) or ImageNet synset (n01440764), or list the names in "
            f"class order in {folder / LABELS_FILE}."
        )
    beyond = sorted({i for i in mapping.values() if i >= num_classes})
    if beyond:
        raise ConfigurationError(
            f"--eval-data has classes up to index {max(beyond)} but the model has "
            f"{num_classes} classes; check --num-classes or the folder names."
        )
    return mapping


def _few(items: list[str]) -> str:
    shown = ", ".join(items[:4])
    return f"{shown} (+{len(items) - 4} more)" if len(items) > 4 else shown


def evaluate(job, runner, progress: EvalProgress | None = None) -> EvalReport:
    """Run PyTorch and ``runner`` (the artifact) on ``job.common.eval_data``.

    Inputs go in batches of the export batch size (the last one filled up and trimmed), so
    fixed-batch artifacts work. Undecodable images are an error naming the file.
    """
    import numpy as np
    import torch

    prepared = job.model
    folder = Path(job.common.eval_data)
    classes = class_folders(folder)
    mapping = class_index(folder, [name for name, _ in classes], prepared.num_classes)
    items = [(path, mapping[name]) for name, files in classes for path in files]
    items = subset(items, job.common.eval_samples, seed=EVAL_SEED)
    transform = eval_transform(prepared)
    channels = prepared.input_size[0]
    batch = prepared.batch_size
    hits = np.zeros((2, 2), dtype=np.int64)  # [torch, artifact] x [top1, top5]
    agree = 0
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        tensors = []
        for path, _ in chunk:
            try:
                tensors.append(load_image(path, transform, channels))
            except (OSError, ValueError) as exc:
                raise ConfigurationError(
                    f"--eval-data: cannot decode image {path} ({type(exc).__name__}); remove "
                    "or replace it."
                ) from exc
        while len(tensors) < batch:
            tensors.append(tensors[-1])
        x = torch.stack(tensors).float().to(prepared.device)
        labels = np.array([label for _, label in chunk])
        reference = prepared.run(x).float().cpu().numpy().reshape(batch, -1)[: len(chunk)]
        output = np.asarray(runner(x.cpu().numpy()), dtype=np.float32)
        output = output.reshape(batch, -1)[: len(chunk)]
        for row, scores in enumerate((reference, output)):
            top5 = np.argsort(-scores, axis=1)[:, :5]
            hits[row, 0] += int((top5[:, 0] == labels).sum())
            hits[row, 1] += int((top5 == labels[:, None]).any(axis=1).sum())
        agree += int((reference.argmax(1) == output.argmax(1)).sum())
        if progress is not None:
            progress("Evaluating on --eval-data", start + len(chunk), len(items))
    n = len(items)
    pct = 100.0 * hits / n
    drop = float(pct[0, 0] - pct[1, 0])
    limit = job.common.max_accuracy_drop
    return EvalReport(
        n=n,
        top1_torch=float(pct[0, 0]),
        top1_artifact=float(pct[1, 0]),
        top5_torch=float(pct[0, 1]),
        top5_artifact=float(pct[1, 1]),
        agreement=100.0 * agree / n,
        drop=drop,
        max_drop=limit,
        passed=None if limit is None else drop <= limit,
        classes=len(classes),
        data=str(folder),
    )


def not_run(job, reason: str) -> EvalReport:
    """The report where the artifact's runtime cannot run here."""
    return EvalReport(
        n=0,
        checked=False,
        max_drop=job.common.max_accuracy_drop,
        data=str(job.common.eval_data),
        note=reason,
    )
