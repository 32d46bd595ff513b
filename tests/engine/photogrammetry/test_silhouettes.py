"""Hull fill: the silhouettes' surface lands on the object to a fraction of a pixel, and bulges that a view's
stereo points show to be empty space are left out."""

from __future__ import annotations

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from reconstruction.engine.backends.photogrammetry import silhouettes as hull_module
from reconstruction.engine.backends.photogrammetry.fusion import PointCloud
from reconstruction.engine.backends.photogrammetry.silhouettes import hull_fill

from .scenes import orbit_cameras, render

RADIUS = 0.5


def _sphere_silhouettes(count: int = 12, size: int = 96):
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=RADIUS)
    cameras = orbit_cameras(count, size, elevations=(35.0, 0.0, -35.0))
    return [(camera, render(sphere, camera)[1]) for camera in cameras]


def _empty() -> PointCloud:
    return PointCloud(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, dtype=int))


BOUNDS = np.array([[-0.6] * 3, [0.6] * 3])


def _seen_behind_the_near_side(
    camera, rows: np.ndarray, cols: np.ndarray, view: int = 0, depth_inside: float = 0.8 * RADIUS
) -> PointCloud:
    """Stereo points of `view` at these pixels, `depth_inside` behind the sphere's near side (a concavity)."""
    uv = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1)
    depth = np.linalg.norm(camera.center) - RADIUS + depth_inside
    rays = camera.pixel_rays(uv)
    inside = camera.center + rays * (depth / (rays @ camera.R[2]))[:, None]
    return PointCloud(inside, np.zeros_like(inside), -rays, np.full(len(inside), view))


def test_hull_points_sit_on_the_sphere_to_a_fraction_of_a_pixel(monkeypatch):
    monkeypatch.setattr(hull_module, "HULL_RESOLUTION", 80)  # voxels of about a pixel, and a quick test
    silhouettes = _sphere_silhouettes(24, 128)
    cloud, added = hull_fill(_empty(), silhouettes, BOUNDS)
    camera = silhouettes[0][0]
    pixel = np.linalg.norm(camera.center) / camera.K[0, 0]  # footprint of a pixel at the sphere's centre
    assert added == {"hull": len(cloud.points), "pocket": 0, "yielded": 0} and len(cloud.points) > 1000
    error = np.linalg.norm(cloud.points, axis=1) - RADIUS
    # Marching cubes alone leaves the points up to half a voxel off the masks' 0.5 crossing (here biased inward by
    # about a tenth of a pixel); on the crossing they are unbiased to a few hundredths.
    assert np.median(np.abs(error)) < 0.2 * pixel
    assert abs(np.mean(error)) < 0.06 * pixel
    assert np.all(np.einsum("ij,ij->i", cloud.normals, cloud.points) > 0)  # outward


def test_hull_points_in_front_of_a_views_own_stereo_points_are_dropped(monkeypatch):
    monkeypatch.setattr(hull_module, "HULL_RESOLUTION", 64)
    silhouettes = _sphere_silhouettes()
    camera = silhouettes[0][0]
    # Pretend view 0's stereo saw a surface well inside the sphere, behind its near side (a concavity).
    rows, cols = np.mgrid[40:56, 40:56]
    cloud = _seen_behind_the_near_side(camera, rows, cols)
    filled, _ = hull_fill(cloud, silhouettes, BOUNDS)
    hull = filled.points[filled.view_index == -1]
    uv_hull, z_hull = camera.project(hull)
    over_patch = (uv_hull[:, 0] >= 40) & (uv_hull[:, 0] < 56) & (uv_hull[:, 1] >= 40) & (uv_hull[:, 1] < 56)
    near_side = z_hull < np.linalg.norm(camera.center)
    assert not (over_patch & near_side).any()
    # The same points claimed by another view (which did not see them) carve nothing.
    other = _seen_behind_the_near_side(camera, rows, cols, view=1)
    refilled, _ = hull_fill(other, silhouettes, BOUNDS)
    uv_other, z_other = camera.project(refilled.points[refilled.view_index == -1])
    patch = (uv_other[:, 0] >= 40) & (uv_other[:, 0] < 56) & (uv_other[:, 1] >= 40) & (uv_other[:, 1] < 56)
    assert (patch & (z_other < np.linalg.norm(camera.center))).any()


def test_scattered_stereo_points_clear_the_bulge_between_them_but_not_beyond(monkeypatch):
    monkeypatch.setattr(hull_module, "HULL_RESOLUTION", 64)
    silhouettes = _sphere_silhouettes()
    camera = silhouettes[0][0]
    # View 0's stereo saw the concavity behind the near side on every other pixel only (sparse, as on plain texture).
    cloud = _seen_behind_the_near_side(camera, *np.mgrid[40:57:2, 40:57:2])
    filled, _ = hull_fill(cloud, silhouettes, BOUNDS)
    uv_hull, z_hull = camera.project(filled.points[filled.view_index == -1])
    near_side = z_hull < np.linalg.norm(camera.center)

    def over(low: int, high: int) -> np.ndarray:
        return ((uv_hull >= low) & (uv_hull < high)).all(axis=1) & near_side

    assert not over(41, 56).any()  # every pixel here has a stereo point within one pixel
    assert over(60, 72).any()  # three pixels and more away, the hull stays


def test_weakly_confirmed_stereo_points_join_only_where_they_show_a_pocket_the_hull_bridges(monkeypatch):
    monkeypatch.setattr(hull_module, "HULL_RESOLUTION", 64)  # voxels of 1.2 / 64 = 0.019
    silhouettes = _sphere_silhouettes()
    camera = silhouettes[0][0]
    floor = _seen_behind_the_near_side(camera, *np.mgrid[40:56:0.25, 40:56:0.25])  # 0.4 inside: a pocket's floor
    skin = _seen_behind_the_near_side(camera, *np.mgrid[20:30:0.25, 20:30:0.25], depth_inside=0.01)  # just inside
    outside = _seen_behind_the_near_side(camera, *np.mgrid[60:70:0.25, 60:70:0.25], depth_inside=-0.1)
    stray = _seen_behind_the_near_side(camera, np.array([30, 62, 34, 66]), np.array([62, 30, 66, 34]))  # scattered
    weak = PointCloud(*(np.concatenate([getattr(c, k) for c in (floor, skin, outside, stray)])
                        for k in ("points", "colors", "normals", "view_index")))

    filled, added = hull_fill(_empty(), silhouettes, BOUNDS, weak)

    kept = filled.points[filled.view_index == 0]
    assert len(kept) == added["pocket"] > 0.99 * len(floor.points)  # all but the patch's corners
    assert cKDTree(floor.points).query(kept)[0].max() < 1e-12  # the floor's points, no others
    uv_hull, z_hull = camera.project(filled.points[filled.view_index == -1])
    over_floor = ((uv_hull >= 40) & (uv_hull < 56)).all(axis=1) & (z_hull < np.linalg.norm(camera.center))
    assert not over_floor.any()  # the hull over the pocket is free space now

    # Beside a better-confirmed point, a weak one adds nothing.
    _, beside = hull_fill(floor, silhouettes, BOUNDS, floor)
    assert beside["pocket"] == 0


def test_barely_confirmed_stereo_points_on_the_hulls_surface_yield_to_it(monkeypatch):
    monkeypatch.setattr(hull_module, "HULL_RESOLUTION", 64)  # voxels of 0.019
    silhouettes = _sphere_silhouettes()
    camera = silhouettes[0][0]
    # View 0's points a fifth of a voxel under the sphere's surface.
    rows, cols = np.mgrid[40:56:0.5, 40:56:0.5]
    rays = camera.pixel_rays(np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1))
    along = rays @ camera.center
    radius = RADIUS - 0.004
    hits = camera.center + rays * (-along - np.sqrt(along**2 - camera.center @ camera.center + radius**2))[:, None]
    on_skin = PointCloud(hits, np.zeros_like(hits), -rays, np.zeros(len(hits), dtype=int))
    deep = _seen_behind_the_near_side(camera, *np.mgrid[20:30:0.5, 20:30:0.5], depth_inside=0.3)  # a concavity
    cloud = PointCloud(*(np.concatenate([getattr(c, k) for c in (on_skin, deep)])
                         for k in ("points", "colors", "normals", "view_index")))
    barely = np.ones(len(cloud.points), dtype=bool)

    filled, counts = hull_fill(cloud, silhouettes, BOUNDS, barely=barely)

    # Nearness is measured to the hull's points, about a voxel apart, so a point or two between them may stay.
    assert counts["yielded"] > 0.99 * len(on_skin.points)
    left = cKDTree(on_skin.points).query(filled.points[filled.view_index == 0])[0] < 1e-12
    assert left.sum() == len(on_skin.points) - counts["yielded"]
    assert cKDTree(filled.points).query(deep.points)[0].max() < 1e-12  # the concavity's points stay
    uv_hull, z_hull = camera.project(filled.points[filled.view_index == -1])
    over_skin = ((uv_hull >= 42) & (uv_hull < 54)).all(axis=1) & (z_hull < np.linalg.norm(camera.center))
    assert over_skin.sum() > 20  # the hull's own points took their place

    # Points confirmed by more neighbours than needed keep their place, and the hull there is left out.
    kept, counts = hull_fill(cloud, silhouettes, BOUNDS, barely=np.zeros(len(cloud.points), dtype=bool))
    assert counts["yielded"] == 0
    uv_hull, z_hull = camera.project(kept.points[kept.view_index == -1])
    assert not (((uv_hull >= 42) & (uv_hull < 54)).all(axis=1) & (z_hull < np.linalg.norm(camera.center))).any()
