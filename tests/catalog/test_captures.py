import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catalog.capture_checks import StandardRules, analyse_image, check_capture
from catalog.errors import Duplicate, InvalidFile
from catalog.models import Capture, CaptureImage, CaptureStandard, StoredFile
from catalog.permissions import Role, assign_role
from catalog.services import create_capture
from governance.models import AuditEvent
from tests.factories import CollectionFactory, UserFactory
from tests.shared_data import SCEAUX_CASTLE

CASTLE = SCEAUX_CASTLE


def _png(array: np.ndarray) -> io.BytesIO:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    buffer.seek(0)
    return buffer


def _textured(seed: int, size: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (size, size, 3))


RULES = StandardRules(min_views=3, min_short_side_px=200, min_sharpness=20.0, max_clipped_fraction=0.05,
                      min_neighbour_similarity=0.35)


def _analysis(array, name, sha=None):
    return analyse_image(_png(array), filename=name, sha256=sha or name)


def test_sharp_textured_images_pass():
    images = [_analysis(_textured(i), f"{i}.png") for i in range(3)]
    report = check_capture(images, {"focal_length_mm": 35}, RULES)
    assert report["status"] == "passed"
    assert all(row["problems"] == [] for row in report["images"])


def test_each_problem_is_reported_on_its_image():
    flat = np.full((300, 300, 3), 128)
    small = _textured(1, size=100)
    white = np.full((300, 300, 3), 255)
    images = [_analysis(flat, "flat.png"), _analysis(small, "small.png"), _analysis(white, "white.png"),
              _analysis(_textured(2), "copy.png", sha="flat.png")]
    report = check_capture(images, {}, RULES)
    codes = {row["filename"]: {p["code"] for p in row["problems"]} for row in report["images"]}
    assert "blurred" in codes["flat.png"]
    assert "low_resolution" in codes["small.png"]
    assert "clipped_exposure" in codes["white.png"]
    assert "duplicate" in codes["copy.png"]
    assert all("no_focal_length" in c for c in codes.values())
    assert report["status"] == "failed"


def test_too_few_views_and_missing_metadata_fail_the_capture():
    rules = StandardRules(**{**RULES.__dict__, "required_metadata": ("device",)})
    report = check_capture([_analysis(_textured(1), "a.png")], {}, rules)
    assert report["status"] == "failed"
    assert [p["code"] for p in report["problems"]] == ["too_few_views", "missing_metadata"]
    assert report["problems"][0]["message"] == "1 images; the standard needs at least 3."


def test_an_image_unlike_all_others_gets_an_overlap_hint():
    red = np.zeros((300, 300, 3))
    red[..., 0] = 200
    red += _textured(5) * 0.1
    others = [np.clip(_textured(i) * 0.3 + 40, 0, 255) for i in range(3)]
    images = [_analysis(o, f"{i}.png") for i, o in enumerate(others)] + [_analysis(red, "red.png")]
    report = check_capture(images, {"focal_length_mm": 50}, RULES)
    flagged = {row["filename"] for row in report["images"] if any(p["code"] == "low_overlap" for p in row["problems"])}
    assert flagged == {"red.png"}


def test_real_orbit_photos_overlap_and_carry_focal_length():
    files = sorted(CASTLE.glob("*.JPG")) + sorted(CASTLE.glob("*.jpg"))
    images = [analyse_image(f.open("rb"), filename=f.name, sha256=f.name) for f in files]
    report = check_capture(images, {}, StandardRules(min_views=8, min_short_side_px=1000, min_sharpness=5.0,
                                                     max_clipped_fraction=0.2, min_neighbour_similarity=0.35))
    assert report["views"] == len(files) >= 8
    assert not any(p["code"] == "low_overlap" for row in report["images"] for p in row["problems"])


@pytest.mark.django_db
def test_create_capture_stores_images_once_and_audits():
    user = UserFactory()
    collection = CollectionFactory()
    assign_role(user, Role.CONTRIBUTOR, collection)
    standard = CaptureStandard.objects.create(name="studio", min_views=2, min_short_side_px=200)
    same = _textured(9)
    capture = create_capture(
        actor=user, collection=collection, name="Chair shoot", standard=standard, device="Pixel 9",
        images=[("a.png", _png(same)), ("b.png", _png(_textured(3))), ("c.png", _png(same))],
    )
    assert capture.check_status == Capture.CheckStatus.FAILED  # c.png duplicates a.png
    assert CaptureImage.objects.filter(capture=capture).count() == 3
    assert StoredFile.objects.count() == 2
    event = AuditEvent.objects.get(action="capture.created")
    assert event.data["views"] == 3 and event.object_id == str(capture.pk)


@pytest.mark.django_db
def test_a_bad_image_rolls_back_the_whole_capture_and_its_blobs(settings):
    user = UserFactory()
    collection = CollectionFactory()
    assign_role(user, Role.CONTRIBUTOR, collection)
    truncated = _png(_textured(1)).getvalue()[:500]
    with pytest.raises(InvalidFile, match="corrupt or truncated"):
        create_capture(actor=user, collection=collection, name="x",
                       images=[("good.png", _png(_textured(2))), ("bad.png", io.BytesIO(truncated))])
    assert not Capture.objects.exists() and not StoredFile.objects.exists()
    assert not [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    with pytest.raises(Duplicate, match="Two images are named 'a.png'"):
        create_capture(actor=user, collection=collection, name="x",
                       images=[("a.png", _png(_textured(2))), ("a.png", _png(_textured(3)))])
