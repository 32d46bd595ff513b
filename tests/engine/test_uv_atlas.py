"""xatlas runs in a child process: its charts come back whole, and its crashes and overruns come back as errors."""

import numpy as np
import pytest
import trimesh

from reconstruction.engine import texturing, uv_atlas
from reconstruction.engine.meshes import Mesh
from reconstruction.engine.postprocess import uv
from reconstruction.engine.postprocess.errors import PostprocessError
from reconstruction.engine.uv_atlas import AtlasFailed, chart_atlas
from tests.engine.photogrammetry.scenes import orbit_cameras, render
from tests.postprocess.meshes import sphere


def test_charts_cover_every_face_inside_the_unit_square():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    atlas = chart_atlas(sphere.vertices, sphere.faces, texture_size=256, padding_px=2)
    assert atlas.faces.shape == sphere.faces.shape and atlas.charts >= 1 and 0 < atlas.utilization <= 1
    # The same triangles, vertices split along seams only.
    assert np.allclose(sphere.vertices[atlas.vertex_source][atlas.faces], sphere.vertices[sphere.faces])
    assert (atlas.uvs >= 0).all() and (atlas.uvs <= 1).all()
    corners = atlas.uvs[atlas.faces]
    edges = corners[:, 1:] - corners[:, :1]
    areas = edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0]
    assert (np.abs(areas) > 0).all()


@pytest.fixture
def crashing_xatlas(monkeypatch, tmp_path):
    """The child process is replaced by one that dies of a segmentation fault, as xatlas does on some meshes."""
    script = tmp_path / "crash.py"
    script.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.setattr(uv_atlas, "__file__", str(script))


def test_a_crash_in_the_child_is_an_error_not_a_dead_worker(crashing_xatlas):
    box = trimesh.creation.box()
    with pytest.raises(AtlasFailed, match=r"xatlas failed on 12 triangles \(killed by signal 11"):
        chart_atlas(box.vertices, box.faces)


def test_a_child_that_overruns_is_stopped(monkeypatch, tmp_path):
    script = tmp_path / "slow.py"
    script.write_text("import time\ntime.sleep(60)\n")
    monkeypatch.setattr(uv_atlas, "__file__", str(script))
    box = trimesh.creation.box()
    with pytest.raises(AtlasFailed, match="did not finish within 1 s on 12 triangles"):
        chart_atlas(box.vertices, box.faces, timeout_s=1)


def test_the_baker_falls_back_to_one_slot_per_triangle(crashing_xatlas):
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.8)
    views = [(camera, render(sphere, camera)[0]) for camera in orbit_cameras(4, 64)]
    textured = texturing.bake(Mesh(sphere.vertices, sphere.faces), views, 128, "xatlas")
    assert textured.atlas.startswith("grid (xatlas failed on 320 triangles (killed by signal 11")
    assert textured.coverage > 0.5


def test_unwrapping_reports_the_failure_to_the_submitter(crashing_xatlas):
    with pytest.raises(PostprocessError, match="UV unwrapping failed: xatlas failed on 1280 triangles"):
        uv.unwrap(sphere())


def _uv_area(atlas) -> float:
    corners = atlas.uvs[atlas.faces]
    edges = corners[:, 1:] - corners[:, :1]
    return float(np.abs(edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0]).sum() / 2)


def test_a_small_object_in_metres_fills_the_atlas_as_well_as_a_large_one():
    bumpy = trimesh.creation.icosphere(subdivisions=4)
    bumpy.vertices *= 1 + 0.1 * np.sin(5 * bumpy.vertices[:, :1]) * np.cos(3 * bumpy.vertices[:, 1:2])
    large = chart_atlas(bumpy.vertices * 2.0, bumpy.faces, texture_size=1024)
    small = chart_atlas(bumpy.vertices * 0.02, bumpy.faces, texture_size=1024)  # a 4 cm object
    assert _uv_area(large) > 0.5
    assert abs(_uv_area(small) - _uv_area(large)) < 0.05
