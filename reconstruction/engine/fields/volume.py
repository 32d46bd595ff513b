"""Alpha compositing along rays and the ray-batch renderer of any field `query(points, dirs) -> (sigma, rgb)`.

Samples are packed: only those the occupancy grid keeps are stored, ray by ray in order of distance, so memory and
time follow the occupied samples rather than the longest ray times the batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from reconstruction.engine.fields.occupancy import OccupancyGrid
from reconstruction.engine.fields.rays import ray_box, stratified_samples

# (points (P, 3), unit directions (P, 3)) -> (density per world unit (P,), colour in [0, 1] (P, 3))
FieldQuery = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# (points (P, 3), unit directions (P, 3)) -> density per world unit (P,): the cheap look-ahead that finds where
# rays become opaque
DensityQuery = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Samples behind this transmittance change a pixel by less than a 16-bit level; they are skipped.
MIN_TRANSMITTANCE = 1e-4


@dataclass
class RayBatchRender:
    rgb: torch.Tensor  # (R, 3), background already composited
    opacity: torch.Tensor  # (R,) accumulated alpha in [0, 1]
    depth: torch.Tensor  # (R,) expected distance of the opaque part (0 where empty)
    samples: int  # samples the field was queried at (after empty-space skipping and early termination)


def transmittance_before(optical_depth: torch.Tensor, ray: torch.Tensor) -> torch.Tensor:
    """Transmittance up to (not including) each packed sample: exp of minus the optical depth of the samples
    before it on the same ray. `ray` (P,) is non-decreasing; the running sum is in float64 so long batches keep
    the precision of short rays."""
    if not len(ray):
        return optical_depth.new_ones(0)
    running = torch.cumsum(optical_depth.double(), 0) - optical_depth.double()
    first = torch.ones_like(ray, dtype=torch.bool)
    first[1:] = ray[1:] != ray[:-1]
    ray_start = running[first][torch.cumsum(first.long(), 0) - 1]
    return torch.exp(-(running - ray_start)).to(optical_depth.dtype)


def composite(
    optical_depth: torch.Tensor,
    rgb: torch.Tensor,
    t: torch.Tensor,
    ray: torch.Tensor,
    rays: int,
    background: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Front-to-back compositing of packed samples: optical depth σ·δ (P,), colour (P, 3) and distance t (P,) of
    samples on rays `ray` (P,), ordered by ray then distance, of a batch of `rays` rays.

    Returns colour (rays, 3), opacity (rays,), depth (rays,) and the weights (P,); a ray's weights sum to its
    opacity ≤ 1. A `background` colour (3,) fills the transparent remainder; None leaves it black (premultiplied).
    """
    alpha = -torch.expm1(-optical_depth)
    weights = alpha * transmittance_before(optical_depth, ray)
    opacity = optical_depth.new_zeros(rays).index_add(0, ray, weights)
    colour = rgb.new_zeros((rays, 3)).index_add(0, ray, weights[:, None] * rgb)
    if background is not None:
        colour = colour + (1.0 - opacity)[:, None] * background
    depth = optical_depth.new_zeros(rays).index_add(0, ray, weights * t) / opacity.clamp(min=1e-6)
    return colour, opacity, torch.where(opacity > 1e-6, depth, torch.zeros_like(depth)), weights


def render_rays(
    query: FieldQuery,
    origins: torch.Tensor,
    directions: torch.Tensor,
    *,
    low: torch.Tensor,
    high: torch.Tensor,
    step: float,
    max_samples: int,
    background: torch.Tensor | None,
    occupancy: OccupancyGrid | None = None,
    jitter: bool = False,
    density: DensityQuery | None = None,
) -> RayBatchRender:
    """Renders a batch of rays through the box [low, high], asking the field only at samples the occupancy
    grid marks occupied (all samples when it is None). With `density`, a look-ahead without gradients first
    finds where each ray becomes opaque, and the field is asked only in front of that."""
    near, far = ray_box(origins, directions, low, high)
    t, inside = stratified_samples(near, far, step, max_samples=max_samples, jitter=jitter)
    points = origins[:, None, :] + t[..., None] * directions[:, None, :]
    keep = inside if occupancy is None else inside & occupancy.query(points)
    ray, index = keep.nonzero(as_tuple=True)  # row-major: by ray, then by distance
    points, t = points[ray, index], t[ray, index]
    if density is not None and len(ray):
        with torch.no_grad():
            ahead = density(points, directions[ray]).clamp(min=0) * step
            visible = transmittance_before(ahead, ray) > MIN_TRANSMITTANCE
        ray, points, t = ray[visible], points[visible], t[visible]
    if len(ray):
        sigma, colour = query(points, directions[ray])
    else:
        sigma, colour = t.new_zeros(0), t.new_zeros((0, 3))
    rgb, opacity, depth, _ = composite(sigma.clamp(min=0) * step, colour, t, ray, len(origins), background)
    return RayBatchRender(rgb=rgb, opacity=opacity, depth=depth, samples=len(ray))
