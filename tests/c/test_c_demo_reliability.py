"""The generated C demo (main.c) and the weights check on bad input, under ASan + UBSan.

test_resnet is exported once; its demo is built with -fsanitize=address,undefined
-fno-sanitize-recover=all and run on broken weights, broken PPM headers, directories, wrong-size
raw files and valid inputs. Every bad case must end with the documented exit status (1 bad file,
2 usage, 3 model init failed), a message on stderr that names the problem, and no sanitizer
report (leaks included: LeakSanitizer is on).
"""

import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from timmx.c.build import SANITIZE_FLAGS, build_demo, find_compiler

CC = find_compiler()
SAN_EXIT = 99  # what ASan / UBSan / LSan exit with here, so a report never passes for "exit 1"
SAN_ENV = {
    "ASAN_OPTIONS": f"detect_leaks=1:exitcode={SAN_EXIT}:abort_on_error=0",
    "UBSAN_OPTIONS": f"print_stacktrace=1:halt_on_error=1:exitcode={SAN_EXIT}",
    "LSAN_OPTIONS": f"exitcode={SAN_EXIT}",
}
SAN_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer", "SUMMARY: ")
RAW_BYTES = 3 * 160 * 160 * 4  # test_resnet's input: 1x3x160x160 float32
# Header fields of the weights blob (see src/timmx/c/emit/weights.py).
MAGIC, VERSION, HEADER_SIZE, PAYLOAD_SIZE, CHECKSUM, LAYOUT = 0, 8, 12, 16, 24, 32
RESERVED = range(40, 64)


def _sanitizers_work() -> str | None:
    """None if CC builds and runs an ASan + UBSan program here, else why not."""
    if CC is None:
        return "needs a C compiler (gcc or clang)"
    try:
        proc = subprocess.run(
            [*CC, "-fsanitize=address,undefined", "-x", "c", "-", "-o", "/dev/null"],
            input="int main(void){return 0;}",
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"{CC[0]} failed: {e}"
    if proc.returncode != 0:
        return f"{CC[0]} cannot build with ASan/UBSan here: {proc.stderr[-200:]}"
    return None


_WHY_NOT = _sanitizers_work()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")


def export_c(model: str, out: Path, **options: object) -> Path:
    import timmx

    timmx.export("c", model, output=out, verify=False, **options)
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """test_resnet's demo under ASan + UBSan, its weights, and another model's weights."""
    root = tmp_path_factory.mktemp("demo")
    art = export_c("test_resnet", root / "art")
    other = export_c("test_efficientnet", root / "other")
    exe = build_demo(art, "test_resnet", root / "build", cc=CC, flags=SANITIZE_FLAGS, werror=True)
    files = root / "files"
    files.mkdir()
    return {
        "exe": exe,
        "weights": (art / "test_resnet_weights.bin").read_bytes(),
        "other_weights": (other / "test_efficientnet_weights.bin").read_bytes(),
        "files": files,
    }


def run(demo: dict, *args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, **SAN_ENV}
    return subprocess.run(
        [str(demo["exe"]), *map(str, args)], capture_output=True, text=True, timeout=300, env=env
    )


def put(demo: dict, name: str, data: bytes) -> Path:
    path = demo["files"] / name
    path.write_bytes(data)
    return path


def good_weights(demo: dict) -> Path:
    return put(demo, "good_weights.bin", demo["weights"])


def good_raw(demo: dict) -> Path:
    return put(demo, "good.raw", np.linspace(-1, 1, RAW_BYTES // 4, dtype=np.float32).tobytes())


def ppm(w: int, h: int, extra: bytes = b"", header: bytes | None = None) -> bytes:
    pixels = bytes(
        (x * 7 + y * 3 + c * 50) % 256 for y in range(h) for x in range(w) for c in range(3)
    )
    return (header if header is not None else b"P6\n%d %d\n255\n" % (w, h)) + pixels + extra


def flip(blob: bytes, at: int, mask: int = 0x01) -> bytes:
    return blob[:at] + bytes([blob[at] ^ mask]) + blob[at + 1 :]


def assert_rejected(proc: subprocess.CompletedProcess, code: int, *words: str) -> None:
    """Exit status `code` (not a signal, not a sanitizer exit), stderr naming the problem, no
    sanitizer report."""
    report = [m for m in SAN_MARKERS if m in proc.stderr]
    assert not report, f"sanitizer report ({report}):\n{proc.stderr[-4000:]}"
    assert proc.returncode == code, (
        f"exit {proc.returncode}, expected {code}\nstdout: {proc.stdout[-500:]}\n"
        f"stderr: {proc.stderr[-2000:]}"
    )
    for word in words:
        assert word.lower() in proc.stderr.lower(), f"stderr does not say {word!r}: {proc.stderr}"


def assert_top5(proc: subprocess.CompletedProcess) -> None:
    report = [m for m in SAN_MARKERS if m in proc.stderr]
    assert not report, f"sanitizer report ({report}):\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"demo failed ({proc.returncode}): {proc.stderr[-2000:]}"
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 5 and lines[0].startswith("1 "), f"no top-5 printed: {proc.stdout}"


# --- the items of issue #12 (and #3) that failed before the fix -------------------------------


@pytest.mark.parametrize(
    "header",
    [
        b"P6\n4294967296 4294967296\n255\n",
        b"P6\n123456789012345678901 123456789012345678901\n255\n",
        b"P6\n99999999999999999999999999999999999999 4\n255\n",
        b"P6\n99999999 99999999\n255\n",
        b"P6\n4 99999999\n255\n",
        b"P6\n18446744073709551615 18446744073709551615\n255\n",
        b"P6\n6148914691236517206 1\n255\n",  # w * 3 wraps to 2 in 64 bits
        b"P6\n1048576 1048576\n255\n",  # the largest sides accepted; the pixels are not there
    ],
    ids=["2^32", "21-digits", "38-digits", "99999999", "height", "2^64-1", "w*3-wraps", "max"],
)
def test_huge_ppm_header_is_rejected(demo, header) -> None:
    """Issue #3: signed overflow in the header parser / w*h*3 let bilinear read out of bounds
    (UBSan: 'signed integer overflow' in ppm_int and in w * h * 3)."""
    path = put(demo, "huge.ppm", header + bytes(range(256)) * 4)
    proc = run(demo, good_weights(demo), path)
    assert_rejected(proc, 1, "huge.ppm", "PPM")
    assert "too large" in proc.stderr or "truncated" in proc.stderr, proc.stderr


@pytest.mark.parametrize("role", ["weights", "input"])
def test_directory_is_refused(demo, tmp_path, role) -> None:
    """Issue #12: fopen() of a directory succeeds on Linux and ftell() gives a huge size; the
    demo then malloc'ed size + 65 (ASan: allocation-size-too-big) instead of refusing."""
    folder = tmp_path / "a_folder"
    folder.mkdir()
    args = [folder, good_raw(demo)] if role == "weights" else [good_weights(demo), folder]
    assert_rejected(run(demo, *args), 1, f"cannot read {role}", "directory")


@pytest.mark.parametrize("extra", [1, 4, 64, 4096])
def test_trailing_weights_bytes_are_rejected(demo, extra) -> None:
    """Issue #12: a weights file longer than WEIGHTS_SIZE was accepted (exit 0)."""
    path = put(demo, "trailing.bin", demo["weights"] + b"\0" * extra)
    assert_rejected(run(demo, path, good_raw(demo)), 3, "init failed", "wrong size", "(-10)")


def test_reserved_header_bytes_are_checked(demo) -> None:
    """Issue #12: header bytes 40..63 (reserved, zero) were not checked (exit 0)."""
    raw = good_raw(demo)
    for at in RESERVED:
        for mask in (0x01, 0x80):
            path = put(demo, "reserved.bin", flip(demo["weights"], at, mask))
            proc = run(demo, path, raw)
            assert_rejected(proc, 3, "init failed", "reserved header bytes", "(-13)")


@pytest.mark.parametrize(
    "input_case", ["bad-ppm", "huge-ppm", "wrong-raw-size", "unreadable", "no-output-dir"]
)
def test_error_paths_free_everything(demo, input_case) -> None:
    """Issue #12: every error after init leaked the weights, arena, input and output buffers
    (LeakSanitizer: 'detected memory leaks', ~2.2 MB in 4 allocations)."""
    weights = good_weights(demo)
    args: list[object] = {
        "bad-ppm": [put(demo, "neg.ppm", b"P6\n-4 4\n255\n" + bytes(48))],
        "huge-ppm": [put(demo, "huge.ppm", b"P6\n99999999 99999999\n255\n")],
        "wrong-raw-size": [put(demo, "short.raw", bytes(RAW_BYTES - 4))],
        "unreadable": [demo["files"] / "does-not-exist.raw"],
        "no-output-dir": [good_raw(demo), demo["files"] / "no" / "such" / "out.raw"],
    }[input_case]
    proc = run(demo, weights, *args)
    assert_rejected(proc, 1)
    assert proc.stderr.strip(), "no message on stderr"


# --- the rest of the battery ------------------------------------------------------------------


def _pad_to(blob: bytes, n: int) -> bytes:
    return (blob + bytes(max(0, n - len(blob))))[:n]


# name -> (weights file from (good, other model's), expected model status, words for stderr)
WEIGHTS = {
    "empty": (lambda g, o: b"", -10, "wrong size"),
    "header-only": (lambda g, o: g[:40], -10, "wrong size"),
    "truncated-header": (lambda g, o: g[:63], -10, "wrong size"),
    "truncated-payload": (lambda g, o: g[: len(g) // 2], -10, "wrong size"),
    "truncated-by-4": (lambda g, o: g[:-4], -10, "wrong size"),
    "wrong-magic": (lambda g, o: b"NOTTIMMX" + g[8:], -11, "not a timmx weights"),
    "magic-byte-flipped": (lambda g, o: flip(g, MAGIC + 3), -11, "not a timmx weights"),
    "version-flipped": (lambda g, o: flip(g, VERSION), -12, "version"),
    "version-99": (lambda g, o: g[:8] + struct.pack("<I", 99) + g[12:], -12, "version"),
    "header-size-flipped": (lambda g, o: flip(g, HEADER_SIZE), -12, "version"),
    "payload-size-flipped": (lambda g, o: flip(g, PAYLOAD_SIZE), -14, "another model"),
    "payload-size-huge": (
        lambda g, o: g[:16] + struct.pack("<Q", 2**64 - 64) + g[24:],
        -14,
        "another model",
    ),
    "checksum-flipped": (lambda g, o: flip(g, CHECKSUM + 5), -13, "corrupted"),
    "layout-flipped": (lambda g, o: flip(g, LAYOUT), -14, "another model"),
    "payload-byte-flipped": (lambda g, o: flip(g, 5000, 0x40), -13, "corrupted"),
    "last-byte-flipped": (lambda g, o: flip(g, len(g) - 1), -13, "corrupted"),
    "other-model": (lambda g, o: o, -14, "another model"),
    "other-model-same-size": (lambda g, o: _pad_to(o, len(g)), -14, "another model"),
}


@pytest.mark.parametrize("case", list(WEIGHTS))
def test_bad_weights(demo, case) -> None:
    make, status, words = WEIGHTS[case]
    path = put(demo, f"w_{case}.bin", make(demo["weights"], demo["other_weights"]))
    proc = run(demo, path, good_raw(demo))
    assert_rejected(proc, 3, "init failed", words, f"({status})")


def _input_cases() -> dict[str, tuple[str, bytes, str]]:
    """name -> (file name, contents, words stderr must contain)."""
    return {
        "empty-raw": ("empty.raw", b"", f"expected {RAW_BYTES} bytes, got 0"),
        "empty-ppm": ("empty.ppm", b"", "no P6 magic"),
        "raw-short": ("short.raw", bytes(RAW_BYTES - 1), f"got {RAW_BYTES - 1}"),
        "raw-long": ("long.raw", bytes(RAW_BYTES + 4), f"got {RAW_BYTES + 4}"),
        "wrong-magic": ("magic.ppm", ppm(4, 4, header=b"P5\n4 4\n255\n"), "no P6 magic"),
        "p3-ascii": ("ascii.ppm", b"P3\n2 1\n255\n1 2 3 4 5 6\n", "no P6 magic"),
        "only-magic": ("magic_only.ppm", b"P6", "expected the width"),
        "missing-height": ("noheight.ppm", b"P6\n4\n", "expected the height"),
        "missing-maxval": ("nomax.ppm", b"P6\n4 4\n", "expected the maxval"),
        "maxval-65535": ("max16.ppm", ppm(4, 4, header=b"P6\n4 4\n65535\n"), "maxval 65535"),
        "maxval-0": ("max0.ppm", ppm(4, 4, header=b"P6\n4 4\n0\n"), "maxval 0"),
        "maxval-huge": ("maxbig.ppm", b"P6\n4 4\n99999999999999999999999\n", "maxval too large"),
        "non-digits": ("letters.ppm", b"P6\nab 4\n255\n" + bytes(48), "expected the width"),
        "hex-width": ("hex.ppm", b"P6\n0x4 4\n255\n" + bytes(48), "expected the height"),
        "negative-width": ("neg.ppm", b"P6\n-4 4\n255\n" + bytes(48), "expected the width"),
        "negative-height": ("negh.ppm", b"P6\n4 -4\n255\n" + bytes(48), "expected the height"),
        "plus-sign": ("plus.ppm", b"P6\n+4 4\n255\n" + bytes(48), "expected the width"),
        "zero-width": ("zero.ppm", b"P6\n0 4\n255\n" + bytes(48), "at least 1"),
        "no-space-after-maxval": ("nosp.ppm", b"P6\n4 4\n255", "no whitespace after maxval"),
        "junk-after-maxval": ("junk.ppm", b"P6\n4 4\n255x" + bytes(48), "no whitespace"),
        "pixels-short-by-1": ("short.ppm", ppm(5, 3)[:-1], "truncated"),
        "pixels-missing": ("nopix.ppm", b"P6\n7 5\n255\n", "truncated"),
        "comment-to-eof": ("comment.ppm", b"P6\n# only a comment", "expected the width"),
    }


INPUT_CASES = list(_input_cases().keys())


@pytest.mark.parametrize("case", INPUT_CASES)
def test_bad_input(demo, case) -> None:
    name, data, words = _input_cases()[case]
    proc = run(demo, good_weights(demo), put(demo, name, data))
    assert_rejected(proc, 1, name, words)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["only_one_arg"],
        ["--bench"],
        ["--bench", "-1", "w", "x"],
        ["--bench", "ten", "w", "x"],
        ["--bench", "99999999999999999999", "w", "x"],
        ["--isa", "bogus", "w", "x"],
        ["--isa"],
        ["w", "x", "y", "z"],
    ],
    ids=[
        "none",
        "one",
        "bench-no-n",
        "bench-neg",
        "bench-word",
        "bench-huge",
        "isa",
        "isa-no-v",
        "too-many",
    ],
)
def test_usage_errors(demo, args) -> None:
    assert_rejected(run(demo, *args), 2, "usage:")


def test_missing_weights_file(demo) -> None:
    proc = run(demo, demo["files"] / "nope.bin", good_raw(demo))
    assert_rejected(proc, 1, "cannot read weights", "no such file")


def test_valid_inputs_still_work(demo, tmp_path) -> None:
    """Valid PPMs (odd sizes, 1x1, comments, trailing data) and a raw file still give a top-5,
    --bench and --isa still work, and OUTPUT gets the raw logits."""
    weights = good_weights(demo)
    for name, data in {
        "odd.ppm": ppm(7, 5),
        "tall.ppm": ppm(3, 17),
        "one.ppm": ppm(1, 1),
        "comment.ppm": ppm(6, 4, header=b"P6 # c\n6\t# w\n4\r255 "),
        "trailing.ppm": ppm(5, 5, extra=b"P6\n1 1\n255\nabc"),
        "no_suffix": ppm(9, 2),
    }.items():
        assert_top5(run(demo, weights, put(demo, name, data)))
    out = tmp_path / "logits.raw"
    proc = run(demo, "--bench", "2", "--isa", "scalar", weights, good_raw(demo), out)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, f"bench run failed: {proc.stderr[-2000:]}"
    assert lines[0].startswith("median_ms "), f"no bench line: {proc.stdout}"
    assert " isa scalar" in lines[0], f"--isa scalar ignored: {proc.stdout}"
    assert len(lines) == 6, f"no top-5 after the bench line: {proc.stdout}"
    assert out.stat().st_size == 1000 * 4, "OUTPUT is not 1000 float32 logits"
