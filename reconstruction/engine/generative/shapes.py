"""Watertight building blocks of procedural objects: solids of revolution, height-field solids, swept tubes, boxes.

Every function returns one closed, consistently outward-oriented trimesh (y is up). Assemblies are lists of such
parts that may overlap; their occupancy is the union of the parts (see occupancy.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import trimesh

HeightFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _closed(vertices: np.ndarray, faces: np.ndarray) -> trimesh.Trimesh:
    mesh = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64), process=True)
    mesh.remove_unreferenced_vertices()
    # Faces are wound consistently by construction (every shared edge runs both ways); only the sign may be off.
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def _ring_band(first: int, second: int, count: int) -> np.ndarray:
    """Two triangles per segment between two rings of `count` vertices starting at indices first and second."""
    s = np.arange(count)
    n = (s + 1) % count
    return np.concatenate(
        [np.stack([first + s, second + s, second + n], 1), np.stack([first + s, second + n, first + n], 1)]
    )


def _fan(centre: int, ring: int, count: int) -> np.ndarray:
    """Triangles from a centre vertex to a ring, wound to close a ring that is the `second` of a band."""
    s = np.arange(count)
    return np.stack([np.full(count, centre), ring + (s + 1) % count, ring + s], 1)


def revolve(profile: np.ndarray, segments: int = 48, scale_xz: tuple[float, float] = (1.0, 1.0)) -> trimesh.Trimesh:
    """Solid of revolution about the y axis of a profile (n, 2) of (radius, height) points.

    An open profile must start and end on the axis (radius 0): the solid closes at those poles. A profile whose
    points all lie off the axis is treated as a closed loop (a ring-shaped solid such as a lamp shade).
    """
    profile = np.asarray(profile, dtype=np.float64)
    angles = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    cos, sin = np.cos(angles) * scale_xz[0], np.sin(angles) * scale_xz[1]
    looped = bool((profile[:, 0] > 1e-12).all())
    rings = profile if looped else profile[1:-1]
    ring_vertices = np.stack(
        [rings[:, :1] * cos[None], np.repeat(rings[:, 1:2], segments, axis=1), rings[:, :1] * sin[None]], axis=-1
    ).reshape(-1, 3)
    faces = [_ring_band(a * segments, (a + 1) * segments, segments) for a in range(len(rings) - 1)]
    if looped:
        faces.append(_ring_band((len(rings) - 1) * segments, 0, segments))
        return _closed(ring_vertices, np.concatenate(faces))
    bottom, top = len(ring_vertices), len(ring_vertices) + 1
    vertices = np.vstack([ring_vertices, [[0.0, profile[0, 1], 0.0], [0.0, profile[-1, 1], 0.0]]])
    faces += [_fan(bottom, 0, segments)[:, [0, 2, 1]], _fan(top, (len(rings) - 1) * segments, segments)]
    return _closed(vertices, np.concatenate(faces))


def star_solid(
    outline: np.ndarray,
    bottom: HeightFunction,
    top: HeightFunction,
    *,
    centre: tuple[float, float] = (0.0, 0.0),
    rings: int = 12,
) -> trimesh.Trimesh:
    """Solid between two height fields y = bottom(x, z) and y = top(x, z) over a star-shaped outline.

    `outline` (n, 2) holds (x, z) boundary points in angular order around `centre`; rings crowd towards the
    boundary, where height fields usually bend. top must exceed bottom everywhere.
    """
    outline = np.asarray(outline, dtype=np.float64)
    n = len(outline)
    c = np.asarray(centre, dtype=np.float64)
    fractions = 1.0 - (1.0 - np.arange(1, rings + 1) / rings) ** 1.6
    plane = c + (outline - c)[None, :, :] * fractions[:, None, None]  # (rings, n, 2)
    plane = np.vstack([c[None], plane.reshape(-1, 2)])
    x, z = plane[:, 0], plane[:, 1]
    upper = np.stack([x, top(x, z), z], 1)
    lower = np.stack([x, bottom(x, z), z], 1)
    count = len(plane)
    faces = [_fan(0, 1, n)[:, [0, 2, 1]]]
    faces += [_ring_band(1 + r * n, 1 + (r + 1) * n, n) for r in range(rings - 1)]
    top_faces = np.concatenate(faces)
    bottom_faces = top_faces[:, [0, 2, 1]] + count
    edge = 1 + (rings - 1) * n
    wall = _ring_band(edge, edge + count, n)
    return _closed(np.vstack([upper, lower]), np.concatenate([top_faces, bottom_faces, wall]))


def _frames(path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation-minimising normal and binormal along a polyline (parallel transport)."""
    tangents = np.gradient(path, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    seed = np.array([0.0, 1.0, 0.0]) if abs(tangents[0, 1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    normal = np.cross(tangents[0], seed)
    normal /= np.linalg.norm(normal)
    normals = [normal]
    for tangent in tangents[1:]:
        normal = normal - tangent * (normal @ tangent)
        normal /= np.linalg.norm(normal)
        normals.append(normal)
    normals_array = np.array(normals)
    return normals_array, np.cross(tangents, normals_array)


def tube(path: np.ndarray, radius: float | np.ndarray, sides: int = 16) -> trimesh.Trimesh:
    """A capped tube of circular cross-section swept along a polyline (n, 3); radius may vary per point."""
    path = np.asarray(path, dtype=np.float64)
    radii = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(path),))
    normals, binormals = _frames(path)
    angles = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    ring = np.cos(angles)[None, :, None] * normals[:, None] + np.sin(angles)[None, :, None] * binormals[:, None]
    vertices = (path[:, None] + radii[:, None, None] * ring).reshape(-1, 3)
    start, end = len(vertices), len(vertices) + 1
    faces = [_ring_band(a * sides, (a + 1) * sides, sides) for a in range(len(path) - 1)]
    faces += [_fan(start, 0, sides)[:, [0, 2, 1]], _fan(end, (len(path) - 1) * sides, sides)]
    return _closed(np.vstack([vertices, path[0], path[-1]]), np.concatenate(faces))


def box(extents: tuple[float, float, float], centre: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    mesh = trimesh.creation.box(extents=extents)
    mesh.apply_translation(centre)
    return mesh


def rod(start: tuple[float, float, float], end: tuple[float, float, float], radius: float, sides: int = 16):
    """A closed cylinder between two points."""
    return trimesh.creation.cylinder(radius=radius, segment=[start, end], sections=sides)


def rounded_box(extents: tuple[float, float, float], radius: float, centre=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    """A box with rounded vertical edges (an extruded rounded rectangle), for cushions and soft packages."""
    w, h, d = extents
    radius = min(radius, w / 2 * 0.99, d / 2 * 0.99)
    corners = [(w / 2 - radius, d / 2 - radius), (-w / 2 + radius, d / 2 - radius)]
    corners += [(-w / 2 + radius, -d / 2 + radius), (w / 2 - radius, -d / 2 + radius)]
    outline = []
    for index, (cx, cz) in enumerate(corners):
        for angle in np.linspace(0, np.pi / 2, 6) + index * np.pi / 2:
            outline.append((cx + radius * np.cos(angle), cz + radius * np.sin(angle)))
    y0, y1 = centre[1] - h / 2, centre[1] + h / 2
    mesh = star_solid(np.array(outline), lambda x, z: np.full_like(x, y0), lambda x, z: np.full_like(x, y1), rings=2)
    mesh.apply_translation((centre[0], 0.0, centre[2]))
    return mesh
