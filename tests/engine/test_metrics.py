import math

import numpy as np
import pytest
import trimesh

from reconstruction.engine.cameras import qvec_to_rotmat
from reconstruction.engine.metrics import (
    MetricError,
    chamfer_from_distances,
    compare_images,
    compare_meshes,
    fscore,
    icp,
    lpips_status,
    mean_abs_cosine,
    ms_ssim,
    nearest_distances,
    normal_consistency,
    pose_errors,
    psnr,
    surface_distances,
    transform_points,
    umeyama,
    volume_iou,
)

PRED = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
GT = np.array([[0.0, 0.0, 0.0], [0.0, 2.0, 0.0]])


def similarity(scale: float, q, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = scale * qvec_to_rotmat(q)
    T[:3, 3] = t
    return T


def test_chamfer_by_hand():
    # pred→gt: 0 and 1 (mean 0.5); gt→pred: 0 and 2 (mean 1); chamfer is their mean.
    to_gt, to_pred = nearest_distances(PRED, GT)[0], nearest_distances(GT, PRED)[0]
    assert chamfer_from_distances(to_gt, to_pred) == {"chamfer": 0.75, "accuracy": 0.5, "completeness": 1.0}


def test_fscore_by_hand():
    result = fscore(PRED, GT, tau=1.0)
    assert (result["precision"], result["recall"]) == (1.0, 0.5)
    assert result["fscore"] == pytest.approx(2 / 3)
    assert fscore(PRED, GT, tau=0.5)["fscore"] == pytest.approx(0.5)
    assert fscore(PRED + 10, GT, tau=0.5)["fscore"] == 0.0
    with pytest.raises(MetricError, match="threshold must be positive"):
        fscore(PRED, GT, tau=0)


def test_mean_abs_cosine_ignores_the_sign():
    normals = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    assert mean_abs_cosine(normals, np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])) == 1.0
    assert mean_abs_cosine(normals, np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])) == pytest.approx(0.5)


def test_normal_consistency_pairs_each_sample_with_the_nearest_of_the_other_surface():
    points = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    up, down = np.array([[0.0, 0.0, 1.0]] * 2), np.array([[0.0, 0.0, -1.0]] * 2)
    assert normal_consistency(points, up, points + 0.01, down) == 1.0  # orientation, not sign
    tilted = np.array([[0.0, np.sin(np.pi / 3), np.cos(np.pi / 3)]] * 2)  # 60° away: |cos| = 0.5
    assert normal_consistency(points, up, points, tilted) == pytest.approx(0.5)
    # Both ways: a far sample of the other surface is paired too, so its normal counts.
    other = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    assert normal_consistency(points, up, other, np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])) == pytest.approx(
        (1.0 + 0.5) / 2
    )


def test_empty_point_sets_are_refused():
    with pytest.raises(MetricError, match="two non-empty point sets"):
        nearest_distances(np.zeros((0, 3)), GT)
    with pytest.raises(MetricError, match="points and a mesh"):
        surface_distances(np.zeros((0, 3)), trimesh.creation.box())


def test_surface_distances_are_to_the_surface_not_to_its_vertices():
    box = trimesh.creation.box(extents=[2.0, 2.0, 2.0])  # 12 triangles, faces at ±1; far from the origin below
    box.apply_translation([1000.0, 0.0, 0.0])
    points = np.array([[1000.0, 0.0, 1.5], [1000.3, 0.2, 1.0], [1000.0, 0.0, 0.0], [1003.0, 0.0, 0.0]])
    distances, faces = surface_distances(points, box)
    np.testing.assert_allclose(distances, [0.5, 0.0, 1.0, 2.0], atol=1e-5)
    np.testing.assert_allclose(box.face_normals[faces[:2]], [[0, 0, 1], [0, 0, 1]], atol=1e-9)


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(3)
    source = rng.normal(size=(20, 3))
    T = similarity(2.5, [0.9, 0.1, -0.3, 0.2], [1.0, -2.0, 0.5])
    np.testing.assert_allclose(umeyama(source, transform_points(T, source)), T, atol=1e-10)
    rigid = similarity(1.0, [0.2, 0.7, 0.1, 0.4], [0.0, 3.0, 0.0])
    np.testing.assert_allclose(umeyama(source, transform_points(rigid, source), with_scale=False), rigid, atol=1e-10)
    with pytest.raises(MetricError, match="at least three corresponding"):
        umeyama(source[:2], source[:2])


def test_umeyama_never_returns_a_reflection():
    source = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    mirrored = source * [1, 1, -1]
    assert np.linalg.det(umeyama(source, mirrored)[:3, :3]) > 0


def test_icp_recovers_a_small_similarity_without_correspondences():
    rng = np.random.default_rng(4)
    box = trimesh.creation.box(extents=[1.0, 0.6, 0.3])
    points = trimesh.sample.sample_surface(box, 3000, seed=1)[0]
    T = similarity(1.2, [1.0, 0.05, 0.08, -0.03], [0.2, -0.1, 0.05])
    target = transform_points(T, points)
    estimate, rms = icp(points[rng.permutation(len(points))], target, with_scale=True, iterations=100)
    np.testing.assert_allclose(transform_points(estimate, points), target, atol=1e-5)
    assert rms < 1e-5


def test_volume_iou_of_two_overlapping_cubes():
    a = trimesh.creation.box(extents=[1, 1, 1])
    b = trimesh.creation.box(extents=[1, 1, 1])
    b.apply_translation([0.5, 0, 0])
    # intersection 0.5, union 1.5
    assert volume_iou(a, b, samples=60_000) == pytest.approx(1 / 3, abs=0.01)
    assert volume_iou(a, a.copy(), samples=10_000) == 1.0
    open_box = a.copy()
    open_box.update_faces(np.arange(len(open_box.faces)) > 0)
    with pytest.raises(MetricError, match="the reconstruction is not watertight"):
        volume_iou(open_box, b)


def test_psnr_by_hand():
    a = np.full((8, 8, 3), 0.5)
    assert psnr(a, a + 0.1) == pytest.approx(20.0)  # MSE 0.01
    assert psnr(np.zeros((4, 4), np.uint8), np.full((4, 4), 255, np.uint8)) == pytest.approx(0.0)
    assert psnr(a, a) == math.inf
    b = a.copy()
    b[0, 0] = 0.0  # the one pixel outside the mask is ignored
    mask = np.ones((8, 8), bool)
    mask[0, 0] = False
    assert psnr(a, b, mask=mask) == math.inf
    with pytest.raises(MetricError, match="images of one size"):
        psnr(a, a[:4])


def test_ms_ssim_of_identical_images_is_one():
    image = np.random.default_rng(0).random((96, 96, 3))
    result = ms_ssim(image, image)
    assert result == {"ms_ssim": pytest.approx(1.0), "scales": 4}


def test_ms_ssim_of_two_flat_images_by_hand():
    # Flat images have no contrast or structure (cs = 1 at every scale); what is left is the last scale's
    # luminance term (2ab + C1) / (a² + b² + C1) raised to its renormalised weight. 64 px allows 3 scales.
    a, b, c1 = 0.2, 0.4, 0.01**2
    luminance = (2 * a * b + c1) / (a * a + b * b + c1)
    expected = luminance ** (0.3001 / (0.0448 + 0.2856 + 0.3001))
    result = ms_ssim(np.full((64, 64), a), np.full((64, 64), b))
    assert result["scales"] == 3
    assert result["ms_ssim"] == pytest.approx(expected, rel=1e-6)  # float32 arithmetic


def test_ms_ssim_falls_with_noise_and_refuses_tiny_images():
    rng = np.random.default_rng(1)
    image = rng.random((128, 128))
    slightly = np.clip(image + rng.normal(scale=0.02, size=image.shape), 0, 1)
    very = np.clip(image + rng.normal(scale=0.3, size=image.shape), 0, 1)
    assert 1.0 > ms_ssim(image, slightly)["ms_ssim"] > ms_ssim(image, very)["ms_ssim"]
    with pytest.raises(MetricError, match="at least 11 pixels"):
        ms_ssim(np.zeros((8, 8)), np.zeros((8, 8)))


def test_lpips_is_reported_unavailable_not_invented():
    status = lpips_status()
    assert status["available"] is False
    assert "weights" in status["reason"]


def test_compare_images_averages_views():
    a = np.full((32, 32, 3), 0.5)
    report = compare_images([a, a], [a + 0.1, a + 0.1])
    assert report["views"] == 2 and report["psnr"] == pytest.approx(20.0)
    assert report["lpips"]["available"] is False
    with pytest.raises(MetricError, match="same, non-zero number"):
        compare_images([a], [])


def test_compare_meshes_of_a_mesh_with_itself():
    box = trimesh.creation.box(extents=[1.0, 2.0, 2.0])
    assert compare_meshes(box, box.copy(), samples=2_000)["tau"] == pytest.approx(0.03)  # 1% of the diagonal 3
    # Samples are measured against the other surface itself, so even a threshold far below the sample spacing
    # (about 0.03 here) scores a surface against itself exactly.
    report = compare_meshes(box, box.copy(), samples=2_000, tau=1e-4)
    assert report["fscore"] == 1.0
    assert report["chamfer"] < 1e-6
    assert report["normal_consistency"] > 0.99  # a sample on an edge may take the next face's normal
    assert report["volume_iou"] == 1.0


def test_compare_meshes_scores_more_thresholds_by_percent_of_the_diagonal():
    box = trimesh.creation.box(extents=[1.0, 2.0, 2.0])  # diagonal 3
    moved = box.copy()
    moved.apply_translation([0.06, 0.0, 0.0])  # 2% of the diagonal along x: the x faces move by 0.06
    report = compare_meshes(moved, box, samples=20_000, tau_fractions=(0.01, 0.05))
    assert set(report["fscore_at"]) == {"1%", "5%"}
    assert report["fscore_at"]["1%"] == pytest.approx(report["fscore"])
    assert report["fscore_at"]["5%"] == 1.0  # every point within 0.15 of the other surface
    assert report["fscore_at"]["1%"] < 0.9  # the two x faces (1/5 of the area) are 0.06 > 0.03 away


@pytest.mark.slow
def test_compare_meshes_with_icp_undoes_an_unknown_pose():
    box = trimesh.creation.box(extents=[1.0, 0.6, 0.3])
    moved = box.copy()
    T = similarity(0.8, [1.0, -0.04, 0.06, 0.02], [0.1, 0.2, -0.1])
    moved.apply_transform(T)
    unaligned = compare_meshes(moved, box, samples=10_000, tau=0.05)
    aligned = compare_meshes(moved, box, samples=10_000, tau=0.05, alignment="icp")
    assert unaligned["fscore"] < 0.5
    assert aligned["fscore"] > 0.99
    np.testing.assert_allclose(aligned["alignment_transform"], np.linalg.inv(T), atol=0.01)
    assert aligned["volume_iou"] > 0.95
    with pytest.raises(MetricError, match="alignment must be"):
        compare_meshes(box, box, alignment="magic")


def _ring_of_cameras(count: int = 8) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from reconstruction.engine.cameras import look_at

    cameras = {}
    for index in range(count):
        angle = 2 * np.pi * index / count
        centre = np.array([2 * np.cos(angle), 0.5 * (index % 2), 2 * np.sin(angle)])
        cameras[f"{index}.png"] = (look_at(centre, [0.0, 0.0, 0.0])[:3, :3], centre)
    return cameras


def _moved_frame(cameras, T):
    """The same cameras in the frame x' = T x: centres move with T, world→camera rotations lose T's rotation."""
    rotation = T[:3, :3] / np.cbrt(np.linalg.det(T[:3, :3]))
    return {name: (R @ rotation.T, transform_points(T, centre[None])[0]) for name, (R, centre) in cameras.items()}


def test_pose_errors_are_zero_for_the_same_cameras_in_another_similarity_frame():
    truth = _ring_of_cameras()
    estimated = _moved_frame(truth, similarity(3.0, [0.9, 0.1, 0.3, 0.2], [1.0, -2.0, 5.0]))
    report = pose_errors(estimated, truth)
    assert report["cameras"] == 8
    assert report["centre_error_relative_to_spread"]["max"] < 1e-9
    assert report["rotation_error_deg"]["max"] < 1e-4


def test_pose_errors_measure_a_turned_camera_in_degrees():
    truth = _ring_of_cameras()
    estimated = dict(truth)
    R, centre = truth["3.png"]
    turn = qvec_to_rotmat([np.cos(np.radians(1.0)), 0.0, np.sin(np.radians(1.0)), 0.0])  # 2° about y
    estimated["3.png"] = (turn @ R, centre)
    report = pose_errors(estimated, truth)
    assert report["rotation_error_deg"]["max"] == pytest.approx(2.0, abs=1e-6)
    assert report["rotation_error_deg"]["median"] < 1e-4  # acos near 1 keeps about 1e-6°
    with pytest.raises(MetricError, match="at least three"):
        pose_errors({"0.png": truth["0.png"]}, truth)
