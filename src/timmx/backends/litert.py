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
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from timmx.backends._torch_capture import static_image_size, to_nhwc
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
from timmx.core.quantize import pt2e_quantize
from timmx.core.quiet import quiet
from timmx.core.types import Device
from timmx.core.verify import VerifyReport, verify_with_runner
from timmx.errors import ConfigurationError

METADATA_NAME = "timmx"


class LiteRTMode(StrEnum):
    """Precision / quantization of the LiteRT model."""

    fp32 = "fp32"
    fp16 = "fp16"
    dynamic_int8 = "dynamic-int8"
    int8 = "int8"


@dataclass
class LiteRTOptions:
    """``timmx export litert`` flags."""

    mode: LiteRTMode = option(
        LiteRTMode.fp32, "Precision: fp32, fp16 weights, dynamic-int8 or int8 (PT2E)."
    )
    nhwc_input: bool = option(False, "Expose the input as NHWC (channel-last).", "--nhwc-input")
    calibration_data: Path | None = calibration_data_option()
    calibration_samples: int | None = calibration_samples_option()
    calibration_steps: int | None = calibration_steps_option()
    random_calibration: bool = random_calibration_option()


def _pt2e_quantize(module, example, batches, *, dynamic: bool, per_channel: bool = True):
    """PT2E-quantize ``module`` with litert-torch's quantizer; returns (module, quant_config)."""
    from litert_torch.quantize import pt2e_quantizer, quant_config

    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(
            is_per_channel=per_channel, is_dynamic=dynamic
        )
    )
    quantized = pt2e_quantize(module, example, quantizer, batches, fold_quantize=False)
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

    ``calibration`` (a :class:`timmx.core.calibration.CalibrationSet`) is required for
    ``mode="int8"``; its batches of the export batch size calibrate the PT2E observers.
    """
    mode = LiteRTMode(mode)
    if mode == LiteRTMode.int8 and calibration is None:
        raise ConfigurationError("LiteRT int8 needs calibration data (a CalibrationSet).")
    with quiet():
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
        example = to_nhwc(example)
    quant_config = None
    if mode == LiteRTMode.int8:
        batches = [
            to_nhwc(b) if nhwc_input else b for b in calibration.batches(prepared.batch_size)
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

    with quiet():
        interpreter = Interpreter(model_path=str(path))
    source = interpreter.get_input_details()[0]["dtype"]
    target = interpreter.get_output_details()[0]["dtype"]
    return np.dtype(source).name, np.dtype(target).name


def litert_runner(path: Path, *, nhwc_input: bool = False, threads: int | None = None):
    """A function running the .tflite file in the LiteRT interpreter on float32 NCHW batches.

    int8 inputs are quantized and int8 outputs dequantized with the tensors' own parameters.
    """
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    with quiet():
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
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
    Options = LiteRTOptions
    extra = "litert"
    calibrates = True
    devices = (Device.cpu,)

    def validate(self, job) -> None:
        """Calibration flags only with --mode int8, which needs a source."""
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

    @contextlib.contextmanager
    def runtime(self, job, artifact: Path, *, threads: int | None = None):
        """The LiteRT interpreter (XNNPACK on the CPU; ``threads``: its num_threads)."""
        yield litert_runner(artifact, nhwc_input=job.options.nhwc_input, threads=threads)

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Run in the LiteRT interpreter; quantized modes are compared with fp32 PyTorch."""
        mode = LiteRTMode(job.options.mode)
        with self.runtime(job, artifact) as runner, quiet():
            if mode == LiteRTMode.fp32:
                return verify_with_runner(job, runner, "ai-edge-litert")
            return verify_quantized(job, runner, "ai-edge-litert", mode.value)
