"""Each role × each endpoint: allowed or denied.

A role is granted on the collection; "outsider" holds no role at all. A role that may see an object but not do
the action gets 403 from the service; an outsider cannot even see it (404, an empty list, or a 400 naming the
invisible object in a create body), so the API never confirms that something exists to those who may not see it.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.test import override_settings

from catalog import services
from catalog.models import Asset, AssetVersion, Capture, Collection, QualityReport, Representation
from catalog.permissions import ROLE_ACTIONS, Action, Role, assign_role, can
from governance.publishing import publish_version
from tests.catalog.conftest import client_for, glb_bytes, image_bytes, user_with_role
from tests.factories import CollectionFactory, LicenceFactory, UserFactory

pytestmark = pytest.mark.django_db

GLB = glb_bytes()


@dataclass
class World:
    collection: Collection
    draft: Asset
    in_review: Asset
    open_version: AssetVersion
    submitted: AssetVersion
    approved: AssetVersion
    published: AssetVersion
    model: Representation
    restricted: Representation
    capture: Capture


def _asset_with_version(author, reviewer, manager, collection, slug: str, stage: str) -> tuple[Asset, AssetVersion]:
    asset = services.create_asset(actor=author, collection=collection, slug=slug, name=slug.title(),
                                  licence=LicenceFactory())
    version = services.create_version(actor=author, asset=asset)
    services.add_representation(actor=author, version=version, stream=io.BytesIO(GLB), filename="chair.glb")
    if stage in ("submitted", "approved", "published"):
        services.submit_version(actor=author, version=version)
    if stage in ("approved", "published"):
        services.approve_version(actor=reviewer, version=version)
    if stage == "published":
        publish_version(actor=manager, version=version)
    return Asset.objects.get(pk=asset.pk), AssetVersion.objects.get(pk=version.pk)


def _build_world() -> World:
    owner = UserFactory(username="owner")
    collection = CollectionFactory(owner=owner, slug="matrix", name="Matrix")
    assign_role(owner, Role.ADMIN, collection)
    author = user_with_role(Role.CONTRIBUTOR, collection, "author")
    reviewer = user_with_role(Role.REVIEWER, collection, "rita")
    manager = user_with_role(Role.ASSET_MANAGER, collection, "manny")
    make = lambda slug, stage: _asset_with_version(author, reviewer, manager, collection, slug, stage)  # noqa: E731
    draft, open_version = make("draft", "open")
    in_review, submitted = make("in-review", "submitted")
    _, approved = make("approved", "approved")
    _, published = make("published", "published")
    restricted = services.add_representation(actor=author, version=open_version, stream=io.BytesIO(GLB),
                                             filename="master.glb", restricted=True)
    services.record_cost(actor=author, version=open_version, kind="reconstruction", gpu_seconds=60)
    QualityReport.objects.create(version=open_version, triangle_count=12)
    model = Representation.objects.get(lod__variant__version=open_version, filename="chair.glb")
    capture = services.create_capture(actor=author, collection=collection, name="Shoot", images=_photos())
    return World(collection, draft, in_review, open_version, submitted, approved, published, model, restricted, capture)


def _photos() -> list[tuple[str, io.BytesIO]]:
    photos = []
    for i in range(3):
        handle = io.BytesIO(image_bytes("PNG", (64, 64), (40 * i, 90, 200)))
        handle.name = f"view-{i}.png"
        photos.append((handle.name, handle))
    return photos


@pytest.fixture(scope="module")
def world_media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("matrix-media")


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, world_media) -> Iterator[World]:
    """Built once for the module inside a transaction that is rolled back at its end; each test runs in a
    savepoint inside it, so a test's writes (a publish, a revoke) never leak into the next test."""
    with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=world_media):
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield _build_world()
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _world_files(settings, world_media) -> None:
    settings.MEDIA_ROOT = world_media  # the world's blobs, not the empty per-test folder


ALL = frozenset(Role)
CONTRIBUTE = frozenset({Role.CONTRIBUTOR, Role.ASSET_MANAGER, Role.ADMIN})
MANAGE = frozenset({Role.ASSET_MANAGER, Role.ADMIN})
REVIEW = frozenset({Role.REVIEWER, Role.ADMIN})
AUDIT = frozenset({Role.COMPLIANCE_OFFICER, Role.ADMIN})
GRANT = frozenset({Role.ADMIN})
NOBODY: frozenset[Role] = frozenset()


@dataclass(frozen=True)
class Endpoint:
    name: str
    route: str  # the URL name in catalog.api.urls
    method: str
    path: Callable[[World], str]
    allowed: frozenset[Role]
    ok: int = 200
    body: Callable[[World], dict[str, Any]] | None = None
    multipart: bool = False
    if_match: bool = False
    outsider: int = 404  # what a user with no role on the collection gets
    is_list: bool = False


def _upload(w: World) -> dict[str, Any]:
    handle = io.BytesIO(glb_bytes(2.0))
    handle.name = "new.glb"
    return {"version": w.open_version.pk, "file": handle}


def _capture_upload(w: World) -> dict[str, Any]:
    return {"collection": w.collection.pk, "name": "Retake", "images": [handle for _, handle in _photos()]}


ENDPOINTS = [
    Endpoint("captures-list", "capture-list", "get", lambda w: "/api/v1/captures/", ALL, is_list=True, outsider=200),
    Endpoint("captures-detail", "capture-detail", "get", lambda w: f"/api/v1/captures/{w.capture.pk}/", ALL),
    Endpoint("captures-create", "capture-list", "post", lambda w: "/api/v1/captures/", CONTRIBUTE, 201,
             body=_capture_upload, multipart=True, outsider=400),
    Endpoint("collections-list", "collection-list", "get", lambda w: "/api/v1/collections/", ALL, is_list=True, outsider=200),
    Endpoint("collections-detail", "collection-detail", "get", lambda w: f"/api/v1/collections/{w.collection.pk}/", ALL),
    Endpoint("collections-create", "collection-list", "post", lambda w: "/api/v1/collections/", NOBODY, 201,
             body=lambda w: {"slug": "new", "name": "New"}, outsider=403),
    Endpoint("grants-create", "collection-grants", "post", lambda w: f"/api/v1/collections/{w.collection.pk}/grants/", GRANT, 201,
             body=lambda w: {"role": "viewer", "user": "owner"}),
    Endpoint("grants-delete", "collection-grants", "delete",
             lambda w: f"/api/v1/collections/{w.collection.pk}/grants/?role=contributor&user=author", GRANT, 204),
    Endpoint("assets-list", "asset-list", "get", lambda w: "/api/v1/assets/", ALL, is_list=True, outsider=200),
    Endpoint("assets-detail", "asset-detail", "get", lambda w: f"/api/v1/assets/{w.draft.pk}/", ALL),
    Endpoint("assets-create", "asset-list", "post", lambda w: "/api/v1/assets/", CONTRIBUTE, 201,
             body=lambda w: {"collection": w.collection.pk, "slug": "new", "name": "New"}, outsider=400),
    Endpoint("assets-patch", "asset-detail", "patch", lambda w: f"/api/v1/assets/{w.draft.pk}/", MANAGE,
             body=lambda w: {"name": "Renamed"}, if_match=True),
    Endpoint("assets-transition-manage", "asset-transition", "post", lambda w: f"/api/v1/assets/{w.draft.pk}/transition/", MANAGE,
             body=lambda w: {"to_state": "in_review"}, if_match=True),
    Endpoint("assets-transition-review", "asset-transition", "post", lambda w: f"/api/v1/assets/{w.in_review.pk}/transition/", REVIEW,
             body=lambda w: {"to_state": "approved"}, if_match=True),
    Endpoint("assets-cost", "asset-cost", "get", lambda w: f"/api/v1/assets/{w.draft.pk}/cost/", ALL),
    Endpoint("versions-list", "version-list", "get", lambda w: "/api/v1/versions/", ALL, is_list=True, outsider=200),
    Endpoint("versions-detail", "version-detail", "get", lambda w: f"/api/v1/versions/{w.open_version.pk}/", ALL),
    Endpoint("versions-create", "version-list", "post", lambda w: "/api/v1/versions/", CONTRIBUTE, 201,
             body=lambda w: {"asset": w.draft.pk}, outsider=400),
    Endpoint("versions-submit", "version-submit", "post", lambda w: f"/api/v1/versions/{w.open_version.pk}/submit/", CONTRIBUTE),
    Endpoint("versions-approve", "version-approve", "post", lambda w: f"/api/v1/versions/{w.submitted.pk}/approve/", REVIEW),
    Endpoint("versions-reject", "version-reject", "post", lambda w: f"/api/v1/versions/{w.submitted.pk}/reject/", REVIEW,
             body=lambda w: {"reason": "blurred texture"}),
    Endpoint("versions-publish", "version-publish", "post", lambda w: f"/api/v1/versions/{w.approved.pk}/publish/", MANAGE),
    Endpoint("versions-withdraw", "version-withdraw", "post", lambda w: f"/api/v1/versions/{w.published.pk}/withdraw/", MANAGE,
             body=lambda w: {"reason": "rights expired"}),
    Endpoint("versions-cost", "version-cost", "get", lambda w: f"/api/v1/versions/{w.open_version.pk}/cost/", ALL),
    Endpoint("versions-quality", "version-quality", "get", lambda w: f"/api/v1/versions/{w.open_version.pk}/quality/", ALL),
    Endpoint("variants-list", "variant-list", "get", lambda w: "/api/v1/variants/", ALL, is_list=True, outsider=200),
    Endpoint("variants-detail", "variant-detail", "get", lambda w: f"/api/v1/variants/{w.model.lod.variant_id}/", ALL),
    Endpoint("variants-create", "variant-list", "post", lambda w: "/api/v1/variants/", CONTRIBUTE, 201,
             body=lambda w: {"version": w.open_version.pk, "name": "walnut"}, outsider=400),
    Endpoint("lods-list", "lod-list", "get", lambda w: "/api/v1/lods/", ALL, is_list=True, outsider=200),
    Endpoint("lods-detail", "lod-detail", "get", lambda w: f"/api/v1/lods/{w.model.lod_id}/", ALL),
    Endpoint("representations-list", "representation-list", "get", lambda w: "/api/v1/representations/", ALL, is_list=True, outsider=200),
    Endpoint("representations-detail", "representation-detail", "get", lambda w: f"/api/v1/representations/{w.model.pk}/", ALL),
    Endpoint("representations-upload", "representation-list", "post", lambda w: "/api/v1/representations/", CONTRIBUTE, 201,
             body=_upload, multipart=True, outsider=400),
    Endpoint("representations-download", "representation-download", "get", lambda w: f"/api/v1/representations/{w.model.pk}/download/", ALL),
    Endpoint("representations-download-restricted", "representation-download", "get",
             lambda w: f"/api/v1/representations/{w.restricted.pk}/download/", AUDIT),
]


def _call(client, endpoint: Endpoint, world: World):
    path = endpoint.path(world)
    headers = {}
    if endpoint.if_match:
        current = client.get(path.split("transition/")[0])
        if "ETag" in current:
            headers["HTTP_IF_MATCH"] = current["ETag"]
    body = endpoint.body(world) if endpoint.body else None
    send = getattr(client, endpoint.method)
    if endpoint.method == "get":
        return send(path)
    return send(path, body, format="multipart" if endpoint.multipart else "json", **headers)


@pytest.mark.parametrize("role", [*Role, None], ids=[*(r.value for r in Role), "outsider"])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.name for e in ENDPOINTS])
def test_role_endpoint_matrix(world: World, endpoint: Endpoint, role: Role | None):
    actor = user_with_role(role, world.collection, "actor") if role else UserFactory(username="actor")
    response = _call(client_for(actor), endpoint, world)
    if role is None:
        assert response.status_code == endpoint.outsider, response.content
        if endpoint.is_list:
            assert response.json()["results"] == []
    elif role in endpoint.allowed:
        assert response.status_code == endpoint.ok, response.content
        if endpoint.is_list:
            assert response.json()["results"], "an allowed role sees the collection's rows"
    else:
        assert response.status_code == 403, response.content
        assert response.json()["code"] == "permission_denied"


def test_the_matrix_covers_every_route():
    """A new endpoint without a row here fails this test, so RBAC coverage cannot silently lapse."""
    from catalog.api.urls import router

    routes = {
        (url.pattern.name, method)
        for url in router.urls
        if url.pattern.name != "api-root"
        for method in getattr(url.callback, "actions", {})
        if method != "head"  # DRF answers HEAD wherever GET is allowed
    }
    assert routes == {(e.route, e.method) for e in ENDPOINTS}


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_global_role_groups_act_on_every_collection(role: Role):
    member = UserFactory()
    member.groups.add(Group.objects.get(name=role.value))
    member = type(member).objects.get(pk=member.pk)
    anywhere = CollectionFactory()
    allowed = set(ROLE_ACTIONS[role])
    assert {action for action in Action if can(member, action, anywhere)} == allowed
