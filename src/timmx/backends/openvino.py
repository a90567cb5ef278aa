"""OpenVINO IR (``.xml`` + ``.bin``) via ``openvino.convert_model``, run by the CPU plugin.

Modes:

- ``fp32``: float32 weights and compute.
- ``fp16``: float16 weights (``save_model(compress_to_fp16=True)``); OpenVINO decompresses them
  at load, compute stays float32 under the f32 hint. Halves the ``.bin``.
- ``int8``: NNCF post-training quantization (``nncf.quantize``) calibrated on the shared
  calibration options; ``--preset performance`` (symmetric, default) or ``mixed`` (asymmetric
  activations). Attention models get NNCF's transformer scheme (``--model-type auto``).

The weights go to ``<output>.bin`` beside ``<output>.xml`` (both written in the staging folder and
moved into place together). timmx's metadata is stored in the model's ``rt_info`` under
``timmx`` (``model.get_rt_info(["timmx", "model"])``).

Verification compiles the model on the CPU with ``INFERENCE_PRECISION_HINT=f32`` (what the
tolerances are about) and then once more with the plugin's defaults: on CPUs with native bf16
(AVX512-BF16, AMX) the default inference precision is bf16, which is what a deployed model gets
unless the hint is set. That precision and its error are reported as
``verify.default_precision`` / ``verify.default_max_abs_err``, with a note when it misses the
fp16 tolerance.

OpenVINO's usage telemetry (``openvino-telemetry``, sent on ``import openvino`` and by
``convert_model`` and NNCF unless declined) is off for every call timmx makes: see
:func:`telemetry_off`.
"""

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from timmx.backends._torch_capture import dynamic_batch_option, static_image_size
from timmx.core.backend import ExportBackend
from timmx.core.calibration import (
    calibration_data_option,
    calibration_samples_option,
    calibration_steps_option,
    load_calibration,
    random_calibration_option,
    validate_calibration,
    verify_quantized,
)
from timmx.core.options import option
from timmx.core.quiet import quiet
from timmx.core.tolerances import tolerance_for
from timmx.core.types import Device
from timmx.core.verify import (
    VerifyReport,
    compare,
    verification_batch_sizes,
    verify_with_runner,
)
from timmx.errors import ConfigurationError

RUNTIME = "OpenVINO CPU"
INPUT_NAME = "input"
OUTPUT_NAME = "output"
METADATA_SECTION = "timmx"
F32_HINT = {"INFERENCE_PRECISION_HINT": "f32"}
# The configuration a deployed model gets when nothing is set: the CPU plugin's defaults.
DEFAULT_CONFIG: dict[str, str] = {}
# openvino-telemetry declines, without reading or writing its consent file, when CI=true
# (``disable_in_ci=True``, passed by OpenVINO's converter and by NNCF); NNCF_CI=1 makes NNCF
# use its telemetry stub outright.
TELEMETRY_OFF_ENV = {"CI": "true", "NNCF_CI": "1"}
NOISY_LOGGERS = ("nncf", "openvino")


class OpenVINOMode(StrEnum):
    """Precision of the IR."""

    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class Preset(StrEnum):
    """NNCF quantization preset (int8)."""

    performance = "performance"
    mixed = "mixed"


class ModelType(StrEnum):
    """NNCF quantization scheme (int8): auto picks transformer for attention models."""

    auto = "auto"
    cnn = "cnn"
    transformer = "transformer"


@dataclass
class OpenVINOOptions:
    """``timmx export openvino`` flags."""

    mode: OpenVINOMode = option(
        OpenVINOMode.fp32, "Precision: fp32, fp16 weights, or int8 (NNCF, calibrated)."
    )
    preset: Preset | None = option(
        None,
        "int8: NNCF preset, performance (symmetric, default) or mixed (asymmetric activations).",
        show_default=False,
    )
    model_type: ModelType | None = option(
        None,
        "int8: NNCF scheme; auto (default) uses transformer for models with attention blocks.",
        show_default=False,
    )
    dynamic_batch: bool = dynamic_batch_option(
        "Dynamic batch dimension (-1); verified at two batch sizes."
    )
    calibration_data: Path | None = calibration_data_option()
    calibration_samples: int | None = calibration_samples_option()
    calibration_steps: int | None = calibration_steps_option()
    random_calibration: bool = random_calibration_option()


@contextlib.contextmanager
def telemetry_off() -> Iterator[None]:
    """OpenVINO's and NNCF's usage telemetry declined for the block, in this process only.

    openvino-telemetry decides at each ``Telemetry`` initialisation (``import openvino`` runs
    one, so does every ``convert_model`` and ``import nncf``): both tools pass
    ``enable_opt_in_dialog=False, disable_in_ci=True``, so without a consent file
    (``~/intel/openvino_telemetry``) they *send*, and create ``~/intel`` with a client id. With
    ``CI=true`` in the environment the check declines first, before any file is read or
    written, and nothing is queued. The variables are set for the block and restored after it,
    so the user's environment and files are left as they were.
    """
    saved = {name: os.environ.get(name) for name in TELEMETRY_OFF_ENV}
    os.environ.update(TELEMETRY_OFF_ENV)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def import_openvino():
    """``import openvino`` with telemetry declined (see :func:`telemetry_off`)."""
    with telemetry_off(), quiet(NOISY_LOGGERS, streams=False, native=False):
        import openvino

    return openvino


def has_attention(module) -> bool:
    """Whether ``module`` holds attention blocks (timm's ``*Attention`` modules)."""
    import torch

    return any(
        isinstance(m, torch.nn.MultiheadAttention) or type(m).__name__.endswith("Attention")
        for m in module.modules()
    )


def _nncf_quantize(model, batches, preset: Preset, model_type: ModelType, module):
    import nncf

    if model_type == ModelType.auto:
        model_type = ModelType.transformer if has_attention(module) else ModelType.cnn
    data = [b.detach().cpu().numpy() for b in batches]
    return nncf.quantize(
        model,
        nncf.Dataset(data),
        preset=nncf.QuantizationPreset(preset.value),
        subset_size=len(data),
        model_type=nncf.ModelType.TRANSFORMER if model_type == ModelType.transformer else None,
    ), model_type


def export_openvino(
    prepared,
    path: Path,
    *,
    mode: OpenVINOMode | str = OpenVINOMode.fp32,
    dynamic_batch: bool = False,
    calibration=None,
    preset: Preset | str = Preset.performance,
    model_type: ModelType | str = ModelType.auto,
) -> dict[str, str]:
    """Convert ``prepared`` to OpenVINO IR at ``path`` (``.xml``; weights in ``.bin`` beside it).

    ``calibration`` (a :class:`timmx.core.calibration.CalibrationSet`) is required for
    ``mode="int8"``. Returns the metadata written to ``rt_info``.
    """
    mode, preset, model_type = OpenVINOMode(mode), Preset(preset), ModelType(model_type)
    if mode == OpenVINOMode.int8 and calibration is None:
        raise ConfigurationError("OpenVINO int8 needs calibration data (a CalibrationSet).")
    ov = import_openvino()
    module = static_image_size(prepared.module, prepared.input_size)
    example = prepared.sample_input()
    batch = -1 if dynamic_batch else prepared.batch_size
    metadata = dict(prepared.metadata())
    with telemetry_off(), quiet(NOISY_LOGGERS):
        model = ov.convert_model(module, example_input=example, input=[[batch, *example.shape[1:]]])
        model.inputs[0].get_tensor().set_names({INPUT_NAME})
        model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
        if mode == OpenVINOMode.int8:
            model, used = _nncf_quantize(
                model, calibration.batches(prepared.batch_size), preset, model_type, module
            )
            metadata["nncf_preset"] = preset.value
            metadata["nncf_model_type"] = used.value
        metadata["openvino_mode"] = mode.value
        if dynamic_batch:
            metadata["input_shape"] = json.dumps([-1, *prepared.input_size])
        for key, value in metadata.items():
            model.set_rt_info(value, [METADATA_SECTION, key])
        ov.save_model(model, str(path), compress_to_fp16=mode == OpenVINOMode.fp16)
    return metadata


def weights_path(path: Path) -> Path:
    """The ``.bin`` beside an IR ``.xml``."""
    return Path(path).with_suffix(".bin")


def read_metadata(path: Path) -> dict[str, str]:
    """The timmx metadata in an IR's ``rt_info`` ({} when there is none)."""
    ov = import_openvino()
    with telemetry_off():
        model = ov.Core().read_model(str(path))
        if not model.has_rt_info([METADATA_SECTION]):
            return {}
        section = model.get_rt_info([METADATA_SECTION]).astype(dict)
        return {key: value.astype(str) for key, value in section.items()}


def compile_ir(path: Path, config: dict[str, object]):
    """The IR compiled for the CPU plugin with ``config``."""
    ov = import_openvino()
    with telemetry_off():
        return ov.Core().compile_model(str(path), "CPU", config)


def inference_precision(compiled) -> str:
    """The precision a compiled model computes in: ``f32``, ``bf16`` or ``f16``."""
    return compiled.get_property("INFERENCE_PRECISION_HINT").to_string()


def openvino_runner(compiled):
    """A function running a compiled model on float32 NCHW batches (numpy in and out)."""
    import numpy as np

    request = compiled.create_infer_request()

    def run(x):
        request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    run.compiled = compiled  # keeps the compiled model alive as long as the runner
    return run


class OpenVINOBackend(ExportBackend):
    """OpenVINO IR export, verified with the OpenVINO CPU plugin."""

    name = "openvino"
    help = (
        "Export to OpenVINO IR (.xml + .bin) with openvino.convert_model: fp32, fp16 weights or "
        "NNCF int8; verified with the OpenVINO CPU plugin."
    )
    suffix = ".xml"
    Options = OpenVINOOptions
    requires = ("openvino", "nncf")
    extra = "openvino"
    calibrates = True
    devices = (Device.cpu,)

    def validate(self, job) -> None:
        """Output suffix, int8-only flags and calibration."""
        opts, common = job.options, job.common
        if common.output is not None and common.output.suffix != ".xml":
            raise ConfigurationError(
                f"OpenVINO IR is an .xml file (weights in a .bin beside it); name --output "
                f"{common.output.with_suffix('.xml')}."
            )
        is_int8 = opts.mode == OpenVINOMode.int8
        for flag, value in (("--preset", opts.preset), ("--model-type", opts.model_type)):
            if value is not None and not is_int8:
                raise ConfigurationError(
                    f"{flag} only applies to --mode int8 (NNCF quantization); remove it."
                )
        validate_calibration(job, needs_calibration=is_int8, allowed=is_int8)

    def precision(self, job) -> str:
        """fp32, fp16 or int8."""
        return OpenVINOMode(job.options.mode).value

    def convert(self, job, artifact: Path) -> None:
        """Convert, quantize if asked, save the .xml and its .bin."""
        opts = job.options
        mode = OpenVINOMode(opts.mode)
        calibration = load_calibration(job) if mode == OpenVINOMode.int8 else None
        metadata = export_openvino(
            job.model,
            artifact,
            mode=mode,
            dynamic_batch=opts.dynamic_batch,
            calibration=calibration,
            preset=opts.preset or Preset.performance,
            model_type=opts.model_type or ModelType.auto,
        )
        weights = weights_path(artifact)
        job.details["weights"] = f"{weights.name} ({weights.stat().st_size / 2**20:.1f} MiB)"
        if mode == OpenVINOMode.int8:
            job.details["nncf"] = (
                f"preset {metadata['nncf_preset']}, model type {metadata['nncf_model_type']}"
            )

    def artifact_size(self, path: Path) -> int:
        """The ``.xml`` and the ``.bin`` of weights beside it."""
        weights = weights_path(path)
        return path.stat().st_size + (weights.stat().st_size if weights.is_file() else 0)

    @contextlib.contextmanager
    def runtime(self, job, artifact: Path, *, threads: int | None = None):
        """The CPU plugin with INFERENCE_PRECISION_HINT=f32 (``threads``: INFERENCE_NUM_THREADS)."""
        config: dict[str, object] = dict(F32_HINT)
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        yield openvino_runner(compile_ir(artifact, config))

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Compare at the f32 hint, then measure the CPU plugin's default precision."""
        mode = OpenVINOMode(job.options.mode)
        dynamic = job.options.dynamic_batch
        seen: list = []  # the inputs verification ran on, for the default-precision run
        with self.runtime(job, artifact) as runner:

            def recording(x):
                seen.append(x)
                return runner(x)

            if mode == OpenVINOMode.fp32:
                sizes = verification_batch_sizes(job.common.batch_size, dynamic)
                report = verify_with_runner(job, recording, RUNTIME, batch_sizes=sizes)
            else:
                note = None
                if dynamic:
                    extra = [job.model.sample_input(job.common.batch_size + 1)]
                    second = verify_with_runner(job, recording, RUNTIME, inputs=extra)
                    if not second.passed:
                        return second
                    note = (
                        f"batch {job.common.batch_size + 1}: max abs err "
                        f"{second.max_abs_err:.3g}, cosine {second.cosine:.4f}"
                    )
                report = verify_quantized(job, recording, RUNTIME, mode.value, note=note)
        self._check_default_precision(job, artifact, report, seen)
        return report

    def _check_default_precision(self, job, artifact: Path, report, inputs) -> None:
        """Run once at the plugin's default precision; report it, warn when it is too coarse."""
        import torch

        compiled = compile_ir(artifact, DEFAULT_CONFIG)
        precision = inference_precision(compiled)
        runner = openvino_runner(compiled)
        judged = "int8" if OpenVINOMode(job.options.mode) == OpenVINOMode.int8 else "fp16"
        tolerance = tolerance_for(self.name, judged)
        worst = 0.0
        within = True
        for x in inputs:
            reference = job.model.run(torch.from_numpy(x).to(job.model.device))
            figures = compare(reference.float().cpu().numpy(), runner(x), tolerance)
            worst = max(worst, figures.max_abs_err)
            within = within and figures.within_tolerance
        report.default_precision = precision
        report.default_max_abs_err = worst
        job.details["default"] = (
            f"CPU plugin default precision {precision}: max abs err {worst:.3g} vs PyTorch "
            "(verified above with INFERENCE_PRECISION_HINT=f32)"
        )
        # warn when the default moves any output by more than the plain (unscaled) atol too:
        # what a deployed model gets unless the hint is set
        moved = tolerance.atol is not None and worst > tolerance.atol
        if precision != "f32" and (not within or moved):
            job.notes.append(
                f"this CPU's OpenVINO default inference precision is {precision}, which moves "
                f"the outputs by up to {worst:.3g} ({judged} atol {tolerance.atol}): deploy with "
                "core.compile_model(model, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'}) "
                "(benchmark_app: -infer_precision f32) for the verified accuracy"
            )
