import json
import math

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy import ndimage

from reconstruction.engine.capture import Capture
from reconstruction.engine.render import RenderError, render_capture, render_views, sha256_file, turntable_cameras
from tests.shared_data import SHARED_GLTF

CENTRE = np.array([0.02, 0.05, -0.01])
RADIUS = 0.1


def test_rendered_folder_loads_as_a_capture_with_its_manifest(sphere_glb, sphere_capture):
    capture = Capture.load(sphere_capture)
    assert capture.num_views == 8
    assert capture.cameras is not None and capture.masks is not None
    manifest = capture.metadata
    assert manifest["units"] == "metres" and manifest["scale"] == 1.0
    assert manifest["ground_truth"]["sha256"] == sha256_file(sphere_glb)
    assert manifest["ground_truth"]["path"] == str(sphere_glb.resolve())
    np.testing.assert_allclose(manifest["intrinsics"]["K"], capture.cameras[0].K)
    np.testing.assert_allclose(manifest["object"]["center"], CENTRE, atol=1e-6)
    assert manifest["images"] == [p.name for p in capture.images]
    assert len(list((sphere_capture / "depth").glob("*.npy"))) == 8
    assert (sphere_capture / "sparse" / "points3D.txt").is_file()


def test_written_cameras_are_exact(sphere_glb, sphere_capture):
    """Every surface vertex projects into (or within a pixel diagonal of) the mask; the centre lands in it."""
    capture = Capture.load(sphere_capture)
    vertices = trimesh.load(sphere_glb, force="mesh").vertices
    for index, camera in enumerate(capture.cameras):
        mask = capture.load_mask(index) > 0.5
        uv, depth = camera.project(vertices)
        assert camera.in_image(uv, depth).all()
        pixels = np.floor(uv).astype(int)
        distance_to_mask = ndimage.distance_transform_edt(~mask)[pixels[:, 1], pixels[:, 0]]
        assert distance_to_mask.max() <= math.sqrt(2)
        assert (distance_to_mask == 0).mean() > 0.9
        u, v = camera.project(CENTRE[None])[0][0]
        assert mask[int(v), int(u)]


def test_depth_is_distance_along_the_optical_axis(sphere_capture):
    capture = Capture.load(sphere_capture)
    for index, camera in enumerate(capture.cameras):
        depth = np.load(sphere_capture / "depth" / f"view_{index:03d}.npy")
        mask = capture.load_mask(index) > 0.5
        # Depth is one sample per pixel, the mask half the coverage of four: they differ on the edge alone.
        edge = ndimage.binary_dilation(mask) & ~ndimage.binary_erosion(mask)
        np.testing.assert_array_equal((depth > 0)[~edge], mask[~edge])
        u, v = camera.project(CENTRE[None])[0][0]
        # The optical axis goes through the sphere's centre, so the front surface is one radius nearer.
        expected = np.linalg.norm(camera.center - CENTRE) - RADIUS
        assert depth[int(v), int(u)] == pytest.approx(expected, rel=0.01)


def test_background_is_white_and_render_views_reproduces_the_images(sphere_glb, sphere_capture):
    capture = Capture.load(sphere_capture)
    views = render_views(sphere_glb, capture.cameras[:2])
    for index, view in enumerate(views):
        written = np.asarray(Image.open(capture.images[index]))
        np.testing.assert_array_equal(view.rgb, written)
        assert (view.rgb[~ndimage.binary_dilation(view.coverage > 0)] == 255).all()
        np.testing.assert_array_equal(np.asarray(Image.open(capture.masks[index])), np.round(view.coverage * 255))
        assert view.rgb[view.mask].std() > 20  # the blotchy colours are there


def test_turntable_deals_views_to_rings_and_frames_the_object():
    bounds = np.array([[-1.0, -0.5, -0.2], [1.0, 0.5, 0.2]])
    cameras = turntable_cameras(bounds, views=8, size=64, rings=(-15, 15, 45))
    assert len(cameras) == 8
    centre = bounds.mean(axis=0)
    radius = np.linalg.norm(bounds[1] - bounds[0]) / 2
    elevations = [
        round(math.degrees(math.asin((c.center - centre)[1] / np.linalg.norm(c.center - centre)))) for c in cameras
    ]
    assert elevations == [-15, -15, -15, 15, 15, 15, 45, 45]
    corners = trimesh.bounds.corners(bounds)
    for camera in cameras:
        assert np.linalg.norm(camera.center - centre) > radius
        uv, depth = camera.project(corners)
        assert camera.in_image(uv, depth).all()
    assert len(turntable_cameras(bounds, views=8, size=64, single=True)) == 1


def test_seed_turns_the_turntable_reproducibly():
    bounds = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    a = turntable_cameras(bounds, views=4, size=32, seed=1)
    b = turntable_cameras(bounds, views=4, size=32, seed=1)
    c = turntable_cameras(bounds, views=4, size=32, seed=2)
    np.testing.assert_array_equal(a[0].R, b[0].R)
    assert not np.allclose(a[0].R, c[0].R)


def test_single_transparent_capture(sphere_glb, tmp_path):
    out = render_capture(sphere_glb, tmp_path / "one", single=True, size=48, transparent=True)
    manifest = json.loads((out / "capture.json").read_text())
    assert manifest["views"] == 1 and manifest["background"] == "transparent"
    image = np.asarray(Image.open(out / "images" / "view_000.png"))
    mask = np.asarray(Image.open(out / "masks" / "view_000.png")) > 127
    assert image.shape == (48, 48, 4)
    np.testing.assert_array_equal(image[..., 3] > 127, mask)
    assert not (out / "depth").exists()


def test_known_vertex_of_spot_lands_in_its_mask(tmp_path):
    """Spot's highest vertex (top of an ear or horn) seen from the 45° ring falls inside the rendered mask."""
    spot = SHARED_GLTF / "spot.glb"
    out = render_capture(spot, tmp_path / "spot", views=3, size=64, rings=(45,))
    capture = Capture.load(out)
    vertices = trimesh.load(spot, force="mesh").vertices
    top = vertices[np.argmax(vertices[:, 1])]
    for index, camera in enumerate(capture.cameras):
        u, v = camera.project(top[None])[0][0]
        mask = capture.load_mask(index) > 0.5
        assert ndimage.binary_dilation(mask)[int(v), int(u)]


def test_bad_meshes_and_arguments(tmp_path):
    (tmp_path / "broken.glb").write_bytes(b"glTF not really")
    with pytest.raises(RenderError, match="Cannot load mesh broken.glb"):
        render_capture(tmp_path / "broken.glb", tmp_path / "out")
    empty = trimesh.Scene()
    with pytest.raises(RenderError, match="no triangles"):
        render_views(empty, [])
    with pytest.raises(RenderError, match="views must be at least 1"):
        turntable_cameras(np.array([[0, 0, 0], [1, 1, 1]]), views=0, size=64)
    with pytest.raises(RenderError, match="lighting must be"):
        render_views(trimesh.creation.box(), [], lighting="studio")
