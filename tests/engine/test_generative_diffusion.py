"""The occupancy denoiser, its sampler and the matting step, on tiny synthetic volumes."""

import numpy as np
import pytest
import torch

from reconstruction.engine.errors import InvalidInput
from reconstruction.engine.generative.matting import check_silhouette, load_photo, plain_background, separate_object
from reconstruction.engine.generative.model import DiffusionModel, make_condition
from reconstruction.engine.generative.sampling import sample_occupancy, silhouette_agreement
from reconstruction.engine.generative.training import (
    TrainingArrays,
    TrainingConfig,
    downsample_volume,
    train,
)

TINY = {"resolution": 16, "depth_bins": 8, "base_channels": 8, "channel_mults": [1, 2]}


def _box_item(low: tuple[int, int, int], high: tuple[int, int, int], colour=(0.8, 0.2, 0.1), R=16, D=8):
    volume = np.zeros((D, R, R), dtype=bool)
    volume[low[0] : high[0], low[1] : high[1], low[2] : high[2]] = True
    mask = volume.any(axis=0).astype(np.float32)
    image = np.ones((R, R, 3), dtype=np.float32)
    image[mask > 0] = colour
    return image, mask, volume


def test_model_maps_a_noisy_volume_and_condition_to_logits_of_the_same_shape():
    model = DiffusionModel(TINY)
    x = torch.randn(3, 8, 16, 16)
    condition = make_condition(torch.rand(3, 3, 16, 16), torch.rand(3, 16, 16), torch.tensor([True, False, True]))

    logits = model(x, torch.tensor([0, 500, 999]), condition)

    assert logits.shape == (3, 8, 16, 16)
    assert condition.shape == (3, 5, 16, 16)
    assert torch.all(condition[1] == 0)  # dropped condition: zeros and flag 0
    assert torch.all(condition[0, 4] == 1)


def test_a_few_dozen_steps_on_two_volumes_reduce_the_loss(tmp_path):
    items = [_box_item((2, 4, 4), (6, 12, 12)), _box_item((1, 2, 6), (4, 14, 10), colour=(0.1, 0.3, 0.9))]
    data = TrainingArrays(
        images=np.stack([i[0] for i in items]),
        masks=np.stack([i[1] for i in items]),
        occupancy=np.stack([i[2] for i in items]),
    )
    config = TrainingConfig(
        steps=60, batch=2, seed=3, learning_rate=3e-3, warmup_steps=5, resolution=16, depth_bins=8,
        base_channels=8, channel_mults=[1, 2], log_every=10, threads=1,
    )
    summary = train(data, config, tmp_path / "tiny.pt", log=lambda _: None)

    curve = [loss for _, loss in summary["loss_curve"]]
    assert curve[-1] < 0.6 * curve[0]
    checkpoint = torch.load(tmp_path / "tiny.pt", weights_only=True)
    assert checkpoint["config"]["depth_bins"] == 8 and "stem.weight" in checkpoint["state_dict"]


def test_training_is_deterministic_from_the_seed(tmp_path):
    image, mask, volume = _box_item((2, 4, 4), (6, 12, 12))
    data = TrainingArrays(images=image[None], masks=mask[None], occupancy=volume[None])
    config = TrainingConfig(steps=3, batch=1, seed=7, resolution=16, depth_bins=8, base_channels=8,
                            channel_mults=[1, 2], threads=1)
    first = train(data, config, tmp_path / "a.pt", log=lambda _: None)
    second = train(data, config, tmp_path / "b.pt", log=lambda _: None)

    assert first["loss_curve"] == second["loss_curve"]
    a, b = torch.load(tmp_path / "a.pt", weights_only=True), torch.load(tmp_path / "b.pt", weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_sampling_keeps_known_voxels_and_empties_columns_outside_the_mask():
    torch.manual_seed(0)
    model = DiffusionModel(TINY).eval()
    image, mask, volume = _box_item((2, 4, 4), (6, 12, 12))
    known_mask = np.zeros_like(volume)
    known_mask[:, :, :8] = True  # the left half of the grid was measured
    known = volume.astype(np.float32)

    result = sample_occupancy(model, image, mask, samples=2, steps=4, seed=1, known=known, known_mask=known_mask)

    assert result.volume.shape == (8, 16, 16)
    np.testing.assert_array_equal(result.volume[known_mask], known[known_mask])
    outside = mask < 0.5
    assert np.all(result.volume[:, outside] == 0)
    assert len(result.scores) == 2 and 0.0 <= result.confidence <= 1.0
    assert result.scores[result.index] == max(result.scores)


def test_sampling_is_reproducible_from_the_seed_and_resamples_other_crop_sizes():
    torch.manual_seed(0)
    model = DiffusionModel(TINY).eval()
    image, mask, _ = _box_item((2, 8, 8), (6, 24, 24), R=32)

    first = sample_occupancy(model, image, mask, samples=2, steps=3, seed=5)
    second = sample_occupancy(model, image, mask, samples=2, steps=3, seed=5)

    assert first.volume.shape == (8, 16, 16)
    np.testing.assert_array_equal(first.volume, second.volume)


def test_silhouette_agreement_is_the_iou_of_projection_and_mask():
    volume = np.zeros((4, 8, 8), dtype=np.float32)
    volume[1, 2:6, 2:6] = 1.0
    mask = np.zeros((8, 8), dtype=np.float32)
    mask[2:6, 2:4] = 1.0

    assert silhouette_agreement(volume, mask) == pytest.approx(8 / 16)


def test_downsampling_a_volume_takes_the_block_majority():
    volume = np.zeros((4, 4, 4), dtype=bool)
    volume[:2, :2, :2] = True
    volume[2, 2, 2] = True

    small = downsample_volume(volume, 2, 2)

    assert small.tolist() == [[[True, False], [False, False]], [[False, False], [False, False]]]


def _photo(*boxes, size=128, background=(0.9, 0.9, 0.92)):
    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = background
    rng = np.random.default_rng(0)
    image += rng.normal(0, 0.01, image.shape).astype(np.float32)
    for top, left, bottom, right in boxes:
        image[top:bottom, left:right] = (0.2, 0.3, 0.6)
    return np.clip(image, 0, 1)


def test_matting_separates_one_object_from_a_plain_background():
    mask = separate_object(_photo((30, 40, 100, 90)))

    assert mask.shape == (128, 128)
    assert mask[30:100, 40:90].mean() > 0.97
    assert mask.sum() == pytest.approx(70 * 50, rel=0.05)


def test_a_pale_object_on_clean_white_is_held_together_by_its_dark_patches():
    # spot the cow as rendered: a near-white body (0.1 from the background) with dark patches, on pure white.
    image = np.ones((128, 128, 3), dtype=np.float32)
    image[30:100, 30:100] = (1.0, 0.94, 0.92)
    image[40:55, 40:60] = image[80:95, 70:90] = (0.25, 0.25, 0.25)

    mask = separate_object(image)

    assert mask[30:100, 30:100].mean() > 0.97 and mask.sum() == pytest.approx(70 * 70, rel=0.03)


def test_a_noisy_background_keeps_faint_regions_out():
    # The same pale body on a background whose border strays by ~0.03: colour distances of 0.1 are not trusted.
    image = _photo((40, 40, 55, 60), (80, 70, 95, 90), background=(1.0, 1.0, 1.0))
    image += np.random.default_rng(2).normal(0, 0.02, image.shape).astype(np.float32)
    image[30:100, 30:100] = np.minimum(image[30:100, 30:100], (1.0, 0.94, 0.92))
    image[40:55, 40:60] = image[80:95, 70:90] = (0.2, 0.3, 0.6)

    with pytest.raises(InvalidInput, match="Several objects found"):
        separate_object(np.clip(image, 0, 1))


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ((), "No object found"),
        (((10, 10, 50, 50), (70, 70, 110, 110)), "Several objects found"),
        (((60, 60, 70, 70),), "The object is too small"),
        (((10, 60, 120, 66),), "aspect ratio"),
    ],
)
def test_matting_refuses_photos_without_one_usable_object(boxes, message):
    with pytest.raises(InvalidInput, match=message):
        separate_object(_photo(*boxes))


def test_a_plain_border_is_a_plain_background_and_a_scene_is_not():
    scene = _photo((30, 40, 100, 90))
    scene[:64] = (0.5, 0.7, 0.95)  # sky above the horizon
    scene[64:, :] = np.random.default_rng(1).random((64, 128, 3))  # clutter below it

    assert plain_background(_photo((30, 40, 100, 90)))
    assert plain_background(_photo((30, 40, 100, 90)) * 255)  # 0-255 pixels too
    assert not plain_background(scene)


def test_an_unreadable_photo_is_refused(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really")

    with pytest.raises(InvalidInput, match="cannot be read"):
        load_photo(path)


def test_a_given_mask_in_pieces_is_kept_whole():
    mask = np.zeros((64, 64), dtype=np.float32)
    mask[10:30, 10:30] = 1
    mask[35:55, 35:55] = 1

    kept = check_silhouette(mask, single_object=False)

    assert kept.sum() == 800


def test_the_extrusion_baseline_sweeps_the_silhouette_through_a_band_as_thick_as_it_is_wide():
    from reconstruction.engine.generative.evaluation import extrusion_baseline
    from reconstruction.engine.generative.frame import frame_for_photo

    photo_mask = np.zeros((100, 100), dtype=bool)
    photo_mask[30:70, 30:70] = True
    frame = frame_for_photo(photo_mask, 100, 100, resolution=16, depth_bins=16, margin=0.0)

    volume = extrusion_baseline(frame, frame.crop(photo_mask))

    columns = volume.any(axis=0)
    assert columns.all()  # the crop is the silhouette's box
    bins = np.flatnonzero(volume.any(axis=(1, 2)))
    # 16 columns thick in a depth extent of twice the crop's width: 8 of 16 bins, centred.
    assert len(bins) == 8 and bins[0] == 4
    # Resampled float coverage may exceed 1 by a rounding error; it is still coverage, not 0–255.
    np.testing.assert_array_equal(extrusion_baseline(frame, frame.crop(photo_mask) * np.float32(1.0000002)), volume)


def test_symmetric_icp_recovers_a_similarity_without_shrinking():
    from reconstruction.engine.generative.evaluation import symmetric_icp
    from reconstruction.engine.metrics import transform_points

    rng = np.random.default_rng(0)
    target = rng.uniform(-1, 1, (2000, 3)) * [1.0, 0.6, 0.3]
    source = (target - [0.02, 0.0, 0.01]) / 1.05

    T, rms = symmetric_icp(source, target)

    assert np.abs(transform_points(T, source) - target).max() < 0.02
    assert rms < 0.02
