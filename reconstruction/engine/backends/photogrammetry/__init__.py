"""Photogrammetry backend: structure from motion, torch multi-view stereo, Poisson meshing, baked texture."""
from .backend import PhotogrammetryBackend

__all__ = ["PhotogrammetryBackend"]
