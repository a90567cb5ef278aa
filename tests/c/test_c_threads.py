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


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """model name -> (prepared model, artifact directory), each exported once (prefix m)."""
    from timmx.c.export import export_c
    from timmx.core.job import CommonOptions
    from timmx.core.model import prepare_model

    done: dict = {}

    def get(model: str):
        if model not in done:
            prepared = prepare_model(model, CommonOptions())
            art = tmp_path_factory.mktemp(model) / "art"
            export_c(prepared, art, prefix="m", cc=CC)
            done[model] = (prepared, art)
        return done[model]

    return get


@needs_cc
@pytest.mark.parametrize("model", ["test_efficientnet", "test_vit"])
def test_generated_model_bitwise_equal_at_1_2_3_threads(tmp_path, exported, model) -> None:
    """The same generated model and input at 1, 2 and 3 threads: the same bytes out (and the
    demo reports the thread count it ran with)."""
    from timmx.c.build import build_demo, run_demo

    prepared, art = exported(model)
    exe = build_demo(art, "m", tmp_path / "build", cc=CC)
    x = prepared.sample_input().numpy().astype(np.float32)
    x.tofile(tmp_path / "in.raw")
    weights = str(art / "m_weights.bin")
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


HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "m.h"

static void* aligned(size_t n) {
  void* p = NULL;
  return posix_memalign(&p, 64, n ? n : 64) == 0 ? p : NULL;
}

int main(int argc, char** argv) {
  FILE* f = fopen(argv[1], "rb");
  unsigned char* w = (unsigned char*)aligned(M_WEIGHTS_SIZE);
  unsigned char* a1 = aligned(M_ARENA_SIZE);
  unsigned char* a2 = aligned(M_ARENA_SIZE);
  unsigned char* a3 = aligned(M_ARENA_SIZE);
  float* x = (float*)aligned(M_INPUT_SIZE * sizeof(float));
  float* y1 = aligned(M_OUTPUT_SIZE * 4);
  float* y2 = aligned(M_OUTPUT_SIZE * 4);
  float* y3 = aligned(M_OUTPUT_SIZE * 4);
  m_model m1, m2, m3, bad;
  txk_threadpool pool;
  size_t i;
  int fails = 0;
  (void)argc;
  if (!f || fread(w, 1, M_WEIGHTS_SIZE, f) != M_WEIGHTS_SIZE) return 2;
  fclose(f);
  for (i = 0; i < M_INPUT_SIZE; i++) x[i] = (float)((i * 37u) % 101u) / 50.0f - 1.0f;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "failed: %s\n", #c); fails++; } } while (0)
  CHECK(m_init(&bad, w, M_WEIGHTS_SIZE, a1, M_ARENA_SIZE, -1) == M_EINVAL);
  m_destroy(&bad); /* after a failed init: a no-op */
  CHECK(m_init(&bad, w, M_WEIGHTS_SIZE - 4, a1, M_ARENA_SIZE, 2) == M_EWEIGHTS_SIZE);
  m_destroy(&bad);
  CHECK(m_init(&m1, w, M_WEIGHTS_SIZE, a1, M_ARENA_SIZE, 2) == M_OK);
  CHECK(m_threads(&m1) == 2);
  CHECK(txk_threadpool_init(&pool, 3) == TXK_OK);
  CHECK(m_init_pool(&m2, w, M_WEIGHTS_SIZE, a2, M_ARENA_SIZE, TXK_ISA_AUTO, &pool) == M_OK);
  CHECK(m_threads(&m2) == 3);
  CHECK(m_init_isa(&m3, w, M_WEIGHTS_SIZE, a3, M_ARENA_SIZE, TXK_ISA_AUTO, 1) == M_OK);
  CHECK(m_threads(&m3) == 1);
  for (i = 0; i < 3; i++) {
    CHECK(m_run(&m1, x, y1) == M_OK);
    CHECK(m_run(&m2, x, y2) == M_OK);
    CHECK(m_run(&m3, x, y3) == M_OK);
    CHECK(memcmp(y1, y3, M_OUTPUT_SIZE * 4) == 0);
    CHECK(memcmp(y2, y3, M_OUTPUT_SIZE * 4) == 0);
  }
  m_destroy(&m2); /* leaves the caller's pool running */
  CHECK(txk_threadpool_threads(&pool) == 3);
  CHECK(m_init_pool(&m2, w, M_WEIGHTS_SIZE, a2, M_ARENA_SIZE, TXK_ISA_AUTO, &pool) == M_OK);
  CHECK(m_run(&m2, x, y2) == M_OK && memcmp(y2, y3, M_OUTPUT_SIZE * 4) == 0);
  m_destroy(&m2);
  txk_threadpool_destroy(&pool);
  m_destroy(&m1);
  m_destroy(&m1); /* twice: a no-op */
  m_destroy(&m3);
  CHECK(strcmp(m_status_string(M_ETHREAD), "the worker threads could not be started") == 0);
  free(w); free(a1); free(a2); free(a3); free(x); free(y1); free(y2); free(y3);
  if (fails) return 1;
  puts("api ok");
  return 0;
}
"""


@needs_cc
def test_generated_thread_api_under_sanitizers(tmp_path, exported) -> None:
    """init (thread count), init_isa, init_pool (a caller's pool shared, left running by
    destroy), destroy on failed init and twice, bad thread counts, and the same bytes from
    every variant; built -std=c99 -pedantic -Werror with ASan + UBSan (leaks on)."""
    import os

    from timmx.c.build import SANITIZE_FLAGS

    probe = subprocess.run(
        [*CC, "-fsanitize=address,undefined", "-x", "c", "-", "-o", str(tmp_path / "probe")],
        input="int main(void){return 0;}",
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"{CC[0]} cannot build with ASan/UBSan here: {probe.stderr[-200:]}")
    _, art = exported("test_vit")
    (tmp_path / "harness.c").write_text(HARNESS)
    objs = kernel_objects(CC, SANITIZE_FLAGS)
    inc = [f"-I{art}", f"-I{T.INCLUDE_DIR}"]
    exe = tmp_path / "harness"
    cmd = [
        *CC, *SANITIZE_FLAGS, "-std=c99", "-D_POSIX_C_SOURCE=200112L", "-pedantic", "-Wall",
        "-Wextra", "-Werror", "-Wno-overlength-strings", *inc, str(tmp_path / "harness.c"),
        str(art / "m.c"), str(art / "m_labels.c"), *map(str, objs), "-o", str(exe), "-lm",
        "-lpthread",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"harness build failed:\n{res.stderr[-4000:]}"
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1"}
    run = subprocess.run(
        [str(exe), str(art / "m_weights.bin")], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0 and "api ok" in run.stdout, f"{run.stdout}\n{run.stderr[-4000:]}"
