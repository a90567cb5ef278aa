"""Build checks of the timmx C kernel library: the standalone self-test under
AddressSanitizer + UndefinedBehaviorSanitizer, a clang build, and strict C99 (-pedantic) for
the portable sources."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "kernels"))
import txk_ctypes as T

SELFTEST = Path(__file__).resolve().parent / "kernels" / "txk_selftest.c"
# every compiled source but the SIMD ISA files (f32-avx2.c, f32-avx512.c, f32-neon.c)
PORTABLE = [
    "dispatch.c", "ref.c", "conv.c", "gemm.c", "matmul.c", "ops.c", "gen_ops.c", "f32-scalar.c",
    "weights.c",
]  # fmt: skip


def build_and_run(cc: str, out: Path, flags: list[str]) -> str:
    exe = out / f"selftest_{cc}"
    cmd = [
        cc, "-std=c99", "-Wall", "-Wextra", "-Werror", *flags, f"-I{T.INCLUDE_DIR}",
        *map(str, T.sources()), str(SELFTEST), "-o", str(exe), "-lm",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"build failed: {' '.join(cmd)}\n{res.stderr[-4000:]}"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (
        f"selftest failed ({cc} {flags}):\n{run.stdout}\n{run.stderr[-4000:]}"
    )
    assert "all checks passed" in run.stdout, f"unexpected selftest output: {run.stdout}"
    return run.stdout


SAN = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


def test_selftest_gcc_asan_ubsan(tmp_path):
    build_and_run("gcc", tmp_path, SAN)


def test_selftest_clang(tmp_path):
    if shutil.which("clang") is None:
        pytest.skip("clang not installed (apt-get install clang); CI installs it")
    build_and_run("clang", tmp_path, ["-O2"])


def test_portable_sources_are_strict_c99(tmp_path):
    for name in PORTABLE:
        src = T.SRC_DIR / name
        obj = tmp_path / (name + ".o")
        cmd = ["gcc", "-std=c99", "-pedantic-errors", "-Wall", "-Wextra", "-Werror",
               f"-I{T.INCLUDE_DIR}", "-c", str(src), "-o", str(obj)]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, f"{name} is not strict C99:\n{res.stderr}"


def test_selftest_aarch64_neon_qemu(tmp_path):
    """Cross-compile for aarch64 (NEON kernels) and run the self-test under qemu-user."""
    cc, qemu = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
    if cc is None or qemu is None:
        pytest.skip(
            "aarch64-linux-gnu-gcc / qemu-aarch64 not installed (gcc-aarch64-linux-gnu qemu-user)"
        )
    exe = tmp_path / "selftest_arm"
    cmd = [
        cc, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-static", f"-I{T.INCLUDE_DIR}",
        *map(str, T.sources()), str(SELFTEST), "-o", str(exe), "-lm",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"aarch64 build failed:\n{res.stderr[-4000:]}"
    run = subprocess.run([qemu, str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"aarch64 selftest failed:\n{run.stdout}\n{run.stderr[-4000:]}"
    assert "selected isa: neon" in run.stdout, f"NEON kernels not selected: {run.stdout}"
