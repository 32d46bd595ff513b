"""Texture baking from the high-resolution source onto the low-poly mesh's (new) UVs, by ray casting.

For each texel of the low mesh, a ray along the low surface's normal finds the source surface; there we read
base colour (texture, vertex colour or factor), metallic/roughness, emission and the shading normal (with
the source's own normal map applied), and gather ambient occlusion from hemisphere rays against the source.
Results: base colour (sRGB), tangent-space normal map (in the low mesh's exported tangent frames), and
occlusion/roughness/metallic packed in one ORM image as glTF allows. Empty texels are edge-padded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from embreex import rtcore_scene
from embreex.mesh_construction import TriangleMesh
from PIL import Image

from . import surface, texels
from .asset import Asset, Material, Texture
from .errors import BadInput
from .uv import uv_problems

_CHUNK = 400_000  # texels per batch of rays: bounds memory independently of the texture size
_AO_RAYS_PER_BATCH = 1_000_000  # occlusion rays built and traced at once (≈40 MB of float32)


@dataclass(frozen=True)
class BakeOptions:
    size: int = 2048
    # Rays search this far either side of the low surface, as a share of the bounding-box diagonal.
    search_distance: float = 0.02
    ao_rays: int = 16
    # Occluders farther than this share of the diagonal do not darken.
    ao_distance: float = 0.1
    seed: int = 0


def bake(source: Asset, target: Asset, options: BakeOptions = BakeOptions()) -> tuple[Asset, dict[str, object]]:
    """`target` (with non-overlapping UVs) gets a new material with baked textures; `source` is read only."""
    problems = uv_problems(target)
    if problems:
        raise BadInput(f"cannot bake onto '{target.name}': {'; '.join(problems)}; unwrap it first")
    if options.size < 4 or options.size > 16384:
        raise BadInput(f"bake size must be between 4 and 16384 texels, got {options.size}")
    assert target.uvs is not None  # uv_problems() refused a target without UVs
    size = int(options.size)
    diagonal = max(source.diagonal, 1e-12)
    normals = target.normals if target.normals is not None else surface.smooth_vertex_normals(target.positions, target.faces)
    tangents = surface.vertex_tangents(target.positions, target.faces, target.uvs, normals)
    coverage = texels.rasterize(target.uvs, target.faces, size, size)
    sampler = _SourceSampler(source)
    rng = np.random.default_rng(options.seed)

    base = np.zeros((size, size, 4), dtype=np.float32)
    orm = np.zeros((size, size, 3), dtype=np.float32)
    normal_map = np.zeros((size, size, 3), dtype=np.float32)
    emissive = np.zeros((size, size, 3), dtype=np.float32) if sampler.has_emission else None
    missed = 0
    for part in coverage.chunks(_CHUNK):
        face, weights = coverage.face[part], coverage.weights[part]
        corners = target.faces[face]
        point = np.einsum("ij,ijk->ik", weights, target.positions[corners])
        normal = _unit(np.einsum("ij,ijk->ik", weights, normals[corners]))
        tangent = _unit(np.einsum("ij,ijk->ik", weights, tangents[corners, :3]))
        handed = np.where(np.einsum("ij,ij->i", weights, tangents[corners, 3]) < 0, -1.0, 1.0)
        hit_face, hit_weights, found = sampler.project(point, normal, options.search_distance * diagonal)
        missed += int((~found).sum())
        y, x = coverage.y[part], coverage.x[part]
        colour, metal_rough, emission, shading = sampler.shade(hit_face, hit_weights, normal)
        base[y, x] = colour
        # Tangent-space normal: the source's shading normal in the low mesh's (T, B, N) frame.
        bitangent = handed[:, None] * np.cross(normal, tangent)
        local = np.column_stack([
            np.einsum("ij,ij->i", shading, tangent),
            np.einsum("ij,ij->i", shading, bitangent),
            np.einsum("ij,ij->i", shading, normal),
        ])
        normal_map[y, x] = _unit(local) * 0.5 + 0.5
        hit_point = np.einsum("ij,ijk->ik", hit_weights, source.positions[source.faces[hit_face]])
        # Hemisphere rays leave around the source's flat face normal: a smoothed or mapped normal tilts the
        # hemisphere into the face itself and would darken every convex edge.
        geometric = sampler.face_normals[hit_face]
        geometric = np.where((np.einsum("ij,ij->i", geometric, normal) < 0)[:, None], -geometric, geometric)
        occlusion = sampler.occlusion(hit_point, geometric, options.ao_rays, options.ao_distance * diagonal, rng)
        orm[y, x] = np.column_stack([occlusion, metal_rough[:, 0], metal_rough[:, 1]])
        if emissive is not None:
            emissive[y, x] = emission

    filled = np.zeros((size, size), dtype=bool)
    filled[coverage.y, coverage.x] = True
    opaque = bool((base[filled][:, 3] >= 0.999).all()) if filled.any() else True
    textures = {
        "base_color": _texture(texels.pad(base if not opaque else base[..., :3], filled)),
        "normal": _texture(texels.pad(normal_map, filled)),
    }
    textures["occlusion"] = textures["metallic_roughness"] = _texture(texels.pad(orm, filled))
    if emissive is not None:
        textures["emissive"] = _texture(texels.pad(emissive, filled))
    material = Material(
        name=f"{target.name}_baked",
        metallic_factor=1.0,
        roughness_factor=1.0,
        emissive_factor=(1.0, 1.0, 1.0) if emissive is not None else (0.0, 0.0, 0.0),
        double_sided=any(m.double_sided for m in source.materials),
        textures=textures,
    )
    baked = target.replace(
        materials=(material,),
        face_materials=np.zeros(target.triangle_count, dtype=np.int32),
        normals=normals,
        tangents=tangents,
        colors=None,
    )
    return baked, {
        "size": size,
        "texels_baked": len(coverage),
        "coverage": len(coverage) / size**2,
        "texels_missed": missed,
        "missed_share": missed / max(len(coverage), 1),
        "ao_rays": options.ao_rays,
        "maps": sorted(set(textures)),
        "opaque": opaque,
    }


def _texture(values: np.ndarray) -> Texture:
    return Texture(image=Image.fromarray(np.round(np.clip(values, 0, 1) * 255).astype(np.uint8)))


def _unit(vectors: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(length > 0, length, 1.0)


class _SourceSampler:
    """Ray queries against the source mesh and everything its materials say at a surface point."""

    def __init__(self, source: Asset) -> None:
        self.source = source
        # Embree works in float32; centring keeps precision for assets placed far from the origin.
        self.centre = source.positions.mean(axis=0)
        self.scene = rtcore_scene.EmbreeScene()
        TriangleMesh(self.scene, (source.positions - self.centre).astype(np.float32), source.faces.astype(np.uint32))
        self.normals = source.normals if source.normals is not None else surface.smooth_vertex_normals(source.positions, source.faces)
        has_normal_maps = any(m.texture("normal") for m in source.materials)
        self.tangents = (
            surface.vertex_tangents(source.positions, source.faces, source.uvs, self.normals)
            if has_normal_maps and source.uvs is not None else None
        )
        self.face_normals, _ = surface.face_normals_and_areas(source.positions, source.faces)
        self.images: dict[int, np.ndarray] = {}
        self.has_emission = any(max(m.emissive_factor) > 0 for m in source.materials)

    def project(self, point: np.ndarray, normal: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Closest source hit along ±normal within `reach`: (face, barycentric weights, found)."""
        origin = (point - self.centre + normal * reach).astype(np.float32)
        result = self.scene.run(origin, (-normal).astype(np.float32), dists=np.full(len(point), 2 * reach, np.float32), output=1)
        face = result["primID"].astype(np.int64)
        found = face >= 0
        # Where the cast found nothing (source farther than `reach`), look along the normal without limit
        # before giving up: a coarse LOD can sit well inside thin source features.
        if not found.all():
            lost = ~found
            retry = self.scene.run(
                (point[lost] - self.centre).astype(np.float32), normal[lost].astype(np.float32), output=1
            )
            face[lost] = retry["primID"]
            result["u"][lost], result["v"][lost] = retry["u"], retry["v"]
            found = face >= 0
        u, v = result["u"].astype(np.float64), result["v"].astype(np.float64)
        weights = np.column_stack([1.0 - u - v, u, v])
        # A texel whose ray met nothing takes the source's first triangle; padding and neighbours hide it,
        # and the report counts it.
        face = np.where(found, face, 0)
        weights[~found] = (1.0, 0.0, 0.0)
        return face, weights, found

    def shade(
        self, face: np.ndarray, weights: np.ndarray, fallback_normal: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(sRGB RGBA, [roughness, metallic], sRGB emission, unit shading normal) at source points."""
        source = self.source
        corners = source.faces[face]
        count = len(face)
        linear = np.ones((count, 4))
        metal_rough = np.zeros((count, 2))
        emission = np.zeros((count, 3))
        shading = _unit(np.einsum("ij,ijk->ik", weights, self.normals[corners]))
        uv = np.einsum("ij,ijk->ik", weights, source.uvs[corners]) if source.uvs is not None else None
        if source.colors is not None:
            linear *= np.einsum("ij,ijk->ik", weights, source.colors[corners])
        materials = source.face_materials[face]
        for index, material in enumerate(source.materials):
            rows = materials == index
            if not rows.any():
                continue
            linear[rows] *= np.asarray(material.base_color_factor)
            metal_rough[rows] = (material.roughness_factor, material.metallic_factor)
            emission[rows] = material.emissive_factor
            if uv is None:
                continue
            if (texture := material.texture("base_color")) is not None:
                sample = self._sample(texture, uv[rows])
                linear[rows, :3] *= texels.srgb_to_linear(sample[:, :3])
                if sample.shape[1] == 4:
                    linear[rows, 3] *= sample[:, 3]
            if (texture := material.texture("metallic_roughness")) is not None:
                sample = self._sample(texture, uv[rows])
                metal_rough[rows] *= sample[:, [1, 2]]  # glTF: roughness in G, metallic in B
            if (texture := material.texture("emissive")) is not None:
                emission[rows] *= texels.srgb_to_linear(self._sample(texture, uv[rows])[:, :3])
            if (texture := material.texture("normal")) is not None and self.tangents is not None:
                shading[rows] = self._perturb(texture, material.normal_scale, uv[rows], weights[rows], corners[rows], shading[rows])
        # Back-facing results (ray met the inside of a thin part) shade with the low mesh's own normal.
        flipped = np.einsum("ij,ij->i", shading, fallback_normal) < -0.2
        shading[flipped] = fallback_normal[flipped]
        colour = np.column_stack([texels.linear_to_srgb(linear[:, :3]), np.clip(linear[:, 3], 0, 1)])
        return colour, np.clip(metal_rough, 0, 1), texels.linear_to_srgb(emission), shading

    def _sample(self, texture: Texture, uv: np.ndarray) -> np.ndarray:
        key = id(texture.image)
        if key not in self.images:
            self.images[key] = np.asarray(texture.image, dtype=np.float32) / 255.0
        image = self.images[key]
        if image.ndim == 2:
            image = image[..., None]
        transformed = np.column_stack([uv, np.ones(len(uv))]) @ texture.uv_transform.T
        return texels.sample_bilinear(image, transformed[:, :2], repeat=texture.repeat)

    def _perturb(
        self, texture: Texture, scale: float, uv: np.ndarray, weights: np.ndarray, corners: np.ndarray, normal: np.ndarray
    ) -> np.ndarray:
        """The source's normal map applied in the source's tangent frame."""
        assert self.tangents is not None
        frame = np.einsum("ij,ijk->ik", weights, self.tangents[corners])
        tangent = _unit(frame[:, :3] - normal * np.einsum("ij,ij->i", frame[:, :3], normal)[:, None])
        bitangent = np.where(frame[:, 3:] < 0, -1.0, 1.0) * np.cross(normal, tangent)
        local = self._sample(texture, uv)[:, :3] * 2.0 - 1.0
        local[:, :2] *= scale
        return _unit(local[:, :1] * tangent + local[:, 1:2] * bitangent + local[:, 2:3] * normal)

    def occlusion(self, point: np.ndarray, normal: np.ndarray, rays: int, reach: float, rng: np.random.Generator) -> np.ndarray:
        """Share of cosine-weighted hemisphere rays that escape within `reach` (1 = unoccluded)."""
        if rays <= 0:
            return np.ones(len(point))
        # Embree traces ≈5M rays/s here; building the rays in float64 with one (texels, rays, 3) temporary per
        # operation cost as much again and gigabytes of memory, so they are built in float32 per batch.
        escaped = np.empty(len(point))
        batch = max(_AO_RAYS_PER_BATCH // rays, 1)
        for start in range(0, len(point), batch):
            part = slice(start, start + batch)
            escaped[part] = self._escaped(point[part], normal[part], rays, reach, rng)
        return escaped

    def _escaped(self, point: np.ndarray, normal: np.ndarray, rays: int, reach: float, rng: np.random.Generator) -> np.ndarray:
        count = len(point)
        # Stratified cosine-weighted directions, rotated per texel so banding turns into fine noise.
        side = int(np.ceil(np.sqrt(rays)))
        cells = np.stack(np.meshgrid(np.arange(side), np.arange(side)), axis=-1).reshape(-1, 2)[:rays].astype(np.float32)
        jitter = (cells[None] + rng.random((count, rays, 2), dtype=np.float32)) / np.float32(side)
        radius, angle = np.sqrt(jitter[..., 0]), np.float32(2 * np.pi) * jitter[..., 1]
        local = np.empty((count, rays, 3), dtype=np.float32)
        np.multiply(radius, np.cos(angle), out=local[..., 0])
        np.multiply(radius, np.sin(angle), out=local[..., 1])
        np.sqrt(np.clip(1 - radius * radius, 0, 1), out=local[..., 2])
        normal = normal.astype(np.float32)
        helper = np.where(np.abs(normal[:, :1]) < 0.9, np.array([[1, 0, 0]], np.float32), np.array([[0, 1, 0]], np.float32))
        tangent = _unit(np.cross(normal, helper)).astype(np.float32)
        frame = np.stack([tangent, np.cross(normal, tangent), normal], axis=1)  # rows: T, B, N
        directions = np.matmul(local, frame).reshape(-1, 3)
        origins = (point - self.centre + normal * reach * 1e-3).astype(np.float32)  # off the surface: no self-hits
        hits = self.scene.run(
            np.repeat(origins, rays, axis=0), directions, dists=np.full(len(directions), reach, np.float32), query="OCCLUDED"
        )
        return 1.0 - (np.asarray(hits).reshape(count, rays) >= 0).mean(axis=1)
