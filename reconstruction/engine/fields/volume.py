"""Alpha compositing along rays and the ray-batch renderer of any field `query(points, dirs) -> (sigma, rgb)`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from reconstruction.engine.fields.occupancy import OccupancyGrid
from reconstruction.engine.fields.rays import ray_box, stratified_samples

# (points (P, 3), unit directions (P, 3)) -> (density per world unit (P,), colour in [0, 1] (P, 3))
FieldQuery = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class RayBatchRender:
    rgb: torch.Tensor  # (R, 3), background already composited
    opacity: torch.Tensor  # (R,) accumulated alpha in [0, 1]
    depth: torch.Tensor  # (R,) expected distance of the opaque part (0 where empty)
    samples: int  # samples the field was queried at (after empty-space skipping)


def composite(
    alpha: torch.Tensor, rgb: torch.Tensor, t: torch.Tensor, background: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Front-to-back compositing of per-sample alpha (R, S) and colour (R, S, 3) at distances t (R, S).

    Returns colour (R, 3), opacity (R,), depth (R,) and the weights (R, S); weights sum to the opacity ≤ 1.
    A `background` colour (3,) fills the transparent remainder; None leaves it black (premultiplied).
    """
    transmittance = torch.cumprod(1.0 - alpha + 1e-10, dim=1)
    transmittance = torch.cat([torch.ones_like(alpha[:, :1]), transmittance[:, :-1]], dim=1)
    weights = alpha * transmittance
    opacity = weights.sum(dim=1)
    colour = (weights[..., None] * rgb).sum(dim=1)
    if background is not None:
        colour = colour + (1.0 - opacity)[:, None] * background
    depth = (weights * t).sum(dim=1) / opacity.clamp(min=1e-6)
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
) -> RayBatchRender:
    """Renders a batch of rays through the box [low, high], asking the field only at samples the occupancy
    grid marks occupied (all samples when it is None)."""
    near, far = ray_box(origins, directions, low, high)
    t, inside = stratified_samples(near, far, step, max_samples=max_samples, jitter=jitter)
    points = origins[:, None, :] + t[..., None] * directions[:, None, :]
    keep = inside if occupancy is None else inside & occupancy.query(points)
    count = int(keep.sum())
    alpha = torch.zeros_like(t)
    rgb = torch.zeros((*t.shape, 3), dtype=t.dtype, device=t.device)
    if count:
        sigma, colour = query(points[keep], directions[:, None, :].expand_as(points)[keep])
        alpha = alpha.masked_scatter(keep, 1.0 - torch.exp(-sigma.clamp(min=0) * step))
        rgb = rgb.masked_scatter(keep[..., None].expand_as(rgb), colour)
    colour, opacity, depth, _ = composite(alpha, rgb, t, background)
    return RayBatchRender(rgb=colour, opacity=opacity, depth=depth, samples=count)
