"""What the few views measure: silhouettes, consistency-checked stereo depth maps and the fused surface points.

The photogrammetry backend's pieces do the work (plane-sweep stereo, cross-view consistency); the capture's
cameras are taken as given, and a coarse visual hull bounds the depth sweep, so no SfM runs. Given a surface fitted
to the views (field.py), its depth in each view measures what stereo did not: stereo's depth stands wherever a pair
of views matched it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import open3d as o3d
import torch
import trimesh

from reconstruction.engine.backends.photogrammetry.fusion import PointCloud, concatenated, fuse, oriented_normals
from reconstruction.engine.backends.photogrammetry.mvs import DepthMap, StereoImage, estimate_depth, select_neighbours
from reconstruction.engine.backends.photogrammetry.views import View, undistorted
from reconstruction.engine.cameras import Camera
from reconstruction.engine.capture import Capture
from reconstruction.engine.carving import carve, silhouette_box, voxel_grid
from reconstruction.engine.errors import BackendFailed, InvalidCapture
from reconstruction.engine.texturing import depth_image, raycasting_scene

HULL_RESOLUTION = 48  # the coarse hull only bounds the object and the depth sweep
OUTLIER_NEIGHBOURS = 16
OUTLIER_STD_RATIO = 2.0
FIELD_SLACK = 2.0  # consistency tolerances behind a stereo depth within which a field point is the same surface
DEPTH_MARGIN = 0.05  # share of each view's hull depth span added on either side of its sweep range


@dataclass
class StereoSettings:
    max_image_size: int
    neighbours: int
    hypotheses: int
    patch: int
    min_ncc: float
    plane_iterations: int
    min_consistent_views: int  # neighbours that must confirm a depth (so a point is seen by at least this + 1 views)
    consistency_pixels: float
    consistency_depth: float


@dataclass
class Observation:
    """The measured evidence of a capture, in its world frame."""

    cameras: list[Camera]  # the capture's cameras, full resolution
    images: list[np.ndarray]  # (H, W, 3) float32 in [0, 1]
    masks: list[np.ndarray]  # (H, W) float32 object coverage in [0, 1]
    stereo_cameras: list[Camera]  # the cameras of the depth maps (images scaled for stereo)
    depths: list[
        np.ndarray
    ]  # (h, w) float32 depth along the optical axis, kept only where neighbours confirm it; 0 elsewhere
    points: np.ndarray  # (N, 3) fused surface points, each confirmed by at least two views
    normals: np.ndarray  # (N, 3) unit, facing the camera that measured the point
    colours: np.ndarray  # (N, 3) in [0, 1]
    point_views: np.ndarray  # (N,) index of the view whose depth map gave each point
    object_box: np.ndarray  # (2, 3) box around the silhouettes' common volume
    stereo_pairs: int  # views that had at least one usable stereo neighbour

    @property
    def centre(self) -> np.ndarray:
        return self.object_box.mean(axis=0)

    def reference_view(self) -> int:
        """The view that sees most of the object: the largest silhouette."""
        return int(np.argmax([float(mask.sum()) for mask in self.masks]))


def observe(
    capture: Capture,
    settings: StereoSettings,
    device: torch.device,
    check: Callable[[], None],
    progress: Callable[[float, str], None],
    surface: trimesh.Trimesh | None = None,
) -> Observation:
    """Silhouettes, consistent depth maps and fused points of `capture` (needs masks and known cameras): plane-sweep
    stereo's between views within its matching angle and, when given, `surface`'s wherever stereo measured nothing
    at or behind it."""
    if capture.cameras is None:
        raise InvalidCapture("hybrid needs calibrated cameras (a sparse/ COLMAP model) and the capture has none.")
    if capture.masks is None:
        raise InvalidCapture("hybrid needs a foreground mask per image (masks/) and the capture has none.")
    cameras = list(capture.cameras)
    images = [capture.load_image(i) for i in range(capture.num_views)]
    masks = [capture.load_mask(i) for i in range(capture.num_views)]
    box, hull_points = _coarse_hull(cameras, masks, check)
    centre = box.mean(axis=0)
    progress(0.05, "coarse visual hull")

    views = [
        undistorted(View(camera.image_name, image, mask >= 0.5, camera)).resized(settings.max_image_size)
        for camera, image, mask in zip(cameras, images, masks, strict=True)
    ]
    stereo_cameras: list[Camera] = [view.camera for view in views]  # type: ignore[misc]
    stereo = [StereoImage.build(v.name, v.image, v.mask, c, device) for v, c in zip(views, stereo_cameras, strict=True)]

    def measure(maps: list[DepthMap], neighbours: list[list[int]]) -> Measured:
        cloud = fuse(
            stereo,
            [view.image for view in views],
            maps,
            neighbours,
            max_pixels=settings.consistency_pixels,
            max_relative_depth=settings.consistency_depth,
            min_views=settings.min_consistent_views,
            estimate_normals=False,  # estimated below, once the outliers are gone from the neighbourhoods
        )
        return Measured.of(cloud, maps)

    neighbours = select_neighbours(stereo_cameras, centre, settings.neighbours)
    measured = Measured.nothing([(view.height, view.width) for view in stereo])
    if any(neighbours):
        measured = measure(
            _stereo_depths(stereo, neighbours, hull_points, settings, device, check, progress), neighbours
        )
    if surface is not None:
        # Any other view may confirm a point (the field needs no patch matching), but a view with no other within
        # stereo's matching angle has no view that saw its surface the way it did: with 4 views 90° apart, two
        # views see the same surface only where the visual hull bulges most (on Avocado the field's precision was
        # 0.31 there, 0.58 elsewhere). Such a view has no neighbours, and fuse() keeps its surface whole, as the
        # field fitted it to its pixels and the other views' silhouettes (bench means at 4 views, F@1%: 0.579
        # against 0.538 when every view needed a confirmation).
        close = select_neighbours(stereo_cameras, centre, 1)
        field_neighbours = [[j for j in range(len(stereo)) if j != i] if close[i] else [] for i in range(len(stereo))]
        scene = raycasting_scene(surface)
        check()
        fitted = measure([_surface_depth(scene, view, device) for view in views], field_neighbours)
        # Where stereo measured the surface its depth stands, and the field keeps the rest: fitted to every view on
        # a coarse grid, the field swells towards the hull on few views (Avocado, 4 views: 43% of its points within
        # 1% of the scan's diagonal, against 93% of stereo's).
        overridden = measured.on_or_in_front(
            stereo_cameras, fitted.cloud.points, FIELD_SLACK * settings.consistency_depth
        )
        measured = measured.joined(fitted.without(overridden))
    cloud, depths = measured.cloud, measured.depths
    check()
    progress(1.0, f"{len(cloud.points)} consistent surface points")
    keep = _inliers(cloud.points)
    points, point_views = cloud.points[keep], cloud.view_index[keep]
    centres = np.array([camera.center for camera in stereo_cameras])
    return Observation(
        cameras=cameras,
        images=images,
        masks=masks,
        stereo_cameras=stereo_cameras,
        depths=depths,
        points=points,
        normals=oriented_normals(points, centres[point_views]) if len(points) >= 16 else np.zeros((len(points), 3)),
        colours=cloud.colors[keep],
        point_views=point_views,
        object_box=box,
        stereo_pairs=sum(1 for n in neighbours if n),
    )


@dataclass
class Measured:
    """Fused surface points and, per view, the depth of the pixels they came from (0 at every other pixel)."""

    cloud: PointCloud
    depths: list[np.ndarray]  # (h, w) float32

    @classmethod
    def of(cls, cloud: PointCloud, maps: list[DepthMap]) -> Measured:
        assert cloud.pixel_index is not None  # fuse() always says where its points came from
        pixels = cloud.pixel_index
        return cls(cloud, [_kept_depth(m, pixels[cloud.view_index == i]) for i, m in enumerate(maps)])

    @classmethod
    def nothing(cls, shapes: list[tuple[int, int]]) -> Measured:
        return cls(PointCloud.empty(), [np.zeros(s, dtype=np.float32) for s in shapes])

    def without(self, drop: np.ndarray) -> Measured:
        """These measurements less the points where `drop` is true, and their pixels' depths."""
        assert self.cloud.pixel_index is not None
        depths = [depth.copy() for depth in self.depths]
        for view, depth in enumerate(depths):
            depth.reshape(-1)[self.cloud.pixel_index[drop & (self.cloud.view_index == view)]] = 0.0
        return Measured(self.cloud.subset(~drop), depths)

    def joined(self, other: Measured) -> Measured:
        """Both sets of points; per pixel, this one's depth where it has one, else the other's."""
        depths = [np.where(mine > 0, mine, theirs) for mine, theirs in zip(self.depths, other.depths, strict=True)]
        return Measured(concatenated([self.cloud, other.cloud]), depths)

    def on_or_in_front(self, cameras: list[Camera], points: np.ndarray, tolerance: float) -> np.ndarray:
        """(N,) bool: points whose depth in some view (`cameras`, one per depth map) is at most (1 + `tolerance`) ×
        the depth measured at their pixel there: on that surface, or in front of it."""
        hit = np.zeros(len(points), dtype=bool)
        for camera, depth in zip(cameras, self.depths, strict=True):
            if not len(points) or not (depth > 0).any():
                continue
            uv, z = camera.project(points)
            column, row = np.floor(uv[:, 0]).astype(np.int64), np.floor(uv[:, 1]).astype(np.int64)
            inside = (z > 0) & (column >= 0) & (column < depth.shape[1]) & (row >= 0) & (row < depth.shape[0])
            measured = np.zeros(len(points), dtype=np.float32)
            measured[inside] = depth[row[inside], column[inside]]
            hit |= (measured > 0) & (z < measured * (1.0 + tolerance))
        return hit


def _stereo_depths(
    stereo: list[StereoImage],
    neighbours: list[list[int]],
    hull_points: np.ndarray,
    settings: StereoSettings,
    device: torch.device,
    check: Callable[[], None],
    progress: Callable[[float, str], None],
) -> list[DepthMap]:
    """Plane-sweep depth of every view against its neighbours (an empty map where it has none)."""
    depth_maps: list[DepthMap] = []
    for index, view in enumerate(stereo):
        check()
        others = [stereo[j] for j in neighbours[index]]
        if not others:
            empty = torch.zeros(view.height, view.width, device=device)
            depth_maps.append(DepthMap(depth=empty, confidence=empty.clone()))
        else:
            depth_maps.append(
                estimate_depth(
                    view,
                    others,
                    _depth_range(view.camera, hull_points),
                    hypotheses=settings.hypotheses,
                    patch=settings.patch,
                    min_ncc=settings.min_ncc,
                    plane_iterations=settings.plane_iterations,
                )
            )
        progress(0.05 + 0.85 * (index + 1) / len(stereo), f"depth map {index + 1} of {len(stereo)}")
    return depth_maps


def _surface_depth(scene: o3d.t.geometry.RaycastingScene, view: View, device: torch.device) -> DepthMap:
    """The fitted surface's depth in `view` inside its silhouette (0 elsewhere), as a fully confident depth map."""
    assert view.camera is not None  # observe() builds every view with its camera
    depth = depth_image(scene, view.camera)
    depth[~np.isfinite(depth) | ~np.asarray(view.mask, dtype=bool)] = 0.0
    tensor = torch.from_numpy(depth.astype(np.float32)).to(device)
    return DepthMap(depth=tensor, confidence=(tensor > 0).float())


def _kept_depth(depth_map: DepthMap, pixel_ids: np.ndarray) -> np.ndarray:
    """The depth map (h, w) with only the pixels in `pixel_ids` (flat indices) kept, 0 elsewhere."""
    depth = depth_map.depth
    kept = np.zeros(depth.numel(), dtype=np.float32)
    ids = torch.from_numpy(pixel_ids).to(depth.device)
    kept[pixel_ids] = depth.reshape(-1)[ids].cpu().numpy()
    return kept.reshape(depth.shape)


def _inliers(points: np.ndarray) -> np.ndarray:
    """Points not far off their neighbours' mean distance (statistical outlier removal): the consistency check
    lets a few wrong matches through in pairs, and each would otherwise pin a known-occupied patch in free space."""
    if len(points) <= OUTLIER_NEIGHBOURS:
        return np.ones(len(points), dtype=bool)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    _, kept = cloud.remove_statistical_outlier(nb_neighbors=OUTLIER_NEIGHBOURS, std_ratio=OUTLIER_STD_RATIO)
    keep = np.zeros(len(points), dtype=bool)
    keep[np.asarray(kept, dtype=np.int64)] = True
    return keep


def _coarse_hull(
    cameras: list[Camera], masks: list[np.ndarray], check: Callable[[], None]
) -> tuple[np.ndarray, np.ndarray]:
    """The box around the silhouettes' common volume (a voxel wider) and that volume's voxel centres."""
    low, high = silhouette_box(cameras, masks)
    check()
    grid = voxel_grid(low, high, HULL_RESOLUTION)
    hull = carve(grid, cameras, [torch.from_numpy(m) for m in masks], 0, "cpu", lambda _: check())
    occupied = hull.values >= 0.5
    if not occupied.any():
        raise BackendFailed("The silhouettes share no common volume: the masks or cameras do not agree.")
    points = grid.origin + np.argwhere(occupied) * grid.voxel
    # The hull's own box, a voxel wider: the silhouettes' box also holds what only some views show, and with few
    # views its centre can lie far from the object (the frame built around it then misses most of the object).
    return np.stack([points.min(axis=0) - grid.voxel, points.max(axis=0) + grid.voxel]), points


def _depth_range(camera: Camera, hull_points: np.ndarray) -> tuple[float, float]:
    """Near and far sweep depths of a camera: the hull's depth span there, widened a little."""
    _, z = camera.project(hull_points)
    z = z[z > 0]
    near, far = float(z.min()), float(z.max())
    margin = DEPTH_MARGIN * (far - near) + 1e-6
    return max(near - margin, 0.05 * near), far + margin
