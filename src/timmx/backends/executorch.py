"""ExecuTorch (.pte) with the XNNPACK or Core ML delegate, verified with ``executorch.runtime``.

- ``--delegate xnnpack`` (default): ``--mode fp32`` or ``int8`` (PT2E with ``XNNPACKQuantizer``,
  per-channel weights unless ``--no-per-channel``, calibrated). Verified in the ExecuTorch
  runtime here, with a second batch size when ``--dynamic-batch``.
- ``--delegate coreml``: ``--mode fp32``, ``fp16`` or ``int8`` (PT2E with ``CoreMLQuantizer``:
  int8 weights and activations, minimum deployment target iOS 17), ``--compute-precision``
  float16 (default) or float32. Core ML programs only run on Apple platforms: on other systems
  the report says "numerics NOT checked".

timmx's metadata is stored in the program as a constant method ``timmx_metadata`` returning
a JSON string.
"""

import contextlib
import json
import platform
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from timmx.backends._torch_capture import (
    batch_dim_spec,
    dynamic_batch_option,
    static_image_size,
    validate_dynamic_batch,
)
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
from timmx.core.types import ComputePrecision, Device
from timmx.core.verify import (
    VerifyReport,
    unchecked,
    verification_batch_sizes,
    verify_with_runner,
)
from timmx.errors import ConfigurationError

METADATA_METHOD = "timmx_metadata"


class Delegate(StrEnum):
    """The ExecuTorch backend the graph is lowered to."""

    xnnpack = "xnnpack"
    coreml = "coreml"


class ExecuTorchMode(StrEnum):
    """Precision of the program."""

    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


@dataclass
class ExecuTorchOptions:
    """``timmx export executorch`` flags."""

    delegate: Delegate = option(Delegate.xnnpack, "Backend the graph is lowered to.")
    mode: ExecuTorchMode = option(
        ExecuTorchMode.fp32, "fp32, int8 (PT2E), or fp16 (coreml delegate only)."
    )
    per_channel: bool | None = option(
        None,
        "int8: per-channel weight scales (default) or per-tensor.",
        "--per-channel/--no-per-channel",
        show_default=False,
    )
    compute_precision: ComputePrecision | None = option(
        None, "Core ML compute precision (coreml delegate; default float16).", show_default=False
    )
    dynamic_batch: bool = dynamic_batch_option()
    calibration_data: Path | None = calibration_data_option()
    calibration_samples: int | None = calibration_samples_option()
    calibration_steps: int | None = calibration_steps_option()
    random_calibration: bool = random_calibration_option()


def _quantizer(delegate: Delegate, per_channel: bool):
    if delegate == Delegate.xnnpack:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        return XNNPACKQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=per_channel)
        )
    import coremltools as ct
    import torch
    from executorch.backends.apple.coreml.quantizer import CoreMLQuantizer

    config = ct.optimize.torch.quantization.LinearQuantizerConfig(
        global_config=ct.optimize.torch.quantization.ModuleLinearQuantizerConfig(
            quantization_scheme="symmetric",
            activation_dtype=torch.quint8,
            weight_dtype=torch.qint8,
            weight_per_channel=per_channel,
        )
    )
    return CoreMLQuantizer(config)


def _partitioner(delegate: Delegate, mode: ExecuTorchMode, compute_precision: ComputePrecision):
    if delegate == Delegate.xnnpack:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return XnnpackPartitioner()
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner

    precision = (
        ct.precision.FLOAT16
        if compute_precision == ComputePrecision.float16
        else ct.precision.FLOAT32
    )
    target = ct.target.iOS17 if mode == ExecuTorchMode.int8 else None
    specs = CoreMLBackend.generate_compile_specs(
        compute_precision=precision, minimum_deployment_target=target
    )
    return CoreMLPartitioner(compile_specs=specs)


def export_executorch(
    prepared,
    path: Path,
    *,
    delegate: Delegate | str = Delegate.xnnpack,
    mode: ExecuTorchMode | str = ExecuTorchMode.fp32,
    per_channel: bool = True,
    compute_precision: ComputePrecision | str = ComputePrecision.float16,
    dynamic_batch: bool = False,
    calibration=None,
) -> None:
    """Export ``prepared`` to an ExecuTorch program at ``path``.

    ``calibration`` (a :class:`timmx.core.calibration.CalibrationSet`) is required for
    ``mode="int8"``. ``mode="fp16"`` is Core ML with float16 compute.
    """
    import torch

    delegate, mode = Delegate(delegate), ExecuTorchMode(mode)
    compute_precision = ComputePrecision(compute_precision)
    if mode == ExecuTorchMode.fp16:
        if delegate != Delegate.coreml:
            raise ConfigurationError("--mode fp16 needs --delegate coreml.")
        compute_precision = ComputePrecision.float16
    if mode == ExecuTorchMode.int8 and calibration is None:
        raise ConfigurationError("ExecuTorch int8 needs calibration data (a CalibrationSet).")
    with quiet():
        from executorch.exir import to_edge_transform_and_lower

        from timmx.backends._module_swaps import head_mixing_swaps, swapped

        module = static_image_size(prepared.module, prepared.input_size)
        if delegate == Delegate.xnnpack:  # XNNPACK runs a softmax after a conv on the wrong axis
            module, _ = swapped(module, head_mixing_swaps())
        example = prepared.sample_input()
        dims = batch_dim_spec(dynamic_batch)
        if mode == ExecuTorchMode.int8:
            module = pt2e_quantize(
                module,
                example,
                _quantizer(delegate, per_channel),
                calibration.batches(prepared.batch_size),
                dynamic_shapes=dims,
            )
        program = torch.export.export(module, (example,), dynamic_shapes=dims)
        lowered = to_edge_transform_and_lower(
            program,
            partitioner=[_partitioner(delegate, mode, compute_precision)],
            constant_methods={METADATA_METHOD: json.dumps(prepared.metadata())},
        )
        Path(path).write_bytes(lowered.to_executorch().buffer)


def read_metadata(path: Path) -> dict[str, str]:
    """The timmx metadata of a .pte program (runs its ``timmx_metadata`` constant method)."""
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(Path(path))
    if METADATA_METHOD not in program.method_names:
        return {}
    return json.loads(program.load_method(METADATA_METHOD).execute(())[0])


def executorch_runner(path: Path):
    """A function running the program's ``forward`` with the ExecuTorch runtime (CPU)."""
    import torch
    from executorch.runtime import Runtime

    with quiet():
        method = Runtime.get().load_program(Path(path)).load_method("forward")

    def run(x):
        with quiet():
            out = method.execute((torch.from_numpy(x),))[0]
        return out.float().numpy()

    return run


class ExecuTorchBackend(ExportBackend):
    """ExecuTorch export (XNNPACK or Core ML delegate), verified with executorch.runtime."""

    name = "executorch"
    help = (
        "Export an ExecuTorch program (.pte) for the XNNPACK (CPU) or Core ML delegate: fp32 "
        "or PT2E int8; verified in the ExecuTorch runtime."
    )
    suffix = ".pte"
    requires = ("executorch", "torchao")
    Options = ExecuTorchOptions
    extra = "executorch"
    calibrates = True
    devices = (Device.cpu,)

    def validate(self, job) -> None:
        """Delegate/mode/flag combinations, dynamic batch and calibration."""
        opts = job.options
        delegate, mode = Delegate(opts.delegate), ExecuTorchMode(opts.mode)
        if mode == ExecuTorchMode.fp16 and delegate != Delegate.coreml:
            raise ConfigurationError(
                "--mode fp16 is Core ML float16 compute: add --delegate coreml, or use "
                "--mode fp32 / int8 with xnnpack."
            )
        if opts.compute_precision is not None:
            if delegate != Delegate.coreml:
                raise ConfigurationError(
                    "--compute-precision only applies to --delegate coreml; remove it."
                )
            if mode == ExecuTorchMode.fp16 and opts.compute_precision != "float16":
                raise ConfigurationError(
                    "--mode fp16 computes in float16; drop --compute-precision float32 "
                    "(or use --mode fp32 --compute-precision float32)."
                )
        if opts.per_channel is not None and mode != ExecuTorchMode.int8:
            raise ConfigurationError(
                "--per-channel/--no-per-channel only apply to --mode int8; remove it."
            )
        validate_dynamic_batch(job)
        is_int8 = mode == ExecuTorchMode.int8
        validate_calibration(job, needs_calibration=is_int8, allowed=is_int8)

    def _compute_precision(self, job) -> ComputePrecision:
        if ExecuTorchMode(job.options.mode) == ExecuTorchMode.fp16:
            return ComputePrecision.float16
        return ComputePrecision(job.options.compute_precision or ComputePrecision.float16)

    def precision(self, job) -> str:
        """int8, or for Core ML the compute precision; fp32 for XNNPACK float."""
        mode = ExecuTorchMode(job.options.mode)
        if mode == ExecuTorchMode.int8:
            return "int8"
        if Delegate(job.options.delegate) == Delegate.coreml:
            return "fp16" if self._compute_precision(job) == ComputePrecision.float16 else "fp32"
        return "fp32"

    def convert(self, job, artifact: Path) -> None:
        """Quantize if asked, lower to the delegate, write the program."""
        opts = job.options
        mode, delegate = ExecuTorchMode(opts.mode), Delegate(opts.delegate)
        calibration = load_calibration(job) if mode == ExecuTorchMode.int8 else None
        export_executorch(
            job.model,
            artifact,
            delegate=delegate,
            mode=mode,
            per_channel=True if opts.per_channel is None else opts.per_channel,
            compute_precision=self._compute_precision(job),
            dynamic_batch=opts.dynamic_batch,
            calibration=calibration,
        )
        if delegate == Delegate.coreml:
            job.details["coreml"] = f"compute precision {self._compute_precision(job).value}" + (
                ", minimum deployment target iOS 17" if mode == ExecuTorchMode.int8 else ""
            )

    @contextlib.contextmanager
    def runtime(self, job, artifact: Path, *, threads: int | None = None):
        """executorch.runtime (XNNPACK); Core ML-delegated programs only on macOS."""
        if Delegate(job.options.delegate) == Delegate.coreml and platform.system() != "Darwin":
            yield None
            return
        yield executorch_runner(artifact)

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Run with executorch.runtime (XNNPACK); Core ML programs only on macOS."""
        with self.runtime(job, artifact) as runner:
            return self._verify(job, runner)

    def _verify(self, job, runner) -> VerifyReport:
        delegate, mode = Delegate(job.options.delegate), ExecuTorchMode(job.options.mode)
        if runner is None:
            return unchecked(
                "executorch.runtime (Core ML delegate)",
                "Core ML delegate programs run only on macOS/iOS; verify on a Mac.",
                self.precision(job),
            )
        if mode == ExecuTorchMode.fp32 and delegate == Delegate.xnnpack:
            sizes = verification_batch_sizes(job.common.batch_size, job.options.dynamic_batch)
            return verify_with_runner(job, runner, "executorch.runtime", batch_sizes=sizes)
        note = None
        if job.options.dynamic_batch:
            extra = [job.model.sample_input(job.common.batch_size + 1)]
            second = verify_with_runner(job, runner, "executorch.runtime", inputs=extra)
            note = (
                f"batch {job.common.batch_size + 1}: max abs err {second.max_abs_err:.3g}, "
                f"cosine {second.cosine:.4f}"
            )
            if not second.passed:
                return second
        return verify_quantized(job, runner, "executorch.runtime", self.precision(job), note=note)
