"""Calibration data: validation rules, image folders, tensor files and random draws."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from timmx.core.backend import ExportBackend
from timmx.core.calibration import (
    CalibrationSet,
    calibration_data_option,
    calibration_samples_option,
    calibration_steps_option,
    load_calibration,
    random_calibration_option,
    validate_calibration,
)
from timmx.core.job import ExportJob, validate_common
from timmx.core.model import prepare_model
from timmx.core.pipeline import make_job as make_export_job
from timmx.errors import ConfigurationError

MODEL = "test_resnet"  # input (3, 160, 160)


@dataclass
class _CalibratingOptions:
    calibration_data: Path | None = calibration_data_option()
    calibration_samples: int | None = calibration_samples_option()
    calibration_steps: int | None = calibration_steps_option()
    random_calibration: bool = random_calibration_option()


class _Calibrating(ExportBackend):
    """A stand-in backend: calibration is read from its options like a real one."""

    name = "fake-int8"
    help = "fake"
    Options = _CalibratingOptions
    calibrates = True

    def convert(self, job, artifact):
        raise NotImplementedError

    def verify(self, job, artifact):
        raise NotImplementedError


def make_job(**values) -> ExportJob:
    """A job for MODEL with the calibration options defaulted like the CLI does."""
    backend = _Calibrating()
    job = make_export_job(backend, MODEL, values)
    validate_common(job.common, backend)
    return job


def prepared(job: ExportJob) -> ExportJob:
    job.prepared = prepare_model(job.model_name, job.common)
    return job


def write_images(folder: Path, count: int, *, nested: bool = True) -> list[Path]:
    """``count`` small random images of mixed formats and sizes, some in a subfolder."""
    rng = np.random.default_rng(0)
    kinds = ["png", "jpg", "bmp", "webp", "tiff", "jpeg"]
    paths = []
    for i in range(count):
        where = folder / "nested" if nested and i % 2 else folder
        where.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (40 + 3 * i, 60, 3), dtype=np.uint8)
        path = where / f"img{i}.{kinds[i % len(kinds)]}"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("calib_images")
    write_images(folder, 6)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_folder_loads_every_format_recursively_in_unit_range(image_folder):
    job = prepared(make_job(calibration_data=image_folder, normalize=True))
    validate_calibration(job, needs_calibration=True, allowed=True)
    calibration = load_calibration(job)
    assert isinstance(calibration, CalibrationSet), "load_calibration returns a CalibrationSet"
    # 6 images: 1 is held out of calibration to verify the quantized artifact on
    assert tuple(calibration.tensor.shape) == (5, 3, 160, 160), (
        f"5 images at the model's input size expected, got {tuple(calibration.tensor.shape)}"
    )
    assert calibration.tensor.dtype == torch.float32, "calibration data is float32"
    low, high = float(calibration.tensor.min()), float(calibration.tensor.max())
    assert low >= 0.0 and high <= 1.0, f"--normalize baked in: [0, 1] expected, got {low}..{high}"
    assert "5 samples" in job.details["calibration"], (
        f"the sample count is reported: {job.details['calibration']}"
    )


def test_folder_is_normalized_with_model_stats_without_normalize(image_folder):
    job = prepared(make_job(calibration_data=image_folder))
    raw = prepared(make_job(calibration_data=image_folder, normalize=True))
    normalized = load_calibration(job).tensor
    unit = load_calibration(raw).tensor
    mean = torch.tensor(job.model.mean).view(1, -1, 1, 1)
    std = torch.tensor(job.model.std).view(1, -1, 1, 1)
    expected = (unit - mean) / std
    assert torch.allclose(normalized, expected, atol=1e-5), (
        "without --normalize the images are normalized with the model's mean/std"
    )


def test_mean_std_without_normalize_set_calibration_stats(image_folder):
    job = prepared(
        make_job(calibration_data=image_folder, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    )
    validate_calibration(job, needs_calibration=True, allowed=True)
    unit = load_calibration(prepared(make_job(calibration_data=image_folder, normalize=True)))
    expected = (unit.tensor - 0.5) / 0.25
    assert torch.allclose(load_calibration(job).tensor, expected, atol=1e-5), (
        "--mean/--std without --normalize set the calibration image statistics"
    )


def test_folder_subset_is_deterministic_and_capped(image_folder):
    first = load_calibration(
        prepared(make_job(calibration_data=image_folder, calibration_samples=3))
    )
    again = load_calibration(
        prepared(make_job(calibration_data=image_folder, calibration_samples=3))
    )
    assert first.count == 3, f"--calibration-samples 3 caps the subset, got {first.count}"
    assert torch.equal(first.tensor, again.tensor), "the subset is the same on every run"
    assert "3 of 5" in first.source, f"the source names the subset: {first.source}"


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    write_images(tmp_path, 2, nested=False)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    job = prepared(make_job(calibration_data=tmp_path))
    calibration = load_calibration(job)
    assert calibration.count == 2, f"2 decodable images expected, got {calibration.count}"
    assert "1 unreadable skipped" in calibration.source, calibration.source


def test_tensor_file_is_used_as_is(tmp_path):
    data = torch.randn(5, 3, 160, 160)
    path = tmp_path / "calib.pt"
    torch.save(data, path)
    job = prepared(make_job(calibration_data=path, calibration_samples=4))
    validate_calibration(job, needs_calibration=True, allowed=True)
    calibration = load_calibration(job)
    assert torch.equal(calibration.tensor, data[:4]), "a tensor file's first N samples, unchanged"
    assert "4 of 5 samples" in calibration.source, calibration.source


def test_random_calibration_in_graph_input_range():
    unit = prepared(make_job(random_calibration=True, calibration_samples=4, normalize=True))
    calibration = load_calibration(unit)
    assert calibration.count == 4, f"4 random samples expected, got {calibration.count}"
    assert float(calibration.tensor.min()) >= 0 and float(calibration.tensor.max()) <= 1, (
        "with --normalize random calibration images are in [0, 1]"
    )
    normalized = load_calibration(
        prepared(make_job(random_calibration=True, calibration_samples=4))
    )
    mean = torch.tensor(normalized_mean := (0.485, 0.456, 0.406)).view(1, -1, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, -1, 1, 1)
    back = normalized.tensor * std + mean
    assert float(back.min()) >= -1e-5 and float(back.max()) <= 1 + 1e-5, (
        f"without --normalize random draws are [0, 1] images normalized with {normalized_mean}"
    )


def test_batches_have_the_export_batch_size_and_respect_steps():
    calibration = CalibrationSet(tensor=torch.arange(5.0).view(5, 1, 1, 1), source="x")
    sizes = [tuple(b.shape) for b in calibration.batches(2)]
    assert sizes == [(2, 1, 1, 1)] * 3, f"3 full batches of 2 expected, got {sizes}"
    last = list(calibration.batches(2))[-1].flatten().tolist()
    assert last == [4.0, 0.0], f"the last batch is filled from the start, got {last}"
    capped = CalibrationSet(tensor=calibration.tensor, source="x", steps=2)
    assert len(list(capped.batches(2))) == 2, "--calibration-steps caps the batches"
    assert capped.samples_used(2) == 4, "2 batches of 2 use 4 samples"


def test_steps_alone_set_random_sample_count():
    job = prepared(make_job(random_calibration=True, calibration_steps=3, batch_size=2))
    calibration = load_calibration(job)
    assert calibration.count == 6, f"3 steps of batch 2 draw 6 samples, got {calibration.count}"
    assert "6 samples in 3 batches of 2" in job.details["calibration"], job.details


@pytest.mark.parametrize(
    ("values", "needs", "allowed", "message"),
    [
        ({"random_calibration": True}, False, False, "would be ignored"),
        ({"calibration_samples": 4}, False, False, "--calibration-samples"),
        ({}, True, True, "needs calibration data"),
        ({"calibration_steps": 2}, True, True, "need a calibration source"),
        (
            {"random_calibration": True, "calibration_data": Path("x")},
            True,
            True,
            "pass only one",
        ),
        ({"calibration_data": Path("/nonexistent/calib")}, True, True, "does not exist"),
        (
            {
                "random_calibration": True,
                "calibration_samples": 3,
                "calibration_steps": 3,
                "batch_size": 2,
            },
            True,
            True,
            "raise --calibration-samples",
        ),
        ({"mean": (0.5, 0.5, 0.5)}, False, False, "add --normalize"),
        ({"calibration_samples": 0, "random_calibration": True}, True, True, ">= 1"),
    ],
)
def test_validation_errors(values, needs, allowed, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        validate_calibration(make_job(**values), needs_calibration=needs, allowed=allowed)


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ConfigurationError, match="holds no images"):
        validate_calibration(
            make_job(calibration_data=tmp_path), needs_calibration=True, allowed=True
        )


def test_unreadable_folder_is_an_error(tmp_path, monkeypatch):
    def denied(self, pattern):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "rglob", denied)
    with pytest.raises(ConfigurationError, match="Cannot read --calibration-data folder"):
        validate_calibration(
            make_job(calibration_data=tmp_path), needs_calibration=True, allowed=True
        )


def test_steps_beyond_folder_are_an_error(image_folder):
    with pytest.raises(ConfigurationError, match="lower --calibration-steps"):
        validate_calibration(
            make_job(calibration_data=image_folder, calibration_steps=7),
            needs_calibration=True,
            allowed=True,
        )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (torch.zeros(3, 160, 160), r"must be \(N, C, H, W\)"),
        (torch.zeros(2, 3, 64, 64), r"model takes \(3, 160, 160\)"),
        ({"x": torch.zeros(1)}, "not a tensor"),
        (torch.zeros(2, 3, 160, 160, dtype=torch.int64), "float tensor"),
    ],
)
def test_bad_tensor_files(tmp_path, payload, message):
    path = tmp_path / "calib.pt"
    torch.save(payload, path)
    with pytest.raises(ConfigurationError, match=message):
        validate_calibration(make_job(calibration_data=path), needs_calibration=True, allowed=True)


def test_unloadable_tensor_file(tmp_path):
    path = tmp_path / "calib.pt"
    path.write_bytes(b"garbage")
    with pytest.raises(ConfigurationError, match=r"Could not read calibration tensor .*corrupt"):
        validate_calibration(make_job(calibration_data=path), needs_calibration=True, allowed=True)


def test_tensor_matches_explicit_input_size(tmp_path):
    path = tmp_path / "calib.pt"
    torch.save(torch.zeros(2, 3, 96, 96), path)
    validate_calibration(
        make_job(calibration_data=path, input_size=(3, 96, 96)),
        needs_calibration=True,
        allowed=True,
    )


def test_mean_std_with_tensor_file_is_an_error(tmp_path):
    path = tmp_path / "calib.pt"
    torch.save(torch.zeros(2, 3, 160, 160), path)
    with pytest.raises(ConfigurationError, match="used as is"):
        validate_calibration(
            make_job(calibration_data=path, mean=(0.5, 0.5, 0.5)),
            needs_calibration=True,
            allowed=True,
        )
