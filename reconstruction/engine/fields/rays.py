"""Rays of calibrated pinhole cameras (OpenCV convention), their entry and exit through a box, and samples on them."""

from __future__ import annotations

import math

import numpy as np
import torch

from reconstruction.engine.cameras import Camera


def camera_rays(camera: Camera, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and unit world directions (H·W, 3) through every pixel centre, row by row (distortion ignored)."""
    v, u = torch.meshgrid(
        torch.arange(camera.height, dtype=torch.float64) + 0.5,
        torch.arange(camera.width, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    pixels = torch.stack([u.reshape(-1), v.reshape(-1), torch.ones(u.numel(), dtype=torch.float64)], dim=-1)
    to_world = torch.from_numpy(np.linalg.inv(camera.K).T @ camera.R)  # (K⁻¹ p)ᵀ R = (Rᵀ K⁻¹ p)ᵀ
    directions = pixels @ to_world
    directions = directions / directions.norm(dim=-1, keepdim=True)
    origins = torch.from_numpy(camera.center).expand_as(directions)
    return origins.float().to(device).contiguous(), directions.float().to(device)


def ray_box(
    origins: torch.Tensor, directions: torch.Tensor, low: torch.Tensor, high: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances along each ray where it enters and leaves the axis-aligned box [low, high] (slab method).

    Rays that miss the box get near ≥ far; near is never behind the origin.
    """
    safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    a = (low - origins) / safe
    b = (high - origins) / safe
    near = torch.minimum(a, b).amax(dim=-1).clamp(min=0.0)
    far = torch.maximum(a, b).amin(dim=-1)
    return near, far


def stratified_samples(
    near: torch.Tensor, far: torch.Tensor, step: float, *, max_samples: int, jitter: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances (R, S) at a fixed `step` from `near` (one random offset per ray when `jitter`), and which lie
    before `far`. S covers the longest ray, up to `max_samples`."""
    span = float((far - near).clamp(min=0).max()) if near.numel() else 0.0
    count = max(1, min(max_samples, math.ceil(span / step)))
    offsets = torch.rand_like(near)[:, None] if jitter else torch.full_like(near, 0.5)[:, None]
    t = near[:, None] + (torch.arange(count, device=near.device, dtype=near.dtype)[None] + offsets) * step
    return t, t < far[:, None]
