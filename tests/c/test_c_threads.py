"""Threads in the C target: the kernel library's pool under ThreadSanitizer, the library built
without threads (-DTXK_NO_THREADS), and a generated model giving bitwise-identical outputs at
1, 2 and 3 threads.

The kernel objects are compiled through :func:`timmx.c.build.kernel_objects`, which caches them
by sources, compiler and flags: the first run compiles the SIMD files (~20 s each), later runs
only link."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from timmx.c.build import find_compiler, kernel_objects

sys.path.insert(0, str(Path(__file__).resolve().parent / "kernels"))
import txk_ctypes as T

SELFTEST = Path(__file__).resolve().parent / "kernels" / "txk_selftest.c"
CC = find_compiler()
needs_cc = pytest.mark.skipif(CC is None, reason="needs a C compiler (gcc or clang)")
TSAN = ("-std=c99", "-O1", "-g", "-fsanitize=thread", "-Werror")
NO_THREADS = ("-std=c99", "-O1", "-Werror", "-DTXK_NO_THREADS")


def _selftest(cc: list[str], flags: tuple[str, ...], out: Path, libs: list[str]) -> Path:
    """The kernel selftest linked against the (cached) kernel objects built with ``flags``."""
    objs = kernel_objects(cc, flags)
    exe = out / "selftest"
    cmd = [
        *cc, *flags, "-Wall", "-Wextra", f"-I{T.INCLUDE_DIR}", str(SELFTEST),
        *map(str, objs), "-o", str(exe), "-lm", *libs,
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"selftest build failed: {' '.join(cmd)}\n{res.stderr[-4000:]}"
    return exe


@needs_cc
def test_selftest_threads_under_thread_sanitizer(tmp_path) -> None:
    """Every parallel kernel at 2, 3 and 7 threads (and two callers on one pool) with TSan:
    no data race in the pool or in how the kernels split their outputs."""
    probe = subprocess.run(
        [*CC, "-fsanitize=thread", "-x", "c", "-", "-o", str(tmp_path / "probe"), "-lpthread"],
        input="int main(void){return 0;}",
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"{CC[0]} has no ThreadSanitizer runtime here: {probe.stderr[-300:]}")
    run = subprocess.run([str(tmp_path / "probe")], capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip(f"ThreadSanitizer programs do not start here: {run.stderr[-300:]}")
    exe = _selftest(CC, TSAN, tmp_path, ["-lpthread"])
    proc = subprocess.run(
        [str(exe), "threads"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"TSAN_OPTIONS": "halt_on_error=1 exitcode=66"},
    )
    assert "ThreadSanitizer" not in proc.stderr, f"TSan reported:\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, f"selftest threads failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "all checks passed" in proc.stdout, proc.stdout


@needs_cc
def test_selftest_without_threads(tmp_path) -> None:
    """-DTXK_NO_THREADS: strict C99, no pthread, and the whole selftest passes (a pool of any
    size runs on the calling thread)."""
    exe = _selftest(CC, NO_THREADS, tmp_path, [])
    syms = subprocess.run(["nm", "-u", str(exe)], capture_output=True, text=True)
    if syms.returncode == 0:
        assert "pthread_create" not in syms.stdout, "a TXK_NO_THREADS build uses pthreads"
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"selftest failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "all checks passed" in proc.stdout, proc.stdout


@needs_cc
@pytest.mark.parametrize("model", ["test_efficientnet", "test_vit"])
def test_generated_model_bitwise_equal_at_1_2_3_threads(tmp_path, model) -> None:
    """The same generated model and input at 1, 2 and 3 threads: the same bytes out (and the
    demo reports the thread count it ran with)."""
    from timmx.c.build import build_demo, run_demo
    from timmx.c.export import export_c
    from timmx.core.job import CommonOptions
    from timmx.core.model import prepare_model

    prepared = prepare_model(model, CommonOptions())
    export_c(prepared, tmp_path / "art", prefix="m", cc=CC)
    exe = build_demo(tmp_path / "art", "m", tmp_path / "build", cc=CC)
    x = prepared.sample_input().numpy().astype(np.float32)
    x.tofile(tmp_path / "in.raw")
    weights = str(tmp_path / "art" / "m_weights.bin")
    outs = {}
    for threads in (1, 2, 3):
        out = tmp_path / f"out{threads}.raw"
        args = ["--threads", str(threads), "--bench", "2", weights, str(tmp_path / "in.raw")]
        proc = run_demo(exe, [*args, str(out)])
        assert proc.returncode == 0, f"{threads} threads: {proc.stderr}"
        assert f"threads {threads}" in proc.stdout, proc.stdout
        outs[threads] = out.read_bytes()
    ref = prepared.run(prepared.sample_input()).numpy()
    got = np.frombuffer(outs[1], dtype=np.float32).reshape(ref.shape)
    assert np.abs(got - ref).max() < 1e-4, "1-thread output differs from PyTorch"
    for threads in (2, 3):
        assert outs[threads] == outs[1], f"{threads} threads: output not bitwise equal to 1"
