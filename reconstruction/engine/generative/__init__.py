"""Generative single-image reconstruction: frustum voxel frames, procedural training data, the diffusion prior.

frame.py is the shared contract (a view-aligned voxel grid per image); procedural.py and dataset.py make training
data; the diffusion model and its sampler live beside them.
"""

from reconstruction.engine.generative.frame import ViewFrame, frame_for, frame_for_photo, mesh_occupancy

__all__ = ["ViewFrame", "frame_for", "frame_for_photo", "mesh_occupancy"]
