"""Measures what a run costs: wall time, CPU seconds (this process and its children), peak memory, GPU time."""
from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from reconstruction.engine.protocol import ResourceUsage


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@contextmanager
def measure(device: str = "cpu") -> Iterator[ResourceUsage]:
    """Fills the yielded ResourceUsage when the block ends. GPU seconds are the wall time spent on a CUDA device."""
    usage = ResourceUsage(device=device)
    cuda = device.startswith("cuda")
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    start_wall, start_cpu = time.perf_counter(), _cpu_seconds()
    try:
        yield usage
    finally:
        if cuda:
            import torch

            torch.cuda.synchronize()
            usage.peak_gpu_memory_mb = torch.cuda.max_memory_allocated() / 2**20
        usage.wall_s = time.perf_counter() - start_wall
        usage.cpu_s = _cpu_seconds() - start_cpu
        usage.gpu_s = usage.wall_s if cuda else 0.0
        usage.peak_memory_mb = _peak_rss_mb()
