"""`timmx matrix`: shards, resume, parallel jobs, failure records, and `report` merging."""

import json

import pytest

from timmx.core.bench.matrix import Pair, parse_shard, pending, plan, read_records
from timmx.core.bench.report import cell, failing_figure, markdown, merge, short_reason

MODELS = [("a", None), ("b", "Fam"), ("c", None)]


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_plan_deals_pairs_round_robin_and_shards_cover_everything():
    pairs = plan(MODELS, ["onnx", "c"])
    assert [(p.model, p.format) for p in pairs[:3]] == [("a", "onnx"), ("a", "c"), ("b", "onnx")]
    assert pairs[2].family == "Fam"
    shards = [plan(MODELS, ["onnx", "c"], (i, 4)) for i in range(4)]
    assert sorted((p for s in shards for p in s), key=repr) == sorted(pairs, key=repr)
    assert all(not set(a) & set(b) for i, a in enumerate(shards) for b in shards[i + 1 :])
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) == (0, 1)
    for bad in ("4/4", "x/2", "1", "1/0"):
        with pytest.raises(Exception, match="--shard"):
            parse_shard(bad)


def test_pending_skips_recorded_pairs_and_retries_failures(tmp_path):
    out = tmp_path / "m.jsonl"
    out.write_text(
        json.dumps({"model": "a", "format": "onnx", "status": "passed"})
        + "\n"
        + json.dumps({"model": "a", "format": "c", "status": "export_failed"})
        + '\n{"model": "b", "form'  # an interrupted write: ignored
    )
    pairs = plan(MODELS[:2], ["onnx", "c"])
    assert pending(pairs, out, resume=False, retry_failed=False) == pairs
    assert pending(pairs, out, resume=True, retry_failed=False) == pairs[2:]
    assert pending(pairs, out, resume=True, retry_failed=True) == [pairs[1], *pairs[2:]]
    assert len(read_records(out)) == 2


def test_report_cells_and_merge(tmp_path):
    verify = {"checked": True, "passed": False, "max_abs_err": 0.3, "cosine": 0.95,
              "min_cosine": 0.999, "atol": 1e-4, "top1_agree": 1.0}  # fmt: skip
    assert failing_figure(verify) == "cosine 0.9500 < 0.999"
    assert failing_figure({**verify, "cosine": 1.0}) == "max abs 0.3 > atol 0.0001"
    assert cell({"status": "passed", "verify": {"max_abs_err": 1.5e-6}}) == "✅ 1.5e-06"
    assert cell({"status": "unchecked"}) == "✅ structure"
    assert cell({"status": "verify_failed", "verify": verify}).startswith("❎ cosine")
    long = "ncnn export failed: ExportError: " + "x" * 200 + "\nsecond line"
    text = cell({"status": "export_failed", "reason": long})
    assert text.startswith("❌ xxx") and len(text) <= 82 and text.endswith("…")
    assert short_reason("Error: RuntimeError: unsupported op aten::foo") == (
        "unsupported op aten::foo"
    )
    first, second = tmp_path / "0.jsonl", tmp_path / "1.jsonl"
    first.write_text(
        json.dumps({"model": "a", "format": "onnx", "status": "export_failed",
                    "reason": "boom", "finished": "2025-01-01T00:00:00"}) + "\n"
    )  # fmt: skip
    second.write_text(
        json.dumps({"model": "a", "format": "onnx", "status": "passed", "family": "Fam",
                    "verify": {"max_abs_err": 1e-6}, "finished": "2025-01-02T00:00:00"}) + "\n"
        + json.dumps({"model": "b", "format": "c", "status": "verify_failed",
                      "verify": verify, "finished": "2025-01-01T00:00:00"}) + "\n"
    )  # fmt: skip
    records = merge([first, second])
    assert [(r["model"], r["status"]) for r in records] == [("a", "passed"), ("b", "verify_failed")]
    table = markdown(records, ["onnx", "c"])
    assert "| onnx | 1/1 | 100% |" in table and "| c | 0/1 | 0% |" in table
    assert "| Fam | `a` | ✅ 1.0e-06 | · |" in table


def test_matrix_shards_resume_jobs_and_report(cli, tmp_path):
    models = tmp_path / "models.txt"
    models.write_text("test_resnet  # ResNet\n# a comment line\ntest_efficientnet\n")
    out0, out1 = tmp_path / "s0.jsonl", tmp_path / "s1.jsonl"
    # shard 0/2 of 2 models x 1 format: test_resnet only
    result = cli("matrix", "--models", models, "--formats", "torchscript", "--shard", "0/2",
                 "--out", out0)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (record,) = _lines(out0)
    assert (record["model"], record["format"], record["status"]) == (
        "test_resnet",
        "torchscript",
        "passed",
    )
    assert record["family"] == "ResNet" and record["shard"] == "0/2"
    assert record["seconds"] > 0 and record["size_bytes"] > 0 and record["precision"] == "fp32"
    assert record["verify"]["max_abs_err"] < 1e-4
    # shard 1/2 in another file, two jobs at once, plus a pair that fails to export
    result = cli("matrix", "--models", models, "--formats", "torchscript,ncnn", "--shard", "1/2",
                 "--out", out1, "--jobs", 2, "--batch-size", 2)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    got = {(r["model"], r["format"]): r for r in _lines(out1)}
    assert set(got) == {("test_resnet", "ncnn"), ("test_efficientnet", "ncnn")}
    assert all(r["status"] == "export_failed" for r in got.values())
    assert "no batch dimension" in got[("test_resnet", "ncnn")]["reason"]
    # --resume: the recorded pair is skipped, the missing one runs
    result = cli("matrix", "--models", models, "--formats", "torchscript", "--out", out0,
                 "--resume")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "1 already in" in result.stderr
    assert [r["model"] for r in _lines(out0)] == ["test_resnet", "test_efficientnet"]
    # report: both shards merged into one table
    md, merged = tmp_path / "report.md", tmp_path / "merged.jsonl"
    result = cli("matrix", "report", out0, out1, "--out", md, "--merged", merged)
    assert result.exit_code == 0, result.stderr
    table = md.read_text()
    assert "| torchscript | 2/2 | 100% |" in table and "| ncnn | 0/2 | 0% |" in table
    assert "| ResNet | `test_resnet` | ✅" in table and "❌ ncnn has no batch dimension" in table
    assert len(_lines(merged)) == 4


def test_matrix_live_weights_verify_on_photos(cli, tmp_path):
    out = tmp_path / "live.jsonl"
    result = cli("matrix", "--models", "test_resnet", "--formats", "torchscript", "--out", out,
                 "--live-weights")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (record,) = _lines(out)
    assert record["status"] == "passed", record
    inputs = record["verify"]["inputs"]
    assert "images of --verify-data" in inputs and inputs.endswith("photos"), inputs
    weights = tmp_path / "live.jsonl.weights"
    assert len(list(weights.glob("test_resnet-*.pth"))) == 1
    assert len(list((weights / "photos").glob("*.png"))) > 8


def test_matrix_timeout_is_recorded(cli, tmp_path):
    out = tmp_path / "t.jsonl"
    result = cli("matrix", "--models", "test_resnet", "--formats", "onnx", "--out", out,
                 "--timeout", 1)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (record,) = _lines(out)
    assert record["status"] == "timeout" and "timed out after 1 s" in record["reason"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Give --models"),
        (("--models", "resnet5000"), "Unknown model 'resnet5000'"),
        (("--models", "zzz*"), "matches no timm model"),
        (("--models", "test_resnet", "--shard", "2/2"), "--shard 2/2"),
        (("--models", "test_resnet", "--formats", "nope"), "Unknown export format"),
    ],
)
def test_matrix_bad_input_exits_2(cli, tmp_path, args, message):
    result = cli("matrix", *args, "--out", tmp_path / "x.jsonl")
    assert result.exit_code == 2, result.stdout
    assert message in result.stderr


def test_report_of_missing_or_empty_files_exits_2(cli, tmp_path):
    assert cli("matrix", "report", tmp_path / "none.jsonl").exit_code == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = cli("matrix", "report", empty)
    assert result.exit_code == 2 and "No matrix records" in result.stderr


def test_pair_is_hashable_and_ordered():
    assert len({Pair("a", "onnx"), Pair("a", "onnx")}) == 1
