"""Slanted-plane refinement: a surface seen at a steep angle is matched through its own plane's homography."""

import numpy as np
import pytest
import torch
import trimesh

from reconstruction.engine.backends.photogrammetry.mvs import StereoImage, estimate_depth
from reconstruction.engine.backends.photogrammetry.planes import normals_from_depth
from reconstruction.engine.cameras import camera_looking_at, intrinsics

from .scenes import render

SIZE = 128
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def slanted_scene():
    """A textured wall turned 65° away from the reference camera, and four neighbours around it."""
    wall = trimesh.creation.box(extents=(6.0, 3.0, 0.01))
    wall.apply_transform(trimesh.transformations.rotation_matrix(np.radians(65.0), (0, 1, 0)))
    K = intrinsics(SIZE * 1.2, SIZE * 1.2, SIZE / 2, SIZE / 2)
    offsets = [(0.0, 0.0), (0.5, 0.0), (-0.5, 0.0), (0.0, 0.5), (0.0, -0.5)]
    cameras = [camera_looking_at(f"v{i}.png", SIZE, SIZE, K, (x, y, 3.0), (0.0, 0.0, 0.0)) for i, (x, y) in enumerate(offsets)]
    renders = [render(wall, camera) for camera in cameras]
    views = [StereoImage.build(c.image_name, r[0], r[1], c, CPU) for c, r in zip(cameras, renders, strict=True)]
    return cameras, renders, views


def _errors(result, truth):
    depth = result.depth.numpy()
    both = (depth > 0) & (truth > 0)
    return np.abs(depth - truth)[both] / truth[both], both.sum() / (truth > 0).sum()


def test_slanted_planes_beat_the_fronto_parallel_sweep_on_a_steep_wall(slanted_scene):
    _, renders, views = slanted_scene
    truth = renders[0][2]
    sweep = estimate_depth(views[0], views[1:], (1.0, 6.0), hypotheses=64, patch=7, min_ncc=0.3)
    planes = estimate_depth(views[0], views[1:], (1.0, 6.0), hypotheses=64, patch=7, min_ncc=0.3, plane_iterations=4)
    sweep_error, _ = _errors(sweep, truth)
    plane_error, covered = _errors(planes, truth)
    assert covered > 0.9
    # Both are good to a fraction of a percent at the median; the slanted planes must be clearly better.
    assert np.median(plane_error) < 0.6 * np.median(sweep_error)
    assert np.percentile(plane_error, 90) < np.percentile(sweep_error, 90)


def test_refinement_leaves_pixels_off_the_object_alone(slanted_scene):
    cameras, renders, views = slanted_scene
    mask = np.zeros((SIZE, SIZE), bool)
    mask[30:100, 40:90] = True
    masked = StereoImage.build("v0.png", renders[0][0], mask & renders[0][1], cameras[0], CPU)
    result = estimate_depth(masked, views[1:], (1.0, 6.0), hypotheses=32, patch=5, min_ncc=0.3, plane_iterations=2)
    assert not (result.depth.numpy()[~mask] > 0).any()
    assert (result.depth.numpy()[mask & renders[0][1]] > 0).mean() > 0.9


def test_normals_from_a_depth_map_of_a_tilted_plane():
    # Camera-space plane z = 2 + 0.5 x, seen through z = 1 rays: its normal is (0.5, 0, -1) normalised.
    K = torch.tensor([[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]])
    v, u = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    rays = torch.linalg.inv(K) @ torch.stack([u.reshape(-1), v.reshape(-1), torch.ones(64 * 64)])
    rays = rays.reshape(3, 64, 64)
    depth = 2.0 / (1.0 - 0.5 * rays[0])
    normals = normals_from_depth(depth, rays)
    expected = torch.tensor([0.5, 0.0, -1.0]) / np.sqrt(1.25)
    torch.testing.assert_close(normals[10:-10, 10:-10], expected.expand(44, 44, 3), atol=1e-3, rtol=0)
    # Where a neighbour has no depth the normal faces the camera.
    depth[20, 20] = 0
    assert torch.equal(normals_from_depth(depth, rays)[20, 22], torch.tensor([0.0, 0.0, -1.0]))
