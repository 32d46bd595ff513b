import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from reconstruction.engine.cameras import Camera, camera_looking_at, intrinsics
from reconstruction.engine.carving import (
    axes_convergence,
    box_seen_by_all,
    coverage_without_each,
    silhouette_box,
    silhouette_coverage,
)
from reconstruction.engine.errors import BackendFailed

SIZE = 128


def ring_cameras(count=8, distance=3.0, target=(0.0, 0.0, 0.0)):
    K = intrinsics(150.0, 150.0, SIZE / 2, SIZE / 2)
    cameras = []
    for index in range(count):
        angle = 2 * np.pi * index / count
        eye = np.asarray(target) + distance * np.array([np.cos(angle), 0.3 + 0.2 * (index % 2), np.sin(angle)])
        cameras.append(camera_looking_at(f"view_{index}.png", SIZE, SIZE, K, eye, target))
    return cameras


def splat(camera, points):
    """The object mask of a camera: every pixel one of the object's dense surface points falls in."""
    mask = np.zeros((SIZE, SIZE), dtype=np.float32)
    uv, depth = camera.project(points)
    seen = camera.in_image(uv, depth)
    mask[uv[seen, 1].astype(int), uv[seen, 0].astype(int)] = 1.0
    return mask


def chair_leg_object():
    """A ball with a rod hanging below it, the rod thinner than the boxes' coarse voxels (about 0.1 wide)."""
    rng = np.random.default_rng(0)
    ball = rng.normal(size=(40_000, 3))
    ball = 0.4 * ball / np.linalg.norm(ball, axis=1, keepdims=True)
    height = rng.uniform(-1.0, 0.0, 40_000)
    angle = rng.uniform(0, 2 * np.pi, 40_000)
    rod = np.column_stack([0.01 * np.cos(angle), height, 0.01 * np.sin(angle)])
    return np.concatenate([ball, rod])


def test_axes_convergence_finds_the_point_every_camera_looks_at():
    target = (0.2, -0.1, 0.3)
    assert np.allclose(axes_convergence(ring_cameras(target=target)), target, atol=1e-9)
    low, high = box_seen_by_all(ring_cameras(target=target))
    assert np.allclose((low + high) / 2, target)


def test_silhouette_box_keeps_parts_thinner_than_its_voxels():
    cameras = ring_cameras()
    points = chair_leg_object()
    low, high = silhouette_box(cameras, [splat(c, points) for c in cameras])
    assert low[1] <= -1.0  # the rod's bottom end is inside
    assert (low <= points.min(axis=0)).all() and (high >= points.max(axis=0)).all()
    # and the box is still tight: within a few percent of the object's size on every side
    size = points.max(axis=0) - points.min(axis=0)
    assert (points.min(axis=0) - low < 0.1 * size.max()).all()
    assert (high - points.max(axis=0) < 0.1 * size.max()).all()


def test_silhouette_box_padding_and_tolerance():
    cameras = ring_cameras()
    points = chair_leg_object()
    masks = [splat(c, points) for c in cameras]
    low, high = silhouette_box(cameras, masks)
    padded_low, padded_high = silhouette_box(cameras, masks, padding=0.1)
    assert np.allclose(padded_high - padded_low, 1.2 * (high - low))
    # One view that lost the rod cuts it off, unless that view is tolerated.
    masks[3] = splat(cameras[3], points[points[:, 1] > -0.4])
    assert silhouette_box(cameras, masks)[0][1] > -0.6
    assert silhouette_box(cameras, masks, tolerance=1)[0][1] <= -1.0


def test_silhouette_box_of_four_rendered_views_is_tight(tmp_path):
    """Voxels beside the cameras, far off every axis, lie outside the pictures the object is in: ruled out, a
    4-view capture's box is the object's and not 3-6 times its size (so a field fitted in it keeps its detail)."""
    import trimesh

    from reconstruction.engine.capture import Capture
    from reconstruction.engine.render import render_capture

    extents = np.array([0.83, 0.69, 0.57])
    trimesh.creation.box(extents=extents).export(tmp_path / "box.glb")
    capture = Capture.load(render_capture(tmp_path / "box.glb", tmp_path / "capture", views=4, size=96))
    low, high = silhouette_box(capture.cameras, [capture.load_mask(i) for i in range(4)])
    assert (low <= -extents / 2).all() and (high >= extents / 2).all()
    # Four views leave the hull wider than the box, most along the axis no view looks across.
    assert (high - low < 2.0 * extents).all(), (high - low) / extents


def test_silhouette_box_refuses_masks_that_share_no_volume():
    cameras = ring_cameras()
    masks = [splat(c, chair_leg_object()) for c in cameras]
    masks[0] = np.zeros_like(masks[0])
    with pytest.raises(BackendFailed, match="share no common volume"):
        silhouette_box(cameras, masks)


def _turned_about_the_object(camera, degrees):
    """The camera moved round the object's vertical axis, still looking at it (a view placed on the wrong side)."""
    turn = Rotation.from_euler("y", degrees, degrees=True).as_matrix()
    R = camera.R @ turn.T
    return Camera(camera.image_name, camera.width, camera.height, camera.K, R, -R @ (turn @ camera.center))


def test_the_hull_of_right_cameras_covers_every_mask_and_a_misplaced_camera_uncovers_its_own():
    points = chair_leg_object()
    points[:, 0] *= 1.6  # not round, and the rod off-centre, so a view from elsewhere shows another outline
    points[40_000:, 0] += 0.35
    cameras = ring_cameras()
    masks = [splat(camera, points) for camera in cameras]
    assert silhouette_coverage(cameras, masks).min() > 0.97
    misplaced = list(cameras)
    misplaced[2] = _turned_about_the_object(cameras[2], 90.0)
    coverage = silhouette_coverage(misplaced, masks)
    assert coverage[2] < 0.85 and coverage.min() < 0.85


def test_silhouettes_that_share_no_volume_cover_nothing():
    cameras = ring_cameras(4)
    masks = [np.zeros((SIZE, SIZE), dtype=np.float32) for _ in cameras]
    masks[0][:10, :10] = 1.0
    masks[1][-10:, -10:] = 1.0
    assert silhouette_coverage(cameras, masks).max() == 0.0


def test_a_hull_too_coarse_for_a_view_confirms_nothing_there(monkeypatch):
    # Wrong cameras can make the silhouettes' common box so large that one voxel covers much of a view (a
    # footprint of 97,625 pixels was met): that view counts as uncovered instead of being dilated by it.
    from reconstruction.engine import carving

    points = chair_leg_object()
    cameras = ring_cameras()
    masks = [splat(camera, points) for camera in cameras]
    monkeypatch.setattr(carving, "MAX_FOOTPRINT", 0.001)
    assert silhouette_coverage(cameras, masks).max() == 0.0


def test_leaving_out_the_misplaced_camera_lets_the_others_agree():
    points = chair_leg_object()
    points[:, 0] *= 1.6
    points[40_000:, 0] += 0.35
    cameras = ring_cameras(12)
    masks = [splat(camera, points) for camera in cameras]
    placed = list(cameras)
    placed[5] = _turned_about_the_object(cameras[5], 60.0)
    # The misplaced view is not the least covered one: it uncovers the others more than itself.
    assert int(np.argmin(silhouette_coverage(placed, masks))) != 5

    without = coverage_without_each(placed, masks)

    assert without.shape == (12, 12) and (np.diag(without) == 1.0).all()
    assert int(without.min(axis=1).argmax()) == 5
    assert without[5].min() > 0.97 and np.delete(without, 5, axis=0).min(axis=1).max() < 0.93
