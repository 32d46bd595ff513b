"""Texture baking: an xatlas UV atlas, colour from the calibrated views that face each texel best (with a
depth test against the mesh for visibility), blended smoothly across view changes, written as a GLB.

Shared by the backends that end in a mesh and calibrated photos (photogrammetry, the trained fields)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open3d as o3d
import trimesh
from PIL import Image

from reconstruction.engine.cameras import Camera
from reconstruction.engine.meshes import Mesh
from reconstruction.engine.postprocess import texels
from reconstruction.engine.uv_atlas import AtlasFailed, chart_atlas
from reconstruction.engine.vertex_colours import bilinear

# Colours (N, 3) in [0, 1] for surface points (N, 3) with their outward unit normals (N, 3).
SurfaceColours = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Softmax temperature over the cosine between a texel's normal and the direction to each camera: small
# enough that the best-facing view dominates, large enough that colours blend where the best view changes.
BLEND_TEMPERATURE = 0.06
MIN_COSINE = 0.1
# A texel is visible in a view when its depth is within this share of the mesh's rendered depth there.
DEPTH_TOLERANCE = 0.005
PADDING_TEXELS = 4
# Above this, "auto" gives each triangle its own slot instead of charting with xatlas. Charting 100,000 triangles
# (photogrammetry's default mesh) costs under 20 s here, and it matters: the per-triangle atlas's slots are a few
# texels wide, so the mip levels a viewer samples at a distance mix unrelated triangles (spot's photogrammetry mesh
# rendered at 512 px: 27.8 dB with slots, 34.5 dB with charts).
XATLAS_MAX_TRIANGLES = 150_000


@dataclass
class TexturedMesh:
    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray  # (V, 2), trimesh convention: v up, (0, 0) the texture's bottom-left corner
    texture: Image.Image
    coverage: float  # share of the atlas's texels that at least one view sees
    atlas: str  # how the UVs were made: "xatlas", or "grid" and why


def bake(
    mesh: Mesh,
    views: list[tuple[Camera, np.ndarray]],
    size: int,
    method: str = "auto",
    unseen_colours: SurfaceColours | None = None,
) -> TexturedMesh:
    """UV-unwraps `mesh` and bakes a base-colour texture of `size`² from `views` (camera, RGB image in [0, 1]).

    `method` "xatlas" makes a chart atlas (few seams, slower on large meshes), "grid" gives each triangle its own
    padded slot (instant, seams everywhere), "auto" uses xatlas up to XATLAS_MAX_TRIANGLES. Where xatlas crashes or
    overruns, the grid is used and `atlas` says so. Texels no view sees take `unseen_colours` at their surface
    point when given, else the colour of their seen neighbours or the mean.
    """
    atlas = "grid"
    if method == "xatlas" or (method == "auto" and len(mesh.faces) <= XATLAS_MAX_TRIANGLES):
        try:
            made = chart_atlas(mesh.vertices, mesh.faces, texture_size=size, padding_px=PADDING_TEXELS)
            vmapping, faces, uvs = made.vertex_source, made.faces, made.uvs
            atlas = "xatlas"
        except AtlasFailed as exc:
            atlas = f"grid ({exc})"
    if atlas != "xatlas":
        vmapping, faces, uvs = _triangle_grid_atlas(mesh, size)
    vertices = mesh.vertices[vmapping]
    # Normals of the welded surface, so they stay smooth across the atlas's seams.
    vertex_normals = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).vertex_normals[vmapping]
    # The texel helpers take glTF UVs (v down), so their texel rows run top to bottom like the image's.
    gltf_uvs = np.column_stack([uvs[:, 0], 1.0 - uvs[:, 1]])
    covered = _a_texel_for_every_face(texels.rasterize(gltf_uvs, faces, size, size), gltf_uvs, faces, size)
    texel_rows, texel_cols = covered.y, covered.x
    corners = faces[covered.face]
    points = (covered.weights[:, :, None] * vertices[corners]).sum(axis=1)
    normals = (covered.weights[:, :, None] * vertex_normals[corners]).sum(axis=1)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)

    scene = raycasting_scene(mesh)
    colours = np.zeros((len(points), 3))
    weight_sum = np.zeros(len(points))
    best_cos = np.full(len(points), -np.inf)
    per_view = []
    for camera, _ in views:
        cosine, visible = _visibility(scene, camera, points, normals)
        per_view.append((cosine, visible))
        best_cos = np.where(visible, np.maximum(best_cos, cosine), best_cos)
    for (camera, image), (cosine, visible) in zip(views, per_view, strict=True):
        use = visible & (cosine > MIN_COSINE)
        if not use.any():
            continue
        weight = np.exp((cosine[use] - best_cos[use]) / BLEND_TEMPERATURE)
        uv, _ = camera.project(points[use])
        colours[use] += weight[:, None] * bilinear(image, uv)
        weight_sum[use] += weight
    seen = weight_sum > 0
    texture = np.zeros((size, size, 3))
    filled = np.zeros((size, size), bool)
    texture[texel_rows[seen], texel_cols[seen]] = colours[seen] / weight_sum[seen, None]
    filled[texel_rows[seen], texel_cols[seen]] = True
    coverage = float(seen.mean()) if len(seen) else 0.0
    if unseen_colours is not None and not seen.all():
        texture[texel_rows[~seen], texel_cols[~seen]] = unseen_colours(points[~seen], normals[~seen])
        filled[texel_rows, texel_cols] = True
    charts = np.zeros((size, size), bool)
    charts[texel_rows, texel_cols] = True
    texture = _pad(texture, filled, charts)
    baked = Image.fromarray((np.clip(texture, 0, 1) * 255).round().astype(np.uint8))
    return TexturedMesh(vertices, faces, uvs.astype(np.float64), baked, coverage, atlas)


def write_glb(textured: TexturedMesh, path: Path, material_name: str = "baked") -> Path:
    """A GLB with one mesh and a metallic-roughness material whose base colour is the baked texture."""
    material = trimesh.visual.material.PBRMaterial(
        name=material_name, baseColorTexture=textured.texture, metallicFactor=0.0, roughnessFactor=1.0
    )
    visual = trimesh.visual.TextureVisuals(uv=textured.uvs, material=material)
    mesh = trimesh.Trimesh(textured.vertices, textured.faces, visual=visual, process=False)
    mesh.export(path, file_type="glb")
    return path


def _triangle_grid_atlas(mesh: Mesh, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each triangle in its own half of a square grid cell, inset one texel so neighbours never bleed in.

    Returns, like xatlas, the source vertex of each atlas vertex, the atlas faces and the atlas UVs.
    """
    count = len(mesh.faces)
    cells_per_side = int(np.ceil(np.sqrt((count + 1) // 2)))
    cell = size / cells_per_side
    inset = min(1.0, cell / 4) / size
    index = np.arange(count)
    slot = index // 2
    col, row = slot % cells_per_side, slot // cells_per_side
    u0, v0 = col * cell / size, 1.0 - (row + 1) * cell / size
    step = cell / size
    lower = index % 2 == 0
    # Lower-left half: (0,0), (1,0), (0,1); upper-right half: (1,1), (0,1), (1,0) — each shrunk by the inset.
    corners = np.where(
        lower[:, None, None],
        np.array([[0, 0], [1, 0], [0, 1]], dtype=np.float64)[None],
        np.array([[1, 1], [0, 1], [1, 0]], dtype=np.float64)[None],
    )
    towards_centre = np.where(
        lower[:, None, None], np.array([[1, 1], [-2, 1], [1, -2]])[None], np.array([[-1, -1], [2, -1], [-1, 2]])[None]
    )
    uvs = np.stack([u0, v0], axis=1)[:, None, :] + corners * step + towards_centre * inset
    faces = np.arange(3 * count).reshape(count, 3)
    return mesh.faces.reshape(-1), faces, uvs.reshape(-1, 2)


def _a_texel_for_every_face(
    covered: texels.Coverage, gltf_uvs: np.ndarray, faces: np.ndarray, size: int
) -> texels.Coverage:
    """`covered` plus, for each face that holds no texel centre, the texel under its UV centroid if no face holds it.

    Slivers and the grid atlas's slots on dense meshes can be smaller than a texel; without this their texels
    would take a neighbouring chart's padding, which in the grid atlas is an unrelated part of the surface.
    """
    missing = np.setdiff1d(np.arange(len(faces)), covered.face)
    if not len(missing):
        return covered
    x, y = np.clip((gltf_uvs[faces[missing]].mean(axis=1) * size).astype(np.int64), 0, size - 1).T
    taken = np.zeros((size, size), bool)
    taken[covered.y, covered.x] = True
    _, first = np.unique(y * size + x, return_index=True)
    free = first[~taken[y[first], x[first]]]
    return texels.Coverage(
        np.concatenate([covered.y, y[free]]),
        np.concatenate([covered.x, x[free]]),
        np.concatenate([covered.face, missing[free]]),
        np.concatenate([covered.weights, np.full((len(free), 3), 1.0 / 3.0)]),
    )


def _visibility(
    scene: o3d.t.geometry.RaycastingScene, camera: Camera, points: np.ndarray, normals: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine between each texel's normal and its direction to the camera, and whether the camera sees it."""
    to_camera = camera.center[None] - points
    distance = np.linalg.norm(to_camera, axis=1)
    cosine = (normals * to_camera).sum(1) / np.maximum(distance, 1e-12)
    uv, z = camera.project(points)
    visible = camera.in_image(uv, z) & (cosine > 0)
    depth = depth_image(scene, camera)
    cols = np.clip(uv[:, 0].astype(int), 0, camera.width - 1)
    rows = np.clip(uv[:, 1].astype(int), 0, camera.height - 1)
    rendered = depth[rows, cols]
    visible &= z <= rendered * (1 + DEPTH_TOLERANCE) + 1e-9
    return cosine, visible


def raycasting_scene(mesh: Mesh | trimesh.Trimesh) -> o3d.t.geometry.RaycastingScene:
    """Open3D's ray-casting structure over the mesh's triangles."""
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor.from_numpy(np.ascontiguousarray(mesh.vertices, dtype=np.float32)),
        o3d.core.Tensor.from_numpy(np.ascontiguousarray(mesh.faces, dtype=np.uint32)),
    )
    return scene


def depth_image(scene: o3d.t.geometry.RaycastingScene, camera: Camera) -> np.ndarray:
    """Depth along the optical axis of the mesh's nearest surface at each pixel (inf where it is empty)."""
    rows, cols = np.mgrid[0 : camera.height, 0 : camera.width]
    uv = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1)
    directions = camera.pixel_rays(uv)
    origins = np.broadcast_to(camera.center, directions.shape)
    rays = np.concatenate([origins, directions], axis=1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor.from_numpy(rays))["t_hit"].numpy().astype(np.float64)
    # t_hit is along the unit ray; the optical-axis depth is that times the ray's cosine with the axis.
    along_axis = directions @ camera.R[2]
    return (hit * along_axis).reshape(camera.height, camera.width)


def _pad(texture: np.ndarray, filled: np.ndarray, charts: np.ndarray) -> np.ndarray:
    """Grows colours outwards a few texels and fills unseen chart texels with the mean; the space between charts
    then takes the nearest chart colour, so neither filtering nor the coarser mipmap levels bleed black in."""
    texture = texture.copy()
    filled = filled.copy()
    mean = texture[filled].mean(axis=0) if filled.any() else np.full(3, 0.5)
    for _ in range(PADDING_TEXELS):
        total = np.zeros_like(texture)
        count = np.zeros(filled.shape)
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            shifted_filled = np.roll(filled, (dy, dx), axis=(0, 1))
            total += np.roll(texture, (dy, dx), axis=(0, 1)) * shifted_filled[..., None]
            count += shifted_filled
        grow = ~filled & (count > 0)
        texture[grow] = total[grow] / count[grow, None]
        filled |= grow
    texture[charts & ~filled] = mean
    return texels.pad(texture, filled | charts)
