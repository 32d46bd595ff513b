"""GLB writer (glTF 2.0, metallic-roughness PBR, embedded textures, metres, +Y up) and its Khronos validation."""
from __future__ import annotations

import io
import json
import struct
import subprocess
from pathlib import Path

import numpy as np

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


def encode_image(texture: Texture, image_format: str) -> tuple[bytes, str]:
    """PNG (lossless, keeps alpha) or JPEG (far smaller; only for images without alpha)."""
    image = texture.image
    buffer = io.BytesIO()
    if image_format == "jpeg" and image.mode not in ("RGBA", "LA"):
        image.convert("RGB").save(buffer, format="JPEG", quality=90, optimize=True)
        return buffer.getvalue(), "image/jpeg"
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue(), "image/png"


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


def write_glb(asset: Asset, path: Path | str, image_format: str = "png", normal_format: str = "png") -> Path:
    """Write `asset` as one mesh with one primitive per material; texture-less materials keep their factors.

    Normal maps stay lossless PNG unless `normal_format="jpeg"` (what a tight size budget may need)."""
    path = Path(path)
    asset = with_shading_frames(asset)
    builder = _Builder()
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
    cache: dict[int, int] = {}
    primitives = []
    for index, material in enumerate(asset.materials):
        faces = asset.faces[asset.face_materials == index]
        if len(faces) == 0:
            continue
        builder.doc["materials"].append(_material(builder, material, image_format, cache, normal_format))
        primitives.append({
            "attributes": attributes,
            "indices": builder.accessor(faces.reshape(-1).astype(index_type), "SCALAR", _ELEMENT_ARRAY_BUFFER),
            "material": len(builder.doc["materials"]) - 1,
            "mode": 4,
        })
    builder.doc["meshes"].append({"name": asset.name, "primitives": primitives})
    builder.doc["nodes"].append({"name": asset.name, "mesh": 0})
    builder.doc["scenes"].append({"nodes": [0]})
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
    with path.open("wb") as handle:
        handle.write(struct.pack("<4sII", b"glTF", 2, total))
        handle.write(struct.pack("<I4s", len(text), b"JSON") + text)
        handle.write(struct.pack("<I4s", len(builder.blob), b"BIN\x00") + bytes(builder.blob))
    return path


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
        details={key: report.get("issues", {}).get(key) for key in ("numErrors", "numWarnings", "numInfos", "numHints")},
    )


def export_glb(asset: Asset, path: Path | str, image_format: str = "png", normal_format: str = "png") -> ExportResult:
    written = write_glb(asset, path, image_format, normal_format)
    return ExportResult(str(written), "glb", written.stat().st_size, validate_gltf(written))
