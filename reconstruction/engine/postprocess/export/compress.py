"""Geometry compression of a written GLB by gltfpack (npm `gltfpack`, the meshoptimizer project's packer).

`meshopt`: EXT_meshopt_compression at gltfpack's highest level (`-cc`) with KHR_mesh_quantization; names,
materials and extras are kept (`-kn -km -ke`) and textures are copied as they are. The compressed file is
written beside the uncompressed one, which stays the deliverable for viewers without the extension.
"""
from __future__ import annotations

import dataclasses
import json
import struct
import subprocess
from pathlib import Path

import numpy as np

from .. import meshopt
from ..errors import PostprocessError
from . import tools
from .gltf import validate_gltf
from .verdict import ExportResult

METHODS = ("meshopt",)


def compressed_path(source: Path | str, method: str) -> Path:
    source = Path(source)
    return source.with_name(f"{source.stem}.{method}{source.suffix}")


def compress_glb(source: Path | str, method: str = "meshopt", timeout_s: float = 600.0) -> ExportResult:
    """Write `<stem>.<method>.glb` beside `source`; checked by glTF-Validator and by decoding every compressed view."""
    if method not in METHODS:
        raise PostprocessError(f"unknown compression '{method}'; supported: {', '.join(METHODS)}")
    source = Path(source)
    target = compressed_path(source, method)
    partial = target.with_name(f".{target.name}.partial.glb")
    cli = tools.node_package("gltfpack") / "cli.js"
    completed = subprocess.run(
        [tools.node(), str(cli), "-i", str(source), "-o", str(partial), "-cc", "-kn", "-km", "-ke"],
        capture_output=True, text=True, timeout=timeout_s,
    )
    if completed.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise PostprocessError(f"gltfpack could not compress {source.name}: {(completed.stderr or completed.stdout).strip()[-400:]}")
    partial.replace(target)
    # glTF-Validator cannot look inside EXT_meshopt_compression, so every compressed view is also decoded here
    # and the decoded triangles are checked against the uncompressed file.
    verdict = validate_gltf(target)
    decode_errors, decoded = check_decodes(target, expected_triangles=_triangles(source))
    details = {**verdict.details, "method": method, "source_bytes": source.stat().st_size,
               "gltfpack": _gltfpack_version(cli), "decoded": decoded}
    return ExportResult(str(target), "glb", target.stat().st_size,
                        dataclasses.replace(verdict, tool=f"{verdict.tool} + meshoptimizer decoder",
                                            errors=[*verdict.errors, *decode_errors], details=details))


def _glb_parts(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    length = struct.unpack_from("<I", data, 12)[0]
    document = json.loads(data[20:20 + length])
    binary = b""
    if len(data) > 20 + length + 8:
        binary_length = struct.unpack_from("<I", data, 20 + length)[0]
        binary = data[28 + length:28 + length + binary_length]
    return document, binary


def _triangles(path: Path) -> int:
    document, _ = _glb_parts(path)
    return sum(document["accessors"][p["indices"]]["count"] // 3
               for mesh in document.get("meshes", []) for p in mesh["primitives"] if "indices" in p)


def check_decodes(path: Path | str, expected_triangles: int | None = None) -> tuple[list[str], dict[str, int]]:
    """Decode every EXT_meshopt_compression view of a GLB (its BIN chunk): (errors, counts). Index views must
    decode to in-range indices, and the triangle total must match `expected_triangles` when given."""
    document, binary = _glb_parts(Path(path))
    errors: list[str] = []
    decoded: dict[int, bytes] = {}
    for index, view in enumerate(document.get("bufferViews", [])):
        ext = view.get("extensions", {}).get("EXT_meshopt_compression")
        if ext is None:
            continue
        if ext.get("buffer", 0) != 0:
            errors.append(f"bufferView {index}: compressed data outside the GLB's BIN chunk is not checked")
            continue
        chunk = binary[ext.get("byteOffset", 0):ext.get("byteOffset", 0) + ext["byteLength"]]
        try:
            decoded[index] = meshopt.decode(ext["mode"], int(ext["count"]), int(ext["byteStride"]), chunk)
        except ValueError as exc:
            errors.append(f"bufferView {index} ({ext['mode']}): {exc}")
    triangles = 0
    for mesh in document.get("meshes", []):
        for primitive in mesh["primitives"]:
            if "indices" not in primitive:
                continue
            accessor = document["accessors"][primitive["indices"]]
            triangles += accessor["count"] // 3
            vertices = document["accessors"][primitive["attributes"]["POSITION"]]["count"]
            view = accessor.get("bufferView")
            if view not in decoded:
                continue
            dtype = {5121: np.uint8, 5123: np.uint16, 5125: np.uint32}[accessor["componentType"]]
            indices = np.frombuffer(decoded[view], dtype=dtype, count=accessor["count"],
                                    offset=accessor.get("byteOffset", 0))
            if len(indices) and int(indices.max()) >= vertices:
                errors.append(f"mesh '{mesh.get('name', '')}': decoded index {int(indices.max())} past {vertices} vertices")
    if expected_triangles is not None and triangles != expected_triangles:
        errors.append(f"{triangles} triangles after compression, {expected_triangles} before")
    return errors, {"views": len(decoded), "triangles": triangles}


def _gltfpack_version(cli: Path) -> str:
    completed = subprocess.run([tools.node(), str(cli), "-v"], capture_output=True, text=True, timeout=60)
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"
