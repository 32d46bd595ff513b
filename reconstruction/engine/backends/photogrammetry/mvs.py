"""Multi-view stereo in torch: neighbour selection, plane-sweep depth with patch NCC, sub-pixel refinement.

Each reference view sweeps per-pixel depth hypotheses (uniform in inverse depth) through its neighbours:
a pixel's ray point at depth d is projected into a neighbour, the neighbour is sampled there, and a
patch NCC against the reference scores the hypothesis. Scores are averaged over the best neighbours
(so a neighbour that cannot see the point does not veto it), the best hypothesis wins and a parabola
through its two neighbours gives the sub-step depth. A second, narrower sweep around that depth refines it, and
a slanted-plane refinement (planes.py) may follow, for surfaces the fronto-parallel patches fit badly.
Works on whatever device the tensors are on (CPU or CUDA).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from reconstruction.engine.cameras import Camera

from .planes import refine_planes

# The plane sweep runs on images halved until their longer side is at most this; each finer level then
# tries FINE_HYPOTHESES per-pixel depths spread over ±1.5 hypothesis steps of the level above.
COARSEST_SIZE = 160
FINE_HYPOTHESES = 8
# Reference pixels whose patch has less intensity spread than this (on a 0–1 scale) carry no depth signal.
MIN_PATCH_STD = 0.01
# Share of each view's sparse-point depth span added on either side of the sweep range.
DEPTH_MARGIN = 0.15
MIN_POINTS_FOR_RANGE = 10


@dataclass
class StereoImage:
    """A view ready for stereo: grey pixels and camera matrices as tensors on the working device."""

    name: str
    camera: Camera
    gray: torch.Tensor  # (1, 1, H, W)
    pyramid: list[torch.Tensor]  # gray, then 2×2 averages of it, down to COARSEST_SIZE
    mask: torch.Tensor | None  # (H, W) bool
    K: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor

    @classmethod
    def build(cls, name: str, image: np.ndarray, mask: np.ndarray | None, camera: Camera, device: torch.device) -> StereoImage:
        gray = torch.from_numpy(image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).to(device)[None, None]
        tensor_mask = torch.from_numpy(mask).to(device) if mask is not None else None

        def as_tensor(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a, dtype=torch.float32, device=device)

        pyramid = [gray]
        while max(pyramid[-1].shape[2:]) > COARSEST_SIZE:
            pyramid.append(F.avg_pool2d(pyramid[-1], 2, ceil_mode=True))
        return cls(name, camera, gray, pyramid, tensor_mask, as_tensor(camera.K), as_tensor(camera.R), as_tensor(camera.t))

    @property
    def height(self) -> int:
        return int(self.gray.shape[2])

    @property
    def width(self) -> int:
        return int(self.gray.shape[3])

    def project(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel coordinates (2, N) and depths (N,) of world points (3, N)."""
        camera_points = self.R @ points + self.t[:, None]
        z = camera_points[2]
        safe = torch.where(z.abs() > 1e-9, z, torch.full_like(z, 1e-9))
        return (self.K @ camera_points)[:2] / safe, z

    def rays(self) -> torch.Tensor:
        """Camera-space rays with z = 1 through each pixel centre, (3, H*W)."""
        v, u = torch.meshgrid(
            torch.arange(self.height, device=self.K.device, dtype=torch.float32) + 0.5,
            torch.arange(self.width, device=self.K.device, dtype=torch.float32) + 0.5,
            indexing="ij",
        )
        pixels = torch.stack([u.reshape(-1), v.reshape(-1), torch.ones_like(u).reshape(-1)])
        return torch.linalg.inv(self.K) @ pixels


@dataclass
class DepthMap:
    depth: torch.Tensor  # (H, W), 0 where unknown
    confidence: torch.Tensor  # (H, W) best aggregated NCC


def select_neighbours(cameras: list[Camera], centre: np.ndarray, count: int) -> list[list[int]]:
    """For each camera, the `count` others that see the scene centre from a useful angle.

    The score peaks at a 15° triangulation angle, falls off slowly towards wide baselines and sharply towards
    none (no depth signal), and drops views whose optical axes disagree (they look elsewhere).
    """
    centres = np.array([c.center for c in cameras])
    to_scene = centre[None] - centres
    to_scene /= np.linalg.norm(to_scene, axis=1, keepdims=True)
    axes = np.array([c.R[2] for c in cameras])
    chosen = []
    for i in range(len(cameras)):
        scores = np.full(len(cameras), -np.inf)
        for j in range(len(cameras)):
            if j == i:
                continue
            angle = np.degrees(np.arccos(np.clip(to_scene[i] @ to_scene[j], -1.0, 1.0)))
            axis_agreement = axes[i] @ axes[j]
            if angle < 1.0 or angle > 75.0 or axis_agreement < 0.2:
                continue
            spread = 8.0 if angle < 15.0 else 25.0
            scores[j] = np.exp(-((angle - 15.0) ** 2) / (2 * spread**2))
        order = [j for j in np.argsort(-scores) if np.isfinite(scores[j])]
        chosen.append(order[:count])
    return chosen


def box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over the size×size window around each pixel (the part inside the image)."""
    return F.avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=False)


def _score(
    ref_gray: torch.Tensor,
    rays: torch.Tensor,
    ref: StereoImage,
    neighbours: list[tuple[StereoImage, torch.Tensor]],
    inv_depths: torch.Tensor,
    patch: int,
) -> torch.Tensor:
    """Aggregated NCC (D, h, w) of per-pixel inverse-depth hypotheses `inv_depths` (D, h*w).

    `ref_gray` (1, 1, h, w) holds the reference pixels whose camera rays are `rays` (3, h*w); each neighbour
    comes with the grey image to sample (any resolution: sampling uses normalised coordinates).
    """
    height, width = ref_gray.shape[2:]
    pixels = height * width
    ref_mean = box_mean(ref_gray, patch)
    ref_std = (box_mean(ref_gray * ref_gray, patch) - ref_mean**2).clamp_min(0).sqrt()
    keep = min(2, len(neighbours))
    out = torch.empty(inv_depths.shape[0], height, width, device=rays.device)
    projections = []
    for source, image in neighbours:
        relative = source.R @ ref.R.T
        a = source.K @ relative @ rays  # (3, hw)
        b = source.K @ (source.t - relative @ ref.t)  # (3,)
        scale = torch.tensor([2.0 / source.width, 2.0 / source.height], device=rays.device)
        projections.append((source, image, a, b, scale))
    chunk = max(1, int(3_000_000 // (pixels * len(neighbours))))
    for start in range(0, inv_depths.shape[0], chunk):
        depth = 1.0 / inv_depths[start : start + chunk]  # (Dc, hw)
        per_view = []
        for source, image, a, b, scale in projections:
            p = a[None] * depth[:, None] + b[None, :, None]  # (Dc, 3, hw)
            z = p[:, 2]
            in_front = z > 1e-6
            xy = p[:, :2] / torch.where(in_front, z, torch.ones_like(z))[:, None]
            grid = (xy.transpose(1, 2) * scale - 1).reshape(1, -1, width, 2)
            valid = in_front.reshape(-1, 1, height, width) & (grid.abs() <= 1).all(dim=-1).reshape(-1, 1, height, width)
            if source.mask is not None:
                # Points that land outside the neighbour's object mask cannot be on the object.
                inside = F.grid_sample(source.mask[None, None].float(), grid, mode="nearest", align_corners=False)
                valid &= inside.reshape(-1, 1, height, width) > 0.5
            sampled = F.grid_sample(image, grid, mode="bilinear", align_corners=False).reshape(-1, 1, height, width)
            moments = box_mean(torch.cat([sampled, sampled * sampled, sampled * ref_gray], dim=1), patch)
            s_mean = moments[:, :1]
            s_std = (moments[:, 1:2] - s_mean**2).clamp_min(0).sqrt()
            ncc = (moments[:, 2:] - s_mean * ref_mean) / (s_std * ref_std + 1e-5)
            per_view.append(torch.where(valid, ncc, -1.0)[:, 0])
        stacked = torch.stack(per_view)  # (N, Dc, h, w)
        out[start : start + chunk] = stacked.topk(keep, dim=0).values.mean(dim=0) if keep > 1 else stacked[0]
    return out


def _winner(scores: torch.Tensor, inv_depths: torch.Tensor, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Best hypothesis per pixel with a parabola fit through its neighbours; returns inverse depth and score."""
    count = scores.shape[0]
    flat = scores.reshape(count, -1)
    best_score, best = flat.max(dim=0)
    lower = (best - 1).clamp(0, count - 1)
    upper = (best + 1).clamp(0, count - 1)
    s0 = best_score
    sm = flat.gather(0, lower[None])[0]
    sp = flat.gather(0, upper[None])[0]
    denominator = sm - 2 * s0 + sp
    offset = torch.where(denominator < -1e-6, 0.5 * (sm - sp) / denominator, torch.zeros_like(s0)).clamp(-0.5, 0.5)
    inner = (best > 0) & (best < count - 1)
    offset = torch.where(inner, offset, torch.zeros_like(offset))
    inv_best = inv_depths.gather(0, best[None])[0]
    step = (inv_depths.gather(0, upper[None])[0] - inv_depths.gather(0, lower[None])[0]) / (upper - lower).clamp_min(1)
    inverse = inv_best + offset * step
    return inverse.reshape(shape), best_score.reshape(shape)


def estimate_depth(
    ref: StereoImage,
    neighbours: list[StereoImage],
    depth_range: tuple[float, float],
    *,
    hypotheses: int,
    patch: int,
    min_ncc: float,
    plane_iterations: int = 0,
) -> DepthMap:
    """Depth of each reference pixel seen well enough by its neighbours, 0 elsewhere.

    A coarse sweep over `hypotheses` fronto-parallel planes runs at half resolution; a fine sweep of per-pixel
    hypotheses around its (upsampled) answer runs at full resolution; `plane_iterations` of slanted-plane refinement
    (planes.py) may follow. Only the bounding box of the reference mask, when there is one, is computed.
    """
    device = ref.gray.device
    top, bottom, left, right = _region(ref, patch)
    crop = ref.gray[:, :, top:bottom, left:right]
    all_rays = ref.rays().reshape(3, ref.height, ref.width)[None, :, top:bottom, left:right]
    near, far = depth_range
    levels = len(ref.pyramid)
    inverse = torch.empty(0, device=device)
    step = (1.0 / near - 1.0 / far) / max(hypotheses - 1, 1)
    confidence = torch.empty(0, device=device)
    for level in range(levels - 1, -1, -1):
        factor = 2**level
        gray = F.avg_pool2d(crop, factor, ceil_mode=True) if factor > 1 else crop
        rays = (F.avg_pool2d(all_rays, factor, ceil_mode=True) if factor > 1 else all_rays)[0].reshape(3, -1)
        shape = (int(gray.shape[2]), int(gray.shape[3]))
        if level == levels - 1:
            candidates = torch.linspace(1.0 / near, 1.0 / far, hypotheses, device=device)[:, None].expand(-1, rays.shape[1])
        else:
            inverse = F.interpolate(inverse[None, None], size=shape, mode="bilinear", align_corners=False)[0, 0]
            offsets = torch.linspace(-1.5 * step, 1.5 * step, FINE_HYPOTHESES, device=device)
            candidates = (inverse.reshape(1, -1) + offsets[:, None]).clamp_min(1e-9)
            step = 3.0 * step / (FINE_HYPOTHESES - 1)
        level_patch = patch if level == 0 else max(3, patch - 2)
        scores = _score(gray, rays, ref, [(n, n.pyramid[min(level, len(n.pyramid) - 1)]) for n in neighbours], candidates, level_patch)
        inverse, confidence = _winner(scores, candidates, shape)
        del scores

    crop_mean = box_mean(crop, patch)
    wanted = (box_mean(crop * crop, patch) - crop_mean**2).clamp_min(0).sqrt()[0, 0] > MIN_PATCH_STD  # textured
    if ref.mask is not None:
        wanted &= ref.mask[top:bottom, left:right]
    if plane_iterations > 0:
        inverse, confidence = refine_planes(
            ref, neighbours, inverse, confidence, (top, bottom, left, right), wanted, step=step, iterations=plane_iterations
        )
    valid = (confidence > min_ncc) & wanted & (inverse > 0)
    depth = torch.zeros(ref.height, ref.width, device=device)
    conf = torch.zeros(ref.height, ref.width, device=device)
    depth[top:bottom, left:right] = torch.where(valid, 1.0 / inverse.clamp_min(1e-9), 0.0)
    conf[top:bottom, left:right] = torch.where(valid, confidence, 0.0)
    return DepthMap(depth=depth, confidence=conf)


def _region(ref: StereoImage, patch: int) -> tuple[int, int, int, int]:
    """Rows and columns (top, bottom, left, right) worth computing: the mask's bounding box plus a patch margin."""
    if ref.mask is None or not bool(ref.mask.any()):
        return 0, ref.height, 0, ref.width
    rows = torch.nonzero(ref.mask.any(dim=1))[:, 0]
    cols = torch.nonzero(ref.mask.any(dim=0))[:, 0]
    margin = patch
    return (
        max(0, int(rows[0]) - margin), min(ref.height, int(rows[-1]) + 1 + margin),
        max(0, int(cols[0]) - margin), min(ref.width, int(cols[-1]) + 1 + margin),
    )


def depth_ranges(cameras: list[Camera], points: np.ndarray, centre: np.ndarray) -> list[tuple[float, float]]:
    """Near and far sweep depth per camera from the sparse points it sees, else around the scene centre."""
    ranges = []
    for camera in cameras:
        uv, z = camera.project(points) if len(points) else (np.zeros((0, 2)), np.zeros(0))
        seen = z[camera.in_image(uv, z)] if len(points) else z
        if len(seen) >= MIN_POINTS_FOR_RANGE:
            near, far = np.percentile(seen, [1, 99])
            margin = DEPTH_MARGIN * (far - near) + 0.01 * near
            near, far = max(near - margin, 0.05 * near), far + margin
        else:
            distance = float(np.linalg.norm(camera.center - centre))
            near, far = 0.5 * distance, 1.5 * distance
        ranges.append((float(near), float(far)))
    return ranges
