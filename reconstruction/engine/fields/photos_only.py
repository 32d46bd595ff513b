"""Cameras for a capture that has photos only: the photogrammetry backend's calibration (structure from motion,
refined on dense tracks), written out as a capture with known cameras for the field trainer.

The field then lives in SfM's frame, which OUT/sparse records; `--eval-cameras` for such a run are in that frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reconstruction.engine.backends.photogrammetry.calibration import as_capture, calibrate, staged
from reconstruction.engine.backends.photogrammetry.config import PhotogrammetryParams
from reconstruction.engine.capture import Capture
from reconstruction.engine.errors import BackendFailed
from reconstruction.engine.fields.params import MIN_VIEWS
from reconstruction.engine.protocol import CancelFn, ProgressFn

FOLDER = "calibration"
# Shares of the run's progress given to SfM and to the camera refinement; training reports over the rest.
STAGES = {"sfm": (0.0, 0.15), "refine": (0.15, 0.2)}
TRAINING_START = 0.2


@dataclass
class Calibrated:
    capture: Capture  # the undistorted photos SfM placed, with their cameras (and masks when the cut was confirmed)
    metrics: dict[str, Any]
    log: list[str]


def calibrated(capture: Capture, workdir: Path, device: str, progress: ProgressFn, cancel: CancelFn) -> Calibrated:
    """The capture with cameras from its photos, under workdir/calibration/ (sfm/, sparse/, capture/)."""
    folder = Path(workdir) / FOLDER
    calibration = calibrate(capture, folder, PhotogrammetryParams(device=device), torch.device(device), cancel, staged(progress, STAGES))
    if len(calibration.views) < MIN_VIEWS:
        failed = "; ".join(f"{name}: {why}" for name, why in sorted(calibration.metrics["failed_images"].items()))
        raise BackendFailed(
            f"Structure from motion placed {len(calibration.views)} of {capture.num_views} photos; a field needs at "
            f"least {MIN_VIEWS}. Not placed: {failed}."
        )
    log = ["cameras from the photos (structure from motion, refined on dense tracks), in SfM's frame", *calibration.log]
    return Calibrated(as_capture(calibration, folder / "capture"), calibration.metrics, log)


def after_calibration(progress: ProgressFn) -> ProgressFn:
    """The trainer's progress, reported over the share of the run left after calibration."""

    def report(stage: str, fraction: float, message: str) -> None:
        progress(stage, TRAINING_START + (1 - TRAINING_START) * fraction, message)

    return report
