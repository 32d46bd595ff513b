"""Which torch device a run uses: every backend takes the same `device` parameter (auto, cpu or cuda)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from reconstruction.engine.errors import EngineError


class DeviceUnavailable(EngineError):
    """The run asked for CUDA on a machine (or worker) that has none."""

    code = "no_cuda"


def resolve_device(choice: str) -> str:
    """'auto' → cuda when present, else cpu; 'cuda' without a CUDA device is refused rather than run slowly."""
    import torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("device=cuda was asked for but this machine has no CUDA device.")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def idle_cpus(window_s: float = 0.5) -> float:
    """Cores that other processes leave idle now: /proc/stat sampled over `window_s` (Linux), else the cores less
    the 1-minute load average. The load average lags: right after a heavy run it still counts that run's cores
    busy, which had the next run train on one thread of two idle cores."""
    cores = os.cpu_count() or 1
    first = _cpu_times()
    if first is None:
        return float(max(0.0, cores - os.getloadavg()[0]))
    time.sleep(window_s)
    second = _cpu_times()
    assert second is not None
    total = second[1] - first[1]
    return cores * (second[0] - first[0]) / total if total > 0 else float(cores)


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) clock ticks of all cores since boot, or None where /proc/stat is not there."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields)  # idle and I/O wait count as idle
