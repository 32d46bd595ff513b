"""The completed volume as a surface, with what was measured put back where it was measured, and the provenance
of every vertex: observed (near the fused stereo points) or generated."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from reconstruction.engine.errors import BackendFailed, InvalidInput
from reconstruction.engine.generative.frame import ViewFrame

SNAP_NEIGHBOURS = 8  # fused points that vote on where an observed vertex belongs
MIN_SNAP_VOTES = 3


@dataclass
class Provenance:
    vertex_generated: np.ndarray  # (V,) bool: no fused point within the observed radius
    face_generated: np.ndarray  # (F,) bool: at least two of its vertices generated
    generated_fraction: float  # share of the surface area that is generated

    def summary(self, mesh: trimesh.Trimesh) -> dict[str, float | int]:
        return {
            "generated_fraction": round(self.generated_fraction, 4),
            "generated_faces": int(self.face_generated.sum()),
            "observed_faces": int((~self.face_generated).sum()),
            "generated_vertices": int(self.vertex_generated.sum()),
            "faces": len(mesh.faces),
        }


def extract_surface(frame: ViewFrame, volume: np.ndarray, min_component_share: float) -> tuple[trimesh.Trimesh, int]:
    """Marching cubes of the completed volume in world coordinates, without pieces smaller than
    `min_component_share` of the largest; returns the mesh and how many faces were dropped."""
    try:
        mesh = frame.to_world_mesh(volume, level=0.5)
    except InvalidInput:
        raise BackendFailed(
            "The completed volume is empty: neither the views nor the model placed any surface."
        ) from None
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh, 0
    largest = max(len(p.faces) for p in parts)
    kept = [p for p in parts if len(p.faces) >= min_component_share * largest]
    merged: trimesh.Trimesh = trimesh.util.concatenate(kept)  # type: ignore[assignment]
    return merged, len(mesh.faces) - len(merged.faces)


def snap_to_points(mesh: trimesh.Trimesh, points: np.ndarray, radius: float) -> int:
    """Moves each vertex with fused points around it along its normal onto their surface (the median of their
    offsets along the normal, at most `radius`), so measured geometry keeps the stereo's accuracy rather than the
    voxel grid's; returns how many vertices moved."""
    if len(points) < MIN_SNAP_VOTES:
        return 0
    vertices = np.asarray(mesh.vertices).copy()
    normals = np.asarray(mesh.vertex_normals)
    count = min(SNAP_NEIGHBOURS, len(points))
    distance, nearest = cKDTree(points).query(vertices, k=count, distance_upper_bound=radius)
    found = np.isfinite(distance)
    votes = found.sum(axis=1)
    movable = votes >= MIN_SNAP_VOTES
    if not movable.any():
        return 0
    safe = np.where(found, nearest, 0)
    offsets = np.einsum("vkj,vj->vk", points[safe] - vertices[:, None], normals)
    offsets = np.where(found, offsets, np.nan)
    shift = np.clip(np.nanmedian(offsets[movable], axis=1), -radius, radius)
    vertices[movable] += shift[:, None] * normals[movable]
    mesh.vertices = vertices
    return int(movable.sum())


def provenance(mesh: trimesh.Trimesh, points: np.ndarray, radius: float) -> Provenance:
    """Which vertices and faces lie in observed space (a fused point within `radius`) and the generated area share."""
    vertices = np.asarray(mesh.vertices)
    if len(points):
        distance, _ = cKDTree(points).query(vertices, k=1, distance_upper_bound=radius)
        generated = ~np.isfinite(distance)
    else:
        generated = np.ones(len(vertices), dtype=bool)
    faces = generated[mesh.faces].sum(axis=1) >= 2
    areas = mesh.area_faces
    total = float(areas.sum())
    fraction = float(areas[faces].sum() / total) if total > 0 else 1.0
    return Provenance(generated, faces, fraction)
