"""LiteRT / TFLite (.tflite) via litert-torch, verified in the LiteRT interpreter (ai-edge-litert).

Modes:

- ``fp32``: float model.
- ``fp16``: float16 weights (dequantized to float32 at load; float compute), via
  ai-edge-quantizer's float-casting recipe on the fp32 flatbuffer. Halves the size.
- ``dynamic-int8``: int8 weights, activations quantized on the fly (PT2E dynamic config); float
  input and output; no calibration.
- ``int8``: full-integer PT2E static quantization calibrated on ``--calibration-data`` (or
  ``--random-calibration``). The model's input and output are int8 tensors: quantize the input
  with the input tensor's ``(scale, zero_point)`` and dequantize the output with the output's.

``--nhwc-input`` exposes the input as (N, H, W, C). timmx's metadata is stored as JSON in the
flatbuffer's metadata table under the name ``timmx``.
"""

import contextlib
import json
import os
import sys
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from timmx.errors import ConfigurationError
from timmx.export.base import ExportBackend
from timmx.export.calibration import (
    CalibrationDataOpt,
    CalibrationSamplesOpt,
    CalibrationStepsOpt,
    RandomCalibrationOpt,
    load_calibration,
    validate_calibration,
    verify_quantized,
)
from timmx.export.options import build_command
from timmx.export.types import Device
from timmx.export.verify import VerifyReport, verify_with_runner

METADATA_NAME = "timmx"


class LiteRTMode(StrEnum):
    """Precision / quantization of the LiteRT model."""

    fp32 = "fp32"
    fp16 = "fp16"
    dynamic_int8 = "dynamic-int8"
    int8 = "int8"


@contextlib.contextmanager
def quiet_native_output():
    """Silence the converters' progress and native (C++) logging unless TIMMX_DEBUG is set.

    The native libraries write to file descriptors 1 and 2 directly, so those are redirected to
    a temporary file for the duration; Python-level ``sys.stdout``/``sys.stderr`` are flushed
    first so nothing of ours is lost.
    """
    if os.environ.get("TIMMX_DEBUG"):
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = []
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def static_image_size(module, input_size: tuple[int, ...]):
    """``module``, with ViT-style dynamic image size fixed to ``input_size`` (a copy if changed).

    timm models built with ``dynamic_img_size=True`` (e.g. ``test_vit``) resample their position
    embedding on every call with bicubic antialiasing, an op the converters cannot lower. For a
    fixed input size the resampled embedding is a constant: resample it once
    (``set_input_size``) and switch the dynamic path off. Outputs are unchanged.
    """
    import copy

    targets = [
        m
        for m in module.modules()
        if getattr(m, "dynamic_img_size", False)
        and hasattr(m, "set_input_size")
        and hasattr(getattr(m, "patch_embed", None), "flatten")
    ]
    if not targets:
        return module
    module = copy.deepcopy(module)
    for m in module.modules():
        if getattr(m, "dynamic_img_size", False) and hasattr(m, "set_input_size"):
            m.set_input_size(img_size=tuple(input_size[1:]))
            m.dynamic_img_size = False
            m.patch_embed.flatten = True
    return module.eval()


def _to_nhwc(x):
    return x.permute(0, 2, 3, 1).contiguous()


def _pt2e_quantize(module, example, batches, *, dynamic: bool, per_channel: bool = True):
    """PT2E-quantize ``module`` with litert-torch's quantizer; returns (module, quant_config)."""
    import torch
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e import quantize_pt2e

    captured = torch.export.export(module, (example,), strict=False).module()
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(
            is_per_channel=per_channel, is_dynamic=dynamic
        )
    )
    observed = quantize_pt2e.prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for batch in batches:
            observed(batch)
    quantized = quantize_pt2e.convert_pt2e(observed, fold_quantize=False)
    quantized.training = False  # the captured graph has eval semantics already
    return quantized, quant_config.QuantConfig(pt2e_quantizer=quantizer)


def _fp16_weights(model_bytes: bytes) -> bytes:
    """Cast the weights of conv/fully-connected ops to float16 (explicit dequantize)."""
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    q = quantizer.Quantizer(bytearray(model_bytes))
    q.add_weight_only_config(
        regex=".*",
        operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
        num_bits=16,
        algorithm_key=AlgorithmName.FLOAT_CASTING,
    )
    return bytes(q.quantize(enable_progress_report=False).quantized_model)


def add_metadata(model_bytes: bytes, metadata: dict[str, str]) -> bytes:
    """Store ``metadata`` as JSON in the flatbuffer's metadata table (name ``timmx``)."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    payload = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    model.buffers.append(schema.BufferT(data=payload))
    entries = [m for m in (model.metadata or []) if m.name != METADATA_NAME]
    entries.append(schema.MetadataT(name=METADATA_NAME, buffer=len(model.buffers) - 1))
    model.metadata = entries
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_metadata(path: Path) -> dict[str, str]:
    """The timmx metadata stored in a .tflite file ({} when there is none)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_NAME:
            return json.loads(bytes(model.buffers[entry.buffer].data).decode())
    return {}


def export_litert(
    prepared,
    path: Path,
    *,
    mode: LiteRTMode | str = LiteRTMode.fp32,
    nhwc_input: bool = False,
    calibration=None,
) -> None:
    """Convert ``prepared`` to a .tflite file at ``path``.

    ``calibration`` (a :class:`timmx.export.calibration.CalibrationSet`) is required for
    ``mode="int8"``; its batches of the export batch size calibrate the PT2E observers.
    """
    mode = LiteRTMode(mode)
    if mode == LiteRTMode.int8 and calibration is None:
        raise ConfigurationError("LiteRT int8 needs calibration data (a CalibrationSet).")
    with quiet_native_output():
        model_bytes = _convert(prepared, mode, nhwc_input, calibration)
    metadata = dict(prepared.metadata())
    metadata["input_layout"] = "NHWC" if nhwc_input else "NCHW"
    metadata["litert_mode"] = mode.value
    if nhwc_input:
        n, c, h, w = prepared.input_shape
        metadata["input_shape"] = json.dumps([n, h, w, c])
    Path(path).write_bytes(add_metadata(model_bytes, metadata))


def _convert(prepared, mode: LiteRTMode, nhwc_input: bool, calibration) -> bytes:
    import litert_torch

    litert_torch.config.show_progress = bool(os.environ.get("TIMMX_DEBUG"))
    module = static_image_size(prepared.module, prepared.input_size)
    example = prepared.sample_input()
    if nhwc_input:
        module = litert_torch.to_channel_last_io(module, args=[0]).eval()
        example = _to_nhwc(example)
    quant_config = None
    if mode == LiteRTMode.int8:
        batches = [
            _to_nhwc(b) if nhwc_input else b for b in calibration.batches(prepared.batch_size)
        ]
        module, quant_config = _pt2e_quantize(module, example, batches, dynamic=False)
    elif mode == LiteRTMode.dynamic_int8:
        # Dynamic observers record nothing; one pass initializes them.
        module, quant_config = _pt2e_quantize(module, example, [example], dynamic=True)
    edge_model = litert_torch.convert(module, (example,), quant_config=quant_config)
    model_bytes = bytes(edge_model.model_content())
    if mode == LiteRTMode.fp16:
        model_bytes = _fp16_weights(model_bytes)
    return model_bytes


def io_types(path: Path) -> tuple[str, str]:
    """The dtypes of the model's first input and output, e.g. ("int8", "int8")."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    with quiet_native_output():
        interpreter = Interpreter(model_path=str(path))
    source = interpreter.get_input_details()[0]["dtype"]
    target = interpreter.get_output_details()[0]["dtype"]
    return np.dtype(source).name, np.dtype(target).name


def litert_runner(path: Path, *, nhwc_input: bool = False):
    """A function running the .tflite file in the LiteRT interpreter on float32 NCHW batches.

    int8 inputs are quantized and int8 outputs dequantized with the tensors' own parameters.
    """
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    with quiet_native_output():
        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]

    def run(x):
        if nhwc_input:
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        if tuple(source["shape"]) != x.shape:
            interpreter.resize_tensor_input(source["index"], list(x.shape))
            interpreter.allocate_tensors()
        if np.issubdtype(source["dtype"], np.integer):
            scale, zero = source["quantization"]
            info = np.iinfo(source["dtype"])
            x = np.clip(np.round(x / scale) + zero, info.min, info.max)
        interpreter.set_tensor(source["index"], x.astype(source["dtype"]))
        interpreter.invoke()
        out = interpreter.get_tensor(target["index"])
        if np.issubdtype(target["dtype"], np.integer):
            scale, zero = target["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return out.astype(np.float32)

    return run


class LiteRTBackend(ExportBackend):
    """LiteRT (TFLite) export with litert-torch, verified in the LiteRT interpreter."""

    name = "litert"
    help = (
        "Export to LiteRT/TFLite (.tflite) with litert-torch: fp32, fp16, dynamic-int8 or "
        "calibrated int8; verified in the LiteRT interpreter."
    )
    suffix = ".tflite"
    requires = ("litert-torch", "ai-edge-litert", "ai-edge-quantizer", "torchao")
    extra = "litert"
    mean_std_for_calibration = True

    def create_command(self):
        """The ``timmx export litert`` command."""

        def options(
            mode: Annotated[
                LiteRTMode,
                typer.Option(help="Precision: fp32, fp16 weights, dynamic-int8 or int8 (PT2E)."),
            ] = LiteRTMode.fp32,
            nhwc_input: Annotated[
                bool,
                typer.Option("--nhwc-input", help="Expose the input as NHWC (channel-last)."),
            ] = False,
            calibration_data: CalibrationDataOpt = None,
            calibration_samples: CalibrationSamplesOpt = None,
            calibration_steps: CalibrationStepsOpt = None,
            random_calibration: RandomCalibrationOpt = False,
        ) -> None: ...

        return build_command(self, options)

    def validate(self, job) -> None:
        """CPU only; calibration flags only with --mode int8, which needs a source."""
        if job.common.device != Device.cpu:
            raise ConfigurationError(
                f"The litert backend converts on the CPU; drop --device {job.common.device.value}."
            )
        is_int8 = job.options.mode == LiteRTMode.int8
        validate_calibration(job, needs_calibration=is_int8, allowed=is_int8)

    def precision(self, job) -> str:
        """fp32, fp16, dynamic-int8 or int8."""
        return LiteRTMode(job.options.mode).value

    def convert(self, job, artifact: Path) -> None:
        """Quantize if asked, convert, add metadata, write."""
        mode = LiteRTMode(job.options.mode)
        calibration = load_calibration(job) if mode == LiteRTMode.int8 else None
        export_litert(
            job.model,
            artifact,
            mode=mode,
            nhwc_input=job.options.nhwc_input,
            calibration=calibration,
        )
        if job.options.nhwc_input:
            job.notes.append("input layout NHWC (N, H, W, C)")
        if mode == LiteRTMode.int8:
            io = io_types(artifact)
            if io != ("float32", "float32"):
                job.notes.append(
                    f"input {io[0]}, output {io[1]}: quantize/dequantize int8 tensors with "
                    "their (scale, zero_point)"
                )

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Run in the LiteRT interpreter; quantized modes are compared with fp32 PyTorch."""
        mode = LiteRTMode(job.options.mode)
        with quiet_native_output():
            runner = litert_runner(artifact, nhwc_input=job.options.nhwc_input)
            if mode == LiteRTMode.fp32:
                return verify_with_runner(job, runner, "ai-edge-litert")
            return verify_quantized(job, runner, "ai-edge-litert", mode.value)
