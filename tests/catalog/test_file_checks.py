"""Files are judged by their bytes: real, truncated, mislabelled, oversized and hostile inputs."""
from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from catalog.errors import CatalogErrorCode, InvalidFile
from catalog.file_checks import identify
from catalog.models import StoredFile
from catalog.storage import blob_name, store_stream
from tests.catalog.conftest import glb_bytes, image_bytes


def _identify(data: bytes, filename: str):
    return identify(io.BytesIO(data), size=len(data), filename=filename)


def _refusal(data: bytes, filename: str) -> InvalidFile:
    with pytest.raises(InvalidFile) as caught:
        _identify(data, filename)
    return caught.value


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def decompression_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side×side pixels: a few dozen kilobytes that would decode to hundreds of megapixels.

    Built chunk by chunk with a streaming compressor, so making it never holds the pixels in memory.
    """
    row = b"\x00" * (1 + side // 8)  # filter byte + packed 1-bit pixels
    compressor = zlib.compressobj(9)
    compressed = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", compressed) + _png_chunk(b"IEND", b"")


def test_a_real_glb_passes():
    kind = _identify(glb_bytes(), "box.glb")
    assert (kind.format, kind.media_type) == ("glb", "model/gltf-binary")


def test_a_truncated_glb_is_refused_with_its_sizes():
    data = glb_bytes()
    error = _refusal(data[:-100], "box.glb")
    assert error.detail == f"The GLB header says {len(data)} bytes but the file has {len(data) - 100}: it is truncated or padded."
    assert (error.code, error.status_code) == (CatalogErrorCode.CORRUPT_FILE, 400)


def test_a_glb_whose_buffer_view_runs_past_its_binary_chunk_is_refused():
    data = glb_bytes()
    json_length = struct.unpack_from("<I", data, 12)[0]
    document = json.loads(data[20:20 + json_length])
    document["bufferViews"][0]["byteLength"] += 10_000
    text = json.dumps(document).encode()
    text += b" " * ((4 - len(text) % 4) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + data[20 + json_length:]
    rebuilt = b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body
    error = _refusal(rebuilt, "box.glb")
    assert error.detail.startswith("bufferView 0 ends at byte ") and "but the binary chunk holds" in error.detail


def test_a_png_named_jpg_is_mislabelled():
    error = _refusal(image_bytes("PNG"), "photo.jpg")
    assert error.detail == (
        "'photo.jpg' is named as JPG but its content is PNG; rename it with the .png extension or upload the right file."
    )
    assert error.code == CatalogErrorCode.MISLABELLED_FILE


def test_an_unknown_format_is_unsupported():
    error = _refusal(b"MZ\x90\x00 this is an executable", "model.glb")
    assert error.detail == (
        "'model.glb' is not a file type the catalog accepts (GLB, glTF, USDZ, FBX, OBJ, PLY, PNG, JPEG, KTX2)."
    )
    assert error.code == CatalogErrorCode.UNSUPPORTED_FILE


def test_a_corrupt_jpeg_is_refused():
    data = image_bytes("JPEG", size=(64, 64))
    error = _refusal(data[: len(data) // 2], "photo.jpg")
    assert error.detail.startswith("The image is corrupt or truncated: ")
    assert error.code == CatalogErrorCode.CORRUPT_FILE


def test_a_decompression_bomb_is_refused_before_it_is_decoded():
    data = decompression_bomb()
    assert len(data) < 200_000
    error = _refusal(data, "texture.png")
    assert error.detail.startswith("The image is a decompression bomb: ")
    assert (error.code, error.status_code) == (CatalogErrorCode.FILE_TOO_LARGE, 413)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_an_image_above_the_pixel_limit_is_refused(settings):
    settings.ASSAY_MAX_IMAGE_PIXELS = 1000
    error = _refusal(image_bytes("PNG", size=(40, 40)), "texture.png")
    assert error.detail == "The image is 40×40 pixels, above the limit of 1000."


@pytest.mark.django_db
def test_an_oversized_upload_is_refused_while_streaming_and_nothing_is_stored(settings):
    with pytest.raises(InvalidFile) as caught:
        store_stream(io.BytesIO(glb_bytes()), filename="box.glb", max_bytes=100)
    assert caught.value.detail == "The file is larger than the limit of 100 bytes."
    assert caught.value.status_code == 413
    assert not StoredFile.objects.exists()
    assert not (settings.MEDIA_ROOT / "blobs").exists()


@pytest.mark.django_db
def test_an_empty_upload_is_refused():
    with pytest.raises(InvalidFile, match="^The file is empty.$"):
        store_stream(io.BytesIO(b""), filename="box.glb")


@pytest.mark.django_db
def test_a_stored_blob_lives_under_its_sha256(settings):
    data = glb_bytes()
    blob, kind = store_stream(io.BytesIO(data), filename="box.glb")
    assert blob.storage_name == blob_name(blob.sha256) == f"blobs/{blob.sha256[:2]}/{blob.sha256[2:4]}/{blob.sha256}"
    assert (settings.MEDIA_ROOT / blob.storage_name).read_bytes() == data


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.sampled_from([b"", b"glTF", b"glTF\x02\x00\x00\x00", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"PK\x03\x04", b"{"]),
    body=st.binary(max_size=300),
    name=st.sampled_from(["a.glb", "a.gltf", "a.png", "a.jpg", "a.usdz", "a.obj", "a"]),
)
def test_arbitrary_bytes_are_either_accepted_or_refused_with_a_sentence(prefix, body, name):
    data = prefix + body
    try:
        kind = _identify(data, name)
    except InvalidFile as error:
        assert error.detail.endswith((".", ")")) and error.status_code in (400, 413)
    else:
        assert kind.media_type
