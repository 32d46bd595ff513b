"""What a file really is, judged by its bytes (magic numbers and a structural parse), never by its name.

Each check reads from a seekable file and raises `InvalidFile` with a sentence saying what to fix.
"""
from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from PIL import Image, UnidentifiedImageError

from catalog.errors import CatalogErrorCode, InvalidFile

MEDIA_TYPES = {
    "glb": "model/gltf-binary",
    "gltf": "model/gltf+json",
    "usdz": "model/vnd.usdz+zip",
    "fbx": "application/octet-stream",
    "obj": "model/obj",
    "ply": "application/ply",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "ktx2": "image/ktx2",
    "zip": "application/zip",
}
EXTENSIONS = {"glb": "glb", "gltf": "gltf", "usdz": "usdz", "fbx": "fbx", "obj": "obj", "ply": "ply", "png": "png",
              "jpg": "jpeg", "jpeg": "jpeg", "ktx2": "ktx2", "zip": "zip"}
IMAGE_FORMATS = {"png", "jpeg"}


@dataclass(frozen=True)
class FileKind:
    format: str
    media_type: str
    width: int | None = None
    height: int | None = None


def sniff(head: bytes) -> str | None:
    """The format the first bytes announce, or None when nothing we accept starts like this."""
    if head.startswith(b"glTF"):
        return "glb"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\xabKTX 20\xbb\r\n\x1a\n"):
        return "ktx2"
    if head.startswith(b"Kaydara FBX Binary"):
        return "fbx"
    if head.startswith(b"PK\x03\x04"):
        return "zip"  # a USDZ is a zip too; told apart by its first entry
    if head.startswith(b"ply\n") or head.startswith(b"ply\r\n"):
        return "ply"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"; FBX"):
        return "fbx"
    if text.startswith(b"{"):
        return "gltf"
    if text[:1] in (b"#", b"v", b"o", b"g", b"m", b"f") and _looks_like_obj(text):
        return "obj"
    return None


def _looks_like_obj(text: bytes) -> bool:
    try:
        lines = text.decode("ascii").splitlines()[:-1] or text.decode("ascii").splitlines()
    except UnicodeDecodeError:
        return False
    keywords = {"#", "v", "vt", "vn", "vp", "f", "o", "g", "s", "mtllib", "usemtl", "l", ""}
    return any(line.startswith("v ") for line in lines) and all(line.split(" ", 1)[0] in keywords for line in lines if line)


def _check_glb(stream: IO[bytes], size: int) -> None:
    stream.seek(0)
    header = stream.read(12)
    if len(header) < 12:
        raise InvalidFile("The GLB is truncated: its 12-byte header is incomplete.", code=CatalogErrorCode.CORRUPT_FILE)
    magic, version, length = struct.unpack("<4sII", header)
    if version != 2:
        raise InvalidFile(f"GLB version {version} is not supported; export glTF 2.0.", code=CatalogErrorCode.CORRUPT_FILE)
    if length != size:
        raise InvalidFile(
            f"The GLB header says {length} bytes but the file has {size}: it is truncated or padded.",
            code=CatalogErrorCode.CORRUPT_FILE,
        )
    chunk_header = stream.read(8)
    if len(chunk_header) < 8:
        raise InvalidFile("The GLB has no JSON chunk.", code=CatalogErrorCode.CORRUPT_FILE)
    json_length, json_type = struct.unpack("<II", chunk_header)
    if json_type != 0x4E4F534A or json_length > size - 20:
        raise InvalidFile("The GLB's first chunk is not a valid JSON chunk.", code=CatalogErrorCode.CORRUPT_FILE)
    try:
        document = json.loads(stream.read(json_length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidFile(f"The GLB's JSON chunk does not parse: {exc}.", code=CatalogErrorCode.CORRUPT_FILE) from exc
    _check_gltf_document(document)
    bin_length = 0
    if stream.tell() + 8 <= size:
        bin_length, bin_type = struct.unpack("<II", stream.read(8))
        if bin_type != 0x004E4942 or stream.tell() + bin_length > size:
            raise InvalidFile("The GLB's binary chunk is damaged or runs past the end of the file.", code=CatalogErrorCode.CORRUPT_FILE)
    for i, view in enumerate(document.get("bufferViews", [])):
        if view.get("buffer", 0) == 0 and "uri" not in (document.get("buffers") or [{}])[0]:
            end = int(view.get("byteOffset", 0)) + int(view.get("byteLength", 0))
            if end > bin_length:
                raise InvalidFile(
                    f"bufferView {i} ends at byte {end} but the binary chunk holds {bin_length}.",
                    code=CatalogErrorCode.CORRUPT_FILE,
                )


def _check_gltf_document(document: object) -> None:
    if not isinstance(document, dict) or not isinstance(document.get("asset"), dict):
        raise InvalidFile("The glTF JSON has no 'asset' object.", code=CatalogErrorCode.CORRUPT_FILE)
    version = str(document["asset"].get("version", ""))
    if not version.startswith("2."):
        raise InvalidFile(f"glTF version '{version}' is not supported; export glTF 2.0.", code=CatalogErrorCode.CORRUPT_FILE)
    for key in ("meshes", "accessors", "bufferViews", "buffers", "nodes", "images", "textures", "materials"):
        if key in document and not isinstance(document[key], list):
            raise InvalidFile(f"The glTF property '{key}' must be a list.", code=CatalogErrorCode.CORRUPT_FILE)


def _check_gltf(stream: IO[bytes]) -> None:
    stream.seek(0)
    try:
        document = json.load(stream)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidFile(f"The glTF JSON does not parse: {exc}.", code=CatalogErrorCode.CORRUPT_FILE) from exc
    _check_gltf_document(document)


def _check_image(stream: IO[bytes]) -> tuple[int, int]:
    stream.seek(0)
    Image.MAX_IMAGE_PIXELS = settings.ASSAY_MAX_IMAGE_PIXELS
    try:
        with Image.open(stream) as image:
            width, height = image.size
            if width * height > settings.ASSAY_MAX_IMAGE_PIXELS:
                raise InvalidFile(
                    f"The image is {width}×{height} pixels, above the limit of {settings.ASSAY_MAX_IMAGE_PIXELS}.",
                    code=CatalogErrorCode.FILE_TOO_LARGE,
                )
            image.load()  # decodes every pixel: catches truncated data that verify() lets pass
    except Image.DecompressionBombError as exc:
        raise InvalidFile(f"The image is a decompression bomb: {exc}", code=CatalogErrorCode.FILE_TOO_LARGE) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidFile(f"The image is corrupt or truncated: {exc}.", code=CatalogErrorCode.CORRUPT_FILE) from exc
    return width, height


def _check_zip(stream: IO[bytes]) -> str:
    stream.seek(0)
    try:
        with zipfile.ZipFile(stream) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as exc:
        raise InvalidFile(f"The archive is corrupt: {exc}.", code=CatalogErrorCode.CORRUPT_FILE) from exc
    if names and names[0].lower().endswith((".usd", ".usda", ".usdc")):
        return "usdz"
    return "zip"


def identify(stream: IO[bytes], *, size: int, filename: str) -> FileKind:
    """Sniff, parse-check and describe a file; refuses a name whose extension disagrees with the bytes."""
    stream.seek(0)
    detected = sniff(stream.read(64))
    if detected is None:
        raise InvalidFile(
            f"'{filename}' is not a file type the catalog accepts (GLB, glTF, USDZ, FBX, OBJ, PLY, PNG, JPEG, KTX2).",
            code=CatalogErrorCode.UNSUPPORTED_FILE,
        )
    width = height = None
    if detected == "glb":
        _check_glb(stream, size)
    elif detected == "gltf":
        _check_gltf(stream)
    elif detected in IMAGE_FORMATS:
        width, height = _check_image(stream)
    elif detected == "zip":
        detected = _check_zip(stream)
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    claimed = EXTENSIONS.get(extension)
    if claimed is None or claimed != detected:
        raise InvalidFile(
            f"'{filename}' is named as {extension.upper() or 'no type'} but its content is {detected.upper()}; "
            f"rename it with the .{'jpg' if detected == 'jpeg' else detected} extension or upload the right file.",
            code=CatalogErrorCode.MISLABELLED_FILE,
        )
    stream.seek(0)
    return FileKind(format=detected, media_type=MEDIA_TYPES[detected], width=width, height=height)
