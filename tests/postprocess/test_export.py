"""Every exporter's file passes its outside validator: glTF-Validator, ARKit ComplianceChecker, assimp re-import."""
import json
import zipfile

import numpy as np
import pytest
from pxr import Usd, UsdGeom

from reconstruction.engine.postprocess import decimate, uv
from reconstruction.engine.postprocess.asset import Texture
from reconstruction.engine.postprocess.errors import PostprocessError
from reconstruction.engine.postprocess.export import (
    compress_glb,
    export_fbx,
    export_glb,
    export_glb_lods,
    export_obj,
    export_ply,
    export_usdz,
)
from reconstruction.engine.postprocess.export.compress import check_decodes
from reconstruction.engine.postprocess.export.gltf import encode_image, forget_encoded_images, validate_gltf, write_glb
from reconstruction.engine.postprocess.load import load_asset

from .meshes import SPOT, sphere, two_colour_plane


@pytest.fixture(scope="module")
def spot():
    asset, _ = load_asset(SPOT)
    return asset


def test_glb_has_zero_validator_errors_and_round_trips(spot, tmp_path):
    result = export_glb(spot, tmp_path / "spot.glb", image_format="jpeg")
    verdict = result.verdict
    assert verdict.tool == "Khronos glTF-Validator" and verdict.version == "2.0.0-dev.3.10"
    assert verdict.errors == [] and verdict.passed
    assert result.to_dict()["validation"]["details"]["numErrors"] == 0
    back, report = load_asset(tmp_path / "spot.glb")
    assert back.triangle_count == spot.triangle_count
    assert np.allclose(back.bounds, spot.bounds, atol=1e-6)
    assert "base_color" in back.materials[0].textures
    document = json.loads((tmp_path / "spot.glb").read_bytes()[20:20 + int.from_bytes((tmp_path / "spot.glb").read_bytes()[12:16], "little")])
    pbr = document["materials"][0]["pbrMetallicRoughness"]
    assert "baseColorTexture" in pbr and document["images"][0]["mimeType"] == "image/jpeg"


def test_glb_validator_catches_a_broken_file(tmp_path):
    path = write_glb(sphere(1), tmp_path / "sphere.glb")
    data = bytearray(path.read_bytes())
    # Claim more vertices than the buffer holds (same JSON length): a real error for the validator.
    text = data[20:20 + int.from_bytes(data[12:16], "little")].decode()
    broken = text.replace('"count":42', '"count":99', 1)
    assert broken != text
    data[20:20 + len(text)] = broken.encode()
    path.write_bytes(bytes(data))
    verdict = validate_gltf(path)
    assert not verdict.passed
    assert any(e.startswith("ACCESSOR_TOO_LONG") for e in verdict.errors), verdict.errors


def test_usdz_passes_arkit_compliance_with_units_and_up_axis(spot, tmp_path):
    result = export_usdz(spot, tmp_path / "spot.usdz", image_format="jpeg")
    assert result.verdict.errors == [] and result.verdict.passed
    assert result.verdict.version == "0.26.5" and result.verdict.details["validators"] > 20
    names = zipfile.ZipFile(tmp_path / "spot.usdz").namelist()
    assert names[0].endswith(".usdc") and any(n.endswith(".jpg") for n in names)
    stage = Usd.Stage.Open(str(tmp_path / "spot.usdz"))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    mesh = UsdGeom.Mesh(stage.GetDefaultPrim().GetChild("Geometry"))
    assert len(mesh.GetFaceVertexCountsAttr().Get()) == spot.triangle_count


def test_usdz_with_several_materials_binds_subsets(tmp_path):
    plane = two_colour_plane()
    second = plane.materials[0].replace(name="second", textures={})
    face_materials = (np.arange(plane.triangle_count) % 2).astype(np.int32)
    asset = plane.replace(materials=(plane.materials[0], second), face_materials=face_materials)
    result = export_usdz(asset, tmp_path / "two.usdz")
    assert result.verdict.errors == []


def test_fbx_from_blender_is_binary_and_reimports_in_blender_and_assimp(spot, tmp_path):
    result = export_fbx(spot, tmp_path / "spot.fbx", image_format="jpeg", writer="blender")
    details = result.verdict.details
    assert result.verdict.tool == "Blender FBX importer (re-import)" and result.verdict.errors == []
    assert (tmp_path / "spot.fbx").read_bytes().startswith(b"Kaydara FBX Binary")
    assert details["blender"]["triangles"] == spot.triangle_count and details["blender"]["materials"] == 1
    assert details["assimp"]["triangles"] == spot.triangle_count


def test_fbx_from_assimp_falls_back_to_ascii_that_reimports(spot, tmp_path):
    result = export_fbx(spot, tmp_path / "fbx" / "spot.fbx", image_format="jpeg", writer="assimp")
    details = result.verdict.details
    assert result.verdict.errors == []
    assert details["triangles_written"] == spot.triangle_count
    chosen = details["attempts"]["fbx" if details["encoding"] == "binary" else "fbxa"]
    assert chosen["triangles"] == spot.triangle_count and chosen["materials"] == 1
    assert (tmp_path / "fbx" / "spot_0_base_color.jpg").is_file()
    if details["encoding"] == "ascii":
        assert result.verdict.warnings[0].startswith("binary FBX did not re-import in assimp")
        assert (tmp_path / "fbx" / "spot.fbx").read_bytes().startswith(b"; FBX 7.5.0 project file")


@pytest.mark.parametrize("writer", ["blender", "assimp"])
def test_fbx_keeps_every_material(tmp_path, writer):
    plane = two_colour_plane()
    second = plane.materials[0].replace(name="second", textures={})
    asset = plane.replace(materials=(plane.materials[0], second),
                          face_materials=(np.arange(plane.triangle_count) % 2).astype(np.int32))
    result = export_fbx(asset, tmp_path / "two.fbx", writer=writer)
    assert result.verdict.errors == []
    assert result.verdict.details["materials_written"] == 2


def test_obj_and_ply_archive_read_back(spot, tmp_path):
    obj = export_obj(spot, tmp_path / "spot.obj")
    assert obj.verdict.passed and obj.verdict.details["triangles"] == spot.triangle_count
    assert "map_Kd spot_0_base_color.png" in (tmp_path / "spot.mtl").read_text()
    ply = export_ply(spot, tmp_path / "spot.ply")
    assert ply.verdict.passed and (tmp_path / "spot.ply").read_bytes().startswith(b"ply\nformat binary_little_endian")


def test_unwrapped_mesh_without_texture_exports_everywhere(tmp_path):
    asset, _ = uv.unwrap(sphere(2), uv.UnwrapOptions(texture_size=64))
    for exporter, name in ((export_glb, "s.glb"), (export_usdz, "s.usdz"), (export_fbx, "s.fbx")):
        assert exporter(asset, tmp_path / name).verdict.errors == []


def _glb_json(path):
    data = path.read_bytes()
    return json.loads(data[20:20 + int.from_bytes(data[12:16], "little")])


def test_lod_chain_is_one_glb_with_msft_lod_on_lod0(tmp_path):
    plane = two_colour_plane()
    coarse, _ = decimate.decimate(plane, 32)
    result = export_glb_lods([plane, coarse], tmp_path / "plane_lods.glb", [0.5, 0.1])
    assert result.verdict.errors == [] and result.verdict.warnings == []
    # The validator does not know MSFT_lod: it says so as an info, not an error.
    assert any(line.startswith("UNSUPPORTED_EXTENSION") and "MSFT_lod" in line for line in result.verdict.details["infos"])
    document = _glb_json(tmp_path / "plane_lods.glb")
    assert document["extensionsUsed"] == ["MSFT_lod"] and "extensionsRequired" not in document
    assert document["scenes"][0]["nodes"] == [0]
    root = document["nodes"][0]
    assert root["extensions"]["MSFT_lod"]["ids"] == [1]
    assert root["extras"]["MSFT_screencoverage"] == [0.5, 0.1]
    assert [document["nodes"][i]["mesh"] for i in (0, 1)] == [0, 1]
    # Both levels use the same material and texture, written once.
    assert len(document["images"]) == 1 and len(document["materials"]) == 1
    back, _ = load_asset(tmp_path / "plane_lods.glb")  # a reader without MSFT_lod sees LOD0
    assert back.triangle_count == plane.triangle_count


def test_lod_chain_needs_one_coverage_per_level(tmp_path):
    with pytest.raises(PostprocessError, match="^2 levels but 1 screen coverage values$"):
        export_glb_lods([sphere(1), sphere(0)], tmp_path / "s.glb", [0.5])


def test_meshopt_copy_is_smaller_valid_and_keeps_the_original(spot, tmp_path):
    plain = export_glb(spot, tmp_path / "spot.glb", image_format="jpeg")
    packed = compress_glb(tmp_path / "spot.glb", "meshopt")
    assert packed.path == str(tmp_path / "spot.meshopt.glb") and (tmp_path / "spot.glb").stat().st_size == plain.bytes
    assert packed.verdict.errors == [] and packed.verdict.details["source_bytes"] == plain.bytes
    document = _glb_json(tmp_path / "spot.meshopt.glb")
    assert "EXT_meshopt_compression" in document["extensionsUsed"]
    assert "EXT_meshopt_compression" in document["extensionsRequired"]
    # Geometry shrinks; the JPEG texture is carried over byte for byte.
    assert packed.bytes < plain.bytes - 50_000
    with pytest.raises(PostprocessError, match="^unknown compression 'draco'; supported: meshopt$"):
        compress_glb(tmp_path / "spot.glb", "draco")


def test_encoded_textures_are_reused_across_exports(spot):
    texture = spot.materials[0].texture("base_color")
    first, mime = encode_image(texture, "png")
    again, _ = encode_image(texture, "png")
    assert again is first and mime == "image/png"
    jpeg, jpeg_mime = encode_image(texture, "jpeg")
    assert jpeg_mime == "image/jpeg" and jpeg is not first
    copy = Texture(image=texture.image.copy())
    assert encode_image(copy, "png")[0] is not first and encode_image(copy, "png")[0] == first
    forget_encoded_images()
    assert encode_image(texture, "png")[0] is not first


def test_meshopt_check_decodes_every_view_and_catches_a_broken_one(spot, tmp_path):
    export_glb(spot, tmp_path / "spot.glb", image_format="jpeg")
    packed = compress_glb(tmp_path / "spot.glb", "meshopt")
    assert packed.verdict.details["decoded"] == {"views": 4, "triangles": spot.triangle_count}
    document = _glb_json(tmp_path / "spot.meshopt.glb")
    index_view = next(i for i, view in enumerate(document["bufferViews"])
                      if view.get("extensions", {}).get("EXT_meshopt_compression", {}).get("mode") == "TRIANGLES")
    data = bytearray((tmp_path / "spot.meshopt.glb").read_bytes())
    json_length = int.from_bytes(data[12:16], "little")
    offset = 28 + json_length + document["bufferViews"][index_view]["extensions"]["EXT_meshopt_compression"]["byteOffset"]
    data[offset] = 0x00  # the index codec's header byte: no such version
    (tmp_path / "broken.glb").write_bytes(bytes(data))
    errors, counts = check_decodes(tmp_path / "broken.glb", expected_triangles=spot.triangle_count)
    assert errors == [f"bufferView {index_view} (TRIANGLES): meshopt decoder returned -1"]
    assert counts["views"] == 3
