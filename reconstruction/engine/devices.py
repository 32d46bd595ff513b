"""Which torch device a run uses: every backend takes the same `device` parameter (auto, cpu or cuda)."""

from __future__ import annotations

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
