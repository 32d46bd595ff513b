"""GLB writer (glTF 2.0, metallic-roughness PBR, embedded textures, metres, +Y up) and its Khronos validation."""
from __future__ import annotations

import io
import json
import struct
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .. import surface
from ..asset import Asset, Material, Texture
from ..errors import PostprocessError
from . import tools
from .verdict import ExportResult, Verdict

_FLOAT, _UINT16, _UINT32 = 5126, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_REPEAT, _CLAMP = 10497, 33071
_LINEAR, _LINEAR_MIPMAP_LINEAR = 9729, 9987


class _Builder:
    """Accumulates the binary chunk and the JSON arrays that point into it."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.doc: dict = {
            "asset": {"version": "2.0", "generator": "Assay post-processing"},
            "buffers": [], "bufferViews": [], "accessors": [], "images": [], "textures": [],
            "samplers": [], "materials": [], "meshes": [], "nodes": [], "scenes": [], "scene": 0,
        }
        self.extensions: set[str] = set()

    def view(self, data: bytes, target: int | None = None) -> int:
        while len(self.blob) % 4:
            self.blob.append(0)
        entry = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            entry["target"] = target
        self.blob.extend(data)
        self.doc["bufferViews"].append(entry)
        return len(self.doc["bufferViews"]) - 1

    def accessor(self, values: np.ndarray, kind: str, target: int | None, bounds: bool = False) -> int:
        if values.dtype == np.float32:
            component = _FLOAT
        elif values.dtype == np.uint16:
            component = _UINT16
        else:
            component = _UINT32
        entry = {
            "bufferView": self.view(np.ascontiguousarray(values).tobytes(), target),
            "componentType": component,
            "count": int(len(values)),
            "type": kind,
        }
        if bounds:
            entry["min"] = values.min(axis=0).astype(float).tolist()
            entry["max"] = values.max(axis=0).astype(float).tolist()
        self.doc["accessors"].append(entry)
        return len(self.doc["accessors"]) - 1


# Every LOD shares its textures and each is written as GLB, USDZ and FBX (via a GLB): encoding a 2048² PNG
# takes seconds, so the last few encodings are kept. Each entry holds its image, so the id cannot be reused.
_ENCODED: OrderedDict[tuple[int, str], tuple[Image.Image, bytes, str]] = OrderedDict()
_ENCODED_KEEP = 12
_ENCODED_LOCK = threading.Lock()


def forget_encoded_images() -> None:
    """Drop the kept encodings (and the images they hold): a long-lived worker should not keep one job's textures."""
    with _ENCODED_LOCK:
        _ENCODED.clear()


def encode_image(texture: Texture, image_format: str) -> tuple[bytes, str]:
    """PNG (lossless, keeps alpha) or JPEG (far smaller; only for images without alpha)."""
    image = texture.image
    key = (id(image), image_format)
    with _ENCODED_LOCK:
        hit = _ENCODED.get(key)
        if hit is not None and hit[0] is image:
            _ENCODED.move_to_end(key)
            return hit[1], hit[2]
    buffer = io.BytesIO()
    if image_format == "jpeg" and image.mode not in ("RGBA", "LA"):
        image.convert("RGB").save(buffer, format="JPEG", quality=90, optimize=True)
        mime = "image/jpeg"
    else:
        image.save(buffer, format="PNG", optimize=False, compress_level=6)
        mime = "image/png"
    data = buffer.getvalue()
    with _ENCODED_LOCK:
        _ENCODED[key] = (image, data, mime)
        while len(_ENCODED) > _ENCODED_KEEP:
            _ENCODED.popitem(last=False)
    return data, mime


def _texture_transform(texture: Texture) -> dict | None:
    """KHR_texture_transform (offset, rotation, scale) from the 3×3 matrix, or None for the identity."""
    matrix = np.asarray(texture.uv_transform, dtype=np.float64)
    if np.allclose(matrix, np.eye(3)):
        return None
    column0, column1 = matrix[:2, 0], matrix[:2, 1]
    return {
        "offset": matrix[:2, 2].tolist(),
        "rotation": float(np.arctan2(-column0[1], column0[0])),
        "scale": [float(np.linalg.norm(column0)), float(np.linalg.norm(column1))],
    }


def _material(builder: _Builder, material: Material, image_format: str, cache: dict[int, int],
              normal_format: str = "png") -> dict:
    def texture_info(role: str) -> dict | None:
        texture = material.texture(role)
        if texture is None:
            return None
        key = id(texture.image)
        if key not in cache:
            data, mime = encode_image(texture, normal_format if role == "normal" else image_format)
            builder.doc["images"].append({"bufferView": builder.view(data), "mimeType": mime})
            builder.doc["samplers"].append({
                "magFilter": _LINEAR, "minFilter": _LINEAR_MIPMAP_LINEAR,
                "wrapS": _REPEAT if texture.repeat else _CLAMP, "wrapT": _REPEAT if texture.repeat else _CLAMP,
            })
            builder.doc["textures"].append({"source": len(builder.doc["images"]) - 1, "sampler": len(builder.doc["samplers"]) - 1})
            cache[key] = len(builder.doc["textures"]) - 1
        info: dict = {"index": cache[key]}
        transform = _texture_transform(texture)
        if transform is not None:
            info["extensions"] = {"KHR_texture_transform": transform}
            builder.extensions.add("KHR_texture_transform")
        return info

    pbr: dict = {
        "baseColorFactor": [float(v) for v in material.base_color_factor],
        "metallicFactor": float(material.metallic_factor),
        "roughnessFactor": float(material.roughness_factor),
    }
    entry: dict = {"name": material.name, "pbrMetallicRoughness": pbr, "doubleSided": bool(material.double_sided)}
    if (info := texture_info("base_color")) is not None:
        pbr["baseColorTexture"] = info
    if (info := texture_info("metallic_roughness")) is not None:
        pbr["metallicRoughnessTexture"] = info
    if (info := texture_info("normal")) is not None:
        entry["normalTexture"] = {**info, "scale": float(material.normal_scale)}
    if (info := texture_info("occlusion")) is not None:
        entry["occlusionTexture"] = info
    if (info := texture_info("emissive")) is not None:
        entry["emissiveTexture"] = info
    if max(material.emissive_factor) > 0:
        entry["emissiveFactor"] = [float(v) for v in material.emissive_factor]
    base = material.texture("base_color")
    if material.base_color_factor[3] < 1.0 or (base is not None and base.image.mode in ("RGBA", "LA")):
        entry["alphaMode"] = "BLEND"
    return entry


def with_shading_frames(asset: Asset) -> Asset:
    """Normals always, and tangents where a normal map needs them, so every viewer shades the same."""
    normals = asset.normals if asset.normals is not None else surface.smooth_vertex_normals(asset.positions, asset.faces)
    asset = asset.replace(normals=normals)
    needs_tangents = any(m.texture("normal") is not None for m in asset.materials)
    if needs_tangents and asset.tangents is None and asset.uvs is not None:
        asset = asset.replace(tangents=surface.vertex_tangents(asset.positions, asset.faces, asset.uvs, normals))
    return asset


def _add_mesh(builder: _Builder, asset: Asset, image_format: str, normal_format: str,
              texture_cache: dict[int, int], material_cache: dict[int, int]) -> int:
    """Append `asset` as one mesh with one primitive per used material; returns the mesh index.

    Textures and materials already in the file (same image, same material) are referenced, not written again."""
    asset = with_shading_frames(asset)
    attributes = {"POSITION": builder.accessor(asset.positions.astype(np.float32), "VEC3", _ARRAY_BUFFER, bounds=True)}
    if asset.normals is not None:
        attributes["NORMAL"] = builder.accessor(asset.normals.astype(np.float32), "VEC3", _ARRAY_BUFFER)
    if asset.uvs is not None:
        attributes["TEXCOORD_0"] = builder.accessor(asset.uvs.astype(np.float32), "VEC2", _ARRAY_BUFFER)
        if asset.tangents is not None and asset.normals is not None:
            attributes["TANGENT"] = builder.accessor(asset.tangents.astype(np.float32), "VEC4", _ARRAY_BUFFER)
    if asset.colors is not None:
        attributes["COLOR_0"] = builder.accessor(np.clip(asset.colors, 0, 1).astype(np.float32), "VEC4", _ARRAY_BUFFER)
    index_type = np.uint16 if asset.vertex_count < 65535 else np.uint32
    primitives = []
    for index, material in enumerate(asset.materials):
        faces = asset.faces[asset.face_materials == index]
        if len(faces) == 0:
            continue
        if id(material) not in material_cache:
            builder.doc["materials"].append(_material(builder, material, image_format, texture_cache, normal_format))
            material_cache[id(material)] = len(builder.doc["materials"]) - 1
        primitives.append({
            "attributes": attributes,
            "indices": builder.accessor(faces.reshape(-1).astype(index_type), "SCALAR", _ELEMENT_ARRAY_BUFFER),
            "material": material_cache[id(material)],
            "mode": 4,
        })
    builder.doc["meshes"].append({"name": asset.name, "primitives": primitives})
    return len(builder.doc["meshes"]) - 1


def _write(builder: _Builder, path: Path) -> Path:
    """The GLB container around the builder's JSON and binary chunk, written to a temporary name and renamed."""
    builder.doc["buffers"].append({"byteLength": len(builder.blob)})
    if builder.extensions:
        builder.doc["extensionsUsed"] = sorted(builder.extensions)
    for key in ("images", "textures", "samplers"):
        if not builder.doc[key]:
            del builder.doc[key]
    while len(builder.blob) % 4:
        builder.blob.append(0)
    text = json.dumps(builder.doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(builder.blob)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as handle:
        handle.write(struct.pack("<4sII", b"glTF", 2, total))
        handle.write(struct.pack("<I4s", len(text), b"JSON") + text)
        handle.write(struct.pack("<I4s", len(builder.blob), b"BIN\x00") + bytes(builder.blob))
    partial.replace(path)
    return path


def write_glb(asset: Asset, path: Path | str, image_format: str = "png", normal_format: str = "png") -> Path:
    """Write `asset` as one mesh with one primitive per material; texture-less materials keep their factors.

    Normal maps stay lossless PNG unless `normal_format="jpeg"` (what a tight size budget may need)."""
    builder = _Builder()
    mesh = _add_mesh(builder, asset, image_format, normal_format, {}, {})
    builder.doc["nodes"].append({"name": asset.name, "mesh": mesh})
    builder.doc["scenes"].append({"nodes": [0]})
    return _write(builder, Path(path))


def write_glb_lods(levels: Sequence[Asset], path: Path | str, screen_coverages: Sequence[float],
                   image_format: str = "png", normal_format: str = "png") -> Path:
    """The whole LOD chain in one GLB with MSFT_lod: LOD0's node (the only one in the scene, so viewers without
    the extension show LOD0) lists the lower levels' nodes in `ids`, and its extras carry
    `MSFT_screencoverage`, one value per level: the screen share below which that level hands over to the next
    (the last value is where the object may be culled). Levels share textures and materials they have in common."""
    if not levels:
        raise PostprocessError("an MSFT_lod file needs at least one level")
    if len(screen_coverages) != len(levels):
        raise PostprocessError(f"{len(levels)} levels but {len(screen_coverages)} screen coverage values")
    builder = _Builder()
    textures: dict[int, int] = {}
    materials: dict[int, int] = {}
    for level, asset in enumerate(levels):
        mesh = _add_mesh(builder, asset, image_format, normal_format, textures, materials)
        builder.doc["nodes"].append({"name": f"{asset.name}_LOD{level}", "mesh": mesh})
    root = builder.doc["nodes"][0]
    if len(levels) > 1:
        root["extensions"] = {"MSFT_lod": {"ids": list(range(1, len(levels)))}}
        root["extras"] = {"MSFT_screencoverage": [float(value) for value in screen_coverages]}
        builder.extensions.add("MSFT_lod")
    builder.doc["scenes"].append({"nodes": [0]})
    return _write(builder, Path(path))


def validate_gltf(path: Path | str, timeout_s: float = 300.0) -> Verdict:
    """Run the Khronos glTF-Validator (npm `gltf-validator`) through node on the file."""
    path = Path(path).resolve()
    tools.node_package("gltf-validator")
    script = Path(__file__).with_name("validate_gltf.mjs")
    completed = subprocess.run(
        [tools.node(), str(script), str(path)], cwd=tools.NODE_ROOT, capture_output=True, text=True, timeout=timeout_s,
    )
    if completed.returncode != 0:
        raise PostprocessError(f"glTF-Validator failed on {path.name}: {completed.stderr.strip()[-500:]}")
    report = json.loads(completed.stdout)
    messages = report.get("issues", {}).get("messages", [])

    def lines(severity: int) -> list[str]:
        return [f"{m['code']} at {m.get('pointer', m.get('offset', ''))}: {m['message']}" for m in messages if m["severity"] == severity]

    return Verdict(
        tool="Khronos glTF-Validator",
        version=str(report.get("validatorVersion", "")),
        errors=lines(0),
        warnings=lines(1),
        # Infos include UNSUPPORTED_EXTENSION: this validator cannot look inside MSFT_lod or EXT_meshopt_compression.
        details={**{key: report.get("issues", {}).get(key) for key in ("numErrors", "numWarnings", "numInfos", "numHints")},
                 "infos": lines(2)},
    )


def export_glb(asset: Asset, path: Path | str, image_format: str = "png", normal_format: str = "png") -> ExportResult:
    written = write_glb(asset, path, image_format, normal_format)
    return ExportResult(str(written), "glb", written.stat().st_size, validate_gltf(written))


def export_glb_lods(levels: Sequence[Asset], path: Path | str, screen_coverages: Sequence[float],
                    image_format: str = "png", normal_format: str = "png") -> ExportResult:
    """The LOD chain as one MSFT_lod GLB (see `write_glb_lods`), checked by glTF-Validator."""
    written = write_glb_lods(levels, path, screen_coverages, image_format, normal_format)
    return ExportResult(str(written), "glb", written.stat().st_size, validate_gltf(written))
