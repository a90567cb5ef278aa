"""Accuracy on real data: a model trained on scikit-learn's handwritten digits, exported through
every reduced-precision path that runs here, measured with --eval-data on the held-out split.

Allowed top-1 drop against fp32 PyTorch: 2 points for int8, 0.5 for fp16, 0.3 (one image of
the 359) for fp32. Calibration uses the training split.
"""

import pytest

from timmx.testing.digits import EXPORT_FLAGS

FP32, FP16, INT8 = 0.3, 0.5, 2.0


def _export(export_json, tmp_path, digits, fmt, output, *flags, calibrate=False):
    extra = ["--verify-data", digits.test]
    if calibrate:
        extra += ["--calibration-data", digits.train]
    return export_json(
        fmt, "test_resnet", "-o", tmp_path / output, "--checkpoint", digits.checkpoint,
        *EXPORT_FLAGS, "--eval-data", digits.test, *extra, *flags,
    )  # fmt: skip


CASES = [
    ("onnx", "m.onnx", (), FP32, False),
    ("torchscript", "m.pt", (), FP32, False),
    ("c", "m_c", (), FP32, False),
    ("litert", "m.tflite", ("--mode", "fp16"), FP16, False),
    ("litert", "m.tflite", ("--mode", "dynamic-int8"), INT8, False),
    ("litert", "m.tflite", ("--mode", "int8"), INT8, True),
    ("executorch", "m.pte", ("--mode", "int8"), INT8, True),
    ("ncnn", "m_ncnn", (), FP16, False),
    ("ncnn", "m_ncnn", ("--no-fp16",), FP32, False),
    ("openvino", "m.xml", ("--mode", "fp16"), FP16, False),
    ("openvino", "m.xml", ("--mode", "int8"), INT8, True),
    ("mnn", "m.mnn", ("--mode", "fp16"), FP16, False),
    ("mnn", "m.mnn", ("--mode", "int8-weights"), INT8, False),
]


@pytest.mark.parametrize(
    ("fmt", "output", "flags", "allowed", "calibrate"),
    CASES,
    ids=[f"{c[0]}-{'-'.join(c[2]) or 'default'}" for c in CASES],
)
def test_held_out_accuracy(export_json, tmp_path, digits, fmt, output, flags, allowed, calibrate):
    data = _export(
        export_json, tmp_path, digits, fmt, output, *flags, "--max-accuracy-drop", str(allowed),
        calibrate=calibrate,
    )  # fmt: skip
    ev = data["eval"]
    held_out = len(list(digits.test.rglob("*.png")))
    assert ev["checked"] and ev["n"] == held_out and ev["classes"] == 10, ev
    assert ev["top1_torch"] >= 95.0, f"the trained model scores only {ev['top1_torch']}"
    assert ev["drop"] <= allowed, f"{fmt} {flags}: top-1 drop {ev['drop']:.2f} > {allowed}"
    assert ev["passed"] is True, ev
    print(f"\n{fmt} {' '.join(flags) or 'default'}: {ev}")


@pytest.mark.parametrize("flag", ["--int8", "--int4"])
def test_coreml_quantized_structure_only(export_json, tmp_path, digits, flag):
    data = _export(export_json, tmp_path, digits, "coreml", "m.mlpackage", flag)
    assert data["verify"]["checked"] is False, "Core ML cannot run on Linux"
    ev = data["eval"]
    assert ev["checked"] is False and "cannot run" in ev["note"], ev
    assert "bit weight tensors" in data["details"]["structure"], data["details"]


def test_tensorrt_int8_qdq_graph_in_onnxruntime(digits, tmp_path):
    """The ONNX graph TensorRT would build its int8 engine from, run in onnxruntime."""
    from timmx.backends._onnx_graph import onnxruntime_runner
    from timmx.backends.tensorrt import TensorRTBackend
    from timmx.backends.tensorrt.build import export_intermediate_onnx
    from timmx.core.calibration import load_calibration
    from timmx.core.evaluate import evaluate
    from timmx.core.model import prepare_model
    from timmx.core.pipeline import make_job

    job = make_job(
        TensorRTBackend(),
        "test_resnet",
        {
            "checkpoint": str(digits.checkpoint),
            "num_classes": 10,
            "input_size": (3, 32, 32),
            "mode": "int8",
            "calibration_data": str(digits.train),
            "calibration_samples": 64,
            "eval_data": str(digits.test),
        },
    )
    job.prepared = prepare_model(job.model_name, job.common)
    calibration = load_calibration(job)
    path = tmp_path / "int8.onnx"
    export_intermediate_onnx(
        job.model,
        path,
        mode="int8",
        opset=18,
        calibration_batches=calibration.batches(job.model.batch_size),
    )
    report = evaluate(job, onnxruntime_runner(path))
    assert report.top1_torch >= 95.0, report
    assert report.drop <= INT8, f"TensorRT int8 Q/DQ: top-1 drop {report.drop:.2f} > {INT8}"
    print(f"\ntensorrt int8 Q/DQ (onnxruntime): {report}")
