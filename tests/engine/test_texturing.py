"""Baking colour from calibrated views into a UV atlas, and the GLB it is written to."""

import numpy as np
import pytest
import trimesh

from reconstruction.engine.meshes import Mesh
from reconstruction.engine.texturing import bake, write_glb
from tests.engine.photogrammetry.scenes import orbit_cameras, pattern, render


@pytest.fixture(scope="module")
def sphere_views():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.8)
    cameras = orbit_cameras(8, 96)
    return sphere, [(camera, render(sphere, camera)[0]) for camera in cameras]


@pytest.mark.parametrize("method", ["grid", "xatlas"])
def test_baked_colours_match_the_surface_and_survive_the_glb(sphere_views, method, tmp_path):
    sphere, views = sphere_views
    textured = bake(Mesh(sphere.vertices, sphere.faces), views, 256, method)
    assert textured.coverage > 0.95
    assert textured.texture.size == (256, 256)
    path = write_glb(textured, tmp_path / "sphere.glb")
    loaded = trimesh.load(path)
    mesh = loaded.to_geometry() if isinstance(loaded, trimesh.Scene) else loaded
    # Sample the texture at each face centre's UV and compare with the pattern at that 3D point.
    faces = np.asarray(mesh.faces)
    uv = np.asarray(mesh.visual.uv)[faces].mean(axis=1)
    image = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"), dtype=np.float64) / 255
    cols = np.clip((uv[:, 0] * 256).astype(int), 0, 255)
    rows = np.clip(((1 - uv[:, 1]) * 256).astype(int), 0, 255)
    centres = np.asarray(mesh.vertices)[faces].mean(axis=1)
    # Face centres lie inside the sphere's chord; the pattern varies slowly enough for that not to matter much.
    error = np.abs(image[rows, cols] - pattern(centres)).mean()
    assert error < 0.08


def test_a_face_no_view_sees_gets_the_mean_colour_not_black(sphere_views):
    sphere, views = sphere_views
    front_only = views[:1]
    textured = bake(Mesh(sphere.vertices, sphere.faces), front_only, 128, "grid")
    assert 0.2 < textured.coverage < 0.6
    pixels = np.asarray(textured.texture, dtype=np.float64)
    assert (pixels.sum(axis=2) > 0).mean() > 0.5


def test_texels_no_view_sees_take_the_surface_colour_given_for_them(sphere_views):
    sphere, views = sphere_views
    asked = []

    def red_outwards(points, normals):
        asked.append(len(points))
        # Normals are outward unit vectors on this origin-centred sphere.
        assert np.allclose((normals * points).sum(axis=1) / np.linalg.norm(points, axis=1), 1, atol=0.05)
        return np.tile([1.0, 0.0, 0.0], (len(points), 1))

    textured = bake(Mesh(sphere.vertices, sphere.faces), views[:1], 128, "grid", unseen_colours=red_outwards)
    assert 0.2 < textured.coverage < 0.6 and asked and asked[0] > 0
    pixels = np.asarray(textured.texture, dtype=np.int64)
    assert ((pixels == [255, 0, 0]).all(axis=2)).mean() > 0.2


def test_triangles_smaller_than_a_texel_still_get_their_own_colour():
    # 5,120 triangles in a 64² grid atlas: each slot is under a texel wide, so few hold a texel centre.
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.8)
    views = [(camera, render(sphere, camera)[0]) for camera in orbit_cameras(8, 96)]
    textured = bake(Mesh(sphere.vertices, sphere.faces), views, 64, "grid")
    uv = textured.uvs[textured.faces].mean(axis=1)
    image = np.asarray(textured.texture, dtype=np.float64) / 255
    cols = np.clip((uv[:, 0] * 64).astype(int), 0, 63)
    rows = np.clip(((1 - uv[:, 1]) * 64).astype(int), 0, 63)
    centres = textured.vertices[textured.faces].mean(axis=1)
    assert np.abs(image[rows, cols] - pattern(centres)).mean() < 0.09
