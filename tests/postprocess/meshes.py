"""Small meshes built in code for the post-processing tests (no files, nothing random)."""
from __future__ import annotations

import numpy as np
import trimesh
from PIL import Image

from reconstruction.engine.postprocess.asset import Asset, Material, Texture
from tests.shared_data import SHARED_GLTF

# ../shared/data beside the repository (see shared/data/README.md); Spot is public domain.
SPOT = str(SHARED_GLTF / "spot.glb")


def asset_from(mesh: trimesh.Trimesh, name: str = "test", material: Material | None = None, uvs=None) -> Asset:
    return Asset(
        positions=np.asarray(mesh.vertices, dtype=np.float64),
        faces=np.asarray(mesh.faces, dtype=np.int64),
        materials=(material or Material(name="plain", metallic_factor=0.0),),
        face_materials=np.zeros(len(mesh.faces), dtype=np.int32),
        uvs=uvs,
        name=name,
    )


def sphere(subdivisions: int = 3, radius: float = 0.5) -> Asset:
    return asset_from(trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius), name="sphere")


def two_colour_plane(size: int = 64) -> Asset:
    """A 1 m × 1 m plane in XZ facing +Y, UVs over the unit square; texture left half red, right half blue."""
    n = 8
    xs, zs = np.meshgrid(np.linspace(-0.5, 0.5, n + 1), np.linspace(-0.5, 0.5, n + 1))
    positions = np.column_stack([xs.ravel(), np.zeros(xs.size), zs.ravel()])
    uvs = np.column_stack([(xs.ravel() + 0.5), (zs.ravel() + 0.5)])
    faces = []
    for row in range(n):
        for col in range(n):
            a = row * (n + 1) + col
            b, c, d = a + 1, a + n + 1, a + n + 2
            faces += [[a, c, b], [b, c, d]]  # counter-clockwise seen from +Y
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[:, : size // 2] = (255, 0, 0)
    image[:, size // 2 :] = (0, 0, 255)
    material = Material(name="painted", metallic_factor=0.0, roughness_factor=0.5,
                        textures={"base_color": Texture(image=Image.fromarray(image))})
    return Asset(
        positions=positions, faces=np.array(faces, dtype=np.int64), materials=(material,),
        face_materials=np.zeros(len(faces), dtype=np.int32), uvs=uvs, name="plane",
    )
