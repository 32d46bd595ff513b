"""Slanted-plane refinement of a depth map, PatchMatch style: each pixel carries a depth and a normal.

The plane sweep scores fronto-parallel patches, which fit a surface seen head-on but smear one seen at a slant:
measured on the rocker arm's renders (24 views, 512 px), 82% of its depths were within 0.25% of the diagonal where
the surface faces the camera within 30°, 30% at 50–65° and 13% at 65–75°. Here each pixel's patch is warped into the
neighbours through the homography of its own plane, so a slanted surface matches as well as a frontal one.

Starting from the sweep's depths, with normals from the depth map's own gradient, each iteration tries for every
pixel the planes of the pixels beside it (propagation: a good plane spreads across its surface) and a random
perturbation of its own, shrinking with each iteration, and keeps whichever scores best. Works on whatever device
the tensors are on.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .mvs import StereoImage

# The patch: PATCH_SAMPLES × PATCH_SAMPLES pixels, PATCH_STRIDE apart (a 9×9 window read sparsely, as Gipuma does:
# a wider footprint at the cost of a 5×5 patch).
PATCH_SAMPLES = 5
PATCH_STRIDE = 2
# Planes seen at more than this angle from the pixel's ray are not tried: their homography degenerates.
MAX_SLANT_DEG = 80.0
# Random perturbation per iteration: the normal turns by about this angle (one standard deviation) and the inverse
# depth moves by up to this many sweep steps, both halving with each iteration.
PERTURB_NORMAL_DEG = 30.0
PERTURB_STEPS = 1.0
# Propagation reads the planes this many pixels away in the four directions, alternating per iteration.
PROPAGATION_REACH = (1, 3)
# Points evaluated at once (pixels × patch samples × neighbours), to bound memory.
CHUNK_SAMPLES = 4_000_000


class PlaneScorer:
    """Aggregated patch NCC of per-pixel planes for the pixels `pixels` (flat indices into the reference image),
    whose z = 1 camera rays are `rays` (3, P)."""

    def __init__(self, ref: StereoImage, neighbours: list[StereoImage], pixels: torch.Tensor, rays: torch.Tensor):
        device = ref.gray.device
        self.neighbours = neighbours
        self.pixels = pixels
        half = (PATCH_SAMPLES // 2) * PATCH_STRIDE
        steps = torch.arange(-half, half + 1, PATCH_STRIDE, device=device, dtype=torch.float32)
        dv, du = torch.meshgrid(steps, steps, indexing="ij")
        # Camera-space ray offsets of the patch samples (z = 1 rays are affine in the pixel).
        k_inv = torch.linalg.inv(ref.K)
        self.offsets = k_inv[:, :2] @ torch.stack([du.reshape(-1), dv.reshape(-1)])  # (3, S)
        self.centre = self.offsets.shape[1] // 2  # the pixel's own sample
        self.rays = rays
        windows = F.unfold(ref.gray, PATCH_SAMPLES, dilation=PATCH_STRIDE, padding=half)[0]  # (S, H*W)
        ref_patch = windows[:, pixels].T  # (P, S)
        self.ref_centred = ref_patch - ref_patch.mean(dim=1, keepdim=True)
        self.ref_norm = self.ref_centred.norm(dim=1)
        self.projections = []
        for source in neighbours:
            relative = source.R @ ref.R.T
            a = source.K @ relative
            b = source.K @ (source.t - relative @ ref.t)
            scale = torch.tensor([2.0 / source.width, 2.0 / source.height], device=device)
            self.projections.append((source, a, b, scale))

    def __call__(self, depth: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
        """Score (P,) of the planes through depth·ray with camera-space normals (P, 3); -1 where not seen."""
        samples = self.offsets.shape[1]
        count = len(self.pixels)
        chunk = max(1, CHUNK_SAMPLES // (samples * max(len(self.neighbours), 1)))
        out = torch.empty(count, device=depth.device)
        for start in range(0, count, chunk):
            part = slice(start, start + chunk)
            out[part] = self._score(depth[part], normal[part], self.rays[:, part], self.ref_centred[part], self.ref_norm[part])
        return out

    def _score(
        self, depth: torch.Tensor, normal: torch.Tensor, rays: torch.Tensor, ref_centred: torch.Tensor, ref_norm: torch.Tensor
    ) -> torch.Tensor:
        sample_rays = rays.T[:, :, None] + self.offsets[None]  # (p, 3, S)
        plane = (normal * rays.T).sum(dim=1) * depth  # n·X of the pixel's own point
        facing = (normal[:, :, None] * sample_rays).sum(dim=1)  # (p, S)
        ok = (facing < -1e-6).all(dim=1)
        sample_depth = plane[:, None] / torch.where(facing < -1e-6, facing, torch.full_like(facing, -1e-6))
        points = sample_rays * sample_depth[:, None]  # (p, 3, S)
        per_view = []
        for source, a, b, scale in self.projections:
            projected = torch.einsum("ij,pjs->pis", a, points) + b[None, :, None]
            z = projected[:, 2]
            in_front = (z > 1e-6).all(dim=1)
            xy = projected[:, :2] / torch.where(z > 1e-6, z, torch.ones_like(z))[:, None]
            grid = (xy.transpose(1, 2) * scale - 1)[None]  # (1, p, S, 2)
            inside = (grid.abs() <= 1).all(dim=-1)[0].all(dim=1)
            valid = ok & in_front & inside
            if source.mask is not None:
                centre = grid[:, :, self.centre][:, :, None]
                on_object = F.grid_sample(source.mask[None, None].float(), centre, mode="nearest", align_corners=False)
                valid &= on_object.reshape(-1) > 0.5
            sampled = F.grid_sample(source.gray, grid, mode="bilinear", align_corners=False)[0, 0]  # (p, S)
            centred = sampled - sampled.mean(dim=1, keepdim=True)
            ncc = (centred * ref_centred).sum(dim=1) / (centred.norm(dim=1) * ref_norm + 1e-5)
            per_view.append(torch.where(valid, ncc, torch.full_like(ncc, -1.0)))
        stacked = torch.stack(per_view)
        keep = min(2, len(per_view))
        return stacked.topk(keep, dim=0).values.mean(dim=0) if keep > 1 else stacked[0]


def normals_from_depth(depth: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
    """Camera-space unit normals (H, W, 3) facing the camera, from a depth map (H, W) and its z = 1 rays (3, H, W).

    Central differences two pixels wide; where a neighbour has no depth, the normal faces the camera (fronto-parallel).
    """
    points = rays * depth[None]
    step = 2
    du = torch.zeros_like(points)
    dv = torch.zeros_like(points)
    du[:, :, step:-step] = points[:, :, 2 * step:] - points[:, :, : -2 * step]
    dv[:, step:-step] = points[:, 2 * step:] - points[:, : -2 * step]
    known = depth > 0
    both = torch.zeros_like(known)
    both[step:-step, step:-step] = (
        known[step:-step, 2 * step:] & known[step:-step, : -2 * step] & known[2 * step:, step:-step] & known[: -2 * step, step:-step]
    )
    normal = torch.linalg.cross(du, dv, dim=0).permute(1, 2, 0)
    length = normal.norm(dim=-1, keepdim=True)
    frontal = torch.tensor([0.0, 0.0, -1.0], device=depth.device).expand_as(normal)
    normal = torch.where(both[..., None] & (length > 1e-12), normal / length.clamp_min(1e-12), frontal)
    towards = (normal * rays.permute(1, 2, 0)).sum(dim=-1, keepdim=True) > 0
    return torch.where(towards, -normal, normal)


def refine_planes(
    ref: StereoImage,
    neighbours: list[StereoImage],
    inverse: torch.Tensor,
    confidence: torch.Tensor,
    region: tuple[int, int, int, int],
    active: torch.Tensor,
    *,
    step: float,
    iterations: int,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Better inverse depth and score over `region` (top, bottom, left, right), given the sweep's (same shape).

    Only `active` pixels (bool, same shape; e.g. textured and on the object) are refined; the others keep the
    sweep's answer. `step` is the sweep's last inverse-depth step, the scale of the random perturbation.
    """
    device = inverse.device
    top, bottom, left, right = region
    height, width = bottom - top, right - left
    active = active & (inverse > 0)
    if not bool(active.any()) or iterations <= 0 or not neighbours:
        return inverse, confidence
    rows, cols = torch.nonzero(active, as_tuple=True)
    pixels = (rows + top) * ref.width + (cols + left)
    rays = ref.rays().reshape(3, ref.height, ref.width)[:, top:bottom, left:right]
    scorer = PlaneScorer(ref, neighbours, pixels, rays[:, rows, cols])
    depth = torch.where(active, 1.0 / inverse.clamp_min(1e-12), torch.zeros_like(inverse))
    normals = normals_from_depth(depth, rays)[rows, cols]
    current_depth = depth[rows, cols]
    own_rays = scorer.rays.T  # (P, 3)
    best = scorer(current_depth, normals)
    frontal = torch.tensor([0.0, 0.0, -1.0], device=device).expand_as(normals).contiguous()
    _keep_better(best, (current_depth, normals), scorer(current_depth, frontal), (current_depth, frontal))

    index = torch.full((height, width), -1, dtype=torch.long, device=device)
    index[rows, cols] = torch.arange(len(rows), device=device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    cos_limit = math.cos(math.radians(MAX_SLANT_DEG))
    directions = F.normalize(own_rays, dim=1)
    for iteration in range(iterations):
        reach = PROPAGATION_REACH[iteration % len(PROPAGATION_REACH)]
        for dr, dc in ((0, reach), (0, -reach), (reach, 0), (-reach, 0)):
            r, c = rows + dr, cols + dc
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            other = torch.full_like(rows, -1)
            other[inside] = index[r[inside], c[inside]]
            has = other >= 0
            source = other.clamp_min(0)
            their_normal = normals[source]
            their_point = own_rays[source] * current_depth[source][:, None]
            facing = (their_normal * own_rays).sum(dim=1)
            candidate_depth = (their_normal * their_point).sum(dim=1) / torch.where(facing < -1e-6, facing, torch.full_like(facing, -1e-6))
            usable = has & (facing < -1e-6) & (candidate_depth > 0)
            candidate_depth = torch.where(usable, candidate_depth, current_depth)
            candidate_normal = torch.where(usable[:, None], their_normal, normals)
            scores = torch.where(usable, scorer(candidate_depth, candidate_normal), torch.full_like(best, -2.0))
            _keep_better(best, (current_depth, normals), scores, (candidate_depth, candidate_normal))
        shrink = 0.5**iteration
        turn = torch.randn(normals.shape, generator=generator).to(device) * math.radians(PERTURB_NORMAL_DEG) * shrink
        candidate_normal = F.normalize(normals + turn - (turn * normals).sum(dim=1, keepdim=True) * normals, dim=1)
        shift = (torch.rand(len(rows), generator=generator).to(device) * 2 - 1) * PERTURB_STEPS * step * shrink
        candidate_depth = 1.0 / (1.0 / current_depth + shift).clamp_min(1e-12)
        slant_ok = -(candidate_normal * directions).sum(dim=1) > cos_limit
        scores = torch.where(slant_ok, scorer(candidate_depth, candidate_normal), torch.full_like(best, -2.0))
        _keep_better(best, (current_depth, normals), scores, (candidate_depth, candidate_normal))

    refined = inverse.clone()
    refined_confidence = confidence.clone()
    refined[rows, cols] = 1.0 / current_depth
    refined_confidence[rows, cols] = best
    return refined, refined_confidence


def _keep_better(
    best: torch.Tensor, planes: tuple[torch.Tensor, torch.Tensor], scores: torch.Tensor, candidates: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """Where `scores` beat `best`, take the candidate planes (in place)."""
    better = scores > best
    best[better] = scores[better]
    planes[0][better] = candidates[0][better]
    planes[1][better] = candidates[1][better]
