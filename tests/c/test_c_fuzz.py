"""libFuzzer runs of the C target's two parsers of untrusted bytes (harnesses in tests/c/fuzz/):

* fuzz_weights: txk_weights_check (the kernel library's weights-blob validation) on any bytes;
* fuzz_ppm: the generated demo's input reader (main.c's PPM parser + resize, and the raw path),
  built from an exported test_resnet with main.c #included under -DTXM_DEMO_NO_MAIN.

Each harness is built with clang -fsanitize=fuzzer,address,undefined and fuzzed for
$TIMMX_FUZZ_SECONDS (default 60) from the committed seeds; the test fails on any crash, sanitizer
report, leak or timeout, and prints the execution count. Skipped only where clang cannot build
libFuzzer programs (CI installs clang).
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import timmx.c

FUZZ_DIR = Path(__file__).resolve().parent / "fuzz"
KERNELS = Path(timmx.c.__file__).resolve().parent / "kernels"
FUZZ_SECONDS = int(os.environ.get("TIMMX_FUZZ_SECONDS", "60"))
FLAGS = [
    "-g",
    "-O2",
    "-fsanitize=fuzzer,address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-Wall",
    "-Wextra",
]
FUZZ_LAYOUT = 0x0123456789ABCDEF  # the layout id fuzz_weights.c expects of seeds/weights/valid.bin


def _clang_libfuzzer() -> tuple[str | None, str]:
    """(clang, "") if it builds a libFuzzer + ASan + UBSan program here, else (None, why not)."""
    clang = shutil.which(os.environ.get("TIMMX_FUZZ_CC", "clang"))
    if clang is None:
        return None, "clang is not installed (CI installs it; apt-get install clang)"
    src = "#include <stddef.h>\nint LLVMFuzzerTestOneInput(const char* d, size_t n);\n"
    src += "int LLVMFuzzerTestOneInput(const char* d, size_t n) { (void)d; (void)n; return 0; }\n"
    try:
        proc = subprocess.run(
            [clang, "-fsanitize=fuzzer,address,undefined", "-x", "c", "-", "-o", os.devnull],
            input=src,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"{clang} failed: {e}"
    if proc.returncode != 0:
        return None, f"{clang} cannot build libFuzzer programs here: {proc.stderr[-300:]}"
    return clang, ""


CLANG, WHY_NOT = _clang_libfuzzer()
pytestmark = pytest.mark.skipif(CLANG is None, reason=WHY_NOT)


def build(out: Path, *args: str) -> Path:
    proc = subprocess.run(
        [CLANG, *FLAGS, *args, "-o", str(out), "-lm"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"building {out.name} failed:\n{proc.stderr[-4000:]}"
    return out


def _rss_limit_mb(budget: int = 2560) -> int:
    """libFuzzer's RSS limit: ``budget`` MB above this process's peak. Linux keeps a process's
    peak RSS across fork and exec, so a fuzzer started from a pytest process that has grown
    (the whole suite runs exports in-process) starts with that peak already counted."""
    import resource

    return budget + resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def fuzz(exe: Path, seeds: Path, work: Path) -> int:
    """Fuzz for FUZZ_SECONDS from a writable copy of `seeds`; returns the execution count."""
    corpus = work / "corpus"
    shutil.copytree(seeds, corpus)
    artifacts = work / "artifacts"
    artifacts.mkdir()
    cmd = [
        str(exe),
        f"-max_total_time={FUZZ_SECONDS}",
        "-print_final_stats=1",
        "-timeout=25",
        f"-rss_limit_mb={_rss_limit_mb()}",
        f"-artifact_prefix={artifacts}/",
        str(corpus),
    ]
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=FUZZ_SECONDS + 300, env=env)
    log = proc.stderr + proc.stdout
    found = sorted(p.name for p in artifacts.iterdir())
    seed = re.search(r"Seed: (\d+)", log)
    assert proc.returncode == 0 and not found, (
        f"{exe.name}: exit {proc.returncode}, artifacts {found} (reproduce: {exe.name} "
        f"{artifacts}/<file>; seed {seed.group(1) if seed else '?'}):\n{log[-6000:]}"
    )
    units = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    assert units, f"no final stats from {exe.name}:\n{log[-3000:]}"
    count = int(units.group(1))
    rate = re.search(r"stat::average_exec_per_sec:\s*(\d+)", log)
    print(
        f"{exe.name}: {count} executions in {FUZZ_SECONDS} s "
        f"({rate.group(1) if rate else '?'}/s), 0 crashes, corpus "
        f"{len(list(corpus.iterdir()))} files, seed {seed.group(1) if seed else '?'}"
    )
    assert count > 0, f"{exe.name} executed nothing"
    return count


def test_weights_seed_matches_the_writer() -> None:
    """seeds/weights/valid.bin is what the Python writer produces for the harness's expectation
    (so the fuzzer starts from a blob that passes every check)."""
    from timmx.c.emit.weights import build_blob

    payload = bytes((i * 37 + 11) % 256 for i in range(64))
    valid = (FUZZ_DIR / "seeds" / "weights" / "valid.bin").read_bytes()
    assert valid == build_blob(payload, FUZZ_LAYOUT), "seeds/weights/valid.bin is stale"


def test_fuzz_weights_check(tmp_path) -> None:
    exe = build(
        tmp_path / "fuzz_weights",
        f"-I{KERNELS / 'include'}",
        str(FUZZ_DIR / "fuzz_weights.c"),
        str(KERNELS / "src" / "weights.c"),
    )
    fuzz(exe, FUZZ_DIR / "seeds" / "weights", tmp_path)


@pytest.fixture(scope="module")
def resnet_art(tmp_path_factory) -> Path:
    from timmx import export

    out = tmp_path_factory.mktemp("fuzz") / "art"
    export("c", "test_resnet", output=out, verify=False)
    return out


def test_fuzz_demo_ppm_reader(resnet_art, tmp_path) -> None:
    exe = build(
        tmp_path / "fuzz_ppm",
        f"-I{resnet_art}",
        f"-I{resnet_art / 'kernels' / 'include'}",
        str(FUZZ_DIR / "fuzz_ppm.c"),
    )
    fuzz(exe, FUZZ_DIR / "seeds" / "ppm", tmp_path)
