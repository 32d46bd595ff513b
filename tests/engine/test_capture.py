import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reconstruction.engine.cameras import camera_looking_at, intrinsics, write_colmap_text
from reconstruction.engine.capture import Capture, check_capture_fits
from reconstruction.engine.errors import InvalidCapture
from reconstruction.engine.protocol import MULTI_VIEW, Capabilities
from tests.shared_data import SCEAUX_CASTLE

SCEAUX = SCEAUX_CASTLE


def write_image(path: Path, size=(32, 24), value=128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)
    return path


def cameras_for(names, size=(32, 24)):
    K = intrinsics(30, 30, size[0] / 2, size[1] / 2)
    return [
        camera_looking_at(n, size[0], size[1], K, [np.sin(i), 0.2, np.cos(i)], [0, 0, 0]) for i, n in enumerate(names)
    ]


def rendered_layout(root: Path, names=("a.png", "b.png", "c.png")) -> Path:
    (root / "masks").mkdir(parents=True)
    for name in names:
        write_image(root / "images" / name)
        Image.fromarray(np.zeros((24, 32), dtype=np.uint8)).save(root / "masks" / (Path(name).stem + ".png"))
    write_colmap_text(root / "sparse", cameras_for(names))
    (root / "capture.json").write_text(json.dumps({"units": "metres", "scale": 1.0}))
    return root


def test_loads_a_rendered_layout_with_cameras_aligned_to_images(tmp_path):
    root = rendered_layout(tmp_path / "cap", names=("c.png", "a.png", "b.png"))
    capture = Capture.load(root)
    assert [p.name for p in capture.images] == ["a.png", "b.png", "c.png"]
    assert [c.image_name for c in capture.cameras] == ["a.png", "b.png", "c.png"]
    assert [p.name for p in capture.masks] == ["a.png", "b.png", "c.png"]
    assert capture.metadata["units"] == "metres"
    assert capture.num_views == 3
    assert capture.load_image(0).shape == (24, 32, 3)
    assert capture.load_mask(0).shape == (24, 32)


def test_loads_a_plain_photo_folder_with_k_txt():
    capture = Capture.load(SCEAUX)
    assert capture.num_views == 11
    assert capture.cameras is None and capture.masks is None
    K = capture.intrinsics
    assert K.shape == (3, 3) and K[0, 0] > 0
    assert capture.metadata["image_sizes"] == ["1600×1202"]  # the data README says 1203; the files are 1202 rows high


def test_plain_folder_without_anything_else(tmp_path):
    write_image(tmp_path / "one.jpg")
    write_image(tmp_path / "two.PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    capture = Capture.load(tmp_path)
    assert [p.name for p in capture.images] == ["one.jpg", "two.PNG"]
    assert capture.intrinsics is None


def test_no_images(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(InvalidCapture, match="No JPEG or PNG images in"):
        Capture.load(tmp_path)


def test_not_a_folder(tmp_path):
    with pytest.raises(InvalidCapture, match="is not a folder"):
        Capture.load(tmp_path / "missing")


def test_truncated_image_is_named(tmp_path):
    good = write_image(tmp_path / "good.png")
    data = good.read_bytes()
    (tmp_path / "broken.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidCapture, match="Image broken.png cannot be read"):
        Capture.load(tmp_path)


def test_text_pretending_to_be_jpeg(tmp_path):
    (tmp_path / "photo.jpg").write_text("hello")
    with pytest.raises(InvalidCapture, match="Image photo.jpg cannot be read"):
        Capture.load(tmp_path)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    write_image(tmp_path / "big.png", size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 3)  # anything over twice the limit is a bomb
    with pytest.raises(InvalidCapture, match="Image big.png is too large to decode safely"):
        Capture.load(tmp_path)


def test_cameras_naming_missing_images(tmp_path):
    root = rendered_layout(tmp_path / "cap")
    write_colmap_text(root / "sparse", cameras_for(["a.png", "b.png", "c.png", "ghost.png"]))
    with pytest.raises(InvalidCapture, match="The cameras name 1 image\\(s\\) that are not in the capture: ghost.png"):
        Capture.load(root)


def test_image_without_camera(tmp_path):
    root = rendered_layout(tmp_path / "cap")
    write_colmap_text(root / "sparse", cameras_for(["a.png", "b.png"]))
    with pytest.raises(InvalidCapture, match="1 image\\(s\\) have no camera: c.png"):
        Capture.load(root)


def test_image_size_must_match_its_camera(tmp_path):
    root = rendered_layout(tmp_path / "cap")
    write_image(root / "images" / "b.png", size=(64, 48))
    Image.fromarray(np.zeros((48, 64), dtype=np.uint8)).save(root / "masks" / "b.png")
    with pytest.raises(InvalidCapture, match="Image b.png is 64×48 but its camera is 32×24."):
        Capture.load(root)


def test_mask_size_must_match_its_image(tmp_path):
    root = rendered_layout(tmp_path / "cap")
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(root / "masks" / "b.png")
    with pytest.raises(InvalidCapture, match="Mask b.png is 10×10 but image b.png is 32×24."):
        Capture.load(root)


def test_missing_mask_is_named(tmp_path):
    root = rendered_layout(tmp_path / "cap")
    (root / "masks" / "c.png").unlink()
    with pytest.raises(InvalidCapture, match="masks/ has no mask for 1 image\\(s\\): c.png"):
        Capture.load(root)


def test_k_txt_with_mixed_sizes(tmp_path):
    write_image(tmp_path / "a.png", size=(32, 24))
    write_image(tmp_path / "b.png", size=(24, 32))
    (tmp_path / "K.txt").write_text("30 0 16\n0 30 12\n0 0 1\n")
    with pytest.raises(InvalidCapture, match="K.txt gives one set of intrinsics but the images have different sizes"):
        Capture.load(tmp_path)


@pytest.mark.parametrize("content", ["1 2 3\n", "0 0 1\n0 1 1\n0 0 1\n", "a b c\n"])
def test_bad_k_txt(tmp_path, content):
    write_image(tmp_path / "a.png")
    (tmp_path / "K.txt").write_text(content)
    with pytest.raises(InvalidCapture, match="K.txt"):
        Capture.load(tmp_path)


def test_bad_manifest(tmp_path):
    root = rendered_layout(tmp_path / "cap")
    (root / "capture.json").write_text("{not json")
    with pytest.raises(InvalidCapture, match="capture.json is not valid JSON"):
        Capture.load(root)


def test_sparse_zero_subfolder_as_colmap_writes_it(tmp_path):
    root = rendered_layout(tmp_path / "cap")
    shutil.move(root / "sparse", tmp_path / "model")
    (root / "sparse").mkdir()
    shutil.move(tmp_path / "model", root / "sparse" / "0")
    assert Capture.load(root).cameras is not None


def test_capture_fits_backend_capabilities(tmp_path):
    root = rendered_layout(tmp_path / "cap")
    capture = Capture.load(root)
    check_capture_fits(
        Capabilities(inputs=frozenset({MULTI_VIEW}), min_views=3, needs_known_cameras=True), capture, "x"
    )
    with pytest.raises(InvalidCapture, match="^x needs at least 4 views, the capture has 3.$"):
        check_capture_fits(Capabilities(inputs=frozenset({MULTI_VIEW}), min_views=4), capture, "x")
    with pytest.raises(InvalidCapture, match="^x takes at most 1 views, the capture has 3.$"):
        check_capture_fits(Capabilities(inputs=frozenset({MULTI_VIEW}), max_views=1), capture, "x")
    capture.cameras = None
    with pytest.raises(InvalidCapture, match="x needs calibrated cameras"):
        check_capture_fits(Capabilities(inputs=frozenset({MULTI_VIEW}), needs_known_cameras=True), capture, "x")
