"""Core ML (.mlpackage ML Program or .mlmodel neural network) via coremltools.

Core ML runs only on Apple platforms: on macOS the saved model is loaded and its predictions are
compared with PyTorch like every other backend; elsewhere the saved spec is reloaded and its
structure checked (names, shapes, types, op count, quantized weights, metadata), and the report
says plainly that the numerics were not checked.
"""

import contextlib
import platform
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from timmx.core.backend import ExportBackend, installed_version
from timmx.core.options import option
from timmx.core.quiet import quiet
from timmx.core.types import ComputePrecision
from timmx.core.verify import (
    VerifyReport,
    unchecked,
    verification_batch_sizes,
    verify_with_runner,
)
from timmx.errors import ConfigurationError, ExportError

INPUT_NAME = "input"
OUTPUT_NAME = "output"
LABEL_NAME = "classLabel"
PROBS_NAME = "classLabel_probs"
DEFAULT_BATCH_UPPER_BOUND = 8
RUNTIME = "Core ML"
# Loggers that warn on import on Linux about things Core ML export does not use.
NOISY_LOGGERS = ("coremltools", "torchao", "torch.utils._pytree")
# The ML Program ops that hold quantized weights (iOS 16 and iOS 18 forms).
QUANTIZED_WEIGHT_OPS = {
    4: ("constexpr_lut_to_dense",),
    8: ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale"),
}


class Source(StrEnum):
    """How the PyTorch model is captured before conversion (``auto``: trace, and torch.export
    when tracing or converting the trace fails)."""

    auto = "auto"
    trace = "trace"
    torch_export = "torch-export"


class ConvertTo(StrEnum):
    """The Core ML model type."""

    mlprogram = "mlprogram"
    neuralnetwork = "neuralnetwork"


NOTE_CHARS = 160  # of the failed capture's reason, in the note
SUFFIXES = {ConvertTo.mlprogram: ".mlpackage", ConvertTo.neuralnetwork: ".mlmodel"}


@dataclass
class CoreMLOptions:
    """``timmx export coreml`` flags."""

    source: Source = option(
        Source.auto,
        "Capture with torch.jit.trace or torch.export before converting (auto: trace, then "
        "torch.export if tracing or its conversion fails).",
    )
    convert_to: ConvertTo = option(
        ConvertTo.mlprogram, "mlprogram (.mlpackage) or the older neuralnetwork (.mlmodel)."
    )
    compute_precision: ComputePrecision | None = option(
        None, "ML Program precision (mlprogram only; default float16).", show_default=False
    )
    half: bool = option(False, "float16 weights (mlprogram: float16 compute precision).", "--half")
    int8: bool = option(
        False, "8-bit weights: per-channel linear (mlprogram) or linear (neuralnetwork).", "--int8"
    )
    int4: bool = option(False, "4-bit k-means palettized weights (mlprogram only).", "--int4")
    dynamic_batch: bool = option(
        False,
        "Flexible batch 1..--batch-upper-bound (torch-export: --batch-size >= 2).",
        "--dynamic-batch",
    )
    batch_upper_bound: int = option(
        DEFAULT_BATCH_UPPER_BOUND, "Largest batch with --dynamic-batch.", min=2
    )
    classifier: bool = option(
        True,
        "Make a Core ML classifier (classLabel + classLabel_probs) when timm knows the labels "
        "and the batch is a fixed 1.",
    )


def weight_bits(half: bool = False, int8: bool = False, int4: bool = False) -> int:
    """32, 16, 8 or 4: the weight quantization the flags ask for."""
    return 4 if int4 else 8 if int8 else 16 if half else 32


def import_coremltools():
    """Import coremltools without its Linux warnings (missing macOS runtime, torchao kernels)."""
    with quiet(NOISY_LOGGERS, streams=False, native=False):
        import coremltools as ct
    return ct


def _capture(prepared, source: Source, dynamic_batch: bool, batch_upper_bound: int):
    """A TorchScript trace or an ATen-dialect ExportedProgram of the prepared model."""
    import torch

    from timmx.backends._module_swaps import decomposition_swaps, swapped

    example = prepared.sample_input()
    module, _ = swapped(prepared.module, decomposition_swaps())  # e.g. GRN's addcmul
    if source == Source.trace:
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(module, example, check_trace=False)
        # Fold aten::Int(prim::NumToTensor(size)) pairs (e.g. ViT's cls-token expand): coremltools
        # 9 turns them into 1-element arrays that NumPy 2 refuses to convert to int.
        torch._C._jit_pass_inline(traced.graph)
        torch._C._jit_pass_peephole(traced.graph, True)
        return traced
    shapes = None
    if dynamic_batch:
        shapes = ({0: torch.export.Dim("batch", min=1, max=batch_upper_bound)},)
    program = torch.export.export(module, (example,), dynamic_shapes=shapes)
    # coremltools converts the ATen dialect, not torch.export's default training dialect.
    program = program.run_decompositions({})
    _drop_aliases(program)
    return program


def _drop_aliases(program) -> None:
    """Remove ``aten.alias`` nodes (a view of the whole tensor, which coremltools 9 has no
    converter for: Swin, EfficientViT-M) by handing their input to their users, in place."""
    import torch

    graph = program.graph_module.graph
    aliases = [n for n in graph.nodes if n.target is torch.ops.aten.alias.default]
    for node in aliases:
        node.replace_all_uses_with(node.args[0])
        graph.erase_node(node)
    if aliases:
        program.graph_module.recompile()


def _input_type(ct, prepared, dynamic_batch: bool, batch_upper_bound: int):
    batch = prepared.batch_size
    if dynamic_batch:
        batch = ct.RangeDim(lower_bound=1, upper_bound=batch_upper_bound, default=batch)
    return ct.TensorType(name=INPUT_NAME, shape=(batch, *prepared.input_size))


def _rename(ct, model, renames: dict[str, str]):
    """Rename features of ``model``; returns a new MLModel (not loaded: Linux-safe)."""
    spec = model.get_spec()
    for old, new in renames.items():
        if old != new:
            ct.utils.rename_feature(spec, old, new)
    return ct.models.MLModel(spec, weights_dir=model.weights_dir, skip_model_load=True)


def _quantize(ct, model, bits: int, convert_to: ConvertTo):
    """Weight quantization: palettization / linear int8 for ML Programs, quantization_utils
    for neural networks (whose --half stores float16 weights)."""
    if convert_to == ConvertTo.neuralnetwork:
        from coremltools.models.neural_network import quantization_utils

        return quantization_utils.quantize_weights(model, nbits=bits, quantization_mode="linear")
    import coremltools.optimize.coreml as cto

    if bits == 8:
        op = cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity="per_channel"
        )
        return cto.linear_quantize_weights(model, cto.OptimizationConfig(global_config=op))
    op = cto.OpPalettizerConfig(mode="kmeans", nbits=bits)
    return cto.palettize_weights(model, cto.OptimizationConfig(global_config=op))


def unique_labels(labels: list[str]) -> list[str]:
    """Class labels made unique for a Core ML classifier (its scores are a label -> score dict):
    a repeated label gets its class index appended, e.g. ImageNet's two "crane" classes."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return [label if counts[label] == 1 else f"{label} ({i})" for i, label in enumerate(labels)]


def _describe(model, prepared, classifier: bool) -> None:
    """Standard Core ML metadata plus timmx's key/value metadata (user-defined)."""
    from timmx._version import __version__

    data = prepared.metadata()
    model.author = f"timmx {__version__}"
    model.version = data["timm_version"]
    model.short_description = (
        f"{prepared.name} from timm ({prepared.weights}), exported by timmx {__version__}."
    )
    if prepared.normalize:
        what = "Image in [0, 1], NCHW (mean/std normalization is built in)"
    else:
        what = f"Image normalized with mean {data['mean']} and std {data['std']}, NCHW"
    model.input_description[INPUT_NAME] = f"{what}; shape {data['input_shape']}."
    kind = "probabilities" if prepared.softmax else "logits"
    if classifier:
        model.output_description[LABEL_NAME] = "The most likely class label."
        model.output_description[PROBS_NAME] = f"Class label -> {kind}."
    else:
        model.output_description[OUTPUT_NAME] = f"Class {kind}, one row per image."
    for key, value in data.items():
        model.user_defined_metadata[key] = value


def export_coreml(
    prepared,
    path: Path,
    *,
    source: Source = Source.auto,
    convert_to: ConvertTo = ConvertTo.mlprogram,
    compute_precision: ComputePrecision | None = None,
    bits: int = 32,
    dynamic_batch: bool = False,
    batch_upper_bound: int = DEFAULT_BATCH_UPPER_BOUND,
    classifier: bool = True,
) -> tuple[bool, Source, list[str]]:
    """Convert ``prepared`` to Core ML at ``path`` (.mlpackage or .mlmodel); returns whether
    the model was made a Core ML classifier (labels known, one image per prediction), the
    capture that converted, and why the captures tried before it failed.

    ``bits`` is 32 (none), 16 (--half), 8 (--int8) or 4 (--int4) weight quantization.
    """
    ct = import_coremltools()
    classifier = bool(
        classifier and prepared.labels and prepared.batch_size == 1 and not dynamic_batch
    )
    kwargs: dict[str, object] = {"convert_to": str(convert_to)}
    if classifier:
        kwargs["classifier_config"] = ct.ClassifierConfig(unique_labels(prepared.labels))
    else:
        kwargs["outputs"] = [ct.TensorType(name=OUTPUT_NAME)]
    if convert_to == ConvertTo.mlprogram:
        precision = compute_precision or ComputePrecision.float16
        if bits == 16:
            precision = ComputePrecision.float16
        kwargs["compute_precision"] = (
            ct.precision.FLOAT32 if precision == ComputePrecision.float32 else ct.precision.FLOAT16
        )
    failures: list[str] = []
    order = capture_order(source, dynamic_batch, prepared.batch_size)
    with quiet(native=False):
        for used in order:
            try:
                model = _convert(ct, prepared, used, dynamic_batch, batch_upper_bound, kwargs)
                break
            except Exception as exc:
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                failures.append(f"--source {used}: {type(exc).__name__}: {message}")
        else:
            if len(order) > 1:
                raise ExportError(
                    f"coremltools could not convert {prepared.name} with either capture "
                    f"({'; '.join(failures)}). Export to another format (e.g. onnx) instead."
                )
            other = Source.trace if order[0] == Source.torch_export else Source.torch_export
            raise ExportError(
                f"coremltools could not convert {prepared.name} captured with "
                f"{failures[0]}. Try --source {other}."
            )
        if classifier:
            spec = model.get_spec()
            probs = spec.description.predictedProbabilitiesName
            model = _rename(ct, model, {probs: PROBS_NAME})
        if bits < 32 and not (bits == 16 and convert_to == ConvertTo.mlprogram):
            model = _quantize(ct, model, bits, convert_to)
    _describe(model, prepared, classifier)
    model.save(str(path))
    return classifier, used, failures


def capture_order(source: Source, dynamic_batch: bool, batch_size: int) -> list[Source]:
    """The captures to try in turn: ``auto`` is trace, then torch.export (unless a dynamic
    batch of 1, which torch.export would specialize)."""
    if source != Source.auto:
        return [source]
    if dynamic_batch and batch_size < 2:
        return [Source.trace]
    return [Source.trace, Source.torch_export]


def _convert(ct, prepared, source: Source, dynamic_batch: bool, batch_upper_bound: int, kwargs):
    """Capture ``prepared`` with ``source`` and convert it with ``ct.convert``."""
    captured = _capture(prepared, source, dynamic_batch, batch_upper_bound)
    inputs = [_input_type(ct, prepared, dynamic_batch, batch_upper_bound)]
    if source == Source.torch_export and dynamic_batch:
        inputs = [ct.TensorType(name=INPUT_NAME)]  # the range comes from the program
    return ct.convert(captured, inputs=inputs, **kwargs)


def _feature(feature) -> str:
    kind = feature.type.WhichOneof("Type")
    if kind != "multiArrayType":
        return f"{feature.name} ({kind.removesuffix('Type')})"
    array = feature.type.multiArrayType
    dtype = array.ArrayDataType.Name(array.dataType).lower()
    shape = [str(d) for d in array.shape] or ["?"]
    ranges = array.shapeRange.sizeRanges
    if ranges:
        shape = [
            str(r.lowerBound) if r.lowerBound == r.upperBound else f"{r.lowerBound}..{r.upperBound}"
            for r in ranges
        ]
    return f"{feature.name} {dtype} [{', '.join(shape)}]"


def inspect_coreml(path: Path) -> dict[str, object]:
    """What the saved spec holds: type, inputs, outputs, op counts, labels and metadata."""
    ct = import_coremltools()
    spec = ct.utils.load_spec(str(path))
    kind = spec.WhichOneof("Type")
    ops: dict[str, int] = {}
    labels = 0
    if kind == "mlProgram":
        for function in spec.mlProgram.functions.values():
            for block in function.block_specializations.values():
                for op in block.operations:
                    ops[op.type] = ops.get(op.type, 0) + 1
                    if op.type == "classify":
                        labels = max(labels, _classify_label_count(block, op))
    else:
        network = getattr(spec, kind)
        for layer in network.layers:
            name = layer.WhichOneof("layer")
            ops[name] = ops.get(name, 0) + 1
        if kind == "neuralNetworkClassifier":
            labels = len(network.stringClassLabels.vector) or len(network.int64ClassLabels.vector)
    return {
        "type": kind,
        "spec_version": spec.specificationVersion,
        "inputs": list(spec.description.input),
        "outputs": list(spec.description.output),
        "ops": ops,
        "labels": labels,
        "metadata": dict(spec.description.metadata.userDefined),
        "spec": spec,
    }


def _classify_label_count(block, classify_op) -> int:
    """Number of class labels of an ML Program ``classify`` op (inline list or a const)."""
    names = []
    for argument in classify_op.inputs["classes"].arguments:
        if argument.HasField("value"):
            return len(argument.value.immediateValue.list.values)
        names.append(argument.name)
    for op in block.operations:
        if op.type == "const" and op.outputs and op.outputs[0].name in names:
            value = op.attributes["val"].immediateValue
            if value.HasField("list"):
                return len(value.list.values)
            return len(value.tensor.strings.values) or len(value.tensor.longInts.values)
    return 0


def _weight_count(spec, kind: str, field: str) -> int:
    """Neural-network layers whose weights are stored in ``field`` (float16 / quantized)."""
    count = 0
    for layer in getattr(spec, kind).layers:
        which = layer.WhichOneof("layer")
        params = getattr(layer, which)
        weights = getattr(params, "weights", None)
        if weights is None:
            continue
        if field == "float16Value" and len(weights.float16Value):
            count += 1
        if field == "quantization" and weights.HasField("quantization"):
            count += 1
    return count


def check_structure(
    path: Path,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    convert_to: ConvertTo,
    classifier: bool,
    bits: int,
    dynamic_batch: bool,
    batch_upper_bound: int,
) -> str:
    """Reload the saved spec and check it against what was asked; returns a one-line summary.

    Raises ExportError naming the first mismatch.
    """
    info = inspect_coreml(path)
    spec, kind, ops = info["spec"], info["type"], info["ops"]
    problems: list[str] = []
    expected_kind = (
        ("mlProgram",)
        if convert_to == ConvertTo.mlprogram
        else ("neuralNetwork", "neuralNetworkClassifier")
    )
    if kind not in expected_kind:
        problems.append(f"model type is {kind}, expected {' or '.join(expected_kind)}")
    inputs = info["inputs"]
    if [f.name for f in inputs] != [INPUT_NAME]:
        problems.append(f"inputs are {[f.name for f in inputs]}, expected ['{INPUT_NAME}']")
    else:
        array = inputs[0].type.multiArrayType
        if inputs[0].type.WhichOneof("Type") != "multiArrayType" or array.dataType != (
            array.FLOAT32
        ):
            problems.append("the input is not a float32 multi-array")
        shape = tuple(int(d) for d in array.shape)
        if shape[1:] != tuple(input_shape[1:]):
            problems.append(f"input shape {list(shape)} != {list(input_shape)}")
        ranges = array.shapeRange.sizeRanges
        if dynamic_batch:
            if not ranges or (ranges[0].lowerBound, ranges[0].upperBound) != (
                1,
                batch_upper_bound,
            ):
                problems.append(f"the input batch is not flexible over 1..{batch_upper_bound}")
        elif shape[:1] != tuple(input_shape[:1]):
            problems.append(f"input batch {shape[:1]} != {input_shape[0]}")
    outputs = {f.name: f.type.WhichOneof("Type") for f in info["outputs"]}
    if classifier:
        expected = {LABEL_NAME: "stringType", PROBS_NAME: "dictionaryType"}
        if outputs != expected:
            problems.append(f"outputs are {outputs}, expected a classifier's {expected}")
        if info["labels"] != num_classes:
            problems.append(f"{info['labels']} class labels for {num_classes} classes")
    elif outputs != {OUTPUT_NAME: "multiArrayType"}:
        problems.append(f"outputs are {outputs}, expected one multi-array named '{OUTPUT_NAME}'")
    compute_ops = sum(n for op, n in ops.items() if not op.startswith(("const", "constexpr")))
    if compute_ops == 0:
        problems.append("the model holds no operations")
    quantized = ""
    if kind == "mlProgram" and bits in (4, 8):
        wanted = QUANTIZED_WEIGHT_OPS[bits]
        found = sum(ops.get(op, 0) for op in wanted)
        if not found:
            problems.append(f"no {bits}-bit weights ({' / '.join(wanted)} ops) in the program")
        quantized = f", {found} {bits}-bit weight tensors"
    elif kind != "mlProgram" and bits < 32:
        field = "float16Value" if bits == 16 else "quantization"
        found = _weight_count(spec, kind, field)
        if not found:
            problems.append(f"no layer stores {bits}-bit weights")
        quantized = f", {found} layers with {bits}-bit weights"
    if "model" not in info["metadata"]:
        problems.append("timmx metadata missing from the user-defined metadata")
    if problems:
        raise ExportError(f"The saved Core ML model is malformed: {'; '.join(problems)}.")
    shown_inputs = ", ".join(_feature(f) for f in info["inputs"])
    shown_outputs = ", ".join(_feature(f) for f in info["outputs"])
    labels = f", {info['labels']} class labels" if classifier else ""
    return (
        f"{kind} (spec v{info['spec_version']}): {shown_inputs} -> {shown_outputs}; "
        f"{compute_ops} ops{quantized}{labels}"
    )


def coreml_runner(path: Path, labels: list[str] | None):
    """A function predicting with Core ML (macOS only); classifier outputs in label order."""
    import numpy as np

    ct = import_coremltools()
    model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)

    def run(x):
        prediction = model.predict({INPUT_NAME: x})
        if labels is None:
            return np.asarray(prediction[OUTPUT_NAME], dtype=np.float32)
        probs = prediction[PROBS_NAME]
        return np.asarray([[probs[label] for label in labels]], dtype=np.float32)

    return run


class CoreMLBackend(ExportBackend):
    """Core ML export; numerics verified on macOS, structure verified elsewhere."""

    name = "coreml"
    help = (
        "Export to Core ML (.mlpackage ML Program or .mlmodel neural network) with coremltools; "
        "verified with Core ML on macOS, structurally elsewhere."
    )
    suffix = ".mlpackage"
    Options = CoreMLOptions
    requires = ("coremltools",)
    extra = "coreml"

    def writes_directory(self, job) -> bool:
        """An ML Program is saved as a .mlpackage folder, a neural network as one file."""
        return job.options.convert_to == ConvertTo.mlprogram

    def owns(self, path: Path) -> bool:
        """An existing .mlpackage (a folder with a Manifest.json) may be replaced."""
        return (path / "Manifest.json").is_file()

    def default_output(self, job) -> Path:
        """``<model>.mlpackage`` or ``<model>.mlmodel`` depending on --convert-to."""
        stem = job.model_name.replace("/", "_").replace(":", "_")
        return Path(f"{stem}{SUFFIXES[job.options.convert_to]}")

    def validate(self, job) -> None:
        """Precision, quantization, dynamic batch and output suffix rules."""
        opts, common = job.options, job.common
        mlprogram = opts.convert_to == ConvertTo.mlprogram
        if opts.compute_precision is not None and not mlprogram:
            raise ConfigurationError(
                "--compute-precision applies to ML Programs only; drop it or use "
                "--convert-to mlprogram."
            )
        chosen = [flag for flag, on in (("--half", opts.half), ("--int8", opts.int8),
                                        ("--int4", opts.int4)) if on]  # fmt: skip
        if len(chosen) > 1:
            raise ConfigurationError(
                f"{' and '.join(chosen)} are exclusive weight quantizations; pick one."
            )
        if opts.int4 and not mlprogram:
            raise ConfigurationError(
                "--int4 (k-means palettization) needs an ML Program; use --convert-to mlprogram "
                "or --int8."
            )
        if opts.int4 and installed_version("scikit-learn") is None:
            raise ConfigurationError(
                "--int4 (k-means palettization) needs scikit-learn, which coremltools does not "
                "install. Install it with: pip install scikit-learn"
            )
        if opts.half and opts.compute_precision == ComputePrecision.float32:
            raise ConfigurationError(
                "--half makes an ML Program compute in float16, which contradicts "
                "--compute-precision float32; drop one of them."
            )
        if opts.batch_upper_bound < 2:
            raise ConfigurationError(
                f"--batch-upper-bound must be >= 2, got {opts.batch_upper_bound}."
            )
        if opts.dynamic_batch:
            if opts.source == Source.torch_export and common.batch_size < 2:
                raise ConfigurationError(
                    "--dynamic-batch with --source torch-export needs --batch-size >= 2 (a batch "
                    "of 1 gets specialized by torch.export); add --batch-size 2."
                )
            if common.batch_size > opts.batch_upper_bound:
                raise ConfigurationError(
                    f"--batch-size {common.batch_size} exceeds --batch-upper-bound "
                    f"{opts.batch_upper_bound}; raise the bound."
                )
        suffix = SUFFIXES[opts.convert_to]
        if common.output is not None and common.output.suffix != suffix:
            raise ConfigurationError(
                f"--convert-to {opts.convert_to} writes a {suffix}; name --output "
                f"{common.output.with_suffix(suffix)}."
            )

    def precision(self, job) -> str:
        """int4/int8 weights, else fp16 (ML Program default compute) or fp32."""
        opts = job.options
        bits = weight_bits(opts.half, opts.int8, opts.int4)
        if bits == 4:
            return "int4"
        if bits == 8:
            return "int8"
        if bits == 16:
            return "fp16"
        if opts.convert_to == ConvertTo.mlprogram:
            return "fp32" if opts.compute_precision == ComputePrecision.float32 else "fp16"
        return "fp32"

    def convert(self, job, artifact: Path) -> None:
        """Capture, convert, quantize, describe and save."""
        opts = job.options
        if artifact.is_dir():
            artifact.rmdir()  # staging made the folder; coremltools writes the package itself
        classifier, used, failures = export_coreml(
            job.model,
            artifact,
            source=opts.source,
            convert_to=opts.convert_to,
            compute_precision=opts.compute_precision,
            bits=weight_bits(opts.half, opts.int8, opts.int4),
            dynamic_batch=opts.dynamic_batch,
            batch_upper_bound=opts.batch_upper_bound,
            classifier=opts.classifier,
        )
        job.details["classifier"] = classifier
        job.details["source"] = str(used)
        if failures:
            job.notes.append(
                f"converted with --source {used} (first tried {failures[0][:NOTE_CHARS]})"
            )
        if opts.classifier and job.model.labels and not classifier:
            job.notes.append(
                "class labels not embedded: a Core ML classifier labels one image at a time "
                "(needs --batch-size 1 without --dynamic-batch)"
            )
        if classifier and not job.model.softmax:
            job.notes.append(f"{PROBS_NAME} holds logits; add --softmax for probabilities")
        if opts.half and opts.convert_to == ConvertTo.mlprogram:
            job.notes.append("--half: the ML Program computes in float16 (weights stored in fp16)")

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Structure everywhere; predictions compared with PyTorch on macOS."""
        opts = job.options
        classifier = bool(job.details.get("classifier"))
        prepared = job.model
        shape = (prepared.batch_size, *prepared.input_size)
        summary = check_structure(
            artifact,
            input_shape=shape,
            num_classes=prepared.num_classes,
            convert_to=opts.convert_to,
            classifier=classifier,
            bits=weight_bits(opts.half, opts.int8, opts.int4),
            dynamic_batch=opts.dynamic_batch,
            batch_upper_bound=opts.batch_upper_bound,
        )
        job.details["structure"] = summary
        with self.runtime(job, artifact) as runner:
            if runner is None:
                return unchecked(
                    RUNTIME,
                    f"Core ML prediction needs macOS; on {platform.system() or 'this OS'} only "
                    "the saved model's structure was checked (see structure)",
                    self.precision(job),
                )
            sizes = verification_batch_sizes(prepared.batch_size, opts.dynamic_batch)
            sizes = tuple(size for size in sizes if size <= opts.batch_upper_bound)
            return verify_with_runner(job, runner, RUNTIME, batch_sizes=sizes, note=summary)

    @contextlib.contextmanager
    def runtime(self, job, artifact: Path, *, threads: int | None = None):
        """Core ML on the CPU (macOS only; elsewhere None)."""
        if platform.system() != "Darwin":
            yield None
            return
        classifier = bool(job.details.get("classifier"))
        labels = unique_labels(job.model.labels) if classifier else None
        yield coreml_runner(artifact, labels)
