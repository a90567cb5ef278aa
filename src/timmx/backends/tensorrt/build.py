"""TensorRT engine building: the ONNX intermediate, int8 Q/DQ quantization, builder and runner.

Every precision goes through a *strongly typed* network (TensorRT 10.x opts in with
``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; 11.x is always strongly typed and removed the
weak-typing builder flags ``FP16``/``INT8`` and the implicit ``IInt8Calibrator`` API). The
precision therefore lives in the ONNX graph itself:

- ``fp32``: the plain float32 graph; TF32 is switched off so the engine computes in true fp32.
- ``fp16``: a float16 copy of the model between two casts (float32 input and output).
- ``int8``: explicit quantization: PT2E (torchao) post-training quantization calibrated on the
  calibration set, exported as QuantizeLinear/DequantizeLinear pairs: symmetric per-tensor int8
  activations and symmetric per-channel int8 weights at the inputs of every convolution and
  linear layer (TensorRT's recommended placement; zero points are 0 as TensorRT requires).

There is no calibration cache: scales are computed from the given calibration set on every
export and stored in the ONNX graph, so nothing can be reused for another model, input size or
calibration set.
"""

import contextlib
import copy
import dataclasses
from collections.abc import Iterable
from pathlib import Path

from timmx.backends._onnx_graph import export_onnx
from timmx.backends._torch_capture import batch_dim_spec
from timmx.core.quantize import pt2e_quantize
from timmx.errors import ConfigurationError, ExportError

MIN_TENSORRT_MAJOR = 10
PARSER_ERRORS_SHOWN = 5


def import_tensorrt():
    """Import the ``tensorrt`` Python module (one place, so tests can substitute a stand-in)."""
    import tensorrt

    return tensorrt


def tensorrt_major(version: str) -> int:
    """The major version of a TensorRT version string ('10.13.0.35' -> 10); 0 if unparsable."""
    head = str(version).split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def check_tensorrt_version(version: str) -> int:
    """Raise a ConfigurationError unless ``version`` is TensorRT 10 or newer; return the major."""
    major = tensorrt_major(version)
    if major < MIN_TENSORRT_MAJOR:
        raise ConfigurationError(
            f"TensorRT {version} is too old: timmx builds strongly typed, explicitly quantized "
            f"engines, which need TensorRT >= {MIN_TENSORRT_MAJOR}. Upgrade with: "
            "pip install -U tensorrt"
        )
    return major


# ---------------------------------------------------------------- the ONNX intermediate


def _half_module(module):
    """A float16 copy of ``module`` that takes and returns float32 (casts at both ends)."""
    import torch

    class HalfPrecision(torch.nn.Module):
        """The model in float16 between a float32 input cast and a float32 output cast."""

        def __init__(self) -> None:
            super().__init__()
            self.model = copy.deepcopy(module).half().eval()

        def forward(self, x):
            return self.model(x.half()).float()

    return HalfPrecision().eval()


def int8_quantizer():
    """A PT2E quantizer producing TensorRT-compatible Q/DQ.

    Annotates the activation input (symmetric per-tensor int8, histogram observer) and the
    weight (symmetric per-channel int8 on the output-channel axis, [-127, 127]) of every
    ``aten.conv2d`` and ``aten.linear``; biases stay in float (TensorRT fuses them).
    """
    import torch
    from torchao.quantization.pt2e.observer import HistogramObserver, PerChannelMinMaxObserver
    from torchao.quantization.pt2e.quantizer import (
        QuantizationAnnotation,
        QuantizationSpec,
        Quantizer,
    )

    activation = QuantizationSpec(
        dtype=torch.int8,
        quant_min=-128,
        quant_max=127,
        qscheme=torch.per_tensor_symmetric,
        observer_or_fake_quant_ctr=HistogramObserver,
    )
    weight = QuantizationSpec(
        dtype=torch.int8,
        quant_min=-127,
        quant_max=127,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
        observer_or_fake_quant_ctr=PerChannelMinMaxObserver,
    )
    targets = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)

    class TensorRTQuantizer(Quantizer):
        """Q/DQ on the inputs of weighted layers, the placement TensorRT recommends."""

        def annotate(self, model):
            for node in model.graph.nodes:
                if node.op != "call_function" or node.target not in targets:
                    continue
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={node.args[0]: activation, node.args[1]: weight},
                    _annotated=True,
                )
            return model

        def validate(self, model) -> None:
            """Every annotation is TensorRT-compatible by construction."""

    return TensorRTQuantizer()


def quantize_int8(prepared, batches: Iterable, *, dynamic_batch: bool = False):
    """PT2E post-training int8 quantization of ``prepared.module``, calibrated on ``batches``.

    ``batches`` are (N, C, H, W) tensors in the graph's input range on the model's device.
    Returns the converted GraphModule (quantize/dequantize ops, weights folded to int8).
    """
    return pt2e_quantize(
        prepared.module,
        prepared.sample_input(),
        int8_quantizer(),
        batches,
        dynamic_shapes=batch_dim_spec(dynamic_batch),
    )


def export_intermediate_onnx(
    prepared,
    path: Path,
    *,
    mode: str,
    opset: int,
    dynamic_batch: bool = False,
    calibration_batches: Iterable | None = None,
) -> None:
    """Write the ONNX graph TensorRT parses (dynamo exporter, weights inline, timmx metadata).

    ``mode`` fp32, fp16 (float16 graph, float32 I/O) or int8 (Q/DQ from PT2E, calibrated on
    ``calibration_batches``). The int8 graph is not slimmed, so no constant folding can fold the
    weights' DequantizeLinear back into float weights.
    """
    slim = True
    if mode == "fp16":
        prepared = dataclasses.replace(prepared, module=_half_module(prepared.module))
    elif mode == "int8":
        if calibration_batches is None:
            raise ConfigurationError(
                "int8 needs calibration data: pass --calibration-data or --random-calibration."
            )
        quantized = quantize_int8(prepared, calibration_batches, dynamic_batch=dynamic_batch)
        prepared = dataclasses.replace(prepared, module=quantized)
        slim = False
    elif mode != "fp32":
        raise ConfigurationError(f"Unknown TensorRT mode {mode!r}; use fp32, fp16 or int8.")
    export_onnx(
        prepared,
        path,
        opset=opset,
        dynamic_batch=dynamic_batch,
        external_data=False,
        slim=slim,
    )


# ---------------------------------------------------------------- the builder


@dataclasses.dataclass(frozen=True)
class BatchProfile:
    """The optimization profile of the batch dimension: smallest, optimal and largest batch."""

    min: int
    opt: int
    max: int

    def shapes(self, chw: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) input shapes for an input of per-sample shape ``chw``."""
        return tuple((batch, *chw) for batch in (self.min, self.opt, self.max))


def network_flags(trt, major: int) -> int:
    """``create_network`` flags: STRONGLY_TYPED on 10.x; 0 on 11.x+ (always strongly typed)."""
    if major >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def build_engine(
    onnx_path: Path,
    *,
    mode: str,
    profile: BatchProfile | None = None,
    workspace_gib: float | None = None,
    verbose: bool = False,
    trt=None,
) -> bytes:
    """Parse ``onnx_path`` into a strongly typed network and build a serialized engine.

    ``profile`` adds an optimization profile for a dynamic batch dimension (the input's name
    and per-sample shape are read from the parsed network, never assumed). ``workspace_gib``
    caps the builder's workspace memory pool. ``trt`` is the tensorrt module (imported when
    None). Raises ExportError with the parser's messages when TensorRT rejects the graph.
    """
    trt = trt or import_tensorrt()
    major = check_tensorrt_version(trt.__version__)
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, major))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        shown = "\n".join(errors[:PARSER_ERRORS_SHOWN]) or "no error message"
        raise ExportError(
            f"TensorRT's ONNX parser rejected the graph ({len(errors)} error(s)):\n{shown}\n"
            "Rerun with --verbose --keep-onnx to inspect the intermediate ONNX."
        )
    if network.num_inputs != 1:
        raise ExportError(f"expected one network input, found {network.num_inputs}")
    config = builder.create_builder_config()
    if workspace_gib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    if mode == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        # TF32 is on by default for float32 layers; true fp32 is what --mode fp32 promises.
        config.clear_flag(trt.BuilderFlag.TF32)
    if profile is not None:
        tensor = network.get_input(0)
        chw = tuple(int(d) for d in tuple(tensor.shape)[1:])
        optimization = builder.create_optimization_profile()
        optimization.set_shape(tensor.name, *profile.shapes(chw))
        config.add_optimization_profile(optimization)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(
            "TensorRT could not build the engine (see the messages above); rerun with "
            "--verbose for the builder log, or raise --workspace."
        )
    return bytes(serialized)


# ---------------------------------------------------------------- the runtime


def _torch_dtype(trt, data_type):
    import torch

    table = {"FLOAT": torch.float32, "HALF": torch.float16, "INT32": torch.int32}
    for name, dtype in table.items():
        if data_type == getattr(trt.DataType, name, None):
            return dtype
    raise ExportError(f"unsupported engine I/O data type {data_type}")


class EngineRunner:
    """Deserialize an engine and run it on numpy batches, buffers held in torch CUDA tensors.

    Uses the name-based I/O API of TensorRT 10 and 11 (``set_input_shape``,
    ``set_tensor_address``, ``execute_async_v3`` on the current torch CUDA stream).
    """

    def __init__(self, engine: bytes, *, trt=None, device: str = "cuda", verbose=False) -> None:
        trt = trt or import_tensorrt()
        self.trt = trt
        self.device = device
        self.logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine)
        if self.engine is None:
            raise ExportError(
                "TensorRT could not deserialize the engine (built by another TensorRT version "
                "or for another GPU?)."
            )
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ExportError(f"expected one input and one output, found {inputs} -> {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.context = self.engine.create_execution_context()

    def _stream(self) -> int:
        import torch

        if self.device == "cpu":  # stand-in runtimes in tests only
            return 0
        return torch.cuda.current_stream().cuda_stream

    def __call__(self, x):
        """Run one (N, C, H, W) float32 numpy batch; returns the output as float32 numpy."""
        import torch

        trt = self.trt
        in_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.input_name))
        out_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.output_name))
        data = torch.from_numpy(x).to(device=self.device, dtype=in_dtype).contiguous()
        if not self.context.set_input_shape(self.input_name, tuple(data.shape)):
            raise ExportError(
                f"the engine does not accept input shape {tuple(data.shape)} (outside its "
                "optimization profile?)"
            )
        shape = tuple(int(d) for d in self.context.get_tensor_shape(self.output_name))
        output = torch.empty(shape, dtype=out_dtype, device=self.device)
        self.context.set_tensor_address(self.input_name, data.data_ptr())
        self.context.set_tensor_address(self.output_name, output.data_ptr())
        if not self.context.execute_async_v3(self._stream()):
            raise ExportError("TensorRT execute_async_v3 failed")
        if self.device != "cpu":
            torch.cuda.current_stream().synchronize()
        return output.float().cpu().numpy()


@contextlib.contextmanager
def exact_fp32_torch():
    """Switch off TF32 in PyTorch's CUDA convolutions and matmuls (the fp32 reference)."""
    import torch

    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
