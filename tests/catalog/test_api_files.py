"""Uploads are streamed and checked by content; downloads stream from local storage; restricted files are
audited; a refused upload leaves no row and no blob behind."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.http import FileResponse

from catalog import services
from catalog.models import Representation, StoredFile
from catalog.permissions import Role
from governance.models import AuditEvent
from tests.catalog.conftest import client_for, glb_bytes, image_bytes, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def contributor(collection):
    return user_with_role(Role.CONTRIBUTOR, collection, "carla")


@pytest.fixture
def version(collection, contributor):
    asset = services.create_asset(actor=contributor, collection=collection, slug="chair", name="Chair")
    return services.create_version(actor=contributor, asset=asset)


def _upload(client, version, data: bytes, name: str, **fields):
    handle = io.BytesIO(data)
    handle.name = name
    return client.post("/api/v1/representations/", {"version": version.pk, "file": handle, **fields}, format="multipart")


def _nothing_stored(settings) -> bool:
    files = [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]
    return not files and not StoredFile.objects.exists() and not Representation.objects.exists()


def test_download_streams_the_exact_bytes_with_an_etag(contributor, version, glb):
    client = client_for(contributor)
    created = _upload(client, version, glb, "chair.glb").json()
    response = client.get(f"/api/v1/representations/{created['id']}/download/", HTTP_ACCEPT="model/gltf-binary")
    assert response.status_code == 200 and isinstance(response, FileResponse) and response.streaming
    assert b"".join(response.streaming_content) == glb
    assert response["Content-Type"] == "model/gltf-binary"
    assert response["Content-Length"] == str(len(glb))
    assert response["Content-Disposition"] == 'attachment; filename="chair.glb"'
    assert response["ETag"] == f'"{created["sha256"]}"'
    again = client.get(f"/api/v1/representations/{created['id']}/download/", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304


def test_a_missing_file_is_a_json_problem_even_when_a_binary_was_asked_for(contributor):
    response = client_for(contributor).get("/api/v1/representations/999999/download/", HTTP_ACCEPT="model/gltf-binary")
    assert response.status_code == 404 and response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


def test_restricted_files_need_the_audit_role_and_each_download_is_audited(collection, contributor, version, glb):
    created = _upload(client_for(contributor), version, glb, "master.glb", restricted="true").json()
    assert created["restricted"] is True
    url = f"/api/v1/representations/{created['id']}/download/"
    refused = client_for(contributor).get(url)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "You need the 'audit' permission on representation 'master.glb'."
    officer = user_with_role(Role.COMPLIANCE_OFFICER, collection, "olga")
    response = client_for(officer).get(url, HTTP_IF_NONE_MATCH=f'"{created["sha256"]}"')
    assert response.status_code == 200, "restricted downloads are never answered from a cache"
    assert b"".join(response.streaming_content) == glb and response["Cache-Control"] == "private, no-store"
    event = AuditEvent.objects.get(action="file.downloaded")
    assert (event.actor_name, event.object_id, event.data["sha256"]) == ("olga", str(created["id"]), created["sha256"])


def test_an_oversized_upload_is_413_and_stores_nothing(contributor, version, settings):
    settings.ASSAY_MAX_UPLOAD_BYTES = 100
    response = _upload(client_for(contributor), version, glb_bytes(), "chair.glb")
    assert response.status_code == 413
    assert response.json() | {"instance": ""} == {
        "type": "https://assay.dev/problems/file-too-large", "title": "The file was refused", "status": 413,
        "detail": "The file is larger than the limit of 100 bytes.", "code": "file_too_large", "instance": "",
    }
    assert _nothing_stored(settings)


def test_a_body_far_above_the_limit_is_refused_before_it_is_read(contributor, version, settings):
    settings.ASSAY_MAX_UPLOAD_BYTES = 100
    response = _upload(client_for(contributor), version, b"\0" * 200_000, "chair.glb")
    assert response.status_code == 413
    assert response.json()["detail"].endswith("above the limit of 100 bytes for one file.")
    assert _nothing_stored(settings)


def test_a_mislabelled_upload_is_400_and_stores_nothing(contributor, version, settings):
    response = _upload(client_for(contributor), version, image_bytes("PNG"), "chair.glb")
    assert response.status_code == 400 and response.json()["code"] == "mislabelled_file"
    assert response.json()["detail"] == (
        "'chair.glb' is named as GLB but its content is PNG; rename it with the .png extension or upload the right file."
    )
    assert _nothing_stored(settings)


def test_a_corrupt_glb_is_400_and_stores_nothing(contributor, version, settings, glb):
    response = _upload(client_for(contributor), version, glb[:-16], "chair.glb")
    assert response.status_code == 400 and response.json()["code"] == "corrupt_file"
    assert "it is truncated or padded" in response.json()["detail"]
    assert _nothing_stored(settings)


def test_an_upload_form_with_an_unknown_or_malformed_field_is_refused(contributor, version, glb, settings):
    client = client_for(contributor)
    unknown = _upload(client, version, glb, "chair.glb", colour="red")
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["field"] == "colour"
    malformed = _upload(client, version, glb, "chair.glb", lod_level="first")
    assert malformed.json()["errors"] == [{"field": "lod_level", "message": "A valid integer is required."}]
    missing = client.post("/api/v1/representations/", {"version": version.pk}, format="multipart")
    assert missing.json()["errors"] == [{"field": "file", "message": "No file was submitted."}]
    json_body = client.post("/api/v1/representations/", {"version": version.pk}, format="json")
    assert json_body.status_code == 415
    assert _nothing_stored(settings)


def test_an_upload_to_a_submitted_version_is_409(contributor, version, glb):
    client = client_for(contributor)
    _upload(client, version, glb, "chair.glb")
    services.submit_version(actor=contributor, version=version)
    response = _upload(client, version, glb_bytes(2.0), "other.glb")
    assert response.status_code == 409 and response.json()["code"] == "version_immutable"
