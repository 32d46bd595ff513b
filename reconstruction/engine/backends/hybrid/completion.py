"""Completion: the reference view's frame, the known voxels in it, and the diffusion model's inpainting of the rest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from reconstruction.engine.generative.frame import ViewFrame, frame_for

from .known import EMPTY, OCCUPIED, UNKNOWN, classify, known_arrays
from .observe import Observation
from .silhouette import SilhouetteRepair, restore_silhouettes

if TYPE_CHECKING:
    from reconstruction.engine.generative.model import DiffusionModel
    from reconstruction.engine.generative.sampling import SampleResult

# frame_for's defaults, for a model whose config does not name its own: a frame twice as deep as wide, 10% margin.
DEPTH_RATIO = 2.0
MARGIN = 0.1


@dataclass
class SamplerSettings:
    samples: int
    steps: int
    guidance: float
    repaint_resamples: int
    seed: int


@dataclass
class Completion:
    frame: ViewFrame
    labels: np.ndarray  # (D, R, R) int8: EMPTY, OCCUPIED, UNKNOWN
    volume: np.ndarray  # (D, R, R) float32 occupancy in [0, 1], the known voxels exactly as measured
    sample: SampleResult
    filled_voxels: int = 0  # generated voxels of sealed interior voids, set occupied
    repair: SilhouetteRepair | None = None  # generated voxels restored so every mask pixel is covered

    def label_counts(self) -> dict[str, int]:
        return {
            name: int((self.labels == value).sum())
            for name, value in (("empty", EMPTY), ("occupied", OCCUPIED), ("unknown", UNKNOWN))
        }


def output_frame(model: DiffusionModel, observation: Observation, reference: int, resolution: int) -> ViewFrame:
    """The reference view's frame at `resolution` columns with cubic voxels; its margin and depth ratio are those
    of the model's training frames, so the sampler (at the model's grid) sees the object as it learnt to."""
    depth_ratio = float(model.config.get("depth_ratio", DEPTH_RATIO))
    return frame_for(
        observation.cameras[reference],
        observation.masks[reference],
        resolution=resolution,
        depth_bins=round(resolution * depth_ratio),
        depth_ratio=depth_ratio,
        margin=float(model.config.get("margin", MARGIN)),
        centre_hint=tuple(float(c) for c in observation.centre),  # type: ignore[arg-type]
    )


def complete(
    model: DiffusionModel,
    observation: Observation,
    frame: ViewFrame,
    reference: int,
    sampler: SamplerSettings,
    *,
    tolerance_voxels: float,
    band_voxels: float,
    repair_silhouettes: bool = True,
    progress: Callable[[float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Completion:
    """Known voxels of `frame` from the observation, the rest drawn by the model conditioned on the reference view.

    The sampler works on the model's own grid: the same frame at the model's resolution, with its own known voxels
    (pooling the fine labels would let a cell that straddles the hull's edge hold the unknown inside as empty). Its
    completion is brought to `frame` by interpolating among the coarse cells the model generated only, so the known
    coarse cells do not bleed into it; the fine known voxels then override.
    """
    from reconstruction.engine.generative.sampling import sample_occupancy

    labels = classify(frame, observation, tolerance_voxels=tolerance_voxels, band_voxels=band_voxels)
    known, known_mask = known_arrays(labels)
    coarse = replace(frame, resolution=model.resolution, depth_bins=model.depth_bins)
    # The occupied band keeps its thickness in world units, not in (coarser) voxels.
    scale = min(frame.voxel_size()) / min(coarse.voxel_size())
    coarse_labels = classify(coarse, observation, tolerance_voxels=tolerance_voxels, band_voxels=band_voxels * scale)
    coarse_known, coarse_known_mask = known_arrays(coarse_labels)
    image = observation.images[reference]
    sample = sample_occupancy(
        model,
        coarse.crop(image, fill=tuple(float(c) for c in _border_colour(image))),
        coarse.crop(observation.masks[reference]),
        samples=sampler.samples,
        steps=sampler.steps,
        guidance=sampler.guidance,
        seed=sampler.seed,
        known=coarse_known,
        known_mask=coarse_known_mask,
        repaint_resamples=sampler.repaint_resamples,
        progress=progress,
        cancel=cancel,
    )
    generated = _upsample_generated(sample.volume, ~coarse_known_mask, frame.shape)
    volume = np.where(known_mask, known, generated).astype(np.float32)  # measured voxels stay as measured
    repair = None
    if repair_silhouettes:
        # Every mask pixel must meet matter: what the model carved away there is given back.
        volume, repair = restore_silhouettes(frame, observation, labels, volume)
    # A void sealed inside the object is surface no camera could check and no product has: generated voxels in
    # one are set occupied (known voxels stay as measured).
    sealed = ndimage.binary_fill_holes(volume >= 0.5) & ~known_mask & (volume < 0.5)
    volume[sealed] = 1.0
    return Completion(frame, labels, volume, sample, filled_voxels=int(sealed.sum()), repair=repair)


def _upsample_generated(volume: np.ndarray, generated: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """`volume` (coarse) at `shape`, interpolated trilinearly among the `generated` cells only (normalised
    convolution); a fine voxel with no generated cell around it takes the nearest generated cell's value."""
    import torch
    import torch.nn.functional as F

    if not generated.any():
        return np.zeros(shape, dtype=np.float32)
    weight = generated.astype(np.float32)
    stacked = torch.from_numpy(np.stack([volume.astype(np.float32) * weight, weight]))[None]
    up = F.interpolate(stacked, size=shape, mode="trilinear", align_corners=False)[0].numpy()
    nearest = ndimage.distance_transform_edt(~generated, return_distances=False, return_indices=True)
    filled = volume[tuple(nearest)]  # every cell carries its nearest generated cell's value
    fallback = F.interpolate(torch.from_numpy(filled.astype(np.float32))[None, None], size=shape, mode="nearest")[0, 0]
    return np.where(up[1] > 1e-6, up[0] / np.maximum(up[1], 1e-6), fallback.numpy()).astype(np.float32)


def _border_colour(image: np.ndarray) -> np.ndarray:
    """The background colour: the median of the image's outermost pixels (the crop pads with it)."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return np.median(border, axis=0)
