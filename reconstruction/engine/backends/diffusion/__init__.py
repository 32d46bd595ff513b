"""Diffusion: one photo → a textured mesh, sampled from our own image-conditioned occupancy diffusion model over
a frustum voxel grid aligned with the photo; best of several samples by silhouette agreement, the visible side
textured from the photo."""

from reconstruction.engine.backends.diffusion.backend import DiffusionBackend, DiffusionParams

__all__ = ["DiffusionBackend", "DiffusionParams"]
