"""`timmx benchmark`: the table's structure, the JSON, reuse of artifacts and the error paths.

Its measurements are not tested (a user command on a shared machine); the runs are tiny models
with two formats and two timed runs.
"""

import json

import pytest

from timmx.core.bench.benchmark import (
    BenchmarkReport,
    markdown,
    parse_threads,
    table_cells,
)
from timmx.core.bench.measure import percentile
from timmx.core.bench.system import cpu_info, usable_cores

TINY = ("--runs", 2, "--warmup", 0, "--threads", "1,2")


def test_parse_threads():
    assert parse_threads("1,all") == [1, usable_cores()] if usable_cores() > 1 else [1]
    assert parse_threads("2, 1,2") == [2, 1]
    for bad in ("0", "x", "", "1,-2"):
        with pytest.raises(Exception, match="--threads"):
            parse_threads(bad)


def test_percentile_matches_linear_interpolation():
    assert percentile([1.0], 90) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([0.0, 10.0], 90) == pytest.approx(9.0)


def test_cpu_info_reads_model_and_isa(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU\nflags\t\t: fpu avx2 fma avx512f\n")
    info = cpu_info(cpuinfo)
    assert info["model"] == "Test CPU"
    assert info["isa"] == ["fma", "avx2", "avx512f"]


def _report(rows, threads=(1, 2)):
    system = {
        "cpu": {"model": "Test CPU", "isa": ["avx2"], "logical_cores": 2, "usable_cores": 2},
        "os": "Linux",
        "python": "3.11",
        "timmx": "0",
        "load_average": [0.5, 0.4, 0.3],
        "versions": {"torch": "2"},
    }
    return BenchmarkReport("m", ["onnx", "c", "ncnn"], list(threads), 2, 0, system, {}, rows)


def test_table_cells_marks_fixed_threads_failures_and_notes():
    timing = {"threads": 1, "applied": "1", "median_ms": 2.0, "p90_ms": 3.0, "load_ms": 5.0}
    fixed = {"threads": 2, "applied": "1 (fixed)", "note": "same runtime as at 1 thread(s)"}
    verify = {"checked": True, "passed": True, "max_abs_err": 1e-6, "cosine": 1.0}
    rows = [
        {"format": "torch", "status": "baseline", "precision": "fp32", "timings": [timing]},
        {"format": "c", "status": "passed", "precision": "fp32", "verify": verify,
         "size_bytes": 2048, "timings": [timing, fixed], "peak_rss_bytes": 2**20},
        {"format": "ncnn", "status": "export_failed", "reason": "pnnx could not convert it"},
    ]  # fmt: skip
    headers, cells, notes = table_cells(_report(rows))
    assert headers[:6] == ["", "format", "precision", "size", "load ms", "first ms"]
    assert headers[6:8] == ["1 thread", "2 threads"]
    assert all(len(row) == len(headers) for row in cells)
    torch_row, c_row, ncnn_row = cells
    assert torch_row[:2] == ["◆", "PyTorch eager"] and torch_row[4] == "-"
    assert c_row[0] == "✅" and c_row[6] == "2.00 / 3.00" and c_row[7] == "1 (fixed)"
    assert ncnn_row[0] == "❌"
    number = notes.index("ncnn: pnnx could not convert it") + 1
    assert ncnn_row[3] == f"failed [{number}]"
    assert any(note.startswith("c: load ms includes compiling") for note in notes)
    text = markdown(_report(rows))
    assert (
        "| ✅ | c | fp32 | 2.0 KiB |" in text
        and f"{number}. ncnn: pnnx could not convert it" in text
    )


def test_benchmark_two_formats_table_and_json(cli, tmp_path, live_checkpoint):
    out = tmp_path / "bench.json"
    arts = tmp_path / "arts"
    weights = ("--checkpoint", live_checkpoint("test_resnet"))
    result = cli(
        "benchmark", "test_resnet", "--formats", "onnx,torchscript", *TINY,
        "--artifacts", arts, "--out", out, *weights,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "timmx benchmark test_resnet" in text and "CPU:" in text and "ISA:" in text
    assert "onnxruntime" in text and "load average" in text
    for needle in ("PyTorch eager", "onnx", "torchscript", "1 thread", "2 threads", "✅"):
        assert needle in text, f"{needle!r} missing from the table:\n{text}"
    data = json.loads(out.read_text())
    assert data["threads"] == [1, 2] and data["runs"] == 2
    assert [row["format"] for row in data["rows"]] == ["torch", "onnx", "torchscript"]
    for row in data["rows"]:
        assert [t["threads"] for t in row["timings"]] == [1, 2]
        for timing in row["timings"]:
            assert timing["runs"] == 2 and timing["median_ms"] > 0
            assert timing["p90_ms"] >= timing["median_ms"] and timing["first_ms"] > 0
            assert timing["applied"] == str(timing["threads"])
        assert row["peak_rss_bytes"] > row["base_rss_bytes"] > 0
    onnx = data["rows"][1]
    assert onnx["status"] == "passed" and onnx["verify"]["max_abs_err"] < 1e-4
    assert onnx["precision"] == "fp32" and onnx["size_bytes"] > 0 and not onnx["reused"]
    assert onnx["thread_control"] == "onnxruntime intra_op_num_threads"
    assert (arts / "test_resnet.onnx").is_file() and (arts / "test_resnet.pt").is_file()

    # --artifacts again: the onnx file is reused and verified again, not exported
    again = cli(
        "benchmark", "test_resnet", "--formats", "onnx", "--runs", 1, "--warmup", 0,
        "--threads", 1, "--artifacts", arts, "--json", *weights,
    )  # fmt: skip
    assert again.exit_code == 0, again.stderr
    row = json.loads(again.stdout)["rows"][1]
    assert row["reused"] and row["status"] == "passed" and "export_seconds" not in row
    # timm's random init differs in every process: a reused artifact is then not verified
    again = cli(
        "benchmark", "test_resnet", "--formats", "onnx", "--runs", 1, "--warmup", 0,
        "--threads", 1, "--artifacts", arts, "--json",
    )  # fmt: skip
    row = json.loads(again.stdout)["rows"][1]
    assert row["status"] == "unchecked" and "random init" in row["verify"]["note"]


def test_benchmark_live_weights_exports_and_verifies(cli, tmp_path):
    # --live-weights is the benchmark's own flag: it draws a checkpoint and must not reach the
    # export as an option (it did once: "Unknown option 'live_weights'" on every row)
    arts = tmp_path / "arts"
    args = (
        "benchmark", "test_resnet", "--formats", "onnx", "--runs", 1, "--warmup", 0,
        "--threads", 1, "--live-weights", "--json", "--artifacts", arts,
    )  # fmt: skip
    for reused in (False, True):
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["options"]["live_weights"] is True and data["options"]["checkpoint"]
        row = data["rows"][1]
        assert row["status"] == "passed" and row["reused"] is reused, row
        assert row["verify"]["passed"] is True and row["timings"][0]["median_ms"] > 0
        # live weights are verified on the real photos, not on noise, and so is a reused
        # artifact (it was verified on noise once: efficientnet_b0's logits then reach 1e4)
        inputs = row["verify"]["inputs"]
        assert "images of --verify-data" in inputs and inputs.endswith("photos"), inputs
        # and timed on a photo too (on noise, live efficientnet_b0 ran the C 2x slower)
        for timed in (row, data["rows"][0]):
            assert timed["timing_input"].startswith("1 image(s) of --verify-data"), timed


def test_benchmark_verification_failure_is_timed_and_marked(cli):
    result = cli(
        "benchmark", "test_resnet", "--formats", "onnx", "--runs", 1, "--warmup", 0,
        "--threads", 1, "--atol", 0, "--rtol", 0, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    row = json.loads(result.stdout)["rows"][1]
    assert row["status"] == "verify_failed", row
    assert "Verification failed" in row["reason"] and row["verify"]["passed"] is False
    assert row["timings"][0]["median_ms"] > 0  # exported again without verification, timed


def test_benchmark_format_that_cannot_start_is_a_failed_row(cli):
    result = cli(
        "benchmark", "test_resnet", "--formats", "ncnn", "--batch-size", 2,
        "--runs", 1, "--warmup", 0, "--threads", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "❌" in result.stdout and "ncnn has no batch dimension" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--formats", "onnx,nope"), "Unknown export format 'nope'"),
        (("--threads", "0"), "--threads takes thread counts"),
        (("--live-weights", "--pretrained"), "--live-weights and --pretrained"),
        (("--atol", "-1"), "--atol"),
    ],
)
def test_benchmark_bad_input_exits_2(cli, args, message):
    result = cli("benchmark", "test_resnet", *args)
    assert result.exit_code == 2, result.stdout
    assert message in result.stderr


def test_benchmark_unknown_model_and_export_only_flags(cli):
    result = cli("benchmark", "resnet5000")
    assert result.exit_code == 2 and "Unknown model 'resnet5000'" in result.stderr
    result = cli("benchmark", "test_resnet", "--output", "x.onnx")
    assert result.exit_code == 2  # a benchmark names its own artifacts


def test_timing_input_is_the_first_photo_through_the_eval_transform(tmp_path):
    import numpy as np

    from timmx.core.bench.worker import timing_input
    from timmx.core.images import image_files, load_images
    from timmx.core.model import PreparedModel
    from timmx.testing import write_photo_folder

    photos = write_photo_folder(tmp_path / "photos")
    info = {
        "name": "m", "input_size": (3, 40, 48), "batch_size": 3, "device": "cpu",
        "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3), "normalize": False, "softmax": False,
        "interpolation": "bilinear", "crop_pct": 0.875, "num_classes": 10, "num_features": 8,
        "labels": None, "weights": "random",
    }  # fmt: skip
    x, what = timing_input(info, {"verify_data": str(photos)})
    files = image_files(photos, "--verify-data")[:3]
    want, _ = load_images(PreparedModel(module=None, **info), files, strict=True, flag="x")
    assert x.shape == (3, 3, 40, 48) and x.dtype == np.float32
    np.testing.assert_array_equal(x, want.numpy())
    assert what.startswith("3 image(s) of --verify-data") and files[0].name in what
    noise, what = timing_input(info, {})
    assert what == "seeded random input" and noise.shape == x.shape
