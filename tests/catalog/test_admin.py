"""The asset managers' admin: object-level RBAC on every page, changes only through the services, fixed SQL cost."""
from __future__ import annotations

import io

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from catalog import services
from catalog.models import Asset, AssetVersion, CaptureImage, Collection
from catalog.permissions import Role, assign_role
from governance.models import AuditEvent
from governance.publishing import publish_version
from tests.catalog.conftest import glb_bytes, image_bytes
from tests.factories import CaptureFactory, LicenceFactory, StoredFileFactory, UserFactory

pytestmark = pytest.mark.django_db


def staff_with_role(username: str, role: Role, collection: Collection):
    user = UserFactory(username=username, is_staff=True)
    assign_role(user, role, collection)
    return user


def admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_asset(author, collection: Collection, slug: str, *, extent: float = 1.0, submit: bool = False) -> Asset:
    asset = services.create_asset(actor=author, collection=collection, slug=slug, name=slug.replace("-", " ").title(),
                                  category="furniture/chair", tags=["oak", slug], licence=LicenceFactory())
    version = services.create_version(actor=author, asset=asset, captures=[CaptureFactory(collection=collection)])
    services.add_variant(actor=author, version=version, name="walnut")
    services.add_representation(actor=author, version=version, stream=io.BytesIO(glb_bytes(extent)),
                                filename="model.glb")
    services.record_cost(actor=author, version=version, kind="reconstruction", gpu_seconds=360)
    services.record_quality(actor=author, version=version, triangle_count=12, vertex_count=8, bounds=[[0, 0, 0], [1, 1, 1]])
    if submit:
        services.submit_version(actor=author, version=version)
    return asset


@pytest.fixture
def other_collection(db) -> Collection:
    owner = UserFactory(username="other-owner")
    collection = Collection.objects.create(slug="secret-line", name="Secret line", owner=owner)
    assign_role(owner, Role.ADMIN, collection)
    make_asset(owner, collection, "secret-sofa", extent=7.0)
    return collection


@pytest.fixture
def manager(collection, other_collection):
    make_asset(collection.owner, collection, "oak-chair", extent=1.0)
    make_asset(collection.owner, collection, "ash-table", extent=2.0, submit=True)
    return staff_with_role("manager", Role.ASSET_MANAGER, collection)


# Object-level RBAC -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["asset", "assetversion", "collection", "capture", "costrecord", "qualityreport",
                                  "variant", "lod", "representation", "tag"])
def test_a_manager_sees_only_their_collection_in_every_changelist(manager, path):
    response = admin_client(manager).get(f"/admin/catalog/{path}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Secret" not in page and "secret" not in page  # neither rows nor filter choices of the other collection


def test_the_asset_changelist_shows_state_tags_latest_version_and_cost(manager):
    page = admin_client(manager).get("/admin/catalog/asset/").content.decode()
    assert "Oak Chair" in page and "Ash Table" in page
    assert "in_review" in page and "draft" in page
    assert "v1" in page
    # 360 GPU seconds at the default 2.50 per GPU hour.
    assert "0.25" in page


def test_the_asset_changelist_shows_thumbnails(manager):
    asset = Asset.objects.get(slug="oak-chair")
    services.set_thumbnail(actor=asset.owner, asset=asset, stream=io.BytesIO(image_bytes("PNG", (64, 64))),
                           filename="thumb.png")
    page = admin_client(manager).get("/admin/catalog/asset/").content.decode()
    asset.refresh_from_db()
    assert f"<img src='/media/{asset.thumbnail.storage_name}'" in page


def test_another_collections_asset_is_not_found_for_the_manager(manager, other_collection):
    secret = Asset.objects.get(slug="secret-sofa")
    response = admin_client(manager).get(f"/admin/catalog/asset/{secret.pk}/change/")
    assert response.status_code == 302  # the admin redirects to its index: "doesn't exist. Perhaps it was deleted?"
    assert admin_client(manager).get(f"/admin/catalog/assetversion/{secret.versions.get().pk}/change/").status_code == 302


def test_a_user_who_is_not_staff_cannot_enter(collection):
    viewer = UserFactory(username="viewer")
    assign_role(viewer, Role.VIEWER, collection)
    assert admin_client(viewer).get("/admin/catalog/asset/").status_code == 302


def test_a_superuser_sees_every_collection(manager):
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    page = admin_client(root).get("/admin/catalog/asset/").content.decode()
    assert "Secret Sofa" in page and "Oak Chair" in page


# Saves go through the services -------------------------------------------------------------------


def test_adding_an_asset_in_the_admin_calls_create_asset_and_is_audited(manager, collection, other_collection):
    client = admin_client(manager)
    form = client.get("/admin/catalog/asset/add/").content.decode()
    assert "Spring line" in form and "Secret line" not in form  # only collections the manager may contribute to
    response = client.post("/admin/catalog/asset/add/", {
        "collection": collection.pk, "slug": "elm-stool", "name": "Elm stool", "description": "", "category": "furniture",
        "licence": "", "tag_names": "elm, Stool", "seen_row_version": "",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    asset = Asset.objects.get(slug="elm-stool")
    assert asset.owner == manager and sorted(asset.tags.values_list("name", flat=True)) == ["elm", "stool"]
    assert AuditEvent.objects.filter(action="asset.created", object_id=str(asset.pk), actor=manager).exists()


def test_adding_to_another_collection_is_refused(manager, other_collection):
    response = admin_client(manager).post("/admin/catalog/asset/add/", {
        "collection": other_collection.pk, "slug": "sneaky", "name": "Sneaky", "tag_names": "",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
    })
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Asset.objects.filter(slug="sneaky").exists()


def _change_data(asset: Asset, **overrides) -> dict:
    versions = list(asset.versions.all())
    data = {
        "name": asset.name, "description": asset.description, "category": asset.category,
        "licence": asset.licence_id or "", "tag_names": ", ".join(asset.tags.values_list("name", flat=True)),
        "seen_row_version": asset.row_version,
        "versions-TOTAL_FORMS": str(len(versions)), "versions-INITIAL_FORMS": str(len(versions)),
    }
    for i, version in enumerate(versions):
        data[f"versions-{i}-id"] = version.pk
        data[f"versions-{i}-asset"] = asset.pk
    data.update(overrides)
    return data


def test_editing_an_asset_calls_update_asset_and_is_audited(manager):
    asset = Asset.objects.get(slug="oak-chair")
    response = admin_client(manager).post(f"/admin/catalog/asset/{asset.pk}/change/",
                                          _change_data(asset, name="Oak chair, low", tag_names="oak, low"))
    assert response.status_code == 302, response.content.decode()[:2000]
    asset.refresh_from_db()
    assert asset.name == "Oak chair, low" and asset.row_version == 2
    event = AuditEvent.objects.get(action="asset.updated", object_id=str(asset.pk))
    assert event.changes["name"] == ["Oak Chair", "Oak chair, low"]
    assert event.changes["tags"] == [["oak", "oak-chair"], ["low", "oak"]]


def test_a_stale_edit_is_refused_with_a_message_and_changes_nothing(manager):
    asset = Asset.objects.get(slug="oak-chair")
    services.update_asset(actor=asset.owner, asset=asset, name="Renamed elsewhere")
    client = admin_client(manager)
    response = client.post(f"/admin/catalog/asset/{asset.pk}/change/",
                           _change_data(asset, name="My rename", seen_row_version=1), follow=True)
    page = response.content.decode()
    assert "changed since you read it (revision 1, now 2)" in page
    asset.refresh_from_db()
    assert asset.name == "Renamed elsewhere"


# Bulk actions call the services --------------------------------------------------------------------


def test_the_deprecate_action_refuses_a_draft_and_says_why(manager):
    draft = Asset.objects.get(slug="oak-chair")
    response = admin_client(manager).post("/admin/catalog/asset/", {
        "action": "deprecate", "_selected_action": [draft.pk],
    }, follow=True)
    assert "An asset in state &#x27;draft&#x27; cannot move to &#x27;deprecated&#x27;" in response.content.decode()
    draft.refresh_from_db()
    assert draft.state == Asset.State.DRAFT
    assert not AuditEvent.objects.filter(action="asset.deprecated").exists()


def test_submit_approve_publish_deprecate_through_admin_actions(manager, collection):
    reviewer = staff_with_role("reviewer", Role.REVIEWER, collection)
    asset = Asset.objects.get(slug="oak-chair")
    version = asset.versions.get()
    admin_client(manager).post("/admin/catalog/assetversion/", {"action": "submit", "_selected_action": [version.pk]})
    admin_client(reviewer).post("/admin/catalog/assetversion/", {"action": "approve", "_selected_action": [version.pk]})
    admin_client(manager).post("/admin/catalog/assetversion/", {"action": "publish", "_selected_action": [version.pk]})
    response = admin_client(manager).post("/admin/catalog/asset/", {"action": "deprecate", "_selected_action": [asset.pk]},
                                          follow=True)
    assert "1 asset(s) moved to deprecated." in response.content.decode()
    version.refresh_from_db()
    asset.refresh_from_db()
    assert version.state == AssetVersion.State.PUBLISHED and asset.state == Asset.State.DEPRECATED
    lifecycle = ["version.submitted", "asset.in_review", "version.approved", "asset.approved", "version.published",
                 "asset.published", "asset.deprecated"]
    actions = AuditEvent.objects.filter(asset_id=asset.pk, action__in=lifecycle).values_list("action", flat=True)
    assert list(actions) == lifecycle


def test_a_manager_may_not_approve_and_is_told_so(manager):
    version = Asset.objects.get(slug="ash-table").versions.get()
    response = admin_client(manager).post("/admin/catalog/assetversion/", {
        "action": "approve", "_selected_action": [version.pk]}, follow=True)
    assert "You need the &#x27;review&#x27; permission" in response.content.decode()
    version.refresh_from_db()
    assert version.state == AssetVersion.State.SUBMITTED


def test_reject_asks_for_a_reason_then_rejects(manager, collection):
    reviewer = staff_with_role("reviewer", Role.REVIEWER, collection)
    version = Asset.objects.get(slug="ash-table").versions.get()
    client = admin_client(reviewer)
    page = client.post("/admin/catalog/assetversion/", {"action": "reject", "_selected_action": [version.pk]})
    assert page.status_code == 200 and "Reject versions" in page.content.decode() and 'name="reason"' in page.content.decode()
    version.refresh_from_db()
    assert version.state == AssetVersion.State.SUBMITTED  # nothing happens before the reason is given
    client.post("/admin/catalog/assetversion/", {"action": "reject", "_selected_action": [version.pk], "apply": "1",
                                                 "reason": "Texture seams on the legs."})
    version.refresh_from_db()
    assert version.state == AssetVersion.State.REJECTED
    assert AuditEvent.objects.get(action="version.rejected").data == {"reason": "Texture seams on the legs."}


def test_a_submitted_version_page_is_read_only_and_shows_files_quality_and_cost(manager):
    version = Asset.objects.get(slug="ash-table").versions.get()
    client = admin_client(manager)
    response = client.get(f"/admin/catalog/assetversion/{version.pk}/change/")
    page = response.content.decode()
    assert response.status_code == 200
    assert 'name="_save"' not in page  # read-only: no save button
    rep = version.variants.get(name="default").lods.get().representations.get()
    assert rep.file.sha256 in page and f"/api/v1/representations/{rep.pk}/download/" in page
    assert "12 triangles" in page and "reconstruction" in page
    assert client.post(f"/admin/catalog/assetversion/{version.pk}/change/", {"notes": "edited"}).status_code == 403
    download = client.get(f"/api/v1/representations/{rep.pk}/download/")
    assert download.status_code == 200 and b"".join(download.streaming_content) == glb_bytes(2.0)


def test_opening_a_version_in_the_admin_calls_create_version(manager):
    asset = Asset.objects.get(slug="ash-table")
    response = admin_client(manager).post("/admin/catalog/assetversion/add/", {
        "asset": asset.pk, "parent": asset.versions.get().pk, "notes": "Fix the seams",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    new = asset.versions.get(number=2)
    assert new.parent.number == 1 and new.created_by == manager and new.variants.get().name == "default"
    assert AuditEvent.objects.filter(action="version.created", object_id=str(new.pk)).exists()


def test_the_capture_page_shows_each_images_problems(manager, collection):
    capture = CaptureFactory(collection=collection, name="Turntable", check_status="failed", check_report={
        "status": "failed", "views": 1, "problems": [{"code": "too_few_views", "message": "1 images; need 12."}],
    })
    CaptureImage.objects.create(capture=capture, file=StoredFileFactory(), filename="a.jpg", width=640, height=480,
                                problems=[{"code": "low_resolution", "message": "480 px on the short side."}])
    page = admin_client(manager).get(f"/admin/catalog/capture/{capture.pk}/change/").content.decode()
    assert "1 images; need 12." in page and "480 px on the short side." in page and "a.jpg" in page


# SQL cost of the changelists ---------------------------------------------------------------------

CHANGELISTS = ["asset", "assetversion", "collection", "capture", "costrecord", "qualityreport", "variant", "lod",
               "representation", "tag"]
MAX_CHANGELIST_QUERIES = 16


@pytest.mark.parametrize("path", CHANGELISTS)
def test_a_changelist_costs_the_same_for_3_or_9_assets(manager, collection, path, django_assert_max_num_queries):
    client = admin_client(manager)

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/admin/catalog/{path}/").status_code == 200
        return len(queries)

    few = count()
    for i in range(6):
        make_asset(collection.owner, collection, f"extra-{i}", extent=3.0 + i, submit=i % 2 == 0)
    with django_assert_max_num_queries(MAX_CHANGELIST_QUERIES):
        many = count()
    assert many == few


def test_published_demo_like_asset_appears_published(manager, collection):
    asset = Asset.objects.get(slug="ash-table")
    version = asset.versions.get()
    services.approve_version(actor=collection.owner.__class__.objects.create_superuser("boss", "b@x.org", "pw"),
                             version=version)
    publish_version(actor=collection.owner, version=version)
    page = admin_client(manager).get("/admin/catalog/asset/?state__exact=published").content.decode()
    assert "Ash Table" in page and "Oak Chair" not in page
