"""Reading a mesh file into an `Asset`, refusing what cannot be processed before it costs memory.

The triangle count is read from the file's header or JSON (or counted while streaming an OBJ) before the
geometry is loaded, so a file over the limit is refused with memory bounded by the limit, not the file.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image

from .asset import Asset, Material, Texture
from .errors import BadInput

DEFAULT_MAX_TRIANGLES = 5_000_000
SUPPORTED_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")

# glTF texture slots as trimesh's PBRMaterial names them, and ours.
_TRIMESH_TEXTURE_ROLES = {
    "baseColorTexture": "base_color",
    "metallicRoughnessTexture": "metallic_roughness",
    "normalTexture": "normal",
    "occlusionTexture": "occlusion",
    "emissiveTexture": "emissive",
}
_GLTF_TEXTURE_SLOTS = {
    "base_color": ("pbrMetallicRoughness", "baseColorTexture"),
    "metallic_roughness": ("pbrMetallicRoughness", "metallicRoughnessTexture"),
    "normal": (None, "normalTexture"),
    "occlusion": (None, "occlusionTexture"),
    "emissive": (None, "emissiveTexture"),
}


def count_triangles(path: Path) -> int:
    """Triangles the file declares, read without loading its geometry."""
    suffix = path.suffix.lower()
    if suffix in (".glb", ".gltf"):
        return _gltf_triangles(_gltf_json(path))
    if suffix == ".ply":
        return _ply_faces(path)
    if suffix == ".obj":
        return _obj_triangles(path)
    if suffix == ".stl":
        return _stl_triangles(path)
    raise BadInput(f"{path.name}: unsupported format '{suffix}'; supported: {', '.join(SUPPORTED_SUFFIXES)}")


def load_asset(
    path: Path | str, max_triangles: int = DEFAULT_MAX_TRIANGLES, require_textures: bool = False
) -> tuple[Asset, dict[str, object]]:
    """Read a mesh file (any node transforms applied, parts merged) and report what was found or dropped.

    A texture the file declares but that is missing or corrupt is reported as a warning (the material's
    factor stands in), or refused with BadInput when `require_textures` is set.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path.name}: file not found")
    if path.stat().st_size == 0:
        raise BadInput(f"{path.name}: file is empty")
    declared = count_triangles(path)
    if declared > max_triangles:
        raise BadInput(
            f"{path.name}: {declared:,} triangles, above the limit of {max_triangles:,} triangles; "
            "decimate it before upload or raise the max_triangles limit"
        )
    try:
        scene: Any = trimesh.load(str(path), force="scene", process=False)
    except Exception as exc:  # trimesh raises anything from struct.error to KeyError on corrupt files
        raise BadInput(f"{path.name}: could not be read ({type(exc).__name__}: {exc})") from exc

    warnings: list[str] = []
    transforms = _gltf_texture_transforms(path) if path.suffix.lower() in (".glb", ".gltf") else {}
    parts = []
    for node in scene.graph.nodes_geometry:
        matrix, geometry_name = scene.graph[node]
        geometry = scene.geometry[geometry_name]
        if not isinstance(geometry, trimesh.Trimesh):
            warnings.append(f"{geometry_name}: {type(geometry).__name__} is not a triangle mesh and is left out")
            continue
        parts.append((np.asarray(matrix, dtype=np.float64), geometry))
    if not parts or sum(len(g.faces) for _, g in parts) == 0:
        raise BadInput(f"{path.name}: mesh is empty: it has no triangles")

    asset = _merge(parts, transforms, warnings, name=path.stem)
    _check_declared_textures(path, asset, warnings, require_textures)
    bad = ~np.isfinite(asset.positions).all(axis=1)
    if bad.any():
        raise BadInput(f"{path.name}: {int(bad.sum()):,} vertices have NaN or infinite coordinates")
    report = {"file": path.name, "declared_triangles": declared, **asset.summary(), "warnings": warnings}
    return asset, report


def _check_declared_textures(path: Path, asset: Asset, warnings: list[str], required: bool) -> None:
    """trimesh drops a texture it cannot find or decode without a word; compare with what the file declares."""
    loaded = {role for material in asset.materials for role in material.textures}
    declared = _declared_texture_roles(path)
    lost = sorted(role for role in declared if role not in loaded)
    if not lost:
        return
    message = f"{path.name}: {', '.join(lost)} texture(s) declared but missing or corrupt"
    if required:
        raise BadInput(message)
    warnings.append(f"{message}; the material's factors are used instead")


def _declared_texture_roles(path: Path) -> set[str]:
    suffix = path.suffix.lower()
    if suffix in (".glb", ".gltf"):
        return {role for roles in _gltf_texture_transforms(path).values() for role in roles}
    if suffix != ".obj":
        return set()
    roles: set[str] = set()
    obj_roles = {"map_kd": "base_color", "map_bump": "normal", "bump": "normal", "norm": "normal", "map_ke": "emissive"}
    with path.open("rb") as handle:
        libraries = [line.split(None, 1)[1].strip().decode(errors="replace") for line in handle if line.startswith(b"mtllib ")]
    for library in libraries:
        mtl = path.parent / library
        if not mtl.is_file():
            continue
        for line in mtl.read_text(errors="replace").splitlines():
            words = line.split()
            if words and words[0].lower() in obj_roles:
                roles.add(obj_roles[words[0].lower()])
    return roles


def _merge(parts: list[tuple[np.ndarray, trimesh.Trimesh]], transforms: dict, warnings: list[str], name: str) -> Asset:
    positions, faces, colors, face_materials = [], [], [], []
    uvs: list[np.ndarray] = []
    materials: list[Material] = []
    material_index: dict[int, int] = {}
    offset = 0
    any_uv = any(_uvs_of(g) is not None for _, g in parts)
    any_color = any(_colors_of(g) is not None for _, g in parts)
    for matrix, geometry in parts:
        vertices = np.asarray(geometry.vertices, dtype=np.float64)
        vertices = vertices @ matrix[:3, :3].T + matrix[:3, 3]
        tris = np.asarray(geometry.faces, dtype=np.int64)
        if np.linalg.det(matrix[:3, :3]) < 0:
            tris = tris[:, ::-1]  # a mirroring node transform flips winding; undo it so normals stay outward
        positions.append(vertices)
        faces.append(tris + offset)
        offset += len(vertices)
        part_uv = _uvs_of(geometry)
        if part_uv is None and any_uv:
            part_uv = np.zeros((len(vertices), 2))
        if any_uv:
            uvs.append(part_uv if part_uv is not None else np.zeros((len(vertices), 2)))
        part_color = _colors_of(geometry)
        if any_color:
            colors.append(part_color if part_color is not None else np.ones((len(vertices), 4)))
        key = id(getattr(geometry.visual, "material", None) or geometry)
        if key not in material_index:
            material_index[key] = len(materials)
            materials.append(_material_of(geometry, transforms, warnings))
        face_materials.append(np.full(len(tris), material_index[key], dtype=np.int32))
    merged_uvs: np.ndarray | None = np.concatenate(uvs) if any_uv else None
    if merged_uvs is not None and not np.isfinite(merged_uvs).all():
        warnings.append("UVs contain NaN or infinite values; they are ignored and the mesh is unwrapped anew")
        merged_uvs = None
        materials = [_without_textures(m) for m in materials]
    return Asset(
        positions=np.concatenate(positions),
        faces=np.concatenate(faces),
        materials=tuple(materials),
        face_materials=np.concatenate(face_materials),
        uvs=merged_uvs,
        colors=np.concatenate(colors) if any_color else None,
        name=name,
    )


def _uvs_of(geometry: trimesh.Trimesh) -> np.ndarray | None:
    uv = getattr(geometry.visual, "uv", None)
    if uv is None or len(uv) != len(geometry.vertices):
        return None
    uv = np.array(uv, dtype=np.float64)
    uv[:, 1] = 1.0 - uv[:, 1]  # trimesh keeps V up for every format; we keep glTF's V down throughout
    return uv


def _colors_of(geometry: trimesh.Trimesh) -> np.ndarray | None:
    visual = geometry.visual
    if getattr(visual, "kind", None) not in ("vertex", "face"):
        return None
    if not isinstance(visual, trimesh.visual.ColorVisuals):
        return None
    return np.asarray(visual.vertex_colors, dtype=np.float64) / 255.0


def _material_of(geometry: trimesh.Trimesh, transforms: dict, warnings: list[str]) -> Material:
    source = getattr(geometry.visual, "material", None)
    name = getattr(source, "name", None) or str(geometry.metadata.get("name", "material"))
    if source is None:
        return Material(name=name, metallic_factor=0.0, roughness_factor=0.8)
    if not isinstance(source, trimesh.visual.material.PBRMaterial):
        source = source.to_pbr()
    textures: dict[str, Texture] = {}
    for attribute, role in _TRIMESH_TEXTURE_ROLES.items():
        image = getattr(source, attribute, None)
        if image is None:
            continue
        slot = transforms.get(name, {}).get(role, {"matrix": np.eye(3), "tex_coord": 0})
        if slot["tex_coord"] != 0:
            warnings.append(f"{name}: {role} texture uses TEXCOORD_{slot['tex_coord']}; only TEXCOORD_0 is carried over")
            continue
        decoded = _decoded(image, f"{name}: {role} texture", warnings)
        if decoded is not None:
            textures[role] = Texture(image=decoded, uv_transform=slot["matrix"])
    return Material(
        name=name,
        base_color_factor=_factor(source.baseColorFactor, 4, 1.0),
        metallic_factor=1.0 if source.metallicFactor is None else float(source.metallicFactor),
        roughness_factor=1.0 if source.roughnessFactor is None else float(source.roughnessFactor),
        emissive_factor=_factor(source.emissiveFactor, 3, 0.0, scale=1.0),
        double_sided=bool(source.doubleSided),
        textures=textures,
    )


def _factor(value: object, length: int, default: float, scale: float = 255.0) -> tuple:
    """trimesh keeps baseColorFactor as 0–255 integers and emissiveFactor as floats; we keep floats in 0–1."""
    if value is None:
        return (default,) * length
    array = np.asarray(value, dtype=np.float64).reshape(-1)[:length]
    if array.dtype.kind in "iu" or array.max(initial=0.0) > 1.0:
        array = array / scale
    return tuple(float(v) for v in array)


def _decoded(image: object, what: str, warnings: list[str]) -> Image.Image | None:
    """Decode now, so a truncated or corrupt texture is reported here and not deep inside baking."""
    if not isinstance(image, Image.Image):
        warnings.append(f"{what} is missing; the material's factor is used instead")
        return None
    try:
        image.load()
        return image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    except (OSError, ValueError) as exc:
        warnings.append(f"{what} could not be decoded ({exc}); the material's factor is used instead")
        return None


def _without_textures(material: Material) -> Material:
    return material.replace(textures={})


def _gltf_json(path: Path) -> dict:
    """The JSON of a .gltf or a .glb's first chunk, checked just enough to read counts from it."""
    try:
        if path.suffix.lower() == ".gltf":
            return json.loads(path.read_text(encoding="utf-8"))
        with path.open("rb") as handle:
            header = handle.read(20)
            if len(header) < 20 or header[:4] != b"glTF":
                raise BadInput(f"{path.name}: not a GLB file (bad magic)")
            length, chunk_type = struct.unpack("<II", header[12:20])
            if chunk_type != 0x4E4F534A:
                raise BadInput(f"{path.name}: GLB's first chunk is not JSON")
            return json.loads(handle.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path.name}: glTF JSON is corrupt ({exc})") from exc


def _gltf_triangles(document: dict) -> int:
    accessors = document.get("accessors", [])
    meshes = document.get("meshes", [])
    try:
        per_mesh = []
        for mesh in meshes:
            total = 0
            for primitive in mesh.get("primitives", []):
                mode = primitive.get("mode", 4)
                counted = primitive.get("indices", primitive.get("attributes", {}).get("POSITION"))
                if counted is None:
                    continue
                count = int(accessors[counted]["count"])
                total += count // 3 if mode == 4 else max(count - 2, 0) if mode in (5, 6) else 0
            per_mesh.append(total)
        uses = [node["mesh"] for node in document.get("nodes", []) if "mesh" in node]
        return sum(per_mesh[index] for index in uses) if uses else sum(per_mesh)
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"glTF references a missing accessor or mesh ({exc})") from exc


def _ply_faces(path: Path) -> int:
    with path.open("rb") as handle:
        if handle.readline().strip() != b"ply":
            raise BadInput(f"{path.name}: not a PLY file")
        for _ in range(200):
            line = handle.readline().strip()
            if line.startswith(b"element face"):
                return int(line.split()[2])
            if line == b"end_header" or not line:
                break
    return 0


def _obj_triangles(path: Path) -> int:
    triangles = 0
    with path.open("rb") as handle:
        for line in handle:
            if line.startswith(b"f "):
                triangles += max(len(line.split()) - 3, 0)
    return triangles


def _stl_triangles(path: Path) -> int:
    with path.open("rb") as handle:
        head = handle.read(84)
    if head[:5].lower() == b"solid" and b"facet" in path.read_bytes()[:4096]:
        return path.read_bytes().count(b"facet normal")
    if len(head) < 84:
        raise BadInput(f"{path.name}: STL header is truncated")
    return int(struct.unpack("<I", head[80:84])[0])


def _gltf_texture_transforms(path: Path) -> dict[str, dict[str, dict]]:
    """KHR_texture_transform and texCoord per material name and texture role, which trimesh does not apply."""
    document = _gltf_json(path)
    result: dict[str, dict[str, dict]] = {}
    for index, material in enumerate(document.get("materials", [])):
        roles = {}
        for role, (parent, slot) in _GLTF_TEXTURE_SLOTS.items():
            info = (material.get(parent, {}) if parent else material).get(slot)
            if not info:
                continue
            transform = info.get("extensions", {}).get("KHR_texture_transform", {})
            roles[role] = {
                "matrix": _uv_matrix(transform),
                "tex_coord": int(transform.get("texCoord", info.get("texCoord", 0))),
            }
        result[material.get("name", f"material_{index}")] = roles
    return result


def _uv_matrix(transform: dict) -> np.ndarray:
    """KHR_texture_transform's matrix: translation · rotation · scale, applied to (u, v, 1)."""
    offset = transform.get("offset", [0.0, 0.0])
    rotation = float(transform.get("rotation", 0.0))
    scale = transform.get("scale", [1.0, 1.0])
    cos, sin = np.cos(rotation), np.sin(rotation)
    translate = np.array([[1, 0, offset[0]], [0, 1, offset[1]], [0, 0, 1]], dtype=np.float64)
    rotate = np.array([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]], dtype=np.float64)
    scaled = np.diag([scale[0], scale[1], 1.0])
    return translate @ rotate @ scaled
