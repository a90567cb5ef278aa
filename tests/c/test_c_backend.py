"""The C target: `timmx export c` on every tiny timm model, options, artifact, errors."""

import json
import os
import re
import shlex
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_passed, custom_prepared, leftovers

from timmx.c.build import build_demo, find_compiler, run_demo
from timmx.core.registry import create_builtin_registry

TINY_MODELS = [
    "test_byobnet",
    "test_coatnet",
    "test_convnext",
    "test_convnext2",
    "test_convnext3",
    "test_efficientnet",
    "test_efficientnet_evos",
    "test_efficientnet_gn",
    "test_efficientnet_ln",
    "test_mambaout",
    "test_maxvit",
    "test_nfnet",
    "test_resnet",
    "test_vit",
    "test_vit2",
    "test_vit3",
    "test_vit4",
    "test_vit_relpos",
]
CC = find_compiler()
needs_cc = pytest.mark.skipif(CC is None, reason="needs a C compiler (gcc or clang)")


@pytest.fixture(scope="module")
def resnet_c(tmp_path_factory) -> tuple[Path, dict]:
    """test_resnet exported once for the artifact tests."""
    from typer.testing import CliRunner

    from timmx.cli.app import app

    out = tmp_path_factory.mktemp("c") / "test_resnet_c"
    result = CliRunner().invoke(app, ["export", "c", "test_resnet", "-o", str(out), "--json"])
    assert result.exit_code == 0, f"export failed: {result.stderr}"
    return out, json.loads(result.stdout.strip().splitlines()[-1])


def test_registered_and_help(cli) -> None:
    assert "c" in create_builtin_registry().names(), "the c backend is not registered"
    result = cli("export", "c", "--help")
    assert result.exit_code == 0, f"help failed: {result.stderr}"
    for flag in ("--prefix", "--embed-weights", "--nhwc-input", "--no-fuse", "--normalize"):
        assert flag in result.stdout, f"{flag} missing from help"


@needs_cc
@pytest.mark.parametrize("model", TINY_MODELS)
def test_tiny_model_matches_pytorch(export_json, tmp_path, model) -> None:
    data = export_json("c", model, "-o", tmp_path / "out")
    assert_passed(data, max_abs=1e-4)
    assert data["details"]["steps"] > 0, "no steps generated"


@needs_cc
def test_artifact_layout(resnet_c) -> None:
    out, data = resnet_c
    assert_passed(data, max_abs=1e-4)
    names = {p.name for p in out.iterdir()}
    expected = {
        "test_resnet.h",
        "test_resnet.c",
        "test_resnet_weights.bin",
        "main.c",
        "Makefile",
        "CMakeLists.txt",
        "README.md",
        "kernels",
    }
    assert expected <= names, f"missing files: {expected - names}"
    header = (out / "test_resnet.h").read_text()
    for macro in (
        "TEST_RESNET_ARENA_SIZE",
        "TEST_RESNET_WEIGHTS_SIZE",
        "TEST_RESNET_INPUT_SIZE",
        "TEST_RESNET_OUTPUT_SHAPE",
        "TEST_RESNET_MEAN",
        "TEST_RESNET_NUM_LABELS",
    ):
        assert f"#define {macro} " in header, f"{macro} missing from the header"
    arena = int(header.split("#define TEST_RESNET_ARENA_SIZE ")[1].split("u")[0])
    assert arena == data["details"]["arena_bytes"], "header arena size differs from the report"
    size = (out / "test_resnet_weights.bin").stat().st_size
    assert f"#define TEST_RESNET_WEIGHTS_SIZE {size}u" in header, "weights size macro is wrong"
    source = (out / "test_resnet.c").read_text()
    assert "malloc" not in source, "the generated model calls malloc"
    assert ": conv1.0 (Conv2d) + conv1.1 (BatchNorm2d)" in source, "steps lack timm module names"
    assert ": conv [relu, bn folded]" in source, "fusions are not described in the comments"
    assert "layer1.0" in source, "module names missing from step comments"
    assert not list(out.rglob("*.o")), "build products left in the artifact"


@needs_cc
def test_source_reads_top_to_bottom(resnet_c) -> None:
    """Ruled sections in order; named weights and arena maps; each descriptor defined once
    (designated) and shared by run() and the scratch check; labels in their own file."""

    out, data = resnet_c
    source = (out / "test_resnet.c").read_text()
    sections = ["API and sizes", "Weights map", "Arena map", "run():", "Init and status"]
    where = [source.find(" * " + s) for s in sections]
    assert -1 not in where and where == sorted(where), f"sections missing or out of order {where}"
    assert re.search(r"#define W_LAYER1_0_CONV1 \d+ +/\* packed gemm, oc 32, k 3x3x32 \*/", source)
    arena = dict(re.findall(r"#define (A_\w+) (\d+) +/\* [^*]*steps? \d+(?:\.\.\d+)? \*/", source))
    assert "A_LAYER1_0_CONV2_OUT" in arena, f"arena map lacks named buffers: {sorted(arena)}"
    run = source[source.index("int test_resnet_run(") :]
    run = run[: run.index("\n}\n")]
    used = set(re.findall(r"\bA_\w+", run))
    assert used and used <= set(arena), f"run() uses unnamed arena buffers: {used - set(arena)}"
    assert not re.search(r"\b[AW] \+ \d", source), "raw arena / weights offsets in the source"
    assert not re.search(r"\(void\)\s*\w+;", source), "(void) casts in the forward pass"
    descs = re.findall(r"static const txk_\w+_desc (d_\w+) = \{\s*\.\w+ = ", source)
    assert descs and len(descs) == len(set(descs)), "descriptors missing, positional or repeated"
    check = source[source.index("_check_scratch(void) {") :]
    for name in descs:
        assert f"&{name}," in run, f"{name} is not used by run()"
    convs = re.findall(r"static const txk_conv2d_desc (d_\w+)", source)
    assert all(f"(&{n})" in check for n in convs), "the scratch check has its own descriptors"
    assert len(set(re.findall(r"TXM_STEP\((\d+),", run))) == data["details"]["steps"]
    labels = (out / "test_resnet_labels.c").read_text()
    assert '"tench, Tinca tinca"' in labels and "tench" not in source, "labels not on their own"


def _make_strict(src: Path, work: Path, compiler: str, extra: str = "") -> Path:
    """A copy of the artifact built by its Makefile with -std=c99 -pedantic -Werror."""
    shutil.copytree(src, work)
    flags = f"-O1 -Werror -std=c99 -pedantic -Wno-overlength-strings {extra}".strip()
    proc = subprocess.run(
        ["make", f"CC={compiler}", f"CFLAGS={flags}"], cwd=work, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"make with {compiler} {extra} failed:\n{proc.stderr[-3000:]}"
    assert "warning" not in proc.stderr.lower(), f"{compiler} warned:\n{proc.stderr[-3000:]}"
    return work


@needs_cc
@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_builds_warning_free(resnet_c, tmp_path, compiler) -> None:
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed (CI installs clang)")
    work = _make_strict(resnet_c[0], tmp_path / "build", compiler)
    ppm = tmp_path / "img.ppm"
    pixels = bytes(
        (x * 7 + y * 3 + c * 50) % 256 for y in range(90) for x in range(120) for c in range(3)
    )
    ppm.write_bytes(b"P6\n120 90\n255\n" + pixels)
    run = subprocess.run(
        ["./test_resnet_demo", "test_resnet_weights.bin", str(ppm)],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, f"demo failed: {run.stderr}"
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 5 and lines[0].startswith("1 "), f"no top-5 printed: {run.stdout}"


@needs_cc
def test_profile_build_reports_every_step(resnet_c, tmp_path) -> None:
    """-DTXM_PROFILE builds warning-free and prints each step's fastest call and FLOPs, and the
    per-kind sums of those."""
    src, data = resnet_c
    work = _make_strict(src, tmp_path / "prof", shlex.join(CC), "-DTXM_PROFILE")
    raw = tmp_path / "in.raw"
    np.random.default_rng(0).standard_normal(3 * 160 * 160).astype(np.float32).tofile(raw)
    run = run_demo(
        work / "test_resnet_demo", ["--bench", "3", str(work / "test_resnet_weights.bin"), str(raw)]
    )
    assert run.returncode == 0, run.stderr
    steps = re.findall(
        r"^step +\d+ +([\d.]+) ms +([\d.]+) GFLOP/s +([\d.]+) MFLOP  (.+)$", run.stderr, re.M
    )
    assert len(steps) == data["details"]["steps"], run.stderr
    assert all(float(ms) > 0 for ms, *_ in steps)
    convs = [s for s in steps if s[3].startswith("conv")]
    assert convs and all(float(mflop) > 0 and float(gfs) > 0 for _, gfs, mflop, _ in convs)
    total = re.search(r"^kind total +\d+ +([\d.]+)$", run.stderr, re.M)
    assert total and float(total.group(1)) == pytest.approx(
        sum(float(s[0]) for s in steps), abs=2e-3
    )


def _weights_status(exe: Path, weights: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    raw = tmp_path / "in.raw"
    np.zeros(3 * 160 * 160, np.float32).tofile(raw)
    return run_demo(exe, [str(weights), str(raw)])


@needs_cc
def test_weights_loader_rejects_bad_files(resnet_c, tmp_path) -> None:
    src, _ = resnet_c
    exe = build_demo(src, "test_resnet", tmp_path / "b", cc=CC)
    good = (src / "test_resnet_weights.bin").read_bytes()
    ok = _weights_status(exe, src / "test_resnet_weights.bin", tmp_path)
    assert ok.returncode == 0, f"valid weights rejected: {ok.stderr}"
    cases = {
        "truncated": (good[: len(good) // 2], -10),
        "header only": (good[:40], -10),
        "corrupted": (good[:5000] + bytes([good[5000] ^ 0x40]) + good[5001:], -13),
        "wrong magic": (b"NOTTIMMX" + good[8:], -11),
        "wrong version": (good[:8] + struct.pack("<I", 99) + good[12:], -12),
        "other model": (good[:32] + struct.pack("<Q", 12345) + good[40:], -14),
    }
    for name, (blob, status) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.bin"
        path.write_bytes(blob)
        proc = _weights_status(exe, path, tmp_path)
        assert proc.returncode == 3, f"{name}: loader did not reject it ({proc.returncode})"
        assert f"({status})" in proc.stderr, f"{name}: expected status {status}: {proc.stderr}"


@needs_cc
@pytest.mark.parametrize("model", ["test_efficientnet", "test_vit"])
def test_sanitizers(tmp_path, model) -> None:
    from timmx.c.build import SANITIZE_FLAGS
    from timmx.c.export import c_runner, export_c
    from timmx.core.job import CommonOptions
    from timmx.core.model import prepare_model

    probe = subprocess.run(
        [*CC, "-fsanitize=address,undefined", "-x", "c", "-", "-o", str(tmp_path / "probe")],
        input="int main(void){return 0;}",
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"{CC[0]} cannot build with ASan/UBSan here: {probe.stderr[-200:]}")
    prepared = prepare_model(model, CommonOptions())
    export_c(prepared, tmp_path / "art", prefix="m")
    os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    run = c_runner(tmp_path / "art", "m", tmp_path / "build", cc=CC, flags=SANITIZE_FLAGS)
    x = prepared.sample_input()
    out = run(x.numpy())
    ref = prepared.run(x).numpy()
    assert np.abs(out.reshape(ref.shape) - ref).max() < 1e-4, "sanitizer build gives other output"


@needs_cc
def test_options_embed_nhwc_normalize_softmax_batch(export_json, tmp_path) -> None:
    out = tmp_path / "eff"
    data = export_json(
        "c",
        "test_efficientnet",
        "-o",
        out,
        "--embed-weights",
        "--nhwc-input",
        "--normalize",
        "--softmax",
        "--batch-size",
        "2",
        "--prefix",
        "effnet",
    )
    assert_passed(data, max_abs=1e-4)
    names = {p.name for p in out.iterdir()}
    assert "effnet_weights.c" in names and "effnet_weights.bin" not in names, names
    header = (out / "effnet.h").read_text()
    assert "#define EFFNET_NHWC_INPUT 1" in header, "NHWC input not declared"
    assert "#define EFFNET_INPUT_N 2" in header, "batch size not in the header"
    assert "#define EFFNET_NORMALIZE_BAKED_IN 1" in header, "normalization flag missing"


@needs_cc
def test_no_fuse_matches_too(export_json, tmp_path) -> None:
    fused = export_json("c", "test_resnet", "-o", tmp_path / "a")
    plain = export_json("c", "test_resnet", "-o", tmp_path / "b", "--no-fuse")
    assert_passed(plain, max_abs=1e-4)
    assert plain["details"]["steps"] > fused["details"]["steps"], "fusion removed no steps"
    assert fused["details"]["fused"].get("fold_scale_shift", 0) > 0, "BatchNorm was not folded"


def test_bad_prefix(cli, tmp_path) -> None:
    result = cli("export", "c", "test_resnet", "-o", tmp_path / "x", "--prefix", "9lives")
    assert result.exit_code == 2, f"expected exit 2, got {result.exit_code}"
    assert "--prefix" in result.stderr and "C identifier" in result.stderr, result.stderr
    assert leftovers(tmp_path) == [], "something was left behind"


def test_no_compiler(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("CC", "")
    result = cli("export", "c", "test_resnet", "-o", tmp_path / "x")
    assert result.exit_code == 2, f"expected exit 2, got {result.exit_code}"
    assert "C compiler" in result.stderr and "--no-verify" in result.stderr, result.stderr
    assert leftovers(tmp_path) == [], "something was left behind"
    result = cli("export", "c", "test_resnet", "-o", tmp_path / "x", "--no-verify", "--json")
    assert result.exit_code == 0, f"--no-verify without a compiler failed: {result.stderr}"
    assert (tmp_path / "x" / "test_resnet.c").is_file(), "no C source written"


def test_unsupported_op_named_with_module(cli, tmp_path, monkeypatch) -> None:
    from timmx.c.lower import capture

    monkeypatch.delitem(capture.HANDLERS, "aten.max_pool2d_with_indices.default")
    result = cli("export", "c", "test_resnet", "-o", tmp_path / "x")
    assert result.exit_code == 2, f"expected exit 2, got {result.exit_code}"
    assert "aten.max_pool2d_with_indices.default" in result.stderr, result.stderr
    assert "maxpool (MaxPool2d)" in result.stderr, f"timm module not named: {result.stderr}"
    assert leftovers(tmp_path) == [], "something was left behind"


def test_unsupported_op_in_custom_module() -> None:
    import torch

    from timmx.c.lower.capture import Lowering, capture
    from timmx.c.lower.ir import UnsupportedOpError

    class Up(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = torch.nn.ConvTranspose2d(3, 3, 2, stride=2)

        def forward(self, x):
            return self.up(x)

    program = capture(Up().eval(), torch.rand(1, 3, 8, 8))
    with pytest.raises(UnsupportedOpError, match=r"aten\.convolution.*up \(ConvTranspose2d\)"):
        Lowering(program).run()


def test_cpu_only(cli, tmp_path) -> None:
    result = cli("export", "c", "test_resnet", "-o", tmp_path / "x", "--device", "cuda")
    assert result.exit_code == 2, f"expected exit 2, got {result.exit_code}"
    assert "CPU" in result.stderr, result.stderr
    assert leftovers(tmp_path) == [], "something was left behind"


REAL_MODELS = [
    "resnet50d",
    "efficientnet_b0",
    "mobilenetv2_100",
    "mobilenetv3_large_100",
    "mobilenetv4_conv_small",
    "regnety_002",
    "convnext_tiny",
    "vit_tiny_patch16_224",
    "deit_tiny_patch16_224",
]


@needs_cc
@pytest.mark.slow
@pytest.mark.parametrize("model", REAL_MODELS)
def test_real_size_family(export_json, tmp_path, model) -> None:
    data = export_json("c", model, "-o", tmp_path / "out")
    assert_passed(data)
    assert data["verify"]["top1_agree"] == 1.0, f"top-1 differs: {data['verify']}"


def _custom_matches(module, input_size, tmp_path, atol=1e-4) -> None:
    """Export a custom module with the C target, run the compiled C, compare with PyTorch."""
    import torch

    from timmx.c.export import c_runner, export_c

    prepared = custom_prepared(module, input_size)
    export_c(prepared, tmp_path / "out", prefix="custom")
    run = c_runner(tmp_path / "out", "custom", tmp_path)
    x = prepared.sample_input()
    with torch.no_grad():
        ref = module(x).numpy().reshape(-1)
    got = run(x.numpy())
    np.testing.assert_allclose(got, ref, atol=atol, rtol=1e-4)


RESIZES = [
    {"scale_factor": 2, "mode": "nearest"},
    {"size": (13, 7), "mode": "nearest"},
    {"size": (7, 5), "mode": "nearest-exact"},
    {"size": (13, 17), "mode": "bilinear", "align_corners": False},
    {"scale_factor": 2, "mode": "bilinear", "align_corners": True},
    {"size": (5, 4), "mode": "bilinear", "antialias": True},
    {"size": (11, 9), "mode": "bicubic", "align_corners": False},
]


@needs_cc
@pytest.mark.parametrize("resize", RESIZES, ids=lambda r: "-".join(map(str, r.values())))
def test_resize_matches_pytorch(tmp_path, resize) -> None:
    import torch

    class Resize(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x):
            return torch.nn.functional.interpolate(self.conv(x), **resize) * 2.0

    _custom_matches(Resize(), (3, 10, 12), tmp_path)


@needs_cc
def test_gathers_norm_conv1d_match_pytorch(tmp_path) -> None:
    """torch.roll (Swin), unfold into patches (MobileViTv2), F.normalize (XCiT), Conv1d (ECA)."""
    import torch
    import torch.nn.functional as F

    class Mixed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.eca = torch.nn.Conv1d(1, 1, 3, padding=1, bias=False)

        def forward(self, x):
            x = self.conv(x)  # [1, 8, 8, 8]
            x = torch.roll(x, shifts=(-3, 2), dims=(2, 3))
            gate = self.eca(x.mean((2, 3)).view(1, 1, -1)).sigmoid().view(1, -1, 1, 1)
            x = x * gate
            patches = F.unfold(x, kernel_size=2, stride=2)  # [1, 32, 16]
            return F.normalize(patches, dim=1) + patches.sum(1, keepdim=True)

    _custom_matches(Mixed(), (3, 8, 8), tmp_path)


@needs_cc
def test_norms_over_a_permuted_layout_match_pytorch(tmp_path) -> None:
    """LayerNorm and softmax over MobileViT's unfolded patches, whose rows lie in memory in
    another order than their index (the layer norm once paired row i of x with another row
    of y: mobilevit_xxs cosine 0.78)."""
    import torch

    class Unfolded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.norm = torch.nn.LayerNorm(16)
            with torch.no_grad():
                self.norm.weight.uniform_(0.5, 1.5)
                self.norm.bias.uniform_(-1.0, 1.0)

        def forward(self, x):
            x = self.conv(x)  # [1, 16, 8, 8] -> 2x2 patches, MobileViT's reshapes
            b, c, h, w = x.shape
            x = x.reshape(b * c * (h // 2), 2, w // 2, 2).transpose(1, 2)
            x = x.reshape(b, c, (h // 2) * (w // 2), 4).transpose(1, 3).reshape(b * 4, -1, c)
            return self.norm(x) + x.softmax(dim=1)

    _custom_matches(Unfolded(), (3, 8, 8), tmp_path)


# families the C target learned from the coverage sweep (benchmarks/c_coverage.py): ECA's
# Conv1d, MobileViTv2's unfold, XCiT's L2 normalize; the smallest variant of each
NEW_FAMILIES = [
    ("ecaresnet26t", ["--input-size", "3", "128", "128"]),
    ("mobilevitv2_050", []),
    ("xcit_nano_12_p16_224", []),
]


@needs_cc
@pytest.mark.slow
@pytest.mark.parametrize(("model", "extra"), NEW_FAMILIES, ids=[m for m, _ in NEW_FAMILIES])
def test_new_family(export_json, tmp_path, model, extra) -> None:
    data = export_json("c", model, "-o", tmp_path / "out", *extra)
    assert_passed(data)
    assert data["verify"]["top1_agree"] == 1.0, f"top-1 differs: {data['verify']}"
