"""Geometric consistency between depth maps and their fusion into one oriented point cloud."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import open3d as o3d
import torch
import torch.nn.functional as F

from .mvs import DepthMap, StereoImage


@dataclass
class PointCloud:
    points: np.ndarray  # (N, 3)
    colors: np.ndarray  # (N, 3) in [0, 1]
    normals: np.ndarray  # (N, 3) unit, facing the camera that saw the point
    view_index: np.ndarray  # (N,) index of the view the point came from
    # (N,) flat index of the pixel, in its view's depth map, each point came from; None when not known (not from fuse).
    pixel_index: np.ndarray | None = None
    # (N,) how many neighbour views confirmed each point; None when not known (not from fuse).
    confirmations: np.ndarray | None = None

    @classmethod
    def empty(cls) -> PointCloud:
        """No points, with pixel indices and confirmations (as fuse() returns when no depth is consistent)."""
        none = np.zeros((0, 3))
        return cls(none, none, none, np.zeros(0, dtype=int), np.zeros(0, dtype=int), np.zeros(0, dtype=int))

    def subset(self, keep: np.ndarray) -> PointCloud:
        """The points where the boolean `keep` is true, with everything known about them."""
        return PointCloud(
            self.points[keep], self.colors[keep], self.normals[keep], self.view_index[keep],
            None if self.pixel_index is None else self.pixel_index[keep],
            None if self.confirmations is None else self.confirmations[keep],
        )


def concatenated(clouds: list[PointCloud]) -> PointCloud:
    """One cloud of all of `clouds`' points; pixel indices and confirmations only when every part has them."""
    def joined(parts: list[np.ndarray | None]) -> np.ndarray | None:
        return None if any(p is None for p in parts) else np.concatenate(parts)  # type: ignore[arg-type]

    return PointCloud(
        np.concatenate([c.points for c in clouds]), np.concatenate([c.colors for c in clouds]),
        np.concatenate([c.normals for c in clouds]), np.concatenate([c.view_index for c in clouds]),
        joined([c.pixel_index for c in clouds]), joined([c.confirmations for c in clouds]),
    )


def _backproject(view: StereoImage, depth: torch.Tensor) -> torch.Tensor:
    """World points (3, H*W) of a depth map."""
    camera_points = view.rays() * depth.reshape(1, -1)
    return view.R.T @ (camera_points - view.t[:, None])


def _sample(image: torch.Tensor, pixels: torch.Tensor, view: StereoImage, mode: str = "nearest") -> torch.Tensor:
    """Values of a (H, W) map at pixel coordinates (2, N); 0 outside."""
    grid = torch.stack([2 * pixels[0] / view.width - 1, 2 * pixels[1] / view.height - 1], dim=-1)
    return F.grid_sample(image[None, None], grid[None, None], mode=mode, align_corners=False)[0, 0, 0]


def consistent_points(
    index: int,
    views: list[StereoImage],
    depths: list[DepthMap],
    neighbours: list[int],
    *,
    max_pixels: float,
    max_relative_depth: float,
    min_views: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points of view `index` confirmed by at least `min_views` neighbours (by all of them when it has fewer; every
    point when it has none), each averaged with its confirmations.

    A neighbour confirms a pixel when its own depth at the projection, carried back into the reference,
    lands within `max_pixels` of the pixel and within `max_relative_depth` of its depth.
    Returns the points (3, M), the pixel indices they came from (M,) and how many neighbours confirmed each (M,).
    """
    ref = views[index]
    depth = depths[index].depth
    flat = depth.reshape(-1)
    valid = flat > 0
    pixel_ids = torch.nonzero(valid)[:, 0]
    if pixel_ids.numel() == 0:
        return torch.zeros(3, 0, device=flat.device), pixel_ids, torch.zeros(0, device=flat.device)
    points = _backproject(ref, depth)[:, pixel_ids]
    rays = ref.rays()[:, pixel_ids]
    ref_pixels = (ref.K @ rays)[:2]
    ref_depth = flat[pixel_ids]
    agree = torch.zeros(pixel_ids.numel(), device=flat.device)
    summed = points.clone()
    for j in neighbours:
        other = views[j]
        pixels, _ = other.project(points)
        other_depth = _sample(depths[j].depth, pixels, other)
        back_rays = torch.linalg.inv(other.K) @ torch.cat([pixels, torch.ones_like(pixels[:1])])
        back = other.R.T @ (back_rays * other_depth - other.t[:, None])
        reprojected, reprojected_depth = ref.project(back)
        pixel_error = (reprojected - ref_pixels).norm(dim=0)
        depth_error = (reprojected_depth - ref_depth).abs() / ref_depth
        ok = (other_depth > 0) & (pixel_error < max_pixels) & (depth_error < max_relative_depth)
        agree += ok.float()
        summed += torch.where(ok[None], back, torch.zeros_like(back))
    keep = agree >= needed_confirmations(min_views, len(neighbours))
    fused = summed[:, keep] / (agree[keep] + 1)[None]
    return fused, pixel_ids[keep], agree[keep]


def needed_confirmations(min_views: int, neighbours: int | np.ndarray) -> int | np.ndarray:
    """Confirmations a point needs: `min_views`, or every neighbour its view has when it has fewer."""
    return np.minimum(min_views, neighbours)


def split_by_confirmation(
    cloud: PointCloud, neighbours: list[list[int]], min_views: int
) -> tuple[PointCloud, PointCloud]:
    """(the points confirmed by `min_views` neighbours, as fuse keeps them, the rest) of a cloud fused with fewer."""
    confirmed = cloud.confirmations >= _needed(cloud, neighbours, min_views)  # type: ignore[operator]
    return cloud.subset(confirmed), cloud.subset(~confirmed)


def barely_confirmed(cloud: PointCloud, neighbours: list[list[int]], min_views: int) -> np.ndarray:
    """Which points of a fused cloud had no more confirmations than they needed (the least certain of those kept)."""
    return cloud.confirmations <= _needed(cloud, neighbours, min_views)  # type: ignore[operator,return-value]


def _needed(cloud: PointCloud, neighbours: list[list[int]], min_views: int) -> np.ndarray:
    assert cloud.confirmations is not None  # fuse() always counts them
    counts = np.array([len(n) for n in neighbours])[cloud.view_index]
    return needed_confirmations(min_views, counts)  # type: ignore[return-value]


def fuse(
    views: list[StereoImage],
    colours: list[np.ndarray],
    depths: list[DepthMap],
    neighbours: list[list[int]],
    *,
    max_pixels: float,
    max_relative_depth: float,
    min_views: int,
    estimate_normals: bool = True,
) -> PointCloud:
    """All views' consistent points with colours, normals (facing the camera each point came from) and the view
    and depth-map pixel each came from.

    `estimate_normals=False` leaves the normals zero, for callers that drop points first and estimate them after.
    """
    all_points, all_colours, all_views, all_pixels, all_confirmations = [], [], [], [], []
    for index in range(len(views)):
        points, pixel_ids, confirmations = consistent_points(
            index,
            views,
            depths,
            neighbours[index],
            max_pixels=max_pixels,
            max_relative_depth=max_relative_depth,
            min_views=min_views,
        )
        if pixel_ids.numel() == 0:
            continue
        ids = pixel_ids.cpu().numpy()
        all_points.append(points.T.cpu().numpy())
        all_colours.append(colours[index].reshape(-1, 3)[ids])
        all_views.append(np.full(len(ids), index))
        all_pixels.append(ids)
        all_confirmations.append(confirmations.cpu().numpy().astype(int))
    if not all_points:
        return PointCloud.empty()
    xyz = np.concatenate(all_points).astype(np.float64)
    cloud = PointCloud(
        xyz, np.concatenate(all_colours).astype(np.float64), np.zeros_like(xyz), np.concatenate(all_views),
        np.concatenate(all_pixels), np.concatenate(all_confirmations),
    )
    return with_normals(cloud, views) if estimate_normals else cloud


def with_normals(cloud: PointCloud, views: list[StereoImage]) -> PointCloud:
    """`cloud` with normals from its own points (oriented_normals), each facing the view it came from."""
    centres = np.array([(-view.R.T @ view.t).cpu().numpy() for view in views], dtype=np.float64)
    normals = oriented_normals(cloud.points, centres[cloud.view_index]) if len(cloud.points) else cloud.normals
    return dataclasses.replace(cloud, normals=normals)


def oriented_normals(points: np.ndarray, camera_centres: np.ndarray) -> np.ndarray:
    """Unit normals from each point's 16 nearest neighbours (PCA), flipped to face the camera that saw the point."""
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=16))
    normals = np.asarray(cloud.normals).copy()
    flip = np.einsum("ij,ij->i", normals, camera_centres - points) < 0
    normals[flip] *= -1
    return normals
