import numpy as np
import pytest

from reconstruction.engine.postprocess.errors import BadInput
from reconstruction.engine.postprocess.load import count_triangles, load_asset

from .meshes import SPOT

QUAD_OBJ = "mtllib quad.mtl\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nusemtl m\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n"


def test_spot_loads_with_uvs_and_texture():
    asset, report = load_asset(SPOT)
    assert asset.triangle_count == 5856
    assert asset.uvs is not None and asset.uvs.shape == (asset.vertex_count, 2)
    assert "base_color" in asset.materials[0].textures
    assert report["warnings"] == []
    assert report["declared_triangles"] == 5856


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(BadInput, match=r"^nothing\.glb: file not found$"):
        load_asset(tmp_path / "nothing.glb")
    (tmp_path / "empty.obj").write_bytes(b"")
    with pytest.raises(BadInput, match=r"^empty\.obj: file is empty$"):
        load_asset(tmp_path / "empty.obj")


def test_mesh_without_triangles_is_refused(tmp_path):
    (tmp_path / "points.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(BadInput, match="mesh is empty: it has no triangles"):
        load_asset(tmp_path / "points.obj")


def test_nan_vertices_are_refused(tmp_path):
    (tmp_path / "nan.obj").write_text("v 0 0 0\nv nan 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 3\nf 1 3 4\n")
    with pytest.raises(BadInput, match=r"^nan\.obj: 1 vertices have NaN or infinite coordinates$"):
        load_asset(tmp_path / "nan.obj")


def test_huge_file_is_refused_from_its_header_before_loading(tmp_path):
    # The header declares 40 million faces but no data follows: only the header may have been read.
    header = "ply\nformat binary_little_endian 1.0\nelement vertex 20000000\nproperty float x\nproperty float y\n" \
             "property float z\nelement face 40000000\nproperty list uchar int vertex_indices\nend_header\n"
    (tmp_path / "huge.ply").write_bytes(header.encode())
    assert count_triangles(tmp_path / "huge.ply") == 40_000_000
    with pytest.raises(BadInput, match=r"huge\.ply: 40,000,000 triangles, above the limit of 5,000,000 triangles"):
        load_asset(tmp_path / "huge.ply")


def test_limit_is_configurable():
    with pytest.raises(BadInput, match="above the limit of 1,000 triangles"):
        load_asset(SPOT, max_triangles=1000)


def test_not_a_glb(tmp_path):
    (tmp_path / "bad.glb").write_bytes(b"PK\x03\x04 not a glb at all")
    with pytest.raises(BadInput, match=r"^bad\.glb: not a GLB file \(bad magic\)$"):
        load_asset(tmp_path / "bad.glb")


def test_unsupported_format(tmp_path):
    (tmp_path / "model.blend").write_bytes(b"BLENDER")
    with pytest.raises(BadInput, match=r"unsupported format '\.blend'"):
        load_asset(tmp_path / "model.blend")


@pytest.mark.parametrize("texture", ["missing", "corrupt"])
def test_missing_or_corrupt_texture_is_reported_and_factor_used(tmp_path, texture):
    (tmp_path / "quad.obj").write_text(QUAD_OBJ)
    (tmp_path / "quad.mtl").write_text("newmtl m\nKd 1 1 1\nmap_Kd tex.png\n")
    if texture == "corrupt":
        (tmp_path / "tex.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    asset, report = load_asset(tmp_path / "quad.obj")
    assert asset.materials[0].textures == {}
    assert report["warnings"] == [
        "quad.obj: base_color texture(s) declared but missing or corrupt; the material's factors are used instead"
    ]
    with pytest.raises(BadInput, match=r"^quad\.obj: base_color texture\(s\) declared but missing or corrupt$"):
        load_asset(tmp_path / "quad.obj", require_textures=True)


def test_corrupt_texture_inside_a_glb(tmp_path):
    with open(SPOT, "rb") as handle:
        data = bytearray(handle.read())
    start = data.find(b"\x89PNG")
    data[start + 16 : start + 2000] = b"\x00" * 1984
    (tmp_path / "spot.glb").write_bytes(bytes(data))
    asset, report = load_asset(tmp_path / "spot.glb")
    assert asset.triangle_count == 5856
    assert report["warnings"] == [
        "spot.glb: base_color texture(s) declared but missing or corrupt; the material's factors are used instead"
    ]


def test_nan_uvs_are_dropped_with_a_warning(tmp_path):
    (tmp_path / "quad.obj").write_text(QUAD_OBJ.replace("vt 1 1", "vt nan 1").replace("mtllib quad.mtl\n", ""))
    asset, report = load_asset(tmp_path / "quad.obj")
    assert asset.uvs is None
    assert "UVs contain NaN or infinite values; they are ignored and the mesh is unwrapped anew" in report["warnings"]
    assert np.isfinite(asset.positions).all()
