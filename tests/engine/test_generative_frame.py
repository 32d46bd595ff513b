"""The frustum voxel frame: column ↔ pixel alignment, round trips, ground-truth occupancy and meshing."""

import json

import numpy as np
import pytest
import trimesh

from reconstruction.engine.cameras import camera_looking_at, intrinsics
from reconstruction.engine.errors import InvalidInput
from reconstruction.engine.generative.frame import ViewFrame, frame_for, frame_for_photo, mesh_occupancy


def _camera(eye=(0.3, 0.4, 1.6), size=(160, 120), focal=150.0):
    width, height = size
    K = intrinsics(focal, focal * 1.02, width / 2 + 3.0, height / 2 - 2.0)
    return camera_looking_at("v.png", width, height, K, eye, (0.0, 0.0, 0.0))


def _disc_mask(camera, radius=0.5):
    """Pixels whose ray passes within `radius` of the origin (the silhouette of a sphere)."""
    v, u = np.mgrid[0 : camera.height, 0 : camera.width] + 0.5
    rays = camera.pixel_rays(np.stack([u.ravel(), v.ravel()], axis=1))
    closest = np.linalg.norm(np.cross(rays, -camera.center), axis=1)
    return (closest < radius).reshape(camera.height, camera.width)


@pytest.fixture
def frame():
    camera = _camera()
    return frame_for(camera, _disc_mask(camera), resolution=32, depth_bins=24)


def test_frame_squares_the_mask_box_and_centres_depth_on_the_hint():
    camera = _camera()
    mask = np.zeros((camera.height, camera.width), dtype=bool)
    mask[20:60, 50:70] = True  # 40 rows × 20 columns
    frame = frame_for(camera, mask, resolution=16, depth_bins=8, margin=0.1, depth_ratio=2.0)
    assert frame.side == pytest.approx(44.0)
    assert (frame.x0 + frame.side / 2, frame.y0 + frame.side / 2) == pytest.approx((60.0, 40.0))
    assert frame.centre_depth == pytest.approx(np.linalg.norm(camera.center))
    assert frame.depth_extent == pytest.approx(2.0 * 44.0 * frame.centre_depth / camera.K[0, 0])


def test_every_column_projects_back_to_its_pixel(frame):
    points = frame.world_points()  # (D, R, R, 3)
    uv, depth = frame.camera.project(points.reshape(-1, 3))
    i, j = np.meshgrid(np.arange(frame.resolution), np.arange(frame.resolution), indexing="ij")
    expected_u, expected_v = frame.column_pixels(i, j)
    uv = uv.reshape(frame.depth_bins, frame.resolution, frame.resolution, 2)
    np.testing.assert_allclose(uv[..., 0], np.broadcast_to(expected_u, uv.shape[:3]), atol=1e-9)
    np.testing.assert_allclose(uv[..., 1], np.broadcast_to(expected_v, uv.shape[:3]), atol=1e-9)
    np.testing.assert_allclose(depth.reshape(uv.shape[:3])[:, 0, 0], frame.depth_of(np.arange(frame.depth_bins)))


def test_continuous_indices_round_trip_through_the_camera(frame):
    rng = np.random.default_rng(0)
    ijk = rng.uniform(-0.5, [frame.depth_bins - 0.5, frame.resolution - 0.5, frame.resolution - 0.5], size=(200, 3))
    uv, depth = frame.camera.project(frame.index_to_world(ijk))
    step = frame.side / frame.resolution
    recovered = np.stack(
        [
            (depth - frame.centre_depth + frame.depth_extent / 2) / (frame.depth_extent / frame.depth_bins) - 0.5,
            (uv[:, 1] - frame.y0) / step - 0.5,
            (uv[:, 0] - frame.x0) / step - 0.5,
        ],
        axis=1,
    )
    np.testing.assert_allclose(recovered, ijk, atol=1e-9)


def test_dict_round_trip_is_json_and_exact(frame):
    again = ViewFrame.from_dict(json.loads(json.dumps(frame.to_dict())))
    np.testing.assert_array_equal(again.world_points(), frame.world_points())
    assert again.shape == frame.shape


def test_sphere_occupancy_matches_the_analytic_ball(frame):
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.5)
    occupancy = mesh_occupancy(frame, sphere)
    distance = np.linalg.norm(frame.world_points(), axis=-1)
    clear = np.abs(distance - 0.5) > 0.01  # the icosphere's chords sit up to ~1 mm inside the true sphere
    assert occupancy.any()
    np.testing.assert_array_equal(occupancy[clear], (distance < 0.5)[clear])


def test_box_occupancy_matches_the_analytic_box_and_overlapping_parts_are_a_union():
    camera = _camera(eye=(0.7, 0.9, 1.3))
    mask = np.ones((camera.height, camera.width), dtype=bool)
    frame = frame_for(camera, mask, resolution=24, depth_bins=20, depth_ratio=0.8)
    first = trimesh.creation.box(extents=(0.6, 0.4, 0.5))
    second = trimesh.creation.box(extents=(0.6, 0.4, 0.5))
    second.apply_translation((0.2, 0.1, 0.0))  # overlaps the first: parity over all hits would hollow the overlap
    assembly = trimesh.util.concatenate([first, second])
    points = frame.world_points()

    def in_box(centre):
        offset = np.abs(points - np.asarray(centre)) - np.array([0.3, 0.2, 0.25])
        return (offset < 0).all(axis=-1), (np.abs(offset) > 1e-6).all(axis=-1)

    inside_first, clear_first = in_box((0, 0, 0))
    inside_second, clear_second = in_box((0.2, 0.1, 0.0))
    clear = clear_first & clear_second
    np.testing.assert_array_equal(mesh_occupancy(frame, first)[clear], inside_first[clear])
    union = mesh_occupancy(frame, assembly)
    assert (inside_first & inside_second).any()
    np.testing.assert_array_equal(union[clear], (inside_first | inside_second)[clear])


def test_occupancy_of_a_box_meshes_back_to_the_box_within_a_voxel():
    camera = _camera(eye=(0.5, 0.6, 1.5))
    box = trimesh.creation.box(extents=(0.5, 0.3, 0.4))
    frame = frame_for(camera, np.ones((camera.height, camera.width), bool), resolution=32, depth_bins=32)
    mesh = frame.to_world_mesh(mesh_occupancy(frame, box).astype(np.float32))
    assert mesh.is_watertight and mesh.volume > 0
    pixel_size = frame.side * frame.centre_depth / frame.camera.K[0, 0] / frame.resolution
    voxel = max(pixel_size * 1.5, frame.depth_extent / frame.depth_bins)
    np.testing.assert_allclose(mesh.bounds, box.bounds, atol=voxel)
    # Each vertex lies within one voxel of the box surface.
    offset = np.abs(mesh.vertices) - np.array([0.25, 0.15, 0.2])
    outside = np.linalg.norm(np.maximum(offset, 0), axis=1)
    inside = np.minimum(offset.max(axis=1), 0)
    assert np.abs(outside + inside).max() < voxel


def test_empty_mask_and_empty_volume_raise_invalid_input(frame):
    camera = _camera()
    with pytest.raises(InvalidInput, match="The mask is empty") as caught:
        frame_for(camera, np.zeros((camera.height, camera.width), dtype=np.uint8))
    assert caught.value.code == "invalid_input"
    with pytest.raises(InvalidInput, match="Nothing in the volume is above the level 0.5"):
        frame.to_world_mesh(np.zeros(frame.shape))


def test_photo_frame_is_normalised_to_unit_depth():
    mask = np.zeros((90, 120), dtype=np.uint8)
    mask[30:60, 40:100] = 255
    frame = frame_for_photo(mask, 120, 90, resolution=8, depth_bins=8)
    assert frame.centre_depth == pytest.approx(1.0)
    assert frame.camera.K[0, 0] == pytest.approx(60 / np.tan(np.radians(20)))
    assert frame.side == pytest.approx(66.0)


def test_crop_aligns_pixels_with_columns_and_pads_outside(frame):
    camera = frame.camera
    v, u = np.mgrid[0 : camera.height, 0 : camera.width] + 0.5
    ramp = np.stack([u, v, np.zeros_like(u)], axis=-1).astype(np.float32)  # each pixel holds its own centre
    big = frame.side >= frame.resolution
    crop = frame.crop(ramp, size=int(frame.side // 2) if big else None)
    size = crop.shape[0]
    step = frame.side / size
    expected_u = frame.x0 + (np.arange(size) + 0.5) * step
    inner = slice(2, size - 2)
    np.testing.assert_allclose(crop[size // 2, inner, 0], expected_u[inner], atol=1e-3)
    expected_v = frame.y0 + (np.arange(size) + 0.5) * step
    np.testing.assert_allclose(crop[inner, size // 2, 1], expected_v[inner], atol=1e-3)
    wide = ViewFrame(camera, -20.0, -10.0, 80.0, 8, 4, frame.centre_depth, frame.depth_extent)
    image = np.full((camera.height, camera.width, 3), 200, dtype=np.uint8)
    out = wide.crop(image, fill=(10, 20, 30))
    assert out.dtype == np.uint8 and out.shape == (8, 8, 3)
    assert tuple(out[0, 0]) == (10, 20, 30) and tuple(out[-1, -1]) == (200, 200, 200)
    assert wide.crop(np.ones((camera.height, camera.width), bool)).dtype == np.float32


def test_thin_walls_keep_one_voxel_where_a_plate_misses_every_centre():
    camera = _camera(eye=(0.0, 0.0, 2.0))
    frame = frame_for(camera, np.ones((camera.height, camera.width), bool), resolution=16, depth_bins=16)
    dz = frame.depth_extent / frame.depth_bins
    plate = trimesh.creation.box(extents=(0.8, 0.8, dz * 0.2))  # facing the camera, thinner than a voxel
    plate.apply_translation((0, 0, 2.0 - float(frame.depth_of(np.array(7.5)))))  # between two voxel centres
    assert not mesh_occupancy(frame, plate).any()
    thin = mesh_occupancy(frame, plate, thin_walls=True)
    covered = thin.any(axis=0)
    assert covered.sum() > 4 and (thin.sum(axis=0)[covered] == 1).all()
