"""Calibration data for quantized (int8) exports, shared by every backend that calibrates.

A backend that calibrates declares the four options in its options dataclass with the field
helpers below (same names everywhere)::

    @dataclass
    class LiteRTOptions:
        ...
        calibration_data: Path | None = calibration_data_option()
        calibration_samples: int | None = calibration_samples_option()
        calibration_steps: int | None = calibration_steps_option()
        random_calibration: bool = random_calibration_option()

sets the capability ``calibrates = True`` on its class, calls :func:`validate_calibration` from
``validate()`` (cheap checks, before any heavy work) and :func:`load_calibration` from
``convert()`` once the model is prepared.

Sources (exactly one when the export calibrates):

- ``--calibration-data FOLDER``: images (jpg, jpeg, png, bmp, webp, tif, tiff; searched
  recursively, sorted). More than ``--calibration-samples`` images: a deterministic, seeded
  subset. Each image goes through timm's eval transform for the model (resize, center crop,
  interpolation, crop_pct), then is normalized with the model's mean/std (or ``--mean/--std``)
  unless ``--normalize`` bakes normalization in, in which case it stays in [0, 1].
- ``--calibration-data FILE.pt``: a tensor ``(N, C, H, W)`` saved with ``torch.save``, loaded
  with ``weights_only=True`` and used as is: it must already be in the exported graph's input
  range. Its first ``--calibration-samples`` samples are used.
- ``--random-calibration``: seeded uniform images in the graph's input range ([0, 1] with
  ``--normalize``, else those images normalized with the model's statistics), never N(0, 1).

``--calibration-samples N`` caps the samples (default: 128 images of a folder, every sample of
a tensor file, 32 random draws); ``--calibration-steps S`` caps the calibration batches (of the
export's ``--batch-size``; default: enough to see every sample once).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from timmx.core.images import image_files, load_images, subset
from timmx.core.options import option
from timmx.errors import ConfigurationError

DEFAULT_SAMPLES = 128
DEFAULT_RANDOM_SAMPLES = 32  # noise gains nothing from more samples
HOLDOUT_SEED = 7  # picks the images held out for verification
RANDOM_SEED = 1234  # differs from the verification samples' seeds
VERIFY_SAMPLES = 8


def calibration_data_option():
    """The ``--calibration-data`` field of a calibrating backend's options."""
    return option(
        None,
        "Calibration data: a folder of images (timm's eval transform is applied) or a "
        "torch-saved tensor (N, C, H, W) already in the model's input range (.pt).",
        "--calibration-data",
        show_default=False,
    )


def calibration_samples_option():
    """The ``--calibration-samples`` field."""
    return option(
        None,
        f"Calibration samples to use (default: {DEFAULT_SAMPLES} images, all of a tensor "
        f"file, {DEFAULT_RANDOM_SAMPLES} random draws).",
        "--calibration-samples",
        min=1,
        show_default=False,
    )


def calibration_steps_option():
    """The ``--calibration-steps`` field."""
    return option(
        None,
        "Calibration batches of --batch-size to run (default: every sample once).",
        "--calibration-steps",
        min=1,
        show_default=False,
    )


def random_calibration_option():
    """The ``--random-calibration`` field."""
    return option(
        False,
        "Calibrate on random images in the model's input range (accuracy suffers).",
        "--random-calibration",
    )


CALIBRATION_FLAGS = (
    ("calibration_data", "--calibration-data"),
    ("calibration_samples", "--calibration-samples"),
    ("calibration_steps", "--calibration-steps"),
    ("random_calibration", "--random-calibration"),
)


@dataclass
class CalibrationSet:
    """Calibration samples ready to feed the model.

    ``tensor`` is (N, C, H, W) float32 on the CPU in the exported graph's input range; ``source``
    says where it came from; ``steps`` caps the batches :meth:`batches` yields (None: all).
    """

    tensor: object  # torch.Tensor
    source: str
    steps: int | None = None

    @property
    def count(self) -> int:
        """Number of samples."""
        return int(self.tensor.shape[0])

    def num_batches(self, batch_size: int) -> int:
        """How many batches :meth:`batches` yields for ``batch_size``."""
        full = -(-self.count // batch_size)
        return full if self.steps is None else min(self.steps, full)

    def batches(self, batch_size: int, device: str = "cpu", limit: int | None = None) -> Iterator:
        """Batches of exactly ``batch_size`` (the last one is filled up from the first samples).

        At most ``steps`` batches (and at most ``limit`` when given), on ``device``.
        """
        import torch

        count = self.num_batches(batch_size)
        if limit is not None:
            count = min(count, limit)
        data = self.tensor
        for index in range(count):
            rows = [(index * batch_size + k) % self.count for k in range(batch_size)]
            yield data[torch.tensor(rows)].to(device)

    def samples_used(self, batch_size: int) -> int:
        """Distinct samples the batches cover."""
        return min(self.count, self.num_batches(batch_size) * batch_size)


def calibration_flags_given(job) -> list[str]:
    """The calibration flags given on the command line (or to the Python API)."""
    given = []
    for name, flag in CALIBRATION_FLAGS:
        value = getattr(job.options, name, None)
        if value not in (None, False):
            given.append(flag)
    return given


def calibration_source_given(job) -> bool:
    """Whether --calibration-data or --random-calibration was given."""
    return getattr(job.options, "calibration_data", None) is not None or bool(
        getattr(job.options, "random_calibration", False)
    )


def validate_calibration(job, *, needs_calibration: bool, allowed: bool) -> None:
    """Reject calibration flags that would be ignored or cannot work (cheap; before export).

    ``allowed``: the chosen mode uses calibration flags at all; when False every calibration flag
    given is an error (it would be silently ignored). ``needs_calibration``: the mode must have a
    calibration source, ``--calibration-data`` or ``--random-calibration``. Also checks the
    counts, that data and random are not both given, that a folder exists, is readable and holds
    images, that a tensor file loads (``weights_only=True``) with shape (N, C, H, W) matching
    the model input, and that ``--mean/--std`` without ``--normalize`` are used (they set the
    statistics of calibration images, so they need a folder or random calibration).
    """
    given = calibration_flags_given(job)
    mode = getattr(job.options, "mode", None)
    mode_text = f" (--mode {getattr(mode, 'value', mode)})" if mode is not None else ""
    if given and not (allowed or needs_calibration):
        raise ConfigurationError(
            f"{', '.join(given)} only apply to calibrated int8 exports and would be ignored"
            f"{mode_text}; remove them or use an int8 mode."
        )
    data: Path | None = getattr(job.options, "calibration_data", None)
    use_random = bool(getattr(job.options, "random_calibration", False))
    samples = getattr(job.options, "calibration_samples", None)
    steps = getattr(job.options, "calibration_steps", None)
    stats_without_normalize = (
        job.common.mean is not None or job.common.std is not None
    ) and not job.common.normalize
    if not given:
        if needs_calibration:
            raise ConfigurationError(
                f"int8 quantization{mode_text} needs calibration data: pass "
                "--calibration-data FOLDER_OF_IMAGES (or a tensor .pt file), or "
                "--random-calibration to calibrate on random inputs (lower accuracy)."
            )
        if stats_without_normalize:
            raise ConfigurationError(
                "--mean/--std without --normalize only set the statistics of calibration "
                "images, and this export does not calibrate; add --normalize to bake them in."
            )
        return
    if data is not None and use_random:
        raise ConfigurationError(
            "--calibration-data and --random-calibration are two calibration sources; "
            "pass only one of them."
        )
    if data is None and not use_random:
        raise ConfigurationError(
            f"{', '.join(given)} need a calibration source: add --calibration-data PATH "
            "or --random-calibration."
        )
    for flag, value in (("--calibration-samples", samples), ("--calibration-steps", steps)):
        if value is not None and (isinstance(value, bool) or int(value) < 1):
            raise ConfigurationError(f"{flag} must be >= 1, got {value}.")
    if samples is not None and steps is not None:
        needed = (int(steps) - 1) * job.common.batch_size + 1
        if needed > samples:
            raise ConfigurationError(
                f"--calibration-steps {steps} with --batch-size {job.common.batch_size} needs "
                f"more than {(int(steps) - 1) * job.common.batch_size} samples, but "
                f"--calibration-samples is {samples}; raise --calibration-samples or lower "
                "--calibration-steps."
            )
    available: int | None = None
    if data is not None:
        data = Path(data).expanduser()
        if data.is_dir():
            available = len(image_files(data)) - held_out_count(len(image_files(data)))
        elif data.is_file():
            if stats_without_normalize:
                raise ConfigurationError(
                    "--mean/--std without --normalize set the statistics used to normalize "
                    "calibration images, but a calibration tensor is used as is; drop them "
                    "(or add --normalize to bake them into the model)."
                )
            available = int(_load_tensor(data, _expected_input_size(job)).shape[0])
        else:
            raise ConfigurationError(
                f"--calibration-data {data} does not exist; give a folder of images or a "
                "torch-saved tensor (N, C, H, W)."
            )
    if available is not None and steps is not None:
        pool = min(available, samples) if samples is not None else available
        batches = -(-pool // job.common.batch_size)
        if steps > batches:
            raise ConfigurationError(
                f"--calibration-steps {steps} asks for more batches than the {pool} "
                f"calibration samples of {data} fill ({batches} of --batch-size "
                f"{job.common.batch_size}); lower --calibration-steps or add data."
            )


def _expected_input_size(job) -> tuple[int, ...] | None:
    """(C, H, W) the model will take, from --input-size or timm's config; None if unknown."""
    common = job.common
    if common.input_size is not None:
        return tuple(int(v) for v in common.input_size)
    try:
        from timmx._torch_env import import_timm

        cfg = import_timm().models.get_pretrained_cfg(job.model_name.split(".", 1)[0])
    except Exception:
        return None
    if cfg is None or not getattr(cfg, "input_size", None):
        return None
    channels, height, width = (int(v) for v in cfg.input_size)
    return (common.in_chans or channels, height, width)


def _load_tensor(path: Path, expected: tuple[int, ...] | None):
    """Load a calibration tensor (weights_only) and check its shape against ``expected``."""
    import torch

    from timmx.core.checkpoint import safe_torch_load

    tensor = safe_torch_load(
        path, "calibration tensor", "Save one with torch.save(tensor, path), shape (N, C, H, W)."
    )
    if not isinstance(tensor, torch.Tensor):
        raise ConfigurationError(
            f"Calibration file {path} holds a {type(tensor).__name__}, not a tensor; save a "
            "single tensor of shape (N, C, H, W) with torch.save."
        )
    if tensor.ndim != 4 or tensor.shape[0] < 1:
        raise ConfigurationError(
            f"Calibration tensor {path} has shape {tuple(tensor.shape)}; it must be "
            "(N, C, H, W) with N >= 1."
        )
    if not (tensor.is_floating_point() or tensor.dtype == torch.uint8):
        raise ConfigurationError(
            f"Calibration tensor {path} has dtype {tensor.dtype}; use a float tensor."
        )
    if expected is not None and tuple(tensor.shape[1:]) != tuple(expected):
        raise ConfigurationError(
            f"Calibration tensor {path} has samples of shape {tuple(tensor.shape[1:])} but the "
            f"model takes {tuple(expected)} (C, H, W); resize the data or set --input-size."
        )
    return tensor


def load_calibration(job) -> CalibrationSet:
    """Load the calibration samples of ``job`` in the exported graph's input range.

    Needs the prepared model (call from ``convert()``). Records how many samples are used in
    ``job.details["calibration"]``. Raises ConfigurationError when no source was given.
    """
    prepared = job.model
    data: Path | None = getattr(job.options, "calibration_data", None)
    samples = getattr(job.options, "calibration_samples", None)
    steps = getattr(job.options, "calibration_steps", None)
    batch_size = prepared.batch_size
    if data is not None:
        data = Path(data).expanduser()
        if data.is_dir():
            files = _calibration_files(job, data)
            chosen = subset(files, samples or DEFAULT_SAMPLES)
            tensor, skipped = load_images(prepared, chosen, strict=False, flag="--calibration-data")
            kind = "images" if prepared.normalize else "images, normalized"
            source = f"{tensor.shape[0]} of {len(files)} {kind} from {data}"
            if skipped:
                source += f" ({skipped} unreadable skipped)"
        else:
            tensor = _load_tensor(data, prepared.input_size).float()
            total = int(tensor.shape[0])
            if samples is not None:
                tensor = tensor[:samples]
            source = f"{tensor.shape[0]} of {total} samples of tensor {data}"
    elif getattr(job.options, "random_calibration", False):
        count = samples or (steps * batch_size if steps else DEFAULT_RANDOM_SAMPLES)
        tensor = prepared.sample_input(count, seed=RANDOM_SEED).float().cpu()
        kind = "[0, 1]" if prepared.normalize else "[0, 1] normalized with mean/std"
        source = f"{count} random images ({kind}; --random-calibration)"
    else:
        raise ConfigurationError(
            "No calibration source: pass --calibration-data PATH or --random-calibration."
        )
    calibration = CalibrationSet(tensor=tensor.contiguous(), source=source, steps=steps)
    if steps is not None and steps > calibration.num_batches(batch_size):
        raise ConfigurationError(
            f"--calibration-steps {steps} asks for more batches than the {calibration.count} "
            f"calibration samples fill with --batch-size {batch_size}; lower it or add data."
        )
    job.details["calibration"] = describe_calibration(calibration, batch_size)
    job.calibration = calibration  # reused by verification_inputs()
    return calibration


def held_out_count(images: int) -> int:
    """How many images of a calibration folder are held out for verification."""
    return min(VERIFY_SAMPLES, images // 4)


def _calibration_files(job, folder: Path) -> list[Path]:
    """The folder's images minus those verification uses: --verify-data's files when they are
    in this folder, else a held-out slice that becomes the job's verification images."""
    from timmx.core.verify import VERIFY_IMAGES

    files = image_files(folder)
    taken = {Path(p).resolve() for p in (job.verify_files or [])}
    pool = [f for f in files if f.resolve() not in taken]
    if job.verify_files is None:
        held = subset(pool, held_out_count(len(pool)), seed=HOLDOUT_SEED)
        if held:
            kept = set(held)
            pool = [f for f in pool if f not in kept]
            job.verify_files = held[:VERIFY_IMAGES]
            job.verify_source = (
                f"{len(job.verify_files)} images held out of --calibration-data {folder} "
                "(not used to calibrate)"
            )
    return pool


def verification_inputs(job, max_samples: int = VERIFY_SAMPLES) -> list:
    """Batches (of the export batch size) to measure a quantized artifact's accuracy cost on.

    The job's real verification images when it has them (--verify-data, or the slice held out
    of --calibration-data: never the calibration images themselves), else seeded sample
    inputs in the graph's input range, about ``max_samples`` of them.
    """
    from timmx.core.verify import input_batches

    prepared = job.model
    batch_size = prepared.batch_size
    if getattr(job, "verify_images", None) is not None:
        return input_batches(job, (batch_size,))
    count = max(1, -(-max_samples // batch_size))
    return [prepared.sample_input(batch_size, seed=k) for k in range(count)]


def accuracy_note(job, mode: str, inputs: list) -> str:
    """The report's note for a quantized/reduced-precision artifact: what it was measured on."""
    from timmx.core.verify import inputs_description

    samples = sum(int(x.shape[0]) for x in inputs)
    return f"{mode} accuracy cost vs fp32 PyTorch on {samples} samples ({inputs_description(job)})"


def verify_quantized(job, runner, runtime: str, mode: str, *, note: str | None = None):
    """Verify a quantized / reduced-precision artifact and report its accuracy cost.

    Runs :func:`timmx.core.verify.verify_with_runner` on :func:`verification_inputs` (real
    images held out of the calibration folder or from --verify-data, else seeded samples) and
    records the pooled top-1 agreement, the max abs error and the cosine in
    ``job.details["accuracy"]``.
    """

    from timmx.core.verify import verify_with_runner

    inputs = verification_inputs(job)
    text = accuracy_note(job, mode, inputs)
    report = verify_with_runner(
        job, runner, runtime, inputs=inputs, note=f"{text}; {note}" if note else text
    )
    total = sum(int(x.shape[0]) for x in inputs)
    agree = round(report.top1_agree * total)  # pooled over every sample by verify_with_runner
    job.details["accuracy"] = (
        f"{mode} vs fp32 PyTorch on {total} samples: top-1 agreement {agree}/{total} "
        f"({report.top1_agree:.0%}), max abs err {report.max_abs_err:.3g}, "
        f"cosine {report.cosine:.4f}"
    )
    return report


def describe_calibration(calibration: CalibrationSet, batch_size: int) -> str:
    """One line: how many samples and batches calibrate, and from where."""
    batches = calibration.num_batches(batch_size)
    return (
        f"{calibration.samples_used(batch_size)} samples in {batches} "
        f"batch{'es' if batches != 1 else ''} of {batch_size}: {calibration.source}"
    )
