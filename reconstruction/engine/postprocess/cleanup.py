"""Cleanup: merge duplicate vertices, drop degenerate and duplicate faces and floaters, make winding
consistent and outward, fill small holes, recompute normals. Reports what each part changed."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from . import surface
from .asset import Asset
from .errors import BadInput


@dataclass(frozen=True)
class CleanupOptions:
    # Vertices closer than this share of the bounding-box diagonal are merged (when their UVs and colours agree).
    merge_tolerance: float = 1e-7
    # Connected parts whose bounding box is smaller than this share of the asset's diagonal are floaters.
    min_component_size: float = 0.02
    # Holes bounded by at most this many edges are filled; larger openings are taken to be intended.
    max_hole_edges: int = 32
    fix_winding: bool = True


def cleanup(asset: Asset, options: CleanupOptions = CleanupOptions()) -> tuple[Asset, dict[str, object]]:
    """Repair the mesh; raises BadInput when nothing usable is left."""
    report: dict[str, object] = {"input": asset.summary()}
    asset, report["merged_vertices"] = _merge_duplicates(asset, options.merge_tolerance * max(asset.diagonal, 1e-12))
    asset, report["degenerate_faces_removed"], report["duplicate_faces_removed"] = _drop_bad_faces(asset)
    asset, report["floaters_removed"] = _drop_floaters(asset, options.min_component_size)
    if options.fix_winding:
        asset, report["faces_flipped"] = _orient(asset)
    asset, report["holes_filled"] = _fill_holes(asset, options.max_hole_edges)
    asset = _drop_unreferenced(asset)
    welded, _ = surface.weld(asset.positions)
    report["non_manifold_edges"] = surface.non_manifold_edge_count(welded[asset.faces])
    report["open_border_loops"] = len(surface.boundary_loops(welded[asset.faces]))
    asset = asset.replace(normals=surface.smooth_vertex_normals(asset.positions, asset.faces))
    report["output"] = asset.summary()
    return asset, report


def _merge_duplicates(asset: Asset, tolerance: float) -> tuple[Asset, int]:
    # Vertices merge only when every attribute agrees, so UV seams and colour borders stay split.
    columns = [np.round(asset.positions / tolerance)]
    if asset.uvs is not None:
        columns.append(np.round(asset.uvs * 1e6))
    if asset.colors is not None:
        columns.append(np.round(asset.colors * 255))
    if len(asset.materials) > 1:
        # Keep vertices of different materials apart, so a material border stays a seam for decimation.
        owner = np.zeros(asset.vertex_count)
        owner[asset.faces.reshape(-1)] = np.repeat(asset.face_materials, 3)
        columns.append(owner[:, None])
    first, inverse = surface.unique_rows(np.hstack(columns))
    merged = asset.vertex_count - len(first)
    if merged == 0:
        return asset, 0
    result = asset.with_geometry(asset.positions[first], inverse[asset.faces], first, asset.face_materials)
    return result, int(merged)


def _drop_bad_faces(asset: Asset) -> tuple[Asset, int, int]:
    welded, _ = surface.weld(asset.positions)
    corners = welded[asset.faces]
    _, areas = surface.face_normals_and_areas(asset.positions, asset.faces)
    # A face is degenerate when two corners coincide or it has (numerically) no area.
    area_floor = (asset.diagonal * 1e-9) ** 2
    degenerate = (
        (corners[:, 0] == corners[:, 1]) | (corners[:, 1] == corners[:, 2]) | (corners[:, 0] == corners[:, 2])
    ) | (areas <= area_floor)
    keep = ~degenerate
    # Duplicates: the same three welded corners in the same cyclic order (a back face is a different face).
    rolled = np.stack([np.roll(corners, -shift, axis=1) for shift in range(3)])
    canonical = rolled[np.argmin(rolled[:, :, 0], axis=0), np.arange(len(corners))]
    first, _ = surface.unique_rows(canonical)
    unique_mask = np.zeros(len(corners), dtype=bool)
    unique_mask[first] = True
    duplicate = keep & ~unique_mask
    keep &= unique_mask
    if keep.sum() == 0:
        raise BadInput("mesh is empty after removing degenerate faces: every triangle has zero area")
    return _keep_faces(asset, keep), int(degenerate.sum()), int(duplicate.sum())


def _drop_floaters(asset: Asset, min_size: float) -> tuple[Asset, dict[str, int]]:
    """Remove small parts that float free of the rest (scan noise); small parts that touch it (buttons,
    screws) are details and stay."""
    welded, welded_positions = surface.weld(asset.positions)
    corners = welded[asset.faces]
    _, labels = np.unique(surface.face_components(corners, len(welded_positions)), return_inverse=True)
    count = int(labels.max()) + 1
    if count == 1 or min_size <= 0:
        return asset, {"components": 0, "faces": 0}
    corner_positions = welded_positions[corners].reshape(-1, 3)
    corner_labels = np.repeat(labels, 3)
    low = np.full((count, 3), np.inf)
    high = np.full((count, 3), -np.inf)
    np.minimum.at(low, corner_labels, corner_positions)
    np.maximum.at(high, corner_labels, corner_positions)
    limit = min_size * asset.diagonal
    small = np.linalg.norm(high - low, axis=1) < limit
    small[np.argmax(np.bincount(labels))] = False  # never remove everything: the largest part stays
    if not small.any():
        return asset, {"components": 0, "faces": 0}
    # Distance from each small part to the large ones, measured at vertices and face centres.
    large_faces = ~small[labels]
    anchors = np.concatenate([corner_positions[np.repeat(large_faces, 3)], welded_positions[corners[large_faces]].mean(axis=1)])
    distance, _ = cKDTree(anchors).query(corner_positions[np.repeat(~large_faces, 3)], distance_upper_bound=limit)
    nearest = np.full(count, np.inf)
    np.minimum.at(nearest, corner_labels[np.repeat(~large_faces, 3)], distance)
    floaters = small & (nearest >= limit)
    keep = ~floaters[labels]
    return _keep_faces(asset, keep), {"components": int(floaters.sum()), "faces": int((~keep).sum())}


def _orient(asset: Asset) -> tuple[Asset, int]:
    """Make neighbouring faces agree on winding, then turn each closed part outward (positive volume)."""
    welded, _ = surface.weld(asset.positions)
    corners = welded[asset.faces]
    face_count = len(corners)
    directed = corners[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    owner = np.repeat(np.arange(face_count), 3)
    key = surface.edge_keys(corners)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    same_as_next = sorted_key[1:] == sorted_key[:-1]
    run_start = np.flatnonzero(np.concatenate([[True], ~same_as_next]))
    run_length = np.diff(np.concatenate([run_start, [len(order)]]))
    # Only manifold edges (two faces) say anything about relative orientation.
    pairs = run_start[run_length == 2]
    first, second = order[pairs], order[pairs + 1]
    face_a, face_b = owner[first], owner[second]
    # Consistent neighbours traverse their shared edge in opposite directions.
    disagree = (directed[first, 0] == directed[second, 0]).astype(np.int8)
    # Two faces sharing two edges (a fold) would be linked twice; one link is enough.
    _, once = np.unique(np.minimum(face_a, face_b) * face_count + np.maximum(face_a, face_b), return_index=True)
    face_a, face_b, disagree = face_a[once], face_b[once], disagree[once]
    flip = _propagate_flips(face_count, face_a, face_b, disagree)

    faces = asset.faces.copy()
    faces[flip] = faces[flip][:, ::-1]
    _, labels = np.unique(surface.face_components(corners, int(welded.max()) + 1), return_inverse=True)
    tri = asset.positions[faces]
    signed = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6.0
    volume = np.bincount(labels, weights=signed)
    closed = _closed_components(corners, labels)
    flipped_share = np.bincount(labels, weights=flip.astype(float)) / np.bincount(labels)
    # Closed parts face outward; open parts keep the orientation most of their faces already had.
    turn_component = np.where(closed, volume < 0, flipped_share > 0.5)
    turn = turn_component[labels]
    faces[turn] = faces[turn][:, ::-1]
    changed = flip ^ turn
    if not changed.any():
        return asset, 0
    return asset.replace(faces=faces, normals=None, tangents=None), int(changed.sum())


def _propagate_flips(face_count: int, face_a: np.ndarray, face_b: np.ndarray, disagree: np.ndarray) -> np.ndarray:
    # A spanning forest over the face-adjacency graph: a face flips iff its parent ends up flipped XOR they disagree.
    # A virtual root (index face_count) links one face per component, so one traversal covers every component.
    adjacency = sparse.coo_matrix(
        (np.ones(len(face_a)), (face_a, face_b)), shape=(face_count + 1, face_count + 1)
    ).tocsr()
    _, labels = csgraph.connected_components(adjacency[:face_count, :face_count], directed=False)
    _, roots = np.unique(labels, return_index=True)
    links = sparse.coo_matrix(
        (np.ones(len(roots)), (np.full(len(roots), face_count), roots)), shape=(face_count + 1, face_count + 1)
    ).tocsr()
    order, predecessors = csgraph.breadth_first_order(adjacency + links, face_count, directed=False)
    relation = sparse.coo_matrix(
        (np.concatenate([disagree, disagree]).astype(np.int8) + 1,
         (np.concatenate([face_a, face_b]), np.concatenate([face_b, face_a]))),
        shape=(face_count + 1, face_count + 1),
    ).tocsr()
    children = order[1:]
    parent = predecessors[children]
    to_parent = np.asarray(relation[children, parent]).reshape(-1).astype(np.int8)
    # Entries are stored as 1 (agree) / 2 (disagree) so that "agree" is not an absent (zero) entry.
    disagrees = (to_parent == 2).tolist()
    flip = [False] * (face_count + 1)
    for child, up, differs in zip(children.tolist(), parent.tolist(), disagrees, strict=True):
        flip[child] = flip[up] ^ differs if up != face_count else False
    return np.array(flip[:face_count], dtype=bool)


def _closed_components(corners: np.ndarray, labels: np.ndarray) -> np.ndarray:
    edge_ok = surface.edge_use_counts(corners) == 2
    face_ok = edge_ok.reshape(-1, 3).all(axis=1)
    return np.bincount(labels, weights=~face_ok) == 0


def _fill_holes(asset: Asset, max_edges: int) -> tuple[Asset, dict[str, int]]:
    if max_edges < 3:
        return asset, {"holes": 0, "faces_added": 0}
    welded, _ = surface.weld(asset.positions)
    # Any vertex copy at a welded position will do as a corner of the patch.
    representative = np.zeros(int(welded.max()) + 1, dtype=np.int64)
    representative[welded] = np.arange(len(welded))
    patches = []
    holes = 0
    for loop in surface.boundary_loops(welded[asset.faces]):
        if len(loop) > max_edges:
            continue
        holes += 1
        ring = representative[loop]
        # Border edges run the way their faces do, so the patch runs the other way to continue the surface.
        fan = np.column_stack([np.full(len(ring) - 2, ring[0]), ring[2:], ring[1:-1]])
        patches.append(fan)
    if not patches:
        return asset, {"holes": 0, "faces_added": 0}
    added = np.concatenate(patches)
    # A patch takes the material of the face it meets first, via its first corner's owner.
    owner = np.zeros(asset.vertex_count, dtype=np.int32)
    owner[asset.faces.reshape(-1)] = np.repeat(asset.face_materials, 3)
    faces = np.concatenate([asset.faces, added])
    face_materials = np.concatenate([asset.face_materials, owner[added[:, 0]]])
    filled = asset.replace(faces=faces, face_materials=face_materials, normals=None, tangents=None)
    return filled, {"holes": holes, "faces_added": int(len(added))}


def _keep_faces(asset: Asset, keep: np.ndarray) -> Asset:
    return asset.replace(faces=asset.faces[keep], face_materials=asset.face_materials[keep], normals=None, tangents=None)


def _drop_unreferenced(asset: Asset) -> Asset:
    used = np.unique(asset.faces)
    if len(used) == asset.vertex_count:
        return asset
    remap = np.full(asset.vertex_count, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return asset.with_geometry(asset.positions[used], remap[asset.faces], used, asset.face_materials)
