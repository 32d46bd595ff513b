"""Seeded generator of product-like objects (shoes, bottles, vases, cups, bowls, lamps, chairs, tables, boxes).

`generate_object(seed, index)` is a pure function of its arguments: the same pair always gives the same object.
An object is a list of watertight parts that may overlap (its solid is their union), each with a procedural paint,
centred on its bounding-box centre at the origin, y up, scaled to a random real-world size in metres.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import trimesh

from reconstruction.engine.generative import furniture, household, shoes
from reconstruction.engine.generative.paint import Paint, bake_lighting

GENERATOR_VERSION = "procedural-2"
Builder = Callable[[np.random.Generator], tuple[list[trimesh.Trimesh], list[Paint]]]

# kind → (builder, sampling weight, size range of the largest dimension in metres)
KINDS: dict[str, tuple[Builder, float, tuple[float, float]]] = {
    "shoe": (shoes.shoe, 0.30, (0.22, 0.34)),
    "bottle": (household.bottle, 0.09, (0.15, 0.4)),
    "vase": (household.vase, 0.08, (0.15, 0.5)),
    "cup": (household.cup, 0.09, (0.08, 0.16)),
    "bowl": (household.bowl, 0.06, (0.1, 0.3)),
    "lamp": (household.lamp, 0.08, (0.3, 0.7)),
    "chair": (furniture.chair, 0.10, (0.7, 1.1)),
    "table": (furniture.table, 0.10, (0.4, 1.0)),
    "box": (furniture.package, 0.10, (0.15, 0.6)),
}


@dataclass
class ProceduralObject:
    """Parts in metres (centred, y up), their paints, and the map from metres back to the builder's units."""

    kind: str
    parts: list[trimesh.Trimesh]
    paints: list[Paint]
    scale: float  # metres per builder unit
    offset: np.ndarray  # builder-unit point placed at the origin

    @property
    def mesh(self) -> trimesh.Trimesh:
        """All parts as one mesh (faces in part order), for rendering and occupancy."""
        return _concatenate(self.parts)

    @property
    def face_labels(self) -> np.ndarray:
        """Part index of every face of `mesh`: occupancy is the union over parts."""
        return np.repeat(np.arange(len(self.parts)), [len(part.faces) for part in self.parts])

    def to_builder_units(self, points: np.ndarray) -> np.ndarray:
        return points / self.scale + self.offset


def _concatenate(meshes: list[trimesh.Trimesh]) -> trimesh.Trimesh:
    mesh = trimesh.util.concatenate(meshes)
    assert isinstance(mesh, trimesh.Trimesh)
    return mesh


def kind_names() -> list[str]:
    return list(KINDS)


def _draw_kind(rng: np.random.Generator) -> str:
    names = list(KINDS)
    weights = np.array([KINDS[name][1] for name in names])
    return names[rng.choice(len(names), p=weights / weights.sum())]


def kind_of(seed: int, index: int) -> str:
    """The kind of object `index` of the stream `seed`, without building it."""
    return _draw_kind(np.random.default_rng([int(seed), int(index), 7211]))


def generate_object(seed: int, index: int, kind: str | None = None) -> ProceduralObject:
    """Object `index` of the stream `seed` (its kind drawn by weight unless given)."""
    rng = np.random.default_rng([int(seed), int(index), 7211])
    drawn = _draw_kind(rng)
    kind = kind or drawn
    builder, _, (low, high) = KINDS[kind]
    parts, paints = builder(rng)
    bounds = np.array([part.bounds for part in parts])
    lower, upper = bounds[:, 0].min(axis=0), bounds[:, 1].max(axis=0)
    offset = (lower + upper) / 2
    scale = rng.uniform(low, high) / float((upper - lower).max())
    placed = []
    for part in parts:
        moved = part.copy()
        moved.apply_translation(-offset)
        moved.apply_scale(scale)
        placed.append(moved)
    return ProceduralObject(kind, placed, paints, scale, offset)


@dataclass
class PaintedMesh:
    """A render copy of an object: vertices split at creases (sharp shading), albedo per vertex, vertex normals."""

    mesh: trimesh.Trimesh
    albedo: np.ndarray  # (V, 3) float in [0, 1]
    normals: np.ndarray  # (V, 3)

    def coloured(self, colours: np.ndarray) -> trimesh.Trimesh:
        mesh = self.mesh.copy()
        rgba = np.hstack([np.round(np.clip(colours, 0, 1) * 255), np.full((len(colours), 1), 255)])
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=rgba.astype(np.uint8))
        return mesh

    def lit(self, view_direction: np.ndarray, rng: np.random.Generator) -> trimesh.Trimesh:
        """The mesh with random lighting from `view_direction` baked into its vertex colours."""
        return self.coloured(bake_lighting(self.albedo, self.normals, view_direction, rng))

    def unlit(self) -> trimesh.Trimesh:
        return self.coloured(self.albedo)


def painted_mesh(obj: ProceduralObject, *, crease_degrees: float = 35.0) -> PaintedMesh:
    """Splits vertices at creases, subdivides long edges so paint patterns resolve, and evaluates the paints."""
    size = float(np.ptp(np.vstack([part.bounds for part in obj.parts]), axis=0).max())
    meshes, albedo, normals = [], [], []
    for part, paint in zip(obj.parts, obj.paints, strict=True):
        try:
            vertices, faces = trimesh.remesh.subdivide_to_size(part.vertices, part.faces, size / 12, max_iter=6)
        except ValueError:  # a sliver that would need too many rounds: its paint resolves coarsely, that is all
            vertices, faces = part.vertices, part.faces
        shaded = trimesh.graph.smooth_shade(
            trimesh.Trimesh(vertices, faces, process=False), angle=np.radians(crease_degrees), facet_minarea=None
        )
        meshes.append(shaded)
        normals.append(shaded.vertex_normals)
        albedo.append(paint(obj.to_builder_units(shaded.vertices), shaded.vertex_normals))
    return PaintedMesh(_concatenate(meshes), np.vstack(albedo), np.vstack(normals))
