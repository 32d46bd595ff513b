"""Drawing occupancy volumes from the denoiser: DDIM (η = 0) with classifier-free guidance, the silhouette as a hard
constraint, RePaint-style inpainting of known voxels, and best-of-N selection by silhouette agreement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reconstruction.engine.errors import Cancelled, InvalidInput
from reconstruction.engine.generative.model import DiffusionModel, make_condition

# A column is "in the silhouette" when the crop pixel is at least half covered; the same rule makes the
# ground-truth columns (a ray through the pixel centre hits the object about when coverage ≥ 0.5).
SILHOUETTE_LEVEL = 0.5


@dataclass
class SampleResult:
    volume: np.ndarray  # (D, R, R) float32 in [0, 1]: occupancy probability of the kept sample
    scores: list[float]  # silhouette agreement (IoU of projected occupancy and mask) of every sample
    confidence: float  # in [0, 1]: agreement of the kept sample times the samples' consensus
    index: int = 0  # which sample was kept
    spread: float = 0.0  # mean disagreement between samples inside the silhouette, in [0, 1]
    details: dict[str, Any] = field(default_factory=dict)


def silhouette_agreement(volume: np.ndarray, mask: np.ndarray, level: float = 0.5) -> float:
    """IoU between the columns with any voxel above `level` and the mask's pixels (≥ SILHOUETTE_LEVEL)."""
    projected = (np.asarray(volume) > level).any(axis=0)
    silhouette = np.asarray(mask) >= SILHOUETTE_LEVEL
    union = np.count_nonzero(projected | silhouette)
    return float(np.count_nonzero(projected & silhouette) / union) if union else 0.0


def ddim_timesteps(total: int, steps: int) -> list[int]:
    """`steps` decreasing timesteps from total−1 to 0, evenly spaced."""
    return sorted({int(round(t)) for t in np.linspace(total - 1, 0, max(2, steps))}, reverse=True)


def _resize_volume(volume: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """(B, D, R, R) → (B, *shape), trilinear with voxel centres kept (align_corners=False)."""
    if tuple(volume.shape[1:]) == shape:
        return volume
    return F.interpolate(volume[:, None], size=shape, mode="trilinear", align_corners=False)[:, 0]


def _resize_plane(plane: np.ndarray, size: int) -> np.ndarray:
    """(R, R[, C]) float → (size, size[, C]) by area (down) or bilinear (up) resampling, centres aligned."""
    tensor = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))
    tensor = tensor[None, None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)[None]
    if tensor.shape[-1] == size:
        resized = tensor
    elif tensor.shape[-1] > size:
        resized = F.adaptive_avg_pool2d(tensor, size)
    else:
        resized = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    out = resized[0].permute(1, 2, 0).numpy()
    return out[..., 0] if plane.ndim == 2 else out


@torch.no_grad()
def sample_occupancy(
    model: DiffusionModel,
    image: np.ndarray,
    mask: np.ndarray,
    *,
    samples: int = 4,
    steps: int = 24,
    guidance: float = 2.0,
    seed: int = 0,
    known: np.ndarray | None = None,
    known_mask: np.ndarray | None = None,
    repaint_resamples: int = 2,
    progress: Callable[[float], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> SampleResult:
    """Samples `samples` volumes for one crop (image (R,R,3) in [0,1], mask (R,R) in [0,1]) and keeps the one whose
    projection agrees best with the mask.

    Columns outside the mask are empty in every sample (hard constraint). With `known` (D,R,R) in [0,1] and
    `known_mask` (D,R,R) bool, those voxels are held fixed (RePaint: at every step the known part of x_t is replaced
    by the forward-noised known values, and each step is re-noised and redone `repaint_resamples` times so the
    generated part harmonises with it). Crops of another size are resampled to the network's R; the volume comes
    back at the network's (D, R, R), or at `known`'s shape when given.
    """
    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1]:
        raise InvalidInput(f"The crop must be a square RGB array (R, R, 3), not shape {image.shape}.")
    if mask.shape != image.shape[:2]:
        raise InvalidInput(f"The mask is {mask.shape} but the crop is {image.shape[:2]}.")
    if samples < 1 or steps < 1:
        raise InvalidInput("samples and steps must be at least 1.")
    D, R = model.depth_bins, model.resolution
    shape = (D, R, R)
    out_shape = shape
    image_r, mask_r = _resize_plane(image, R), _resize_plane(mask, R)
    known_t = known_mask_t = None
    if known is not None or known_mask is not None:
        if known is None or known_mask is None:
            raise InvalidInput("known and known_mask go together.")
        known, known_mask = np.asarray(known, dtype=np.float32), np.asarray(known_mask, dtype=bool)
        if known.shape != known_mask.shape or known.ndim != 3:
            raise InvalidInput(f"known {known.shape} and known_mask {known_mask.shape} must be the same (D, R, R).")
        out_shape = known.shape  # type: ignore[assignment]
        known_t = _resize_volume(torch.from_numpy(known)[None], shape)[0] * 2 - 1
        known_mask_t = _resize_volume(torch.from_numpy(known_mask.astype(np.float32))[None], shape)[0] >= 0.5

    silhouette = torch.from_numpy(mask_r >= SILHOUETTE_LEVEL)
    outside = ~silhouette[None, None].expand(samples, D, R, R)
    condition = make_condition(
        torch.from_numpy(image_r).permute(2, 0, 1)[None], torch.from_numpy(mask_r)[None]
    ).expand(samples, -1, -1, -1)
    unconditional = torch.zeros_like(condition)
    generator = torch.Generator().manual_seed(seed)
    alphas = model.alphas_cumprod
    timesteps = ddim_timesteps(int(model.config["timesteps"]), steps)
    x = torch.randn((samples, *shape), generator=generator)
    resamples = max(1, repaint_resamples) if known_t is not None else 1
    total_calls = len(timesteps) * resamples

    def predict_x0(x_t: torch.Tensor, t: int) -> torch.Tensor:
        batch_t = torch.full((samples,), t, dtype=torch.long)
        if guidance == 1.0:
            logits = model(x_t, batch_t, condition)
        else:
            both = model(torch.cat([x_t, x_t]), torch.cat([batch_t, batch_t]), torch.cat([condition, unconditional]))
            cond_logits, uncond_logits = both.chunk(2)
            logits = uncond_logits + guidance * (cond_logits - uncond_logits)
        x0 = torch.tanh(logits / 2)  # = 2σ(logits) − 1: the predicted volume in [−1, 1]
        x0 = x0.masked_fill(outside, -1.0)
        if known_t is not None and known_mask_t is not None:
            x0 = torch.where(known_mask_t, known_t, x0)
        return x0

    x0 = torch.zeros_like(x)
    calls = 0
    for index, t in enumerate(timesteps):
        t_prev = timesteps[index + 1] if index + 1 < len(timesteps) else -1
        a_t = alphas[t]
        a_prev = alphas[t_prev] if t_prev >= 0 else torch.tensor(1.0)
        for repeat in range(resamples):
            if cancel is not None and cancel():
                raise Cancelled("Cancelled by request.")
            if known_t is not None and known_mask_t is not None:
                noised_known = a_t.sqrt() * known_t + (1 - a_t).sqrt() * torch.randn(x.shape, generator=generator)
                x = torch.where(known_mask_t, noised_known, x)
            x0 = predict_x0(x, t)
            eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
            x_prev = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
            calls += 1
            if progress is not None:
                progress(calls / total_calls)
            if repeat + 1 < resamples and t_prev >= 0:
                # RePaint's jump back: re-noise x_{t_prev} to x_t and take the step again.
                ratio = a_t / a_prev
                x = ratio.sqrt() * x_prev + (1 - ratio).sqrt() * torch.randn(x.shape, generator=generator)
            else:
                x = x_prev
    probabilities = (x0 + 1) / 2
    probabilities = _resize_volume(probabilities, tuple(out_shape))  # type: ignore[arg-type]
    if known is not None and known_mask is not None:
        held = torch.from_numpy(known_mask)[None]
        probabilities = torch.where(held, torch.from_numpy(known)[None], probabilities)
    volumes = probabilities.clamp(0, 1).numpy().astype(np.float32)
    mask_out = mask if mask.shape[0] == out_shape[1] else _resize_plane(mask, out_shape[1])
    scores = [silhouette_agreement(v, mask_out) for v in volumes]
    best = int(np.argmax(scores))
    spread = _spread(volumes, mask_out)
    confidence = float(np.clip(scores[best] * (1.0 - spread), 0.0, 1.0))
    return SampleResult(
        volume=volumes[best],
        scores=scores,
        confidence=confidence,
        index=best,
        spread=spread,
        details={"steps": len(timesteps), "guidance": guidance, "samples": samples, "resamples": resamples},
    )


def _spread(volumes: np.ndarray, mask: np.ndarray) -> float:
    """How much the samples disagree: the share of voxels in silhouette columns whose occupancy (> 0.5) is not
    unanimous, over the voxels some sample fills (0 with one sample)."""
    if len(volumes) < 2:
        return 0.0
    occupied = volumes > 0.5
    columns = mask >= SILHOUETTE_LEVEL
    inside = occupied[:, :, columns]
    anywhere = inside.any(axis=0)
    if not anywhere.any():
        return 1.0
    unanimous = inside.all(axis=0)
    return float(np.count_nonzero(anywhere & ~unanimous) / np.count_nonzero(anywhere))
