"""Camera refinement from dense tracks: the depth maps of a first, coarse stereo pass predict where each textured pixel
of a view lands in its neighbours; Lucas-Kanade tracking measures where it really is, to a fraction of a pixel, and a
bundle adjustment over these tens of thousands of tracks corrects the poses and the shared focal length.

Structure from motion places the cameras from a few hundred SIFT features a view. On weakly textured objects (found
by the wide-baseline retry on 4× upsampled images) those are few and imprecise (0.3-0.4 px), and a camera may turn by
a degree while sliding sideways with its features still fitting: Avocado's cameras were off by 0.5° (median) and the
focal length by 1%, which blurs the fine geometry that stereo can otherwise recover.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pycolmap
import torch
import torch.nn.functional as F

from reconstruction.engine.cameras import Camera
from reconstruction.engine.metrics import umeyama

from .mvs import DepthMap, StereoImage

CELL = 6  # at most one tracked pixel per CELL×CELL block of a view
MAX_POINTS_PER_VIEW = 3000
PATCH_RADIUS = 4  # the tracked patch is (2r+1)² pixels
LK_ITERATIONS = 12
SHIFT_ONLY_ITERATIONS = 3
# A track counts when the patches correlate this well once aligned, and lie this near where the depth put them.
MIN_TRACK_NCC = 0.9
MAX_SHIFT_PX = 6.0
MIN_TRACKS_PER_VIEW = 30
LOSS_SCALE_PX = 1.0  # Cauchy loss: observations beyond about a pixel weigh less and less


@dataclass
class Refinement:
    """The refined cameras (input order) and what the adjustment saw."""

    cameras: list[Camera]
    world_from_old: np.ndarray  # 4×4 similarity taking points of the old frame into the refined one
    tracks: int
    observations: int
    error_before_px: float  # mean reprojection error of the tracks with the old cameras (points re-fitted)
    error_after_px: float
    focal_change: float  # refined / old focal length − 1, 0 when the images do not share one camera
    rotation_change_deg: float  # median over the views
    observations_per_view: list[int]


def refine_cameras(
    views: list[StereoImage], depths: list[DepthMap], neighbours: list[list[int]]
) -> Refinement | None:
    """Cameras of `views` adjusted to dense tracks; None when too few tracks hold (the cameras then stay)."""
    observations: list[list[np.ndarray]] = [[] for _ in views]  # per view: (n, 2) pixels, appended per pair
    tracks: list[list[tuple[int, int]]] = []  # per track: (view, index into that view's pixels)
    points: list[np.ndarray] = []
    counts = [0] * len(views)
    for i, view in enumerate(views):
        pixels, depth = _keypoints(view, depths[i].depth)
        if not len(pixels) or not neighbours[i]:
            continue
        world = _backproject(view, pixels, depth)
        found = torch.stack([_track(view, views[j], pixels, world) for j in neighbours[i]])  # (n_nb, M, 2) NaN=lost
        kept = (~torch.isnan(found[..., 0])).sum(0) >= 1
        if not bool(kept.any()):
            continue
        start = {i: counts[i]}
        observations[i].append(pixels[kept].cpu().numpy())
        counts[i] += int(kept.sum())
        for slot, j in enumerate(neighbours[i]):
            start[j] = counts[j]
            hit = ~torch.isnan(found[slot, kept, 0])
            observations[j].append(found[slot, kept][hit].cpu().numpy())
            counts[j] += int(hit.sum())
        hits = (~torch.isnan(found[:, kept, 0])).cpu().numpy()  # (n_nb, K)
        rank = np.cumsum(hits, axis=1) - 1
        for k, xyz in enumerate(world[kept].cpu().numpy()):
            track = [(i, start[i] + k)]
            track += [(j, start[j] + int(rank[slot, k])) for slot, j in enumerate(neighbours[i]) if hits[slot, k]]
            tracks.append(track)
            points.append(xyz)
    if min(counts) < MIN_TRACKS_PER_VIEW:
        return None
    pixels_per_view = [np.concatenate(o).astype(np.float64) for o in observations]
    return _adjust([v.camera for v in views], pixels_per_view, tracks, np.asarray(points, dtype=np.float64))


def apply(refinement: Refinement, cameras: list[Camera]) -> list[Camera]:
    """`cameras` (the same views at any resolution) with the refined poses and the focal length scaled alike."""
    refined = []
    for old, new in zip(cameras, refinement.cameras, strict=True):
        K = old.K.copy()
        K[0, 0] *= 1 + refinement.focal_change
        K[1, 1] *= 1 + refinement.focal_change
        refined.append(replace(old, K=K, R=new.R, t=new.t))
    return refined


def moved_model(sparse_dir: Path, refinement: Refinement, cameras: list[Camera]) -> pycolmap.Reconstruction:
    """The COLMAP model in `sparse_dir` on the refined `cameras` (full resolution, by image name): its points
    carried by the similarity between the two frames, its poses and focal lengths replaced."""
    model = pycolmap.Reconstruction(str(sparse_dir))
    T = refinement.world_from_old
    scale = float(np.cbrt(np.linalg.det(T[:3, :3])))
    model.transform(pycolmap.Sim3d(scale, pycolmap.Rotation3d(T[:3, :3] / scale), T[:3, 3].reshape(3, 1)))
    by_name = {camera.image_name: camera for camera in cameras}
    for image in model.images.values():
        camera = by_name.get(image.name)
        if camera is not None:
            pose = pycolmap.Rigid3d(pycolmap.Rotation3d(camera.R), camera.t.reshape(3, 1))
            model.frames[image.frame_id].set_cam_from_world(image.camera_id, pose)
    for camera in model.cameras.values():
        params = np.asarray(camera.params, dtype=np.float64).copy()
        params[list(camera.focal_length_idxs())] *= 1 + refinement.focal_change
        camera.params = params
    return model


def sparse_track_errors(sparse_dir: Path, moved: pycolmap.Reconstruction) -> tuple[float, float]:
    """Mean reprojection error (px) of SfM's own tracks with SfM's cameras (the model in `sparse_dir`) and with the
    refined ones (`moved_model`), the points re-fitted to the latter. Those tracks (SIFT matches) played no part in
    the refinement, so they tell a better fit from a drift into a wrong one that the dense tracks alone cannot."""
    sfm_model = pycolmap.Reconstruction(str(sparse_dir))
    sfm_model.update_point_3d_errors()
    refitted = pycolmap.Reconstruction(moved)
    _bundle_adjust(refitted, cameras_fixed=True, focal=False)
    refitted.update_point_3d_errors()
    return float(sfm_model.compute_mean_reprojection_error()), float(refitted.compute_mean_reprojection_error())


def _keypoints(view: StereoImage, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The most corner-like pixel of each CELL block that has a depth (Shi-Tomasi score), at most MAX_POINTS_PER_VIEW."""
    gray = view.gray
    gx, gy = _gradients(gray)
    size = 2 * PATCH_RADIUS + 1
    xx, yy, xy = (F.avg_pool2d(g, size, stride=1, padding=PATCH_RADIUS) for g in (gx * gx, gy * gy, gx * gy))
    corner = ((xx + yy) / 2 - (((xx - yy) / 2) ** 2 + xy**2).sqrt())[0, 0]
    # The whole patch on the object: at an occluding contour the edge seen is another surface curve in every view,
    # and tracking it pulled the focal length 2% short on a smooth blob.
    usable = _eroded(depth > 0, PATCH_RADIUS + 1)
    if view.mask is not None:
        usable &= _eroded(view.mask, PATCH_RADIUS + 1)
    margin = PATCH_RADIUS + 2
    usable[:margin] = usable[-margin:] = False
    usable[:, :margin] = usable[:, -margin:] = False
    score = torch.where(usable, corner, torch.zeros_like(corner))
    best, index = F.max_pool2d(score[None, None], CELL, stride=CELL, return_indices=True)
    best, index = best.reshape(-1), index.reshape(-1)
    chosen = best > 0
    best, index = best[chosen], index[chosen]
    if len(best) > MAX_POINTS_PER_VIEW:
        top = torch.topk(best, MAX_POINTS_PER_VIEW).indices
        index = index[top]
    width = view.width
    rows, cols = index // width, index % width
    pixels = torch.stack([cols, rows], dim=1).float() + 0.5  # pixel centres, COLMAP's convention
    return pixels, depth[rows, cols]


def _backproject(view: StereoImage, pixels: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    homogeneous = torch.cat([pixels, torch.ones_like(pixels[:, :1])], dim=1)
    camera = (torch.linalg.inv(view.K) @ homogeneous.T) * depth
    return (view.R.T @ (camera - view.t[:, None])).T


def _project(view: StereoImage, world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """StereoImage.project for points as rows: pixels (N, 2) and depths (N,)."""
    pixels, z = view.project(world.T)
    return pixels.T, z


def _track(ref: StereoImage, other: StereoImage, pixels: torch.Tensor, world: torch.Tensor) -> torch.Tensor:
    """Where each reference pixel lies in `other`, tracked from the depth's prediction; NaN where it is lost."""
    predicted, z = _project(other, world)
    # The reference patch as `other` sees it, to first order: the local affine map of a plane at the pixel's depth.
    depth = _project(ref, world)[1]
    step_u = _project(other, _backproject(ref, pixels + pixels.new_tensor([1.0, 0.0]), depth))[0]
    step_v = _project(other, _backproject(ref, pixels + pixels.new_tensor([0.0, 1.0]), depth))[0]
    affine = torch.stack([step_u - predicted, step_v - predicted], dim=2)  # (M, 2, 2): columns per unit u, v
    offsets = _offsets(pixels.device)  # (P, 2)
    template = _sample(ref.gray, pixels[:, None, :] + offsets[None])  # (M, P)
    template = _normalised(template)
    position = predicted.clone()
    gx, gy = _gradients(other.gray)
    converged = torch.zeros(len(pixels), dtype=torch.bool, device=pixels.device)
    # Gauss-Newton on the normalised patch difference: the shift alone first, from the plane's affine map, then the
    # affine map too, since a slanted patch seen from 20-40° apart is foreshortened unlike the plane at its depth.
    for iteration in range(LK_ITERATIONS):
        where = position[:, None, :] + torch.einsum("mij,pj->mpi", affine, offsets)  # (M, P, 2)
        values = _sample(other.gray, where)
        mean, std = values.mean(1, keepdim=True), values.std(1, keepdim=True).clamp_min(1e-6)
        residual = (values - mean) / std - template
        du, dv = _sample(gx, where) / std, _sample(gy, where) / std
        columns = [du, dv]
        if iteration >= SHIFT_ONLY_ITERATIONS:
            ox, oy = offsets[None, :, 0], offsets[None, :, 1]
            columns += [du * ox, du * oy, dv * ox, dv * oy]
        jacobian = torch.stack(columns, dim=2)
        jacobian = jacobian - jacobian.mean(1, keepdim=True)
        hessian = jacobian.transpose(1, 2) @ jacobian
        gradient = (jacobian * residual[..., None]).sum(1)
        size = hessian.shape[1]
        damping = 1e-6 * hessian.diagonal(dim1=1, dim2=2).sum(1)[:, None, None] / size + 1e-12
        solution, info = torch.linalg.solve_ex(hessian + damping * torch.eye(size, device=hessian.device), -gradient[..., None])
        delta = torch.where((info == 0)[:, None], solution[..., 0], torch.zeros_like(gradient))
        delta = torch.nan_to_num(delta)
        step = delta[:, :2].clamp(-2.0, 2.0)
        position = position + step
        if iteration >= SHIFT_ONLY_ITERATIONS:
            affine = affine + delta[:, 2:].clamp(-0.2, 0.2).reshape(-1, 2, 2)
        converged = step.norm(dim=1) < 0.02
    warped_offsets = torch.einsum("mij,pj->mpi", affine, offsets)
    final = _normalised(_sample(other.gray, position[:, None, :] + warped_offsets))
    ncc = (final * template).mean(1)
    inside = (
        (position[:, 0] > PATCH_RADIUS + 1) & (position[:, 0] < other.width - PATCH_RADIUS - 1)
        & (position[:, 1] > PATCH_RADIUS + 1) & (position[:, 1] < other.height - PATCH_RADIUS - 1)
    )
    good = converged & inside & (z > 0) & (ncc >= MIN_TRACK_NCC) & ((position - predicted).norm(dim=1) <= MAX_SHIFT_PX)
    if other.mask is not None:
        cols = position[:, 0].long().clamp(0, other.width - 1)
        rows = position[:, 1].long().clamp(0, other.height - 1)
        good &= _eroded(other.mask, PATCH_RADIUS + 1)[rows, cols]
    return torch.where(good[:, None], position, torch.full_like(position, math.nan))


def _eroded(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """`mask` (H, W, bool) shrunk by `radius` pixels (a square neighbourhood)."""
    outside = (~mask).float()[None, None]
    return F.max_pool2d(outside, 2 * radius + 1, stride=1, padding=radius)[0, 0] == 0


def _offsets(device: torch.device) -> torch.Tensor:
    span = torch.arange(-PATCH_RADIUS, PATCH_RADIUS + 1, dtype=torch.float32, device=device)
    v, u = torch.meshgrid(span, span, indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], dim=1)


def _gradients(gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of a (1, 1, H, W) image, the same shape."""
    padded = F.pad(gray, (1, 1, 1, 1), mode="replicate")
    gx = (padded[:, :, 1:-1, 2:] - padded[:, :, 1:-1, :-2]) / 2
    gy = (padded[:, :, 2:, 1:-1] - padded[:, :, :-2, 1:-1]) / 2
    return gx, gy


def _sample(image: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of a (1, 1, H, W) image at pixel coordinates (M, P, 2) → (M, P)."""
    height, width = image.shape[2:]
    grid = torch.stack([where[..., 0] * (2 / width) - 1, where[..., 1] * (2 / height) - 1], dim=-1)
    return F.grid_sample(image, grid[None], mode="bilinear", padding_mode="border", align_corners=False)[0, 0]


def _normalised(patches: torch.Tensor) -> torch.Tensor:
    centred = patches - patches.mean(1, keepdim=True)
    return centred / centred.std(1, keepdim=True).clamp_min(1e-6)


def _adjust(
    cameras: list[Camera], pixels: list[np.ndarray], tracks: list[list[tuple[int, int]]], points: np.ndarray
) -> Refinement | None:
    """Bundle adjustment (COLMAP's, through pycolmap) of poses, points and a shared focal length."""
    shared = all(np.allclose(c.K, cameras[0].K, rtol=1e-9) and (c.width, c.height) == (cameras[0].width, cameras[0].height) for c in cameras)
    reconstruction = pycolmap.Reconstruction()
    for index, camera in enumerate(cameras, 1):
        if index == 1 or not shared:
            fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
            simple = abs(fx - fy) <= 1e-9 * fx
            reconstruction.add_camera_with_trivial_rig(
                pycolmap.Camera(
                    camera_id=index, model="SIMPLE_PINHOLE" if simple else "PINHOLE", width=camera.width,
                    height=camera.height, params=[fx, cx, cy] if simple else [fx, fy, cx, cy],
                )
            )
        image = pycolmap.Image(
            name=camera.image_name, keypoints=pixels[index - 1], camera_id=1 if shared else index, image_id=index
        )
        reconstruction.add_image_with_trivial_frame(
            image, pycolmap.Rigid3d(pycolmap.Rotation3d(camera.R), camera.t.reshape(3, 1))
        )
    for xyz, track in zip(points, tracks, strict=True):
        elements = pycolmap.Track()
        for view, index in track:
            elements.add_element(view + 1, index)
        reconstruction.add_point3D(xyz.reshape(3, 1), elements)

    # The tracks' points came from one view's depth: fit them to the old cameras first, so the error before is fair.
    _bundle_adjust(reconstruction, cameras_fixed=True, focal=False)
    before = reconstruction.compute_mean_reprojection_error()
    _bundle_adjust(reconstruction, cameras_fixed=False, focal=shared)
    after = reconstruction.compute_mean_reprojection_error()
    if not math.isfinite(after) or after > before:
        return None

    refined = []
    for index, camera in enumerate(cameras, 1):
        image = reconstruction.images[index]
        pose = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
        fitted = reconstruction.cameras[image.camera_id]
        K = np.asarray(fitted.calibration_matrix(), dtype=np.float64)
        refined.append(
            replace(camera, K=K, R=np.asarray(pose.rotation.matrix()), t=np.asarray(pose.translation).reshape(3))
        )
    old_centres = np.array([c.center for c in cameras])
    new_centres = np.array([c.center for c in refined])
    changes = [
        math.degrees(math.acos(float(np.clip((np.trace(new.R @ old.R.T) - 1) / 2, -1.0, 1.0))))
        for old, new in zip(cameras, refined, strict=True)
    ]
    focal = refined[0].K[0, 0] / cameras[0].K[0, 0] - 1 if shared else 0.0
    return Refinement(
        cameras=refined,
        world_from_old=umeyama(old_centres, new_centres, with_scale=True),
        tracks=len(tracks),
        observations=sum(len(t) for t in tracks),
        error_before_px=float(before),
        error_after_px=float(after),
        focal_change=float(focal),
        rotation_change_deg=float(np.median(changes)),
        observations_per_view=[len(p) for p in pixels],
    )


def _bundle_adjust(reconstruction: pycolmap.Reconstruction, *, cameras_fixed: bool, focal: bool) -> None:
    options = pycolmap.BundleAdjustmentOptions()
    options.refine_focal_length = focal
    options.refine_principal_point = False
    options.refine_extra_params = False
    options.refine_rig_from_world = not cameras_fixed
    options.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
    options.ceres.loss_function_scale = LOSS_SCALE_PX
    options.print_summary = False
    pycolmap.bundle_adjustment(reconstruction, options)
