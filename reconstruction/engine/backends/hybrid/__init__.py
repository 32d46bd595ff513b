"""Hybrid: photogrammetry from few calibrated views where the cameras saw the object, the diffusion model's
completion (inpainting with the measured voxels held fixed) where none did, and per-vertex provenance."""

from reconstruction.engine.backends.hybrid.backend import HybridBackend, HybridParams

__all__ = ["HybridBackend", "HybridParams"]
