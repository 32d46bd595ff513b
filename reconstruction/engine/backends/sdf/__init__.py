"""SDF: a dense voxel signed-distance field with spherical-harmonics colour, rendered as VolSDF density (learnt
Laplace scale β); eikonal and smoothness regularisation, mask loss when masks exist. The mesh is the zero level
set by marching cubes, closed at the box, so watertight."""

from reconstruction.engine.backends.sdf.backend import SdfBackend, SdfParams

__all__ = ["SdfBackend", "SdfParams"]
