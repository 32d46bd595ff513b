"""Capture upload through the API: photos with optional masks and cameras, checked image by image."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from catalog.models import Capture, StoredFile
from catalog.permissions import Role
from tests.catalog.conftest import client_for, user_with_role

pytestmark = pytest.mark.django_db


def _png(seed: int, size: tuple[int, int] = (240, 240), mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _form(collection, *, images=3, masks=None, **extra):
    files = [SimpleUploadedFile(f"view-{i}.png", _png(i), content_type="image/png") for i in range(images)]
    data = {"collection": collection.pk, "name": "Turntable", "images": files, **extra}
    if masks is not None:
        data["masks"] = masks
    return data


def test_a_capture_with_masks_and_cameras_is_stored_and_checked(collection, owner):
    masks = [SimpleUploadedFile(f"view-{i}.png", _png(10 + i, mode="L"), content_type="image/png") for i in range(3)]
    cameras = {"colmap": {"cameras.txt": "1 PINHOLE 240 240 200 200 120 120\n", "images.txt": ""}}
    response = client_for(owner).post(
        "/api/v1/captures/", _form(collection, masks=masks, metadata=json.dumps(cameras), units="mm",
                                   focal_length_mm="35"), format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["units"] == "mm" and body["focal_length_mm"] == 35.0
    assert body["metadata"] == cameras
    assert [image["filename"] for image in body["images"]] == ["view-0.png", "view-1.png", "view-2.png"]
    assert all(image["mask_sha256"] for image in body["images"])
    assert body["check_status"] == body["check_report"]["status"]
    assert body["check_report"]["views"] == 3
    assert [row["filename"] for row in body["check_report"]["images"]] == ["view-0.png", "view-1.png", "view-2.png"]

    listed = client_for(owner).get(f"/api/v1/captures/?collection={collection.pk}").json()["results"]
    assert [c["id"] for c in listed] == [body["id"]]


def test_a_mask_of_the_wrong_size_is_refused_and_nothing_is_kept(collection, owner):
    masks = [SimpleUploadedFile(f"view-{i}.png", _png(i, size=(100, 100), mode="L")) for i in range(3)]
    response = client_for(owner).post("/api/v1/captures/", _form(collection, masks=masks), format="multipart")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == "Mask 'view-0.png' is 100×100 but image 'view-0.png' is 240×240."
    assert not Capture.objects.exists() and not StoredFile.objects.exists()


def test_masks_for_only_some_images_are_refused(collection, owner):
    masks = [SimpleUploadedFile("view-0.png", _png(1, mode="L"))]
    response = client_for(owner).post("/api/v1/captures/", _form(collection, masks=masks), format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "Masks are given for 1 of 3 images; give one for every image or none (missing: view-1.png, view-2.png)."
    )


def test_a_mask_that_matches_no_image_is_refused(collection, owner):
    masks = [SimpleUploadedFile("other.png", _png(1, mode="L"))]
    response = client_for(owner).post("/api/v1/captures/", _form(collection, masks=masks), format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"] == "Mask 'other.png' matches no image of the capture (masks are matched by file stem)."


def test_metadata_must_be_a_json_object(collection, owner):
    response = client_for(owner).post("/api/v1/captures/", _form(collection, metadata="[1, 2]"), format="multipart")
    assert response.status_code == 400
    assert "metadata" in json.dumps(response.json())


def test_viewers_see_captures_but_cannot_upload_and_outsiders_see_nothing(collection, owner):
    client_for(owner).post("/api/v1/captures/", _form(collection), format="multipart")
    viewer = user_with_role(Role.VIEWER, collection)
    assert len(client_for(viewer).get("/api/v1/captures/").json()["results"]) == 1
    assert client_for(viewer).post("/api/v1/captures/", _form(collection), format="multipart").status_code == 403
    outsider = user_with_role(Role.VIEWER, type(collection).objects.create(slug="other", name="Other", owner=owner))
    assert client_for(outsider).get("/api/v1/captures/").json()["results"] == []
    assert client_for(outsider).post("/api/v1/captures/", _form(collection), format="multipart").status_code == 400
