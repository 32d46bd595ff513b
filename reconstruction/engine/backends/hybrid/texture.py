"""Vertex colours of the completed mesh: measured from the views wherever a view sees the surface, and spread from
there over the mesh (harmonic interpolation along its edges) where no view does."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import trimesh
from scipy.sparse import coo_matrix, diags
from scipy.sparse.linalg import spsolve

from reconstruction.engine.cameras import Camera
from reconstruction.engine.capture import Capture
from reconstruction.engine.vertex_colours import view_colours

# A faint pull towards the mean measured colour keeps the system solvable for pieces no view sees at all.
MEAN_TETHER = 1e-4


def colour_mesh(
    mesh: trimesh.Trimesh, capture: Capture, cameras: list[Camera], voxel: float, check: Callable[[], None]
) -> np.ndarray:
    """Sets the mesh's vertex colours; returns which vertices took their colour from a view (V,) bool."""
    colours, seen = view_colours(mesh, capture, cameras, voxel, check)
    if seen.any() and not seen.all():
        colours = fill_unseen(mesh, colours, seen)
    rgba = np.hstack([np.clip(colours * 255 + 0.5, 0, 255), np.full((len(colours), 1), 255)]).astype(np.uint8)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=rgba)
    return seen


def fill_unseen(mesh: trimesh.Trimesh, colours: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Colours (V, 3) with the unseen vertices replaced by the harmonic interpolation of the seen ones over the
    mesh's edge graph (each unseen colour is the mean of its neighbours'): smooth, no seams, measured colours kept."""
    count = len(colours)
    edges = np.asarray(mesh.edges_unique)
    adjacency = coo_matrix(
        (np.ones(2 * len(edges)), (np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]])),
        shape=(count, count),
    ).tocsr()
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    unseen = np.flatnonzero(~seen)
    known = np.flatnonzero(seen)
    laplacian = (diags(degree) - adjacency).tocsr()
    system = (laplacian[unseen][:, unseen] + diags(np.full(len(unseen), MEAN_TETHER))).tocsc()
    mean = colours[known].mean(axis=0)
    right = adjacency[unseen][:, known] @ colours[known] + MEAN_TETHER * mean[None]
    filled = colours.copy()
    solved = spsolve(system, right)
    filled[unseen] = np.clip(np.asarray(solved).reshape(len(unseen), 3), 0.0, 1.0)
    return filled
