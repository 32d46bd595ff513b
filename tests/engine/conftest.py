"""Shared fixtures of the engine tests: small synthetic meshes and captures rendered from them (no database)."""

from pathlib import Path

import numpy as np
import pytest
import trimesh


@pytest.fixture(scope="session")
def sphere_glb(tmp_path_factory) -> Path:
    """A sphere of radius 0.1 m at (0.02, 0.05, −0.01) with blotchy vertex colours, as GLB."""
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.1)
    sphere.apply_translation([0.02, 0.05, -0.01])
    rng = np.random.default_rng(7)
    colours = np.hstack([rng.integers(0, 256, size=(len(sphere.vertices), 3)), np.full((len(sphere.vertices), 1), 255)])
    sphere.visual = trimesh.visual.ColorVisuals(sphere, vertex_colors=colours.astype(np.uint8))
    path = tmp_path_factory.mktemp("meshes") / "sphere.glb"
    sphere.export(path)
    return path


@pytest.fixture(scope="session")
def sphere_capture(sphere_glb, tmp_path_factory) -> Path:
    """Eight calibrated 96-pixel views of the sphere, with masks and depth."""
    from reconstruction.engine.render import render_capture

    return render_capture(sphere_glb, tmp_path_factory.mktemp("captures") / "sphere", views=8, size=96, depth=True)
