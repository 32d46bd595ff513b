import numpy as np
import pytest

from reconstruction.engine.cameras import (
    Camera,
    camera_looking_at,
    intrinsics,
    look_at,
    qvec_to_rotmat,
    read_cameras_txt,
    read_colmap_text,
    read_images_txt,
    rotmat_to_qvec,
    write_colmap_text,
)
from reconstruction.engine.errors import InvalidCapture


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return qvec_to_rotmat(q / np.linalg.norm(q))


def test_quaternion_of_a_quarter_turn_about_z():
    R = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    q = rotmat_to_qvec(R)
    np.testing.assert_allclose(q, [np.sqrt(0.5), 0.0, 0.0, np.sqrt(0.5)], atol=1e-12)
    np.testing.assert_allclose(qvec_to_rotmat(q), R, atol=1e-12)


def test_quaternion_round_trip_keeps_rotation_and_positive_w():
    rng = np.random.default_rng(0)
    for _ in range(50):
        R = random_rotation(rng)
        q = rotmat_to_qvec(R)
        assert q[0] >= 0
        np.testing.assert_allclose(qvec_to_rotmat(q), R, atol=1e-10)


def test_projection_by_hand():
    camera = Camera("a.png", 640, 480, intrinsics(500, 400, 320, 240), np.eye(3), [0.0, 0.0, 2.0])
    uv, depth = camera.project(np.array([[0.2, -0.1, 0.0], [0.0, 0.0, 0.0]]))
    # x/z = 0.1, y/z = -0.05 → (500·0.1 + 320, 400·(−0.05) + 240)
    np.testing.assert_allclose(uv, [[370.0, 220.0], [320.0, 240.0]])
    np.testing.assert_allclose(depth, [2.0, 2.0])
    np.testing.assert_allclose(camera.center, [0.0, 0.0, -2.0])
    np.testing.assert_allclose(camera.projection @ [0.2, -0.1, 0.0, 1.0], [740.0, 440.0, 2.0])


def test_opencv_distortion_by_hand():
    camera = Camera("a.png", 100, 100, intrinsics(100, 100, 50, 50), distortion=(0.1, 0.0, 0.0, 0.0))
    uv, _ = camera.project(np.array([[0.5, 0.0, 1.0]]))
    # r² = 0.25 → x' = 0.5 · (1 + 0.1·0.25) = 0.5125
    np.testing.assert_allclose(uv, [[50 + 51.25, 50.0]])


def test_look_at_points_the_optical_axis_at_the_target_with_y_down():
    camera = camera_looking_at("a.png", 64, 64, intrinsics(50, 50, 32, 32), eye=[0.0, 0.0, 3.0], target=[0.0, 0.0, 0.0])
    uv, depth = camera.project(np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 0.0]]))
    np.testing.assert_allclose(uv[0], [32.0, 32.0])
    assert depth[0] == pytest.approx(3.0)
    assert uv[1, 1] < 32.0  # world up is image up (smaller v)
    np.testing.assert_allclose(camera.center, [0.0, 0.0, 3.0], atol=1e-12)
    R = look_at([0, 5, 0], [0, 0, 0])  # straight down the up axis still gives a rotation
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)


def test_pixel_rays_go_back_through_the_projected_point():
    camera = camera_looking_at("a.png", 64, 48, intrinsics(40, 42, 30, 25), eye=[1.0, 2.0, 3.0], target=[0.1, 0.0, 0.2])
    point = np.array([[0.3, -0.2, 0.1]])
    uv, depth = camera.project(point)
    ray = camera.pixel_rays(uv)[0]
    expected = (point[0] - camera.center) / np.linalg.norm(point[0] - camera.center)
    np.testing.assert_allclose(ray, expected, atol=1e-12)


def test_scaled_camera_projects_to_scaled_pixels():
    camera = camera_looking_at("a.png", 64, 48, intrinsics(40, 42, 32, 24), eye=[1.0, 2.0, 3.0], target=[0, 0, 0])
    half = camera.scaled(0.5)
    point = np.array([[0.1, 0.2, -0.1]])
    np.testing.assert_allclose(half.project(point)[0], camera.project(point)[0] * 0.5)
    assert (half.width, half.height) == (32, 24)


def test_a_camera_in_another_frame_sees_the_moved_points_at_the_same_pixels():
    camera = camera_looking_at("a.png", 64, 48, intrinsics(40, 42, 32, 24), eye=[1.0, 2.0, 3.0], target=[0, 0, 0])
    angle = 0.7
    transform = np.eye(4)
    transform[:3, :3] = 2.5 * np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    transform[:3, 3] = [0.3, -1.0, 4.0]
    points = np.array([[0.1, 0.2, -0.1], [-0.3, 0.0, 0.2]])
    moved = camera.in_frame(transform)
    uv, depth = camera.project(points)
    moved_uv, moved_depth = moved.project(points @ transform[:3, :3].T + transform[:3, 3])
    np.testing.assert_allclose(moved_uv, uv, atol=1e-9)
    np.testing.assert_allclose(moved_depth, 2.5 * depth)
    np.testing.assert_allclose(moved.R @ moved.R.T, np.eye(3), atol=1e-12)


def test_colmap_text_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    cameras = [
        Camera(
            f"img_{i}.png", 320, 240, intrinsics(300 + i, 310, 160.5, 119.5), random_rotation(rng), rng.normal(size=3)
        )
        for i in range(5)
    ]
    cameras.append(
        Camera("distorted.jpg", 320, 240, intrinsics(300, 300, 160, 120), distortion=(0.01, -0.002, 1e-4, 2e-4))
    )
    write_colmap_text(tmp_path / "sparse", cameras)
    assert (tmp_path / "sparse" / "points3D.txt").read_text().startswith("# 3D point list")
    loaded = read_colmap_text(tmp_path / "sparse")
    assert [c.image_name for c in loaded] == [c.image_name for c in cameras]
    for original, back in zip(cameras, loaded, strict=True):
        np.testing.assert_allclose(back.K, original.K)
        np.testing.assert_allclose(back.R, original.R, atol=1e-12)
        np.testing.assert_allclose(back.t, original.t, atol=1e-12)
        assert back.distortion == pytest.approx(original.distortion)
        assert (back.width, back.height) == (320, 240)
    assert "OPENCV" in (tmp_path / "sparse" / "cameras.txt").read_text().splitlines()[-1]


def test_reads_each_supported_camera_model(tmp_path):
    path = tmp_path / "cameras.txt"
    path.write_text(
        "# comment\n"
        "1 SIMPLE_PINHOLE 100 80 90 50 40\n"
        "2 PINHOLE 100 80 90 95 50 40\n"
        "3 SIMPLE_RADIAL 100 80 90 50 40 0.05\n"
        "4 OPENCV 100 80 90 95 50 40 0.1 0.2 0.003 0.004\n"
        "5 RADIAL 100 80 90 50 40 0.1 0.2\n"
    )
    cameras = read_cameras_txt(path)
    assert cameras[1][0] == "SIMPLE_PINHOLE"
    np.testing.assert_allclose(cameras[1][3], intrinsics(90, 90, 50, 40))
    np.testing.assert_allclose(cameras[2][3], intrinsics(90, 95, 50, 40))
    assert cameras[3][4] == (0.05, 0.0, 0.0, 0.0)
    assert cameras[4][4] == (0.1, 0.2, 0.003, 0.004)
    assert cameras[5][4] == (0.1, 0.2, 0.0, 0.0)
    assert (cameras[4][1], cameras[4][2]) == (100, 80)


def test_reads_images_txt_with_points_lines(tmp_path):
    path = tmp_path / "images.txt"
    path.write_text("# header\n1 1 0 0 0 0.5 0 2 1 a.png\n10.5 20.5 -1 11 12 3\n2 0 1 0 0 0 0 1 1 b.png\n\n")
    rows = read_images_txt(path)
    assert [(r[0], r[3], r[4]) for r in rows] == [(1, 1, "a.png"), (2, 1, "b.png")]
    np.testing.assert_allclose(rows[0][2], [0.5, 0.0, 2.0])
    np.testing.assert_allclose(qvec_to_rotmat(rows[1][1]), np.diag([1.0, -1.0, -1.0]), atol=1e-12)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1 THIN_PRISM_FISHEYE 10 10 1 2 3", "cameras.txt line 1: camera model THIN_PRISM_FISHEYE is not supported"),
        ("1 PINHOLE 10 10 1 2 3", "cameras.txt line 1: PINHOLE takes 4 parameters, got 3"),
        ("1 PINHOLE ten 10 1 2 3 4", "cameras.txt line 1: expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...'"),
    ],
)
def test_bad_cameras_txt_is_refused_with_the_line(tmp_path, line, message):
    (tmp_path / "cameras.txt").write_text(line + "\n")
    with pytest.raises(InvalidCapture) as info:
        read_cameras_txt(tmp_path / "cameras.txt")
    assert info.value.message.startswith(message)


def test_image_naming_a_missing_camera_is_refused(tmp_path):
    (tmp_path / "cameras.txt").write_text("1 PINHOLE 10 10 5 5 5 5\n")
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 0 2 a.png\n\n")
    with pytest.raises(InvalidCapture, match="image a.png \\(id 1\\) names camera 2, which cameras.txt lacks"):
        read_colmap_text(tmp_path)


def test_bad_images_line_is_refused(tmp_path):
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 0 1 my photo.png\n\n")
    with pytest.raises(
        InvalidCapture, match="images.txt line 1: expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'"
    ):
        read_images_txt(tmp_path / "images.txt")


def test_missing_model_files_are_named(tmp_path):
    with pytest.raises(InvalidCapture, match="has no cameras.txt"):
        read_colmap_text(tmp_path)
