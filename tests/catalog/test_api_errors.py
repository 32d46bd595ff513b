"""Bad requests get a 4xx problem document (RFC 9457) that says what to fix, and change nothing."""
from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog import services
from catalog.models import Asset
from catalog.permissions import Role
from governance.models import AuditEvent
from tests.catalog.conftest import client_for, user_with_role
from tests.factories import AssetFactory

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


@pytest.fixture
def manager(collection):
    return user_with_role(Role.ASSET_MANAGER, collection, "manny")


@pytest.fixture
def api(manager) -> APIClient:
    return client_for(manager)


@pytest.fixture
def asset(collection, manager) -> Asset:
    return services.create_asset(actor=manager, collection=collection, slug="chair", name="Chair")


def _problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["code"] == code
    assert body["type"] == "https://assay.dev/problems/" + code.replace("_", "-")
    return body


def test_malformed_json_is_a_parse_error(api):
    response = api.post("/api/v1/assets/", data='{"slug": "chair",', content_type="application/json")
    body = _problem(response, 400, "parse_error")
    assert body["detail"].startswith("JSON parse error - ")


def test_a_body_that_is_not_an_object_is_refused(api):
    body = _problem(api.post("/api/v1/assets/", [1, 2], format="json"), 400, "invalid")
    assert body["detail"] == "Invalid data. Expected a dictionary, but got list."


def test_unknown_fields_are_named(api, collection):
    payload = {"collection": collection.pk, "slug": "x", "name": "X", "colour": "red", "state": "published"}
    body = _problem(api.post("/api/v1/assets/", payload, format="json"), 400, "invalid")
    assert [e["field"] for e in body["errors"]] == ["colour", "state"]
    assert body["errors"][0]["message"] == (
        "Unknown field; this endpoint accepts: category, collection, description, licence, name, slug, tags."
    )
    assert not Asset.objects.exists()


def test_wrong_types_are_refused_not_coerced(api, collection):
    payload = {"collection": collection.pk, "slug": "x", "name": 12, "tags": "oak"}
    body = _problem(api.post("/api/v1/assets/", payload, format="json"), 400, "invalid")
    assert {e["field"]: e["message"] for e in body["errors"]} == {
        "name": "Not a valid string.",
        "tags": 'Expected a list of items but got type "str".',
    }


def test_a_missing_required_field_is_named(api):
    body = _problem(api.post("/api/v1/assets/", {"slug": "x"}, format="json"), 400, "invalid")
    assert {e["field"] for e in body["errors"]} == {"collection", "name"}
    assert body["detail"] == "collection: This field is required.; name: This field is required."


def test_a_collection_the_caller_cannot_see_reads_as_missing(api):
    hidden = AssetFactory().collection
    body = _problem(api.post("/api/v1/assets/", {"collection": hidden.pk, "slug": "x", "name": "X"}, format="json"),
                    400, "invalid")
    assert body["errors"] == [{"field": "collection", "message": f'Invalid pk "{hidden.pk}" - object does not exist.'}]


def test_an_unsupported_media_type_is_415(api):
    response = api.post("/api/v1/assets/", data="slug=x", content_type="text/plain")
    _problem(response, 415, "unsupported_media_type")


def test_an_invalid_filter_value_is_400(api):
    body = _problem(api.get("/api/v1/assets/?state=sold"), 400, "invalid")
    assert body["errors"][0]["field"] == "state"


def test_no_credentials_is_401_with_a_challenge():
    response = APIClient().get("/api/v1/assets/")
    body = _problem(response, 401, "not_authenticated")
    assert body["detail"] == "Authentication credentials were not provided."
    assert response["WWW-Authenticate"] == "Token"


def test_token_authentication_works(manager, asset):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=manager).key}")
    assert client.get(f"/api/v1/assets/{asset.pk}/").status_code == 200


def test_an_asset_the_caller_cannot_see_is_404(api):
    hidden = AssetFactory()
    body = _problem(api.get(f"/api/v1/assets/{hidden.pk}/"), 404, "not_found")
    assert body["instance"] == f"/api/v1/assets/{hidden.pk}/"


def test_detail_carries_an_etag_and_answers_304_when_it_is_current(api, asset):
    first = api.get(f"/api/v1/assets/{asset.pk}/")
    etag = first["ETag"]
    assert etag.startswith('"') and len(etag) == 34
    again = api.get(f"/api/v1/assets/{asset.pk}/", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again["ETag"] == etag and again.content == b""
    assert api.get(f"/api/v1/assets/{asset.pk}/", HTTP_IF_NONE_MATCH=f'"other", W/{etag}').status_code == 304
    services.create_version(actor=asset.owner, asset=asset)  # changes latest_version, not the asset row
    assert api.get(f"/api/v1/assets/{asset.pk}/", HTTP_IF_NONE_MATCH=etag).status_code == 200


def test_a_stale_if_match_is_412_and_changes_nothing(api, asset):
    etag = api.get(f"/api/v1/assets/{asset.pk}/")["ETag"]
    assert api.patch(f"/api/v1/assets/{asset.pk}/", {"name": "One"}, format="json", HTTP_IF_MATCH=etag).status_code == 200
    response = api.patch(f"/api/v1/assets/{asset.pk}/", {"name": "Two"}, format="json", HTTP_IF_MATCH=etag)
    body = _problem(response, 412, "stale_etag")
    current = api.get(f"/api/v1/assets/{asset.pk}/")["ETag"]
    assert body["current_etag"] == current
    assert body["detail"] == (
        f"Asset {asset.pk} changed since you read it: If-Match {etag} does not match the current ETag {current}. "
        "GET it again and re-apply your change."
    )
    assert Asset.objects.get(pk=asset.pk).name == "One"
    assert AuditEvent.objects.filter(action="asset.updated").count() == 1


def test_a_patch_without_if_match_is_428(api, asset):
    body = _problem(api.patch(f"/api/v1/assets/{asset.pk}/", {"name": "X"}, format="json"), 428, "precondition_required")
    assert body["detail"] == (
        f"Send If-Match with the ETag from your last GET of asset {asset.pk}, so a change made since is not overwritten."
    )


def test_a_weak_etag_never_satisfies_if_match(api, asset):
    etag = api.get(f"/api/v1/assets/{asset.pk}/")["ETag"]
    response = api.patch(f"/api/v1/assets/{asset.pk}/", {"name": "X"}, format="json", HTTP_IF_MATCH=f"W/{etag}")
    _problem(response, 412, "stale_etag")


def test_a_stale_if_match_on_a_version_action_is_412(api, asset):
    version = services.create_version(actor=asset.owner, asset=asset)
    response = api.post(f"/api/v1/versions/{version.pk}/submit/", {}, format="json", HTTP_IF_MATCH='"0123"')
    _problem(response, 412, "stale_etag")


def test_a_broken_rule_is_a_409_with_the_services_sentence(api, asset):
    etag = api.get(f"/api/v1/assets/{asset.pk}/")["ETag"]
    response = api.post(f"/api/v1/assets/{asset.pk}/transition/", {"to_state": "published"}, format="json",
                        HTTP_IF_MATCH=etag)
    body = _problem(response, 409, "invalid_transition")
    assert body["detail"] == "An asset in state 'draft' cannot move to 'published'; allowed: archived, in_review."


def test_a_body_on_an_action_that_takes_none_is_refused(api, asset):
    version = services.create_version(actor=asset.owner, asset=asset)
    body = _problem(api.post(f"/api/v1/versions/{version.pk}/submit/", {"force": True}, format="json"), 400, "invalid")
    assert body["errors"] == [{"field": "force", "message": "Unknown field; this endpoint accepts: no fields."}]
