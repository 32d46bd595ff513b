"""The catalog API end to end: lists with filters and cursor pages, the asset and version lifecycles, costs,
quality, and grants."""
from __future__ import annotations

import datetime as dt
import io

import pytest
from django.utils import timezone

from catalog import services
from catalog.models import Asset, AssetVersion, QualityReport
from catalog.permissions import Action, Role, can
from governance.models import AuditEvent
from tests.catalog.conftest import client_for, glb_bytes, user_with_role
from tests.factories import AssetFactory, LicenceFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(owner):
    return client_for(owner)


def _make(collection, slug, **fields) -> Asset:
    asset = services.create_asset(actor=collection.owner, collection=collection, slug=slug, name=slug.title(),
                                  category=fields.pop("category", ""), tags=fields.pop("tags", ()))
    if fields:
        Asset.objects.filter(pk=asset.pk).update(**fields)
    return asset


def _slugs(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["slug"] for row in response.json()["results"]]


def test_asset_filters(api, collection):
    cc0 = LicenceFactory(spdx_id="CC0-1.0")
    by = LicenceFactory(spdx_id="CC-BY-4.0")
    _make(collection, "oak-chair", category="furniture/chair", tags=["oak", "chair"], licence=cc0)
    _make(collection, "pine-table", category="furniture/table", tags=["pine"], licence=by, state="published")
    _make(collection, "lamp", category="lighting", tags=["oak"], state="archived",
          updated_at=timezone.now() - dt.timedelta(days=30))
    other = AssetFactory(slug="elsewhere", collection__slug="other")
    assert set(_slugs(api.get("/api/v1/assets/"))) == {"oak-chair", "pine-table", "lamp"}
    assert set(_slugs(api.get("/api/v1/assets/?category=furniture"))) == {"oak-chair", "pine-table"}
    assert _slugs(api.get("/api/v1/assets/?category=furniture/chair")) == ["oak-chair"]
    assert set(_slugs(api.get("/api/v1/assets/?state=published&state=archived"))) == {"pine-table", "lamp"}
    assert set(_slugs(api.get("/api/v1/assets/?tag=oak"))) == {"oak-chair", "lamp"}
    assert _slugs(api.get("/api/v1/assets/?tag=oak,chair")) == ["oak-chair"]
    assert _slugs(api.get("/api/v1/assets/?licence=cc-by-4.0")) == ["pine-table"]
    since = (timezone.now() - dt.timedelta(days=1)).isoformat()
    assert set(_slugs(api.get("/api/v1/assets/", {"updated_since": since}))) == {"oak-chair", "pine-table"}
    assert _slugs(api.get("/api/v1/assets/?search=TABLE")) == ["pine-table"]
    assert set(_slugs(api.get(f"/api/v1/assets/?collection={collection.pk}"))) == {"oak-chair", "pine-table", "lamp"}
    assert _slugs(api.get(f"/api/v1/assets/?collection={other.collection.pk}")) == []


def test_cursor_pages_walk_every_asset_once(api, collection):
    for i in range(7):
        _make(collection, f"asset-{i}")
    seen: list[str] = []
    url = "/api/v1/assets/?page_size=3"
    pages = 0
    while url:
        body = api.get(url).json()
        seen += [row["slug"] for row in body["results"]]
        url = body["next"]
        pages += 1
    assert pages == 3 and sorted(seen) == sorted(f"asset-{i}" for i in range(7))
    assert seen == sorted(seen, key=lambda s: Asset.objects.get(slug=s).updated_at, reverse=True)


def test_create_patch_and_transition_an_asset(api, collection):
    licence = LicenceFactory()
    created = api.post("/api/v1/assets/", {
        "collection": collection.pk, "slug": "chair", "name": "Chair", "category": "furniture/chair",
        "tags": ["Oak"], "licence": licence.pk,
    }, format="json")
    assert created.status_code == 201 and created["ETag"]
    body = created.json()
    assert (body["tags"], body["licence"]["spdx_id"], body["state"], body["owner"]) == (["oak"], "CC0-1.0", "draft", "owner")
    url = f"/api/v1/assets/{body['id']}/"
    patched = api.patch(url, {"description": "A chair.", "tags": ["oak", "chair"], "licence": None}, format="json",
                        HTTP_IF_MATCH=created["ETag"])
    assert patched.status_code == 200
    assert (patched.json()["tags"], patched.json()["licence"], patched.json()["row_version"]) == (["chair", "oak"], None, 2)
    moved = api.post(f"{url}transition/", {"to_state": "in_review", "reason": "ready"}, format="json",
                     HTTP_IF_MATCH=patched["ETag"])
    assert moved.status_code == 200 and moved.json()["state"] == "in_review"
    assert AuditEvent.objects.filter(asset_id=body["id"]).values_list("action", flat=True).count() == 3


def test_a_version_from_open_to_withdrawn(api, collection, glb):
    licence = LicenceFactory()
    asset = services.create_asset(actor=collection.owner, collection=collection, slug="chair", name="Chair",
                                  licence=licence)
    reviewer = user_with_role(Role.REVIEWER, collection, "rita")
    version = api.post("/api/v1/versions/", {"asset": asset.pk, "notes": "first scan", "metadata": {"units": "m"}},
                       format="json").json()
    assert (version["number"], version["state"], version["metadata"]) == (1, "open", {"units": "m"})
    variant = api.post("/api/v1/variants/", {"version": version["id"], "name": "walnut", "kind": "colourway",
                                             "attributes": {"colour": "#5d432c"}}, format="json")
    assert variant.status_code == 201 and variant.json()["name"] == "walnut"
    upload = io.BytesIO(glb)
    upload.name = "chair.glb"
    uploaded = api.post("/api/v1/representations/", {"version": version["id"], "file": upload, "variant": "walnut",
                                                     "lod_level": "1", "triangle_count": "12"}, format="multipart")
    assert uploaded.status_code == 201, uploaded.content
    assert (uploaded.json()["variant_name"], uploaded.json()["lod_level"]) == ("walnut", 1)
    lods = api.get(f"/api/v1/lods/?version={version['id']}").json()["results"]
    assert sorted((lod["level"], lod["triangle_count"]) for lod in lods) == [(0, 0), (0, 0), (1, 12)]
    vurl = f"/api/v1/versions/{version['id']}/"
    assert api.post(f"{vurl}submit/", format="json").json()["state"] == "submitted"
    as_reviewer = client_for(reviewer)
    rejected = as_reviewer.post(f"{vurl}reject/", {"reason": ""}, format="json")
    assert rejected.status_code == 400 and rejected.json()["errors"][0]["field"] == "reason"
    assert as_reviewer.post(f"{vurl}approve/", {"reason": "good"}, format="json").json()["state"] == "approved"
    assert api.post(f"{vurl}publish/", {}, format="json").json()["state"] == "published"
    assert api.get(f"/api/v1/assets/{asset.pk}/").json()["state"] == "published"
    withdrawn = api.post(f"{vurl}withdraw/", {"reason": "rights expired"}, format="json")
    assert withdrawn.json()["state"] == "withdrawn"
    assert _slugs(api.get("/api/v1/assets/?state=in_review")) == ["chair"]


def test_version_list_filters(api, collection):
    first = _make(collection, "first")
    second = _make(collection, "second")
    for asset in (first, first, second):
        services.create_version(actor=collection.owner, asset=asset)
    rows = api.get(f"/api/v1/versions/?asset={first.pk}").json()["results"]
    assert [(r["asset_slug"], r["number"]) for r in rows] == [("first", 2), ("first", 1)]
    assert len(api.get("/api/v1/versions/?state=open").json()["results"]) == 3
    assert api.get("/api/v1/versions/?state=published").json()["results"] == []


def test_cost_and_quality(api, collection):
    asset = _make(collection, "chair")
    version = services.create_version(actor=collection.owner, asset=asset)
    services.record_cost(actor=collection.owner, version=version, kind="reconstruction", gpu_seconds=3600,
                         cpu_seconds=120)
    services.record_cost(actor=collection.owner, version=version, kind="storage", storage_bytes=10**9)
    cost = api.get(f"/api/v1/assets/{asset.pk}/cost/")
    assert cost.status_code == 200 and cost["ETag"]
    totals = cost.json()["totals"][0]
    assert (totals["currency"], totals["gpu_seconds"], totals["storage_bytes"], totals["records"]) == ("USD", 3600, 10**9, 2)
    assert [k["kind"] for k in cost.json()["by_kind"]] == ["reconstruction", "storage"]
    assert api.get(f"/api/v1/versions/{version.pk}/cost/").json() == cost.json()
    missing = api.get(f"/api/v1/versions/{version.pk}/quality/")
    assert missing.status_code == 404 and missing.json()["detail"] == "Version Chair v1 has no quality report yet."
    QualityReport.objects.create(version=version, triangle_count=12, vertex_count=8, watertight=True,
                                 metrics={"chamfer_mm": 0.4})
    quality = api.get(f"/api/v1/versions/{version.pk}/quality/").json()
    assert (quality["triangle_count"], quality["watertight"], quality["metrics"]) == (12, True, {"chamfer_mm": 0.4})


def test_collections_and_grants(api, collection):
    body = api.get("/api/v1/collections/").json()
    assert [c["slug"] for c in body["results"]] == ["spring-line"]
    refused = api.post("/api/v1/collections/", {"slug": "autumn", "name": "Autumn"}, format="json")
    assert refused.status_code == 403
    newcomer = UserFactory(username="nina")
    url = f"/api/v1/collections/{collection.pk}/grants/"
    granted = api.post(url, {"role": "contributor", "user": "nina"}, format="json")
    assert granted.status_code == 201
    assert granted.json() == {"role": "contributor", "principal": "user:nina",
                              "permissions": ["view_collection", "contribute_collection"]}
    newcomer = type(newcomer).objects.get(pk=newcomer.pk)
    assert can(newcomer, Action.CONTRIBUTE, collection)
    assert api.post(url, {"role": "boss", "user": "nina"}, format="json").json()["errors"][0]["field"] == "role"
    both = api.post(url, {"role": "viewer", "user": "nina", "group": "team"}, format="json")
    assert both.json()["detail"] == "Name exactly one of 'user' or 'group'."
    assert api.post(url, {"role": "viewer", "user": "ghost"}, format="json").json()["detail"] == "user: No user is named 'ghost'."
    revoked = api.delete(f"{url}?role=contributor&user=nina")
    assert revoked.status_code == 204
    assert not can(type(newcomer).objects.get(pk=newcomer.pk), Action.VIEW, collection)
    assert AuditEvent.objects.filter(action="permission.changed").count() == 2


def test_a_global_admin_creates_collections(collection):
    from django.contrib.auth.models import Group

    admin = UserFactory(username="ada")
    admin.groups.add(Group.objects.get(name="admin"))
    created = client_for(admin).post("/api/v1/collections/", {"slug": "autumn", "name": "Autumn"}, format="json")
    assert created.status_code == 201 and created.json()["owner"] == "ada"


def test_reading_a_version_shows_lineage(api, collection):
    asset = _make(collection, "chair")
    parent = services.create_version(actor=collection.owner, asset=asset)
    child = api.post("/api/v1/versions/", {"asset": asset.pk, "parent": parent.pk}, format="json").json()
    assert child["parent"] == parent.pk and child["number"] == 2
    assert AssetVersion.objects.get(pk=child["id"]).parent_id == parent.pk
    bad = api.post("/api/v1/versions/", {"asset": asset.pk, "parent": 999999}, format="json")
    assert bad.json()["errors"] == [{"field": "parent", "message": 'Invalid pk "999999" - object does not exist.'}]


def test_upload_with_a_real_glb_to_the_default_variant(api, collection):
    asset = _make(collection, "chair")
    version = services.create_version(actor=collection.owner, asset=asset)
    upload = io.BytesIO(glb_bytes())
    upload.name = "chair.glb"
    created = api.post("/api/v1/representations/", {"version": version.pk, "file": upload}, format="multipart")
    assert created.status_code == 201
    assert created.json()["download_url"] == f"http://testserver/api/v1/representations/{created.json()['id']}/download/"
