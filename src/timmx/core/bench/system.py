"""The machine a benchmark ran on: CPU model, ISA flags, cores, load and runtime versions."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from timmx.core.backend import installed_version

# The CPU flags that decide which kernels the runtimes pick (x86 and Arm spellings).
ISA_FLAGS = (
    "sse4_2", "avx", "fma", "avx2", "avx_vnni", "avx512f", "avx512bw", "avx512vl",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
    "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2",
)  # fmt: skip
CORE_RUNTIMES = ("torch", "timm", "numpy")


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, object]:
    """CPU model name, the ISA flags of :data:`ISA_FLAGS` it has, logical cores, usable cores."""
    model, flags = None, set()
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return {
        "model": model or platform.processor() or platform.machine(),
        "isa": [flag for flag in ISA_FLAGS if flag in flags],
        "logical_cores": os.cpu_count() or 1,
        "usable_cores": usable_cores(),
    }


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), else the logical core count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS does not say)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def runtime_versions(distributions: list[str]) -> dict[str, str]:
    """Installed versions of torch, timm, numpy and ``distributions`` (missing ones left out)."""
    found: dict[str, str] = {}
    for name in (*CORE_RUNTIMES, *distributions):
        version = installed_version(name)
        if version is not None and name not in found:
            found[name] = version
    return found


def system_header(distributions: list[str]) -> dict[str, object]:
    """Everything the benchmark header shows, as JSON-ready data."""
    from timmx._version import __version__

    return {
        "cpu": cpu_info(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "timmx": __version__,
        "load_average": load_average(),
        "versions": runtime_versions(distributions),
    }
