"""NeRF: a dense voxel radiance field (density + degree-1 spherical-harmonics colour, DVGO/Plenoxels style)
trained by volume rendering; coarse-to-fine growth, occupancy-grid skipping, TV and mask losses. Meshes by
marching cubes of the density."""

from reconstruction.engine.backends.nerf.backend import NerfBackend, NerfParams

__all__ = ["NerfBackend", "NerfParams"]
