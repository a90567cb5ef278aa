"""Timing one runtime at one thread count, and the process's peak memory.

Thread counts are set exactly where the runtime has a setting: onnxruntime's intra-op pool,
LiteRT's and ncnn's ``num_threads``, OpenVINO's ``INFERENCE_NUM_THREADS``, MNN's ``numThread``
(all through the backend's ``runtime(threads=...)``), ExecuTorch's global threadpool
(``_unsafe_reset_threadpool``) and ``torch.set_num_threads`` for PyTorch, TorchScript and
torch.export. The C target is single-threaded ("1 (fixed)"); a runtime without a setting runs
at its own default and the table says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

# How each format's thread count is set; formats not listed pass ``threads`` to the backend's
# runtime and the table says the backend decides what it does with it.
TORCH_THREADS = "torch.set_num_threads"
THREAD_CONTROL = {
    "torch": TORCH_THREADS,
    "torchscript": TORCH_THREADS,
    "torch-export": TORCH_THREADS,
    "onnx": "onnxruntime intra_op_num_threads",
    "litert": "LiteRT num_threads",
    "ncnn": "ncnn num_threads",
    "openvino": "OpenVINO INFERENCE_NUM_THREADS",
    "mnn": "MNN numThread",
    "executorch": "ExecuTorch threadpool (_unsafe_reset_threadpool)",
    "c": "the model's init (threads argument)",
    "coreai": "not settable",
    "coreml": "not settable",
    "tensorrt": "GPU",
}
FIXED_ONE: set[str] = set()  # formats that run on one thread whatever is asked
NOT_SETTABLE = {"coreai", "coreml", "tensorrt"}


@dataclass
class Timing:
    """Latency of one runtime at one thread count (milliseconds)."""

    threads: int
    applied: str  # what the runtime actually ran with ("2", "1 (fixed)", "not settable", ...)
    median_ms: float | None = None
    p90_ms: float | None = None
    min_ms: float | None = None
    runs: int = 0
    load_ms: float | None = None
    first_ms: float | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class Memory:
    """Resident memory of the measuring process: before the runtime loaded, and its peak."""

    base_rss_bytes: int | None = None
    peak_rss_bytes: int | None = None
    notes: list[str] = field(default_factory=list)


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_peak_rss() -> int | None:
    """Release freed memory, reset the peak-RSS mark (Linux ``clear_refs`` 5) and return the
    current RSS; None where the OS offers neither."""
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


def peak_rss() -> int | None:
    """The process's peak resident memory since the last :func:`reset_peak_rss`."""
    peak = _status_kib("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def set_threads(fmt: str, threads: int) -> tuple[int | None, str]:
    """Apply ``threads`` where it is global to the process; returns (the ``threads`` argument
    for the backend's runtime, what the table says was applied)."""
    if fmt in FIXED_ONE:
        return None, "1" if threads == 1 else "1 (fixed)"
    if fmt in NOT_SETTABLE:
        return None, "not settable (runtime default)"
    if THREAD_CONTROL.get(fmt) == TORCH_THREADS:
        import torch

        torch.set_num_threads(threads)
        got = torch.get_num_threads()
        return threads, str(got) if got == threads else f"{got} (asked {threads})"
    if fmt == "executorch":
        return None, _executorch_threads(threads)
    if fmt in THREAD_CONTROL:
        return threads, str(threads)
    return threads, f"{threads} (passed to the backend's runtime)"


def _executorch_threads(threads: int) -> str:
    try:
        from executorch.extension.pybindings import portable_lib
    except ImportError:
        return "not settable (no threadpool API)"
    reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)
    count = getattr(portable_lib, "_threadpool_get_thread_count", None)
    if reset is None:
        return "not settable (no threadpool API in this executorch)"
    reset(int(threads))
    got = count() if count is not None else threads
    return str(got) if got == threads else f"{got} (asked {threads})"


def time_runner(
    open_runtime: Callable[[], contextlib.AbstractContextManager],
    x,
    *,
    runs: int,
    warmup: int,
    timing: Timing,
    progress: Callable[[str], None] = lambda message: None,
) -> bool:
    """Load the runtime, time its first inference, ``warmup`` untimed runs and ``runs`` timed
    ones; fills ``timing``. Returns False when the runtime cannot run here (it yielded None)."""
    with contextlib.ExitStack() as stack:
        started = time.perf_counter()
        run = stack.enter_context(open_runtime())
        timing.load_ms = _ms(time.perf_counter() - started)
        if run is None:
            return False
        started = time.perf_counter()
        run(x)
        timing.first_ms = _ms(time.perf_counter() - started)
        for index in range(warmup):
            progress(f"warm-up {index + 1}/{warmup}")
            run(x)
        samples = []
        for index in range(runs):
            if index % max(1, runs // 4) == 0:
                progress(f"run {index + 1}/{runs}")
            started = time.perf_counter()
            run(x)
            samples.append(time.perf_counter() - started)
    timing.runs = len(samples)
    timing.median_ms = _ms(statistics.median(samples))
    timing.p90_ms = _ms(percentile(samples, 90))
    timing.min_ms = _ms(min(samples))
    return True


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-th percentile with linear interpolation (numpy's default)."""
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 4)
