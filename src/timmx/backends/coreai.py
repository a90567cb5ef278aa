"""Core AI (``.aimodel`` package) via coreai-torch, checked structurally and run in Core AI.

The model is captured with torch.export, decomposed with coreai-torch's table and converted with
``TorchConverter`` (release mode: no stack traces, so no local file paths, in the asset) into one
function ``main`` (input ``input``, output ``output``), saved with ``save_asset``. timmx's
metadata is the asset's creator-defined metadata (``metadata.json``).

Verification always reloads the saved asset and checks its structure: the program's hash, one
function ``main`` with the expected input and output shapes (``?`` batch with
``--dynamic-batch``), its operations and the metadata. Then the asset runs in coreai-core's own
runtime and is compared with PyTorch: on macOS the Core AI framework runs it; on Linux,
coreai-core compiles it to its portable ("universal") form and runs that on the CPU, which
checks the conversion's numerics but not an Apple device's GPU or Neural Engine precision.
Where the runtime cannot load, the report says "numerics NOT checked".
"""

import contextlib
import hashlib
import json
import platform
import re
from dataclasses import dataclass
from pathlib import Path

from timmx.backends._torch_capture import (
    batch_dim_spec,
    dynamic_batch_option,
    static_image_size,
    validate_dynamic_batch,
)
from timmx.core.backend import ExportBackend
from timmx.core.quiet import quiet
from timmx.core.types import Device
from timmx.core.verify import (
    VerifyReport,
    unchecked,
    verification_batch_sizes,
    verify_with_runner,
)
from timmx.errors import ConfigurationError, ExportError

SUFFIX = ".aimodel"
ENTRYPOINT = "main"
INPUT_NAME = "input"
OUTPUT_NAME = "output"
PROGRAM_FILE = "main.mlirb"
HASH_FILE = "main.hash"
METADATA_FILE = "metadata.json"
TIMES = "\u00d7"
NOISY_LOGGERS = ("coreai", "coreai_torch", "torch.utils._pytree")


@dataclass
class CoreAIOptions:
    """``timmx export coreai`` flags."""

    dynamic_batch: bool = dynamic_batch_option()


def runtime_name() -> str:
    """How the report names the runtime that ran the asset here."""
    if platform.system() == "Darwin":
        return "Core AI"
    return "Core AI (coreai-core universal CPU runtime)"


def decomposition_table():
    """coreai-torch's decomposition table, keeping adaptive average pooling whole.

    PyTorch's composite ``adaptive_avg_pool2d`` restrides a channels-last result with
    ``as_strided`` (ConvNeXt's pooled features are channels-last), which coreai-torch cannot
    lower; ``_adaptive_avg_pool2d`` computes the same values and has a Core AI lowering.
    """
    import coreai_torch
    import torch

    table = coreai_torch.get_decomp_table()

    def adaptive_avg_pool2d(x, output_size):
        return torch.ops.aten._adaptive_avg_pool2d.default(x, output_size)

    table[torch.ops.aten.adaptive_avg_pool2d.default] = adaptive_avg_pool2d
    return table


def export_coreai(
    prepared,
    path: Path,
    *,
    dynamic_batch: bool = False,
) -> dict[str, str]:
    """Convert ``prepared`` to a Core AI asset at ``path`` (a ``.aimodel`` folder).

    Returns the metadata written to the asset.
    """
    import torch

    with quiet(NOISY_LOGGERS):
        import coreai_torch
        from coreai.runtime import AIModelAssetMetadata

        module = static_image_size(prepared.module, prepared.input_size)
        program = torch.export.export(
            module, (prepared.sample_input(),), dynamic_shapes=batch_dim_spec(dynamic_batch)
        )
        program = program.run_decompositions(decomposition_table())
        converter = coreai_torch.TorchConverter(mode=coreai_torch.TorchConverter.Mode.RELEASE)
        converter.add_exported_program(
            program,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            entrypoint_name=ENTRYPOINT,
        )
        ai_program = converter.to_coreai()
        metadata = dict(prepared.metadata())
        if dynamic_batch:
            metadata["input_shape"] = json.dumps([-1, *prepared.input_size])
        info = AIModelAssetMetadata()
        info.model_description = f"{prepared.name} exported by timmx"
        for key, value in metadata.items():
            info.set_custom(key, value)
        ai_program.save_asset(Path(path), metadata=info)
    return metadata


def read_metadata(path: Path) -> dict[str, object]:
    """The asset's creator-defined metadata (timmx's keys), from its ``metadata.json``."""
    data = json.loads((Path(path) / METADATA_FILE).read_text(encoding="utf-8"))
    return dict(data.get("creatorDefinedMetadata") or {})


def _shape(signature: str) -> tuple[str, list[str]]:
    """('Float32', ['?', '3', '224', '224']) from 'NDArray (Float32, ? x 3 x 224 x 224)'.

    (coreai-core separates the dimensions with the multiplication sign, U+00D7.)
    """
    found = re.fullmatch(r"\s*NDArray \((\w+), (.*)\)\s*", signature)
    if not found:
        return signature, []
    return found.group(1), [d.strip() for d in found.group(2).split(TIMES)]


def check_structure(
    path: Path, *, input_shape: tuple[int, ...], num_classes: int, dynamic_batch: bool
) -> str:
    """Reload the saved asset and check it against what was asked; one-line summary.

    Raises ExportError naming every mismatch.
    """
    path = Path(path)
    problems: list[str] = []
    program, digest = path / PROGRAM_FILE, path / HASH_FILE
    if not program.is_file() or not digest.is_file():
        raise ExportError(f"The Core AI asset {path} lacks {PROGRAM_FILE} or {HASH_FILE}.")
    if hashlib.sha256(program.read_bytes()).digest() != digest.read_bytes():
        problems.append(f"{PROGRAM_FILE} does not match {HASH_FILE}")
    with quiet(NOISY_LOGGERS):
        from coreai.authoring.asset import AIModelAsset

        if not AIModelAsset.is_valid(path):
            raise ExportError(f"coreai-core does not recognise {path} as a model asset.")
        summary = AIModelAsset.load(path).summary(include_statistics=True)
    if summary is None:
        raise ExportError(f"The Core AI asset {path} holds no program.")
    functions = list(summary.function_names)
    if functions != [ENTRYPOINT]:
        problems.append(f"functions are {functions}, expected ['{ENTRYPOINT}']")
        raise ExportError(f"The saved Core AI asset is malformed: {'; '.join(problems)}.")
    inputs = list(summary.function_inputs(ENTRYPOINT))
    outputs = list(summary.function_outputs(ENTRYPOINT))
    batch = "?" if dynamic_batch else str(input_shape[0])
    expected_in = ("Float32", [batch, *(str(d) for d in input_shape[1:])])
    expected_out = ("Float32", [batch, str(num_classes)])
    if [name for name, _ in inputs] != [INPUT_NAME] or _shape(inputs[0][1]) != expected_in:
        problems.append(f"inputs are {inputs}, expected {INPUT_NAME} {expected_in}")
    if [name for name, _ in outputs] != [OUTPUT_NAME] or (
        num_classes and _shape(outputs[0][1]) != expected_out
    ):
        problems.append(f"outputs are {outputs}, expected {OUTPUT_NAME} {expected_out}")
    ops = dict(summary.operation_distribution)
    compute_ops = sum(n for op, n in ops.items() if op != "constant")
    if compute_ops == 0:
        problems.append("the program holds no operations")
    if "model" not in read_metadata(path):
        problems.append(f"timmx metadata missing from {METADATA_FILE}")
    if problems:
        raise ExportError(f"The saved Core AI asset is malformed: {'; '.join(problems)}.")
    kinds = [op for op, _ in sorted(ops.items(), key=lambda kv: -kv[1]) if op != "constant"]
    return (
        f"function {ENTRYPOINT}: {inputs[0][0]} {'x'.join(expected_in[1])} -> "
        f"{outputs[0][0]} {'x'.join(_shape(outputs[0][1])[1])}; {compute_ops} ops "
        f"({', '.join(kinds[:4])}, ...)"
    )


def _load_runtime():
    """coreai's runtime classes, or None where they cannot load on this machine."""
    try:
        with quiet(NOISY_LOGGERS):
            from coreai.authoring.asset import AIModelAsset
            from coreai.runtime import NDArray
    except (ImportError, OSError):
        return None
    return AIModelAsset, NDArray


@contextlib.contextmanager
def coreai_runner(path: Path):
    """A function running the asset's ``main`` on float32 NCHW batches, or None.

    The asset stays loaded (in an event loop of its own) for the duration of the block.
    """
    import asyncio

    import numpy as np

    loaded = _load_runtime()
    if loaded is None:
        yield None
        return
    asset_class, ndarray = loaded
    loop = asyncio.new_event_loop()
    executable = asset_class.load(Path(path)).executable()
    try:
        with quiet(NOISY_LOGGERS):
            model = loop.run_until_complete(executable.__aenter__())
            function = model.load_function(ENTRYPOINT)

        def run(x):
            data = ndarray(np.ascontiguousarray(x, dtype=np.float32))
            outputs = loop.run_until_complete(function({INPUT_NAME: data}))
            return np.array(outputs[OUTPUT_NAME].numpy(), dtype=np.float32, copy=True)

        yield run
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(executable.__aexit__(None, None, None))
        loop.close()


class CoreAIBackend(ExportBackend):
    """Core AI export with coreai-torch; structure and numerics verified with coreai-core."""

    name = "coreai"
    help = (
        "Export to Core AI (.aimodel) with coreai-torch; structure checked and the asset run "
        "in coreai-core's runtime (macOS, or its portable CPU runtime on Linux)."
    )
    suffix = SUFFIX
    Options = CoreAIOptions
    requires = ("coreai-torch", "coreai-core")
    extra = "coreai"
    devices = (Device.cpu,)

    def writes_directory(self, job) -> bool:
        """A Core AI asset is a folder named ``<name>.aimodel``."""
        return True

    def owns(self, path: Path) -> bool:
        """An existing Core AI asset (a ``.aimodel`` folder with its program) may be replaced."""
        return path.suffix == SUFFIX and (
            (path / PROGRAM_FILE).is_file() and (path / METADATA_FILE).is_file()
        )

    def validate(self, job) -> None:
        """Output suffix and dynamic batch."""
        output = job.common.output
        if output is not None and output.suffix != SUFFIX:
            raise ConfigurationError(
                f"A Core AI asset is a folder named *{SUFFIX}; name --output "
                f"{output.with_suffix(SUFFIX)}."
            )
        validate_dynamic_batch(job)

    def convert(self, job, artifact: Path) -> None:
        """torch.export, decompose, convert, save the asset with timmx's metadata."""
        export_coreai(
            job.model,
            artifact,
            dynamic_batch=job.options.dynamic_batch,
        )
        job.details["files"] = f"{PROGRAM_FILE}, {HASH_FILE}, {METADATA_FILE}"

    @contextlib.contextmanager
    def runtime(self, job, artifact: Path, *, threads: int | None = None):
        """coreai-core's runtime (no thread setting); None where it cannot load."""
        with coreai_runner(artifact) as run:
            yield run

    def verify(self, job, artifact: Path) -> VerifyReport:
        """Structure always; numerics where coreai-core's runtime loads."""
        prepared = job.model
        summary = check_structure(
            artifact,
            input_shape=(prepared.batch_size, *prepared.input_size),
            num_classes=prepared.num_classes,
            dynamic_batch=job.options.dynamic_batch,
        )
        job.details["structure"] = summary
        with self.runtime(job, artifact) as runner:
            if runner is None:
                return unchecked(
                    "Core AI",
                    f"coreai-core's runtime does not load on {platform.system() or 'this OS'}; "
                    "only the saved asset's structure was checked (see structure)",
                )
            sizes = verification_batch_sizes(prepared.batch_size, job.options.dynamic_batch)
            return verify_with_runner(job, runner, runtime_name(), batch_sizes=sizes)
