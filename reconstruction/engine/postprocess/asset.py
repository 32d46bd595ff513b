"""The asset that flows through post-processing: one triangle mesh, its per-vertex attributes and materials.

Every step takes an `Asset` and returns a new one (arrays are replaced, never edited in place), so the
source stays available for baking and error measurement after the low-poly levels are made.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

TEXTURE_ROLES = ("base_color", "metallic_roughness", "normal", "occlusion", "emissive")


@dataclass(frozen=True)
class Texture:
    """An image and how the material maps UVs onto it (glTF's KHR_texture_transform as a 3×3 matrix)."""

    image: Image.Image
    uv_transform: np.ndarray = field(default_factory=lambda: np.eye(3))
    repeat: bool = True

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


@dataclass(frozen=True)
class Material:
    """A glTF-style metallic-roughness material. Factors are linear; colour textures are sRGB."""

    name: str
    base_color_factor: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    metallic_factor: float = 1.0
    roughness_factor: float = 1.0
    emissive_factor: tuple[float, float, float] = (0.0, 0.0, 0.0)
    normal_scale: float = 1.0
    double_sided: bool = False
    textures: dict[str, Texture] = field(default_factory=dict)

    def texture(self, role: str) -> Texture | None:
        return self.textures.get(role)

    def replace(self, **changes: object) -> Material:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Asset:
    """A triangle mesh in metres, Y up.

    `uvs` (glTF convention: (0, 0) is the image's top-left corner), `colors` (linear RGBA in 0–1), `normals` and `tangents` (xyz + handedness) are per vertex or None;
    `face_materials` indexes `materials` per triangle.
    """

    positions: np.ndarray
    faces: np.ndarray
    materials: tuple[Material, ...]
    face_materials: np.ndarray
    uvs: np.ndarray | None = None
    colors: np.ndarray | None = None
    normals: np.ndarray | None = None
    tangents: np.ndarray | None = None
    name: str = "asset"

    @property
    def triangle_count(self) -> int:
        return int(len(self.faces))

    @property
    def vertex_count(self) -> int:
        return int(len(self.positions))

    @property
    def bounds(self) -> np.ndarray:
        return np.array([self.positions.min(axis=0), self.positions.max(axis=0)])

    @property
    def diagonal(self) -> float:
        low, high = self.bounds
        return float(np.linalg.norm(high - low))

    def replace(self, **changes: object) -> Asset:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def with_geometry(
        self,
        positions: np.ndarray,
        faces: np.ndarray,
        vertex_source: np.ndarray | None = None,
        face_materials: np.ndarray | None = None,
    ) -> Asset:
        """New geometry; per-vertex attributes follow `vertex_source` (old index of each new vertex) or are dropped."""

        def carry(values: np.ndarray | None) -> np.ndarray | None:
            if values is None or vertex_source is None:
                return None
            return values[vertex_source]

        if face_materials is None:
            face_materials = np.zeros(len(faces), dtype=np.int32)
            if len(self.materials) > 1:
                raise ValueError("face_materials is required when the asset has several materials")
        return dataclasses.replace(
            self,
            positions=np.ascontiguousarray(positions, dtype=np.float64),
            faces=np.ascontiguousarray(faces, dtype=np.int64),
            face_materials=np.ascontiguousarray(face_materials, dtype=np.int32),
            uvs=carry(self.uvs),
            colors=carry(self.colors),
            normals=None,
            tangents=None,
        )

    def summary(self) -> dict[str, object]:
        low, high = self.bounds if len(self.positions) else (np.zeros(3), np.zeros(3))
        return {
            "triangles": self.triangle_count,
            "vertices": self.vertex_count,
            "materials": len(self.materials),
            "has_uvs": self.uvs is not None,
            "has_vertex_colors": self.colors is not None,
            "bounds_m": [np.round(low, 6).tolist(), np.round(high, 6).tolist()],
        }

