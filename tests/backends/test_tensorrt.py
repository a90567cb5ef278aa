"""TensorRT backend: validation, doctor, the ONNX intermediate, int8 Q/DQ and the builder calls.

Neither TensorRT nor a GPU exists where these tests run, so no real engine is built here. What
runs for real: every validation rule, the dependency/doctor report, the ONNX intermediate of each
precision (checked numerically in onnxruntime) and calibration. The builder and runtime calls
are checked against ``FakeTensorRT``, a STAND-IN for the ``tensorrt`` module that records every
call; its "engine" is the ONNX intermediate itself, run by onnxruntime, so the runner's buffer
handling and the backend's verification path can be exercised end to end.
"""

import ctypes
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import typer
from conftest import leftovers

import timmx
from timmx.backends import tensorrt as tensorrt_backend
from timmx.backends.tensorrt import TensorRTBackend, nvidia_driver
from timmx.backends.tensorrt import build as tensorrt_build
from timmx.backends.tensorrt.build import (
    BatchProfile,
    EngineRunner,
    build_engine,
    export_intermediate_onnx,
    quantize_int8,
)
from timmx.cli.app import app
from timmx.core import model as core_model
from timmx.core.job import CommonOptions, ExportJob
from timmx.core.model import prepare_model
from timmx.core.pipeline import make_job as make_export_job
from timmx.core.registry import create_builtin_registry
from timmx.core.tolerances import tolerance_for
from timmx.core.verify import compare
from timmx.errors import ConfigurationError, ExportError

MODEL = "test_resnet"  # (3, 160, 160), 1000 classes


# ------------------------------------------------------------------ the stand-in for tensorrt


class FakeTensorRT:
    """A STAND-IN for the ``tensorrt`` module (TensorRT 10/11 API surface timmx uses).

    Records every call in ``calls`` as (name, args). ``parse`` reads the real ONNX bytes (input
    name and shape come from the graph, as in TensorRT); the serialized "engine" is those ONNX
    bytes, and the "engine" runs them with onnxruntime, reading and writing the buffers at the
    addresses the runner binds.
    """

    class Logger:
        WARNING = "WARNING"
        VERBOSE = "VERBOSE"

        def __init__(self, level):
            self.level = level

    NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=0)
    BuilderFlag = SimpleNamespace(TF32="TF32")
    MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    DataType = SimpleNamespace(FLOAT="FLOAT", HALF="HALF", INT32="INT32")

    def __init__(self, version="10.13.0.35", *, parse_errors=(), build_fails=False):
        self.__version__ = version
        self.calls: list[tuple[str, tuple]] = []
        self.parse_errors = list(parse_errors)
        self.build_fails = build_fails
        fake = self

        class Builder:
            def __init__(self, logger):
                fake.record("Builder", logger.level)

            def create_network(self, flags):
                fake.record("create_network", flags)
                return Network()

            def create_builder_config(self):
                fake.record("create_builder_config")
                return Config()

            def create_optimization_profile(self):
                fake.record("create_optimization_profile")
                return Profile()

            def build_serialized_network(self, network, config):
                fake.record("build_serialized_network")
                return None if fake.build_fails else network.onnx_bytes

        class Tensor:
            def __init__(self, name, shape):
                self.name, self.shape = name, shape

        class Network:
            onnx_bytes = b""
            inputs: list = []

            @property
            def num_inputs(self):
                return len(self.inputs)

            def get_input(self, index):
                return self.inputs[index]

        class Parser:
            def __init__(self, network, logger):
                fake.record("OnnxParser")
                self.network = network
                self.num_errors = len(fake.parse_errors)

            def parse(self, data):
                fake.record("parse", len(data))
                if fake.parse_errors:
                    return False
                model = onnx.load_from_string(data)
                self.network.onnx_bytes = data
                self.network.inputs = [
                    Tensor(i.name, tuple(d.dim_value or -1 for d in i.type.tensor_type.shape.dim))
                    for i in model.graph.input
                ]
                return True

            def get_error(self, index):
                return fake.parse_errors[index]

        class Config:
            def set_memory_pool_limit(self, pool, size):
                fake.record("set_memory_pool_limit", pool, size)

            def clear_flag(self, flag):
                fake.record("clear_flag", flag)

            def set_flag(self, flag):
                fake.record("set_flag", flag)

            def add_optimization_profile(self, profile):
                fake.record("add_optimization_profile")

            def __setattr__(self, name, value):
                fake.record("config_set", name)
                object.__setattr__(self, name, value)

        class Profile:
            def set_shape(self, name, low, opt, high):
                fake.record("set_shape", name, low, opt, high)

        class Runtime:
            def __init__(self, logger):
                fake.record("Runtime")

            def deserialize_cuda_engine(self, data):
                fake.record("deserialize_cuda_engine", len(data))
                return Engine(data)

        class Engine:
            def __init__(self, data):
                self.session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
                self.names = [self.session.get_inputs()[0].name, self.session.get_outputs()[0].name]
                self.num_io_tensors = 2

            def get_tensor_name(self, index):
                return self.names[index]

            def get_tensor_mode(self, name):
                return "INPUT" if name == self.names[0] else "OUTPUT"

            def get_tensor_dtype(self, name):
                return "FLOAT"

            def create_execution_context(self):
                fake.record("create_execution_context")
                return Context(self)

        class Context:
            def __init__(self, engine):
                self.engine, self.shape, self.addresses = engine, None, {}

            def set_input_shape(self, name, shape):
                fake.record("set_input_shape", name, tuple(shape))
                self.shape = tuple(shape)
                return True

            def get_tensor_shape(self, name):
                fake.record("get_tensor_shape", name)
                per_sample = self.engine.session.get_outputs()[0].shape[1:]
                return (self.shape[0], *per_sample)

            def set_tensor_address(self, name, address):
                fake.record("set_tensor_address", name)
                self.addresses[name] = address

            def execute_async_v3(self, stream):
                fake.record("execute_async_v3", stream)
                in_name, out_name = self.engine.names
                count = int(np.prod(self.shape))
                raw = (ctypes.c_float * count).from_address(self.addresses[in_name])
                x = np.ctypeslib.as_array(raw).reshape(self.shape).copy()
                y = np.ascontiguousarray(self.engine.session.run(None, {in_name: x})[0])
                ctypes.memmove(self.addresses[out_name], y.ctypes.data, y.nbytes)
                return True

        self.Builder, self.OnnxParser, self.Runtime = Builder, Parser, Runtime

    def record(self, name, *args):
        self.calls.append((name, args))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def args(self, name) -> list[tuple]:
        return [args for call, args in self.calls if call == name]


# ------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def prepared():
    """test_resnet on the CPU, batch 2."""
    return prepare_model(MODEL, CommonOptions(batch_size=2))


def onnx_runner(path: Path):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def assert_matches(prepared, run, precision: str, batch_sizes=(2,)) -> None:
    """The ONNX output agrees with PyTorch within the TensorRT tolerance of ``precision``."""
    tolerance = tolerance_for("tensorrt", precision)
    for batch in batch_sizes:
        x = prepared.sample_input(batch)
        reference = prepared.run(x).numpy()
        figures = compare(reference, run(x.numpy()), tolerance)
        assert figures.within_tolerance, f"{precision} batch {batch}: {figures} vs {tolerance}"
        assert figures.top1_agree == 1.0, f"{precision} batch {batch}: top-1 {figures}"


def make_job(tmp_path: Path, **options) -> ExportJob:
    """A TensorRT job with the CLI's defaults, prepared on the CPU (bypasses --device cuda)."""
    values = {"batch_size": 2, **options}
    job = make_export_job(TensorRTBackend(), MODEL, values)
    job.prepared = prepare_model(MODEL, job.common)
    return job


def onnx_initializers(model) -> dict[str, np.ndarray]:
    return {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}


# ------------------------------------------------------------------ CLI, registry, doctor


def test_registered_with_help(cli):
    assert "tensorrt" in create_builtin_registry().names(), "tensorrt backend not registered"
    result = cli("export", "tensorrt", "--help")
    assert result.exit_code == 0, f"help failed: {result.stderr}"
    assert "TensorRT engine" in result.stdout, "help text missing"
    command = typer.main.get_command(app).commands["export"].commands["tensorrt"]
    flags = {opt for param in command.params for opt in param.opts}
    for flag in (
        "--mode",
        "--workspace",
        "--opset",
        "--dynamic-batch",
        "--batch-min",
        "--batch-max",
        "--calibration-data",
        "--calibration-samples",
        "--calibration-steps",
        "--random-calibration",
        "--keep-onnx",
        "--verbose",
    ):
        assert flag in flags, f"{flag} is not an option of `timmx export tensorrt`"


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the export gets past validation (model lookup or preparation)."""

    def forbidden(*args, **kwargs):
        raise AssertionError("validation should have stopped the export before any work")

    monkeypatch.setattr(core_model, "check_model_name", forbidden)
    monkeypatch.setattr(core_model, "prepare_model", forbidden)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "add --device cuda"),
        (("--device", "cpu", "--mode", "int8"), "add --device cuda"),
        (("--device", "cuda", "--opset", "17"), "use >= 18"),
        (("--device", "cuda", "--workspace", "0"), "--workspace is in GiB and must be > 0"),
        (("--device", "cuda", "--workspace", "-2"), "--workspace is in GiB and must be > 0"),
        (("--device", "cuda", "--batch-max", "8"), "add --dynamic-batch"),
        (("--device", "cuda", "--batch-min", "2"), "add --dynamic-batch"),
        (("--device", "cuda", "--dynamic-batch"), "--batch-size >= 2"),
        (
            ("--device", "cuda", "--dynamic-batch", "--batch-size", "4", "--batch-max", "3"),
            "--batch-min <= --batch-size <= --batch-max",
        ),
        (
            ("--device", "cuda", "--dynamic-batch", "--batch-size", "2", "--batch-min", "3"),
            "--batch-min <= --batch-size <= --batch-max",
        ),
        (
            ("--device", "cuda", "--dynamic-batch", "--batch-size", "2", "--batch-min", "0"),
            "--batch-min must be >= 1",
        ),
        (
            ("--device", "cuda", "--dynamic-batch", "--batch-size", "2", "--batch-max", "4096"),
            "--batch-max must be <= 1024",
        ),
        (("--device", "cuda", "--mode", "int8"), "needs calibration data"),
        (("--device", "cuda", "--mode", "fp16", "--random-calibration"), "would be ignored"),
        (
            ("--device", "cuda", "--mode", "int8", "--calibration-data", "/nonexistent/x"),
            "does not exist",
        ),
        (
            ("--device", "cuda", "--mode", "int8", "--calibration-samples", "8"),
            "need a calibration source",
        ),
        (("--device", "cuda", "--mean", "0.5", "0.5", "0.5"), "add --normalize"),
    ],
)
def test_invalid_options_exit_2_before_any_work(cli, no_work, tmp_path, args, message):
    out = tmp_path / "out"
    out.mkdir()
    result = cli("export", "tensorrt", MODEL, "-o", out / "m.engine", *args)
    assert result.exit_code == 2, f"{args}: exit {result.exit_code}, stderr {result.stderr}"
    assert message in result.stderr, f"{args}: {message!r} not in {result.stderr!r}"
    assert leftovers(out) == [], f"{args}: files left behind: {leftovers(out)}"


def test_unknown_mode_is_a_usage_error(cli, no_work):
    result = cli("export", "tensorrt", MODEL, "--device", "cuda", "--mode", "int4")
    assert result.exit_code == 2, f"exit {result.exit_code}"
    assert "int4" in result.stderr, f"the bad value is not named: {result.stderr}"


def _deps(monkeypatch, *, version, driver):
    monkeypatch.setattr(tensorrt_backend, "tensorrt_version", lambda: version)
    monkeypatch.setattr(tensorrt_backend, "nvidia_driver", lambda: driver)


@pytest.mark.parametrize(
    ("version", "driver", "message"),
    [
        (None, "NVIDIA H100, driver 560.35", "pip install tensorrt"),
        ("8.6.1", "NVIDIA H100, driver 560.35", "older than 10"),
        ("10.13.0.35", None, "no NVIDIA GPU/driver found"),
    ],
)
def test_dependencies_checked_after_validation(
    cli, no_work, monkeypatch, tmp_path, version, driver, message
):
    _deps(monkeypatch, version=version, driver=driver)
    result = cli("export", "tensorrt", MODEL, "--device", "cuda", "-o", tmp_path / "m.engine")
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.stderr}"
    assert message in result.stderr, f"{message!r} not in {result.stderr!r}"
    assert leftovers(tmp_path) == [], f"files left: {leftovers(tmp_path)}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
def test_without_cuda_stops_at_device_check(cli, monkeypatch, tmp_path):
    _deps(monkeypatch, version="10.13.0.35", driver="NVIDIA H100, driver 560.35")
    result = cli("export", "tensorrt", MODEL, "--device", "cuda", "-o", tmp_path / "m.engine")
    assert result.exit_code == 2, f"exit {result.exit_code}: {result.stderr}"
    assert "--device cuda needs an NVIDIA GPU" in result.stderr, result.stderr
    assert leftovers(tmp_path) == [], f"files left: {leftovers(tmp_path)}"


def test_doctor_reports_version_gpu_and_install(cli, monkeypatch):
    _deps(monkeypatch, version=None, driver=None)
    rows = {r["backend"]: r for r in json.loads(cli("doctor", "--json").stdout)["backends"]}
    row = rows["tensorrt"]
    assert row["available"] is False, f"unavailable without TensorRT: {row}"
    assert "tensorrt" in row["versions"], f"TensorRT version not reported: {row}"
    assert "pip install tensorrt" in row["install"], f"install command missing: {row}"
    assert "no NVIDIA GPU/driver found" in row["detail"], f"GPU state missing: {row}"

    _deps(monkeypatch, version="11.0.0.1", driver="NVIDIA H100 80GB HBM3, driver 575.51")
    row = {r["backend"]: r for r in json.loads(cli("doctor", "--json").stdout)["backends"]}[
        "tensorrt"
    ]
    assert row["available"] is True, f"TensorRT 11 with a GPU should be available: {row}"
    assert row["versions"]["tensorrt"] == "11.0.0.1", f"version: {row}"
    assert "GPU: NVIDIA H100 80GB HBM3, driver 575.51" in row["detail"], f"GPU: {row}"


def test_nvidia_driver_probe(monkeypatch, tmp_path):
    smi = SimpleNamespace(returncode=0, stdout="NVIDIA H100 80GB HBM3, 560.35.03\n")
    monkeypatch.setattr(tensorrt_backend.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(tensorrt_backend.subprocess, "run", lambda *a, **k: smi)
    assert nvidia_driver() == "NVIDIA H100 80GB HBM3, driver 560.35.03", "nvidia-smi parse"

    monkeypatch.setattr(tensorrt_backend.shutil, "which", lambda name: None)
    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  560.35.03  Fri Aug 16\n")
    monkeypatch.setattr(tensorrt_backend, "NVIDIA_PROC_VERSION", proc)
    assert nvidia_driver() == "NVIDIA driver 560.35.03", "kernel module version parse"

    monkeypatch.setattr(tensorrt_backend, "NVIDIA_PROC_VERSION", tmp_path / "absent")
    assert nvidia_driver() is None, "no driver should be reported as None"


def test_python_api_validates_like_the_cli(no_work, tmp_path):
    with pytest.raises(ConfigurationError, match="add --device cuda"):
        timmx.export("tensorrt", MODEL, output=tmp_path / "m.engine", mode="fp16")
    with pytest.raises(ConfigurationError, match="needs calibration data"):
        timmx.export("tensorrt", MODEL, output=tmp_path / "m.engine", device="cuda", mode="int8")
    with pytest.raises(ConfigurationError, match="choose one of: fp32, fp16, int8"):
        timmx.export("tensorrt", MODEL, device="cuda", mode="int4")
    assert leftovers(tmp_path) == [], f"files left: {leftovers(tmp_path)}"


# ------------------------------------------------------------------ the ONNX intermediate


def test_fp32_intermediate_dynamic_batch_any_arg_name(prepared, tmp_path):
    """Inline weights, metadata, a symbolic batch, whatever the forward argument is called."""

    class Renamed(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values_nchw):
            return self.inner(pixel_values_nchw)

    renamed = dataclasses.replace(prepared, module=Renamed(prepared.module).eval())
    path = tmp_path / "m.onnx"
    export_intermediate_onnx(renamed, path, mode="fp32", opset=18, dynamic_batch=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"], "external data written"
    model = onnx.load(str(path))
    assert all(not i.data_location for i in model.graph.initializer), "weights not inline"
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value, f"batch not symbolic: {batch_dim}"
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["model"] == MODEL, f"metadata missing: {metadata}"
    assert_matches(prepared, onnx_runner(path), "fp32", batch_sizes=(2, 5))


def test_fp16_intermediate_is_a_float16_graph_with_float32_io(tmp_path):
    vit = prepare_model("test_vit", CommonOptions(batch_size=2))
    path = tmp_path / "m.onnx"
    export_intermediate_onnx(vit, path, mode="fp16", opset=18)
    model = onnx.load(str(path))
    float_types = {
        i.data_type
        for i in model.graph.initializer
        if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    }
    assert float_types == {onnx.TensorProto.FLOAT16}, f"weights not all fp16: {float_types}"
    for value in (model.graph.input[0], model.graph.output[0]):
        elem = value.type.tensor_type.elem_type
        assert elem == onnx.TensorProto.FLOAT, f"{value.name} is not float32 ({elem})"
    assert_matches(vit, onnx_runner(path), "fp16")


def _activation_scales(module) -> list[float]:
    return [
        float(node.args[1])
        for node in module.graph.nodes
        if node.op == "call_function" and "quantize_per_tensor" in str(node.target)
    ]


def test_int8_scales_come_from_this_calibration_set(prepared):
    """No calibration cache: other data gives other scales; the same data the same ones."""
    low = [prepared.sample_input(2, seed=s) * 0.25 for s in (10, 11)]
    high = [prepared.sample_input(2, seed=s) * 2.0 for s in (10, 11)]
    scales_low = _activation_scales(quantize_int8(prepared, low))
    scales_high = _activation_scales(quantize_int8(prepared, high))
    assert scales_low, "no activation quantization in the graph"
    assert scales_low[0] * 4 < scales_high[0], f"input scales {scales_low[0]} vs {scales_high[0]}"
    assert scales_low != scales_high, "a different calibration set gave the same scales"


def test_int8_without_calibration_is_a_configuration_error(prepared, tmp_path):
    with pytest.raises(ConfigurationError, match="calibration"):
        export_intermediate_onnx(prepared, tmp_path / "m.onnx", mode="int8", opset=18)
    with pytest.raises(ConfigurationError, match="no batches"):
        quantize_int8(prepared, [])
    assert leftovers(tmp_path) == [], "nothing may be written"


# ------------------------------------------------------------------ the builder calls


def _onnx_file(tmp_path: Path, input_name="pixels", batch="N") -> Path:
    """A tiny ONNX graph (Relu) with a symbolic batch, to feed the stand-in builder."""
    helper = onnx.helper
    x = helper.make_tensor_value_info(input_name, onnx.TensorProto.FLOAT, [batch, 3, 8, 8])
    y = helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [batch, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", [input_name], ["out"])], "g", [x], [y])
    path = tmp_path / "tiny.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.save(model, path)
    return path


def test_builder_sequence_tensorrt_10_fp32_dynamic(tmp_path):
    trt = FakeTensorRT("10.13.0.35")
    engine = build_engine(
        _onnx_file(tmp_path),
        mode="fp32",
        profile=BatchProfile(1, 4, 16),
        workspace_gib=2,
        trt=trt,
    )
    assert engine == _onnx_file(tmp_path).read_bytes(), "serialized engine not returned"
    assert trt.names() == [
        "Builder",
        "create_network",
        "OnnxParser",
        "parse",
        "create_builder_config",
        "set_memory_pool_limit",
        "clear_flag",
        "create_optimization_profile",
        "set_shape",
        "add_optimization_profile",
        "build_serialized_network",
    ], f"unexpected call sequence: {trt.calls}"
    assert trt.args("create_network") == [(1 << 0,)], "10.x must opt in to STRONGLY_TYPED"
    assert trt.args("set_memory_pool_limit") == [("WORKSPACE", 2 * 2**30)], "workspace bytes"
    assert trt.args("clear_flag") == [("TF32",)], "fp32 must switch TF32 off"
    # The input's name and shape come from the parsed network, not the model's argument name.
    assert trt.args("set_shape") == [("pixels", (1, 3, 8, 8), (4, 3, 8, 8), (16, 3, 8, 8))], (
        f"profile: {trt.args('set_shape')}"
    )
    assert trt.args("Builder") == [("WARNING",)], "quiet logger by default"


@pytest.mark.parametrize("mode", ["fp16", "int8"])
def test_builder_tensorrt_11_has_no_precision_flags(tmp_path, mode):
    trt = FakeTensorRT("11.0.0.1")
    build_engine(_onnx_file(tmp_path, batch=2), mode=mode, verbose=True, trt=trt)
    assert trt.args("create_network") == [(0,)], "11.x networks are always strongly typed"
    for absent in ("set_flag", "clear_flag", "config_set", "set_shape", "set_memory_pool_limit"):
        assert absent not in trt.names(), f"{mode}: unexpected {absent}: {trt.calls}"
    assert trt.args("Builder") == [("VERBOSE",)], "--verbose selects the verbose logger"


def test_builder_errors(tmp_path):
    onnx_path = _onnx_file(tmp_path)
    with pytest.raises(ConfigurationError, match=r"TensorRT 8\.6\.1 is too old"):
        build_engine(onnx_path, mode="fp32", trt=FakeTensorRT("8.6.1"))
    bad = FakeTensorRT(parse_errors=["In node 3 (Foo): UNSUPPORTED_NODE"])
    with pytest.raises(ExportError, match="UNSUPPORTED_NODE"):
        build_engine(onnx_path, mode="fp32", trt=bad)
    assert "build_serialized_network" not in bad.names(), "built after a parse failure"
    with pytest.raises(ExportError, match="could not build the engine"):
        build_engine(onnx_path, mode="fp32", trt=FakeTensorRT(build_fails=True))


def test_engine_runner_binds_buffers_by_name(tmp_path):
    trt = FakeTensorRT()
    runner = EngineRunner(_onnx_file(tmp_path).read_bytes(), trt=trt, device="cpu")
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    out = runner(x)
    np.testing.assert_allclose(out, np.maximum(x, 0), err_msg="runner output is not the engine's")
    assert trt.names()[-6:] == [
        "create_execution_context",
        "set_input_shape",
        "get_tensor_shape",
        "set_tensor_address",
        "set_tensor_address",
        "execute_async_v3",
    ], f"runtime call order: {trt.calls}"
    assert trt.args("set_input_shape") == [("pixels", (3, 3, 8, 8))], "input shape per call"


# ------------------------------------------------------------------ convert + verify via stand-in


def test_convert_and_verify_fp32_with_stand_in(tmp_path, monkeypatch):
    trt = FakeTensorRT("10.13.0.35")
    monkeypatch.setattr(tensorrt_build, "import_tensorrt", lambda: trt)
    job = make_job(tmp_path, keep_onnx=True, workspace=1.5)
    artifact = tmp_path / "m.engine"
    backend = TensorRTBackend()
    backend.convert(job, artifact)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "m.engine",
        "m.engine.json",
        "m.onnx",
    ], f"outputs: {leftovers(tmp_path)}"
    metadata = json.loads((tmp_path / "m.engine.json").read_text())
    assert metadata["tensorrt_version"] == "10.13.0.35", f"metadata: {metadata}"
    assert metadata["precision"] == "fp32", f"metadata: {metadata}"
    assert metadata["batch_profile"] == "static", f"metadata: {metadata}"
    assert metadata["model"] == MODEL, f"metadata: {metadata}"
    assert job.details["tensorrt"] == "10.13.0.35", f"details: {job.details}"
    report = backend.verify(job, artifact)
    assert report.checked and report.passed, f"verification: {report}"
    assert report.max_abs_err <= 1e-4, f"fp32 max abs err {report.max_abs_err}"


def test_convert_int8_dynamic_with_calibration_tensor(tmp_path, monkeypatch):
    """int8: calibration batches from a tensor file feed PT2E; the Q/DQ ONNX suits TensorRT."""
    trt = FakeTensorRT("11.0.0.1")
    monkeypatch.setattr(tensorrt_build, "import_tensorrt", lambda: trt)
    data = tmp_path / "calib.pt"
    reference = prepare_model(MODEL, CommonOptions(batch_size=2))
    torch.save(reference.sample_input(6, seed=7), data)
    out = tmp_path / "out"
    out.mkdir()
    job = make_job(
        tmp_path,
        mode="int8",
        calibration_data=data,
        dynamic_batch=True,
        batch_max=4,
        keep_onnx=True,
    )
    backend = TensorRTBackend()
    backend.convert(job, out / "m.engine")
    assert job.details["calibration"].startswith("6 samples in 3 batches of 2"), job.details
    assert trt.args("set_shape")[0][1:] == (
        (1, 3, 160, 160),
        (2, 3, 160, 160),
        (4, 3, 160, 160),
    ), f"profile: {trt.args('set_shape')}"
    assert "clear_flag" not in trt.names(), "TF32 is only switched off for fp32"

    model = onnx.load(str(out / "m.onnx"))
    ops = [n.op_type for n in model.graph.node]
    convs = ops.count("Conv") + ops.count("Gemm")
    assert ops.count("QuantizeLinear") >= convs, f"activations not quantized: {ops}"
    assert ops.count("DequantizeLinear") >= 2 * convs, f"weights not Q/DQ: {ops}"
    values = onnx_initializers(model)
    constants = {
        out: onnx.numpy_helper.to_array(n.attribute[0].t)
        for n in model.graph.node
        if n.op_type == "Constant"
        for out in n.output
    }
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale = values.get(node.input[1], constants.get(node.input[1]))
        assert scale is not None, f"{node.name}: scale is computed, TensorRT needs a constant"
        assert scale.dtype == np.float32 and (scale > 0).all(), f"{node.name}: scale {scale}"
        zero = values.get(node.input[2], constants.get(node.input[2]))
        assert zero is not None and zero.dtype == np.int8, f"{node.name}: zero point {zero}"
        assert not zero.any(), f"{node.name}: TensorRT needs zero points of 0"
    int8_weights = [v for v in values.values() if v.dtype == np.int8 and v.ndim >= 2]
    assert len(int8_weights) == convs, f"{len(int8_weights)} int8 weights for {convs} layers"

    report = backend.verify(job, out / "m.engine")
    assert report.checked and report.passed, f"int8 verification: {report}"
    assert report.batch_sizes == (2, 3), f"dynamic batch verified at {report.batch_sizes}"
    assert report.top1_agree == 1.0, f"int8 top-1 agreement {report.top1_agree}"
