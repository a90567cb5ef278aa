"""The dynamo ONNX export and its onnxruntime runner, shared by the onnx and tensorrt backends."""

from __future__ import annotations

from pathlib import Path

from timmx.backends._torch_capture import batch_dim_spec
from timmx.core.quiet import quiet

MIN_OPSET = 18
DEFAULT_OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "output"
REQUIRES = ("onnx", "onnxscript", "onnxruntime", "onnxslim")


def export_onnx(
    prepared,
    path: Path,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    external_data: bool = False,
    slim: bool = True,
) -> None:
    """Export ``prepared`` to ONNX at ``path`` with timmx metadata in ``metadata_props``.

    With ``external_data`` the weights go to ``<path>.data`` beside the graph.
    """
    import onnx
    import torch

    with quiet(native=False):
        program = torch.onnx.export(
            prepared.module,
            (prepared.sample_input(),),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=batch_dim_spec(dynamic_batch),
            external_data=False,
            verbose=False,
        )
    proto = program.model_proto
    if slim:
        import onnxslim

        with quiet(native=False):
            proto = onnxslim.slim(proto)
    set_metadata(proto, prepared.metadata())
    proto.producer_name = "timmx"
    if external_data:
        onnx.save_model(
            proto,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"{path.name}.data",
            size_threshold=1024,
        )
    else:
        onnx.save_model(proto, str(path))
    onnx.checker.check_model(str(path), full_check=False)


def set_metadata(proto, metadata: dict[str, str]) -> None:
    """Write ``metadata`` into the model's standard ``metadata_props``."""
    existing = {prop.key: prop for prop in proto.metadata_props}
    for key, value in metadata.items():
        prop = existing.get(key) or proto.metadata_props.add()
        prop.key, prop.value = key, value


def onnxruntime_runner(path: Path, threads: int | None = None):
    """A function running the ONNX file on CPU with onnxruntime (``threads`` intra-op)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name

    def run(x):
        return session.run(None, {name: x})[0]

    return run
