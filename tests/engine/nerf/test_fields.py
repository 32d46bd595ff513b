"""Volume-rendering pieces on analytic cases: rays, box clipping, sampling, compositing, occupancy, dense grids."""

import math

import numpy as np
import pytest
import torch

from reconstruction.engine.cameras import camera_looking_at, intrinsics
from reconstruction.engine.fields.dense import DENSITY, SDF, DenseField, grid_shape, neighbour_differences
from reconstruction.engine.fields.occupancy import OccupancyGrid
from reconstruction.engine.fields.rays import camera_rays, ray_box, stratified_samples
from reconstruction.engine.fields.training import cpu_threads
from reconstruction.engine.fields.volume import composite, render_rays

CENTRE = torch.tensor([0.1, -0.2, 0.3])
RADIUS = 0.25


def solid_sphere(points, directions):
    inside = (points - CENTRE).norm(dim=-1) < RADIUS
    sigma = torch.where(inside, torch.full_like(points[:, 0], 1e4), torch.zeros_like(points[:, 0]))
    return sigma, torch.tensor([1.0, 0.0, 0.0]).expand(len(points), 3)


def box(margin=0.5):
    return CENTRE - margin, CENTRE + margin


def test_camera_rays_pass_through_their_pixels():
    camera = camera_looking_at("a.png", 8, 6, intrinsics(10, 12, 4, 3), eye=[1.0, 2.0, 3.0], target=[0, 0, 0])
    origins, directions = camera_rays(camera)
    assert origins.shape == directions.shape == (48, 3)
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(48))
    points = (origins + 2.0 * directions).double().numpy()
    uv, depth = camera.project(points)
    expected = np.stack(np.meshgrid(np.arange(8) + 0.5, np.arange(6) + 0.5), -1).reshape(-1, 2)
    np.testing.assert_allclose(uv, expected, atol=1e-4)
    assert (depth > 0).all()


def test_ray_box_entry_and_exit():
    origins = torch.tensor([[-2.0, 0.0, 0.0], [-2.0, 5.0, 0.0], [0.0, 0.0, 0.0]])
    directions = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    near, far = ray_box(origins, directions, torch.tensor([-1.0] * 3), torch.tensor([1.0] * 3))
    assert near.tolist()[0] == pytest.approx(1.0) and far.tolist()[0] == pytest.approx(3.0)
    assert near[1] >= far[1]  # misses
    assert near[2] == 0.0 and far[2] == pytest.approx(1.0)  # starts inside: never behind the origin


def test_stratified_samples_stay_in_their_strata():
    near, far = torch.tensor([1.0, 2.0]), torch.tensor([2.0, 2.5])
    t, inside = stratified_samples(near, far, 0.1, max_samples=100, jitter=True)
    assert t.shape == (2, 10)
    strata = (t - near[:, None]) / 0.1
    assert ((strata >= torch.arange(10)) & (strata <= torch.arange(10) + 1)).all()
    assert inside[0].all() and inside[1].sum() == 5


def test_compositing_weights_sum_to_the_opacity_and_never_exceed_one():
    generator = torch.Generator().manual_seed(0)
    alpha = torch.rand((64, 40), generator=generator) ** 4
    rgb = torch.rand((64, 40, 3), generator=generator)
    t = torch.linspace(1, 2, 40).expand(64, 40)
    ray = torch.arange(64).repeat_interleave(40)  # packed: ray by ray, in order of distance
    colour, opacity, _, packed = composite(
        -torch.log1p(-alpha).reshape(-1), rgb.reshape(-1, 3), t.reshape(-1), ray, 64, torch.ones(3)
    )
    weights = packed.reshape(64, 40)
    assert (weights.sum(1) <= 1 + 1e-6).all()
    torch.testing.assert_close(weights.sum(1), opacity)
    torch.testing.assert_close(opacity, 1 - torch.prod(1 - alpha, dim=1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(colour, (weights[..., None] * rgb).sum(1) + (1 - opacity)[:, None])


def test_a_spheres_depth_along_known_rays():
    distance = 1.5
    origins = CENTRE + torch.tensor([[0.0, 0.0, -distance], [0.0, 0.1, -distance], [0.0, 0.4, -distance]])
    directions = torch.tensor([[0.0, 0.0, 1.0]]).expand(3, 3)
    low, high = box()
    step = 0.001
    out = render_rays(
        solid_sphere, origins, directions, low=low, high=high, step=step, max_samples=4096, background=torch.ones(3)
    )
    expected = [distance - RADIUS, distance - math.sqrt(RADIUS**2 - 0.1**2)]
    assert out.depth[:2].tolist() == pytest.approx(expected, abs=step)
    assert out.opacity[:2].tolist() == pytest.approx([1.0, 1.0])
    torch.testing.assert_close(out.rgb[0], torch.tensor([1.0, 0.0, 0.0]))
    assert float(out.opacity[2]) == 0.0  # passes beside the sphere: background only
    torch.testing.assert_close(out.rgb[2], torch.ones(3))


def test_occupancy_grid_skips_empty_space():
    low, high = box()
    occupied = torch.zeros((8, 8, 8), dtype=torch.bool)
    occupied[2:6, 2:6, 2:6] = True
    grid = OccupancyGrid(low, high, occupied)
    inside = CENTRE[None]
    outside = (low + 0.01)[None]
    assert grid.query(inside).tolist() == [True]
    assert grid.query(outside).tolist() == [False]
    assert grid.query((high + 1)[None]).tolist() == [False]
    assert grid.dilated(1).occupied.sum() == 6**3
    origins = (CENTRE + torch.tensor([0.0, 0.0, -1.5]))[None]
    directions = torch.tensor([[0.0, 0.0, 1.0]])
    kwargs = dict(low=low, high=high, step=0.01, max_samples=1000, background=torch.ones(3))
    full = render_rays(solid_sphere, origins, directions, **kwargs)
    skipped = render_rays(solid_sphere, origins, directions, occupancy=grid, **kwargs)
    empty = render_rays(
        solid_sphere, origins, directions, occupancy=OccupancyGrid(low, high, ~occupied & False), **kwargs
    )
    assert skipped.samples < full.samples
    assert float(skipped.depth[0]) == pytest.approx(float(full.depth[0]), abs=0.01)
    assert empty.samples == 0 and float(empty.opacity[0]) == 0.0


def test_the_density_look_ahead_skips_samples_behind_an_opaque_surface_without_changing_the_pixels():
    origins = CENTRE + torch.tensor([[0.0, 0.0, -1.5], [0.0, 0.2, -1.5], [0.0, 0.4, -1.5]])
    directions = torch.tensor([[0.0, 0.0, 1.0]]).expand(3, 3)
    low, high = box()
    kwargs = dict(low=low, high=high, step=0.01, max_samples=1000, background=torch.ones(3))
    full = render_rays(solid_sphere, origins, directions, **kwargs)
    terminated = render_rays(solid_sphere, origins, directions, density=lambda p, d: solid_sphere(p, d)[0], **kwargs)
    assert terminated.samples < full.samples - 2 * 40  # the two rays through the sphere stop at its front
    torch.testing.assert_close(terminated.rgb, full.rgb)
    torch.testing.assert_close(terminated.opacity, full.opacity)
    torch.testing.assert_close(terminated.depth, full.depth)


def test_dense_field_samples_trilinearly_and_grows_without_changing_a_linear_function():
    low = np.array([-1.0, -1.0, -1.0])
    voxel, shape = grid_shape(low, np.array([1.0, 1.0, 0.5]), 9)
    assert voxel == pytest.approx(0.25) and shape == (9, 9, 7)
    field = DenseField(SDF, low, voxel, shape, "cpu")
    axes = [torch.arange(n) * voxel for n in shape]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1) + field.low
    plane = points[..., 0] * 0.5 - points[..., 2]  # world units
    with torch.no_grad():
        field.geometry.copy_((plane / voxel)[None, None])
    queries = torch.tensor([[0.1, 0.2, -0.3], [-0.77, 0.5, 0.45]])
    expected = (queries[:, 0] * 0.5 - queries[:, 2]) / voxel
    torch.testing.assert_close(field.sample(field.geometry, queries)[:, 0], expected)
    finer = field.resized(17)
    torch.testing.assert_close(
        finer.sample(finer.geometry, queries)[:, 0] * finer.voxel, expected * voxel, atol=1e-5, rtol=1e-5
    )


def test_neighbour_differences_of_a_distance_grid_have_unit_gradient():
    low = np.zeros(3)
    field = DenseField(SDF, low, 1.0, (12, 12, 12), "cpu")
    index = torch.stack(torch.meshgrid(*[torch.arange(12.0)] * 3, indexing="ij"), -1)
    direction = torch.tensor([1.0, 2.0, 2.0]) / 3
    with torch.no_grad():
        field.geometry.copy_((index @ direction)[None, None])
    differences = neighbour_differences(field.geometry, 500, torch.Generator().manual_seed(1))
    assert differences.shape == (500, 1, 6)
    torch.testing.assert_close(differences[:, 0, :3].norm(dim=-1), torch.ones(500))
    torch.testing.assert_close(differences[:, 0, 3:], torch.zeros(500, 3), atol=1e-5, rtol=0)


def test_density_of_an_sdf_is_half_its_maximum_on_the_surface():
    field = DenseField(SDF, np.zeros(3), 1.0, (2, 2, 2), "cpu")
    sigma = field.density_from_geometry(torch.tensor([-50.0, 0.0, 50.0]))
    torch.testing.assert_close(sigma, torch.tensor([1.0, 0.5, 0.0]), atol=1e-6, rtol=0)
    density = DenseField(DENSITY, np.zeros(3), 1.0, (2, 2, 2), "cpu")
    assert float(density.density_from_geometry(torch.tensor(0.0))) < 0.05  # starts nearly empty


def sphere_sdf_field(radius_voxels: float, size: int = 64) -> DenseField:
    """An exact signed-distance grid (voxel units) of a sphere in the middle of a `size`³ grid of unit voxels."""
    field = DenseField(SDF, np.zeros(3), 1.0, (size,) * 3, "cpu", step_ratio=0.25)
    index = torch.stack(torch.meshgrid(*[torch.arange(float(size))] * 3, indexing="ij"), -1)
    with torch.no_grad():
        field.geometry.copy_(((index - (size - 1) / 2).norm(dim=-1) - radius_voxels)[None, None])
        field.cap_beta(0.1)
    return field


def test_the_trilinear_gradient_of_a_distance_grid_is_exact_for_a_plane():
    field = DenseField(SDF, np.zeros(3), 0.5, (6, 6, 6), "cpu")
    normal = torch.tensor([2.0, -1.0, 2.0]) / 3
    index = torch.stack(torch.meshgrid(*[torch.arange(6.0)] * 3, indexing="ij"), -1)
    with torch.no_grad():
        field.geometry.copy_((index @ normal - 2.0)[None, None])
    points = torch.tensor([[0.3, 1.1, 0.7], [2.2, 0.4, 1.9]])
    distance, gradient = field.distance_and_gradient(field.corners(points))
    torch.testing.assert_close(distance, points / 0.5 @ normal - 2.0)
    torch.testing.assert_close(gradient, normal.expand(2, 3))


@pytest.mark.parametrize("radius", [8.0, 20.0])
def test_an_sdf_renders_its_silhouette_at_the_zero_level_set_whatever_the_curvature(radius):
    """A ray that just touches the surface is half opaque (NeuS), a ray half a voxel outside nearly clear and one
    half a voxel inside nearly opaque: silhouettes do not pull the surface inward (VolSDF's density did)."""
    field = sphere_sdf_field(radius)
    centre = torch.full((3,), 31.5)
    offsets = torch.tensor([-0.5, 0.0, 0.5])  # closest approach to the surface, voxels (positive: outside)
    origins = centre + torch.stack([torch.full_like(offsets, -40.0), torch.zeros(3), radius + offsets], dim=-1)
    directions = torch.tensor([[1.0, 0.0, 0.0]]).expand(3, 3)
    with torch.no_grad():
        out = render_rays(
            field,
            origins,
            directions,
            low=field.low,
            high=torch.tensor(field.high_np, dtype=torch.float32),
            step=0.25,
            max_samples=1024,
            background=None,
        )
    assert float(out.opacity[1]) == pytest.approx(0.5, abs=0.1)  # VolSDF: > 0.99
    assert float(out.opacity[0]) > 0.95 and float(out.opacity[2]) < 0.05


def test_capping_beta_sharpens_the_surface_and_never_widens_it():
    field = DenseField(SDF, np.zeros(3), 1.0, (2, 2, 2), "cpu")
    field.cap_beta(0.1)
    assert float(field.beta().detach()) == pytest.approx(0.1)
    outside = float(field.density_from_geometry(torch.tensor(0.5)).detach())
    assert outside == pytest.approx(0.5 * math.exp(-5) / 0.1)  # a half-voxel shell, nearly empty once sharp
    field.cap_beta(0.5)
    assert float(field.beta().detach()) == pytest.approx(0.1)


def test_cpu_threads_are_set_for_the_run_and_restored_after():
    before = torch.get_num_threads()
    with cpu_threads("cpu", 1):
        assert torch.get_num_threads() == 1
    with cpu_threads("cpu"):  # the idle cores, at least one, never more than torch had
        assert 1 <= torch.get_num_threads() <= before
    assert torch.get_num_threads() == before
