"""The catalog's rules, as the services enforce them: permissions, states, immutability, exact messages,
and that each change commits together with its audit event (or not at all, leaving no row and no blob)."""
from __future__ import annotations

import decimal
import io
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.db import transaction

from catalog import selectors, services
from catalog.downloads import authorize_download
from catalog.errors import Duplicate, InvalidTransition, PermissionDenied, StaleObject, VersionImmutable
from catalog.models import Asset, AssetVersion, Collection, Representation, StoredFile
from catalog.permissions import Action, Role, assign_role, can
from governance.errors import PolicyNotMet
from governance.models import AuditEvent
from governance.publishing import publish_version, withdraw_version
from tests.catalog.conftest import glb_bytes, image_bytes, user_with_role
from tests.factories import AssetFactory, AssetVersionFactory, LicenceFactory, UserFactory

pytestmark = pytest.mark.django_db


def _blob_files(settings) -> list[Path]:
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


@pytest.fixture
def contributor(collection):
    return user_with_role(Role.CONTRIBUTOR, collection, "carla")


@pytest.fixture
def manager(collection):
    return user_with_role(Role.ASSET_MANAGER, collection, "manny")


@pytest.fixture
def reviewer(collection):
    return user_with_role(Role.REVIEWER, collection, "rita")


@pytest.fixture
def asset(collection, contributor) -> Asset:
    return services.create_asset(actor=contributor, collection=collection, slug="chair", name="Chair",
                                 licence=LicenceFactory())


def _version_with_model(actor, asset: Asset) -> AssetVersion:
    version = services.create_version(actor=actor, asset=asset)
    services.add_representation(actor=actor, version=version, stream=io.BytesIO(glb_bytes()), filename="chair.glb")
    return version


# Collections and roles -------------------------------------------------------------------------


def test_creating_a_collection_needs_the_global_permission_and_makes_the_creator_its_admin():
    with pytest.raises(PermissionDenied, match="^You need the permission to add collections.$"):
        services.create_collection(actor=UserFactory(), slug="x", name="X")
    creator = UserFactory(username="gina")
    creator.groups.add(Group.objects.get(name="admin"))  # the global admin role group (setup_roles)
    collection = services.create_collection(actor=type(creator).objects.get(pk=creator.pk), slug="autumn", name="Autumn")
    creator.groups.clear()
    creator = type(creator).objects.get(pk=creator.pk)  # fresh permission caches: only the object grant is left
    assert all(can(creator, action, collection) for action in Action)
    event = AuditEvent.objects.get(action="collection.created")
    assert event.object_id == str(collection.pk) and event.changes == {"name": [None, "Autumn"], "slug": [None, "autumn"]}
    with pytest.raises(Duplicate, match="^A collection with the slug 'autumn' already exists.$"):
        services.create_collection(actor=UserFactory(is_superuser=True), slug="autumn", name="Again")


def test_only_a_granter_grants_roles_and_each_grant_is_audited(collection, owner, contributor):
    newcomer = UserFactory(username="nina")
    with pytest.raises(PermissionDenied, match="^You need the 'grant' permission on collection 'Spring line'.$"):
        services.grant_role(actor=contributor, principal=newcomer, role=Role.VIEWER, obj=collection)
    codenames = services.grant_role(actor=owner, principal=newcomer, role=Role.REVIEWER, obj=collection)
    assert codenames == ["view_collection", "review_collection"]
    assert can(UserFactory._meta.model.objects.get(pk=newcomer.pk), Action.REVIEW, collection)
    event = AuditEvent.objects.get(action="permission.changed")
    assert event.data == {"grant": "reviewer", "principal": "user:nina", "permissions": codenames}
    services.revoke_role(actor=owner, principal=newcomer, role=Role.REVIEWER, obj=collection)
    assert not can(UserFactory._meta.model.objects.get(pk=newcomer.pk), Action.VIEW, collection)


# Assets ----------------------------------------------------------------------------------------


def test_a_viewer_cannot_create_assets(collection):
    viewer = user_with_role(Role.VIEWER, collection)
    with pytest.raises(PermissionDenied, match="^You need the 'contribute' permission on collection 'Spring line'.$"):
        services.create_asset(actor=viewer, collection=collection, slug="x", name="X")
    assert not Asset.objects.exists() and not AuditEvent.objects.filter(action="asset.created").exists()


def test_creating_an_asset_normalises_tags_refuses_duplicate_slugs_and_audits(collection, contributor):
    asset = services.create_asset(actor=contributor, collection=collection, slug="chair", name="Chair",
                                  category="furniture/chair", tags=["Oak", "oak ", "chair", ""])
    assert sorted(asset.tags.values_list("name", flat=True)) == ["chair", "oak"]
    event = AuditEvent.objects.get(action="asset.created")
    assert event.asset_id == asset.pk and event.actor_name == "carla"
    assert event.changes["tags"] == [None, ["chair", "oak"]]
    with pytest.raises(Duplicate, match="^The collection 'spring-line' already has an asset with the slug 'chair'.$"):
        services.create_asset(actor=contributor, collection=collection, slug="chair", name="Another")


def test_update_refuses_a_stale_row_version_and_unknown_fields(asset, manager):
    with pytest.raises(StaleObject) as caught:
        services.update_asset(actor=manager, asset=asset, expected_row_version=7, name="New")
    assert caught.value.detail == (
        "Asset 'Chair' changed since you read it (revision 7, now 1); fetch it again and re-apply your change."
    )
    assert caught.value.status_code == 412
    with pytest.raises(ValueError, match="^Not editable: state$"):
        services.update_asset(actor=manager, asset=asset, state="published")


def test_an_update_bumps_the_row_version_and_audits_only_real_changes(asset, manager):
    updated = services.update_asset(actor=manager, asset=asset, expected_row_version=1, name="Oak chair", tags=["oak"])
    assert (updated.name, updated.row_version) == ("Oak chair", 2)
    event = AuditEvent.objects.get(action="asset.updated")
    assert event.changes == {"name": ["Chair", "Oak chair"], "tags": [[], ["oak"]]}
    services.update_asset(actor=manager, asset=updated, expected_row_version=2, name="Oak chair")
    assert Asset.objects.get(pk=asset.pk).row_version == 2
    assert AuditEvent.objects.filter(action="asset.updated").count() == 1


def test_a_contributor_cannot_edit(asset, contributor):
    with pytest.raises(PermissionDenied, match="^You need the 'manage' permission on asset 'Chair'.$"):
        services.update_asset(actor=contributor, asset=asset, name="Mine")


def test_lifecycle_moves_follow_the_state_machine(asset, manager, reviewer):
    with pytest.raises(InvalidTransition) as caught:
        services.transition_asset(actor=manager, asset=asset, to_state=Asset.State.PUBLISHED)
    assert caught.value.detail == "An asset in state 'draft' cannot move to 'published'; allowed: archived, in_review."
    asset = services.transition_asset(actor=manager, asset=asset, to_state=Asset.State.IN_REVIEW, reason="ready")
    with pytest.raises(PermissionDenied, match="^You need the 'review' permission on asset 'Chair'.$"):
        services.transition_asset(actor=manager, asset=asset, to_state=Asset.State.APPROVED)
    asset = services.transition_asset(actor=reviewer, asset=asset, to_state=Asset.State.APPROVED)
    assert (asset.state, asset.row_version) == ("approved", 3)
    event = AuditEvent.objects.get(action="asset.in_review")
    assert event.changes == {"state": ["draft", "in_review"]} and event.data == {"reason": "ready"}


def test_an_archived_asset_is_final_and_takes_no_versions(asset, manager):
    services.transition_asset(actor=manager, asset=asset, to_state=Asset.State.ARCHIVED)
    with pytest.raises(InvalidTransition, match=r"^An asset in state 'archived' cannot move to 'draft'; allowed: none \(it is final\).$"):
        services.transition_asset(actor=manager, asset=asset, to_state=Asset.State.DRAFT)
    with pytest.raises(InvalidTransition, match="^Asset 'Chair' is archived; it takes no new versions.$"):
        services.create_version(actor=manager, asset=asset)


def test_a_stale_transition_is_refused(asset, manager):
    with pytest.raises(StaleObject):
        services.transition_asset(actor=manager, asset=asset, to_state=Asset.State.IN_REVIEW, expected_row_version=0)
    assert Asset.objects.get(pk=asset.pk).state == Asset.State.DRAFT


# Versions --------------------------------------------------------------------------------------


def test_versions_are_numbered_and_open_with_a_default_variant_and_lod0(asset, contributor):
    first = services.create_version(actor=contributor, asset=asset)
    second = services.create_version(actor=contributor, asset=asset, parent=first, notes="retopo")
    assert (first.number, second.number, second.parent_id) == (1, 2, first.pk)
    assert [(v.name, [lod.level for lod in v.lods.all()]) for v in second.variants.all()] == [("default", [0])]
    assert AuditEvent.objects.filter(action="version.created").count() == 2


def test_a_parent_from_another_asset_is_refused(asset, contributor, collection):
    foreign = AssetVersionFactory(asset=AssetFactory(collection=collection))
    with pytest.raises(InvalidTransition, match="^A version's parent must be a version of the same asset.$"):
        services.create_version(actor=contributor, asset=asset, parent=foreign)


def test_add_variant_refuses_duplicate_names(asset, contributor):
    version = services.create_version(actor=contributor, asset=asset)
    services.add_variant(actor=contributor, version=version, name="walnut", kind="colourway")
    with pytest.raises(Duplicate, match="^Version Chair v1 already has a variant named 'walnut'.$"):
        services.add_variant(actor=contributor, version=version, name="walnut")


def test_identical_bytes_are_stored_once(asset, contributor, settings):
    version = services.create_version(actor=contributor, asset=asset)
    data = glb_bytes()
    first = services.add_representation(actor=contributor, version=version, stream=io.BytesIO(data), filename="a.glb")
    second = services.add_representation(actor=contributor, version=version, stream=io.BytesIO(data), filename="b.glb",
                                         lod_level=1, triangle_count=12)
    assert first.file_id == second.file_id and StoredFile.objects.count() == 1
    assert len(_blob_files(settings)) == 1
    assert second.lod.level == 1 and second.lod.triangle_count == 12
    assert services.stored_bytes(version) == len(data)


def test_a_failed_upload_rolls_back_its_row_and_its_new_blob(asset, contributor, settings):
    version = services.create_version(actor=contributor, asset=asset)
    services.add_representation(actor=contributor, version=version, stream=io.BytesIO(glb_bytes()), filename="a.glb")
    before = set(_blob_files(settings))
    with pytest.raises(Duplicate, match="^LOD0 of 'default' already has a file named 'a.glb'.$"):
        services.add_representation(actor=contributor, version=version, stream=io.BytesIO(glb_bytes(2.0)),
                                    filename="a.glb")
    assert set(_blob_files(settings)) == before
    assert StoredFile.objects.count() == 1 and Representation.objects.count() == 1
    assert AuditEvent.objects.filter(action="representation.added").count() == 1


def test_the_audit_event_commits_with_the_change_or_neither_does(asset, contributor, settings, monkeypatch):
    version = services.create_version(actor=contributor, asset=asset)

    def broken_log(**kwargs):
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(services, "record_event", broken_log)
    with pytest.raises(RuntimeError, match="audit log unavailable"):
        services.add_representation(actor=contributor, version=version, stream=io.BytesIO(glb_bytes()), filename="a.glb")
    assert not Representation.objects.exists() and not StoredFile.objects.exists()
    assert _blob_files(settings) == []
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="caller rolled back"), transaction.atomic():
        services.add_variant(actor=contributor, version=version, name="walnut")
        assert AuditEvent.objects.filter(action="variant.created").count() == 1
        raise RuntimeError("caller rolled back")
    assert not version.variants.filter(name="walnut").exists()
    assert not AuditEvent.objects.filter(action="variant.created").exists()


def test_an_image_cannot_be_added_where_a_representation_is_expected_unless_it_is_one(asset, contributor):
    version = services.create_version(actor=contributor, asset=asset)
    texture = services.add_representation(actor=contributor, version=version, stream=io.BytesIO(image_bytes("PNG")),
                                          filename="albedo.png", role=Representation.Role.TEXTURE)
    assert (texture.format, texture.file.media_type) == ("png", "image/png")


def test_submit_needs_a_model_file_and_freezes_the_version(asset, contributor):
    version = services.create_version(actor=contributor, asset=asset)
    with pytest.raises(InvalidTransition, match="^Version Chair v1 has no model file; add one before submitting.$"):
        services.submit_version(actor=contributor, version=version)
    services.add_representation(actor=contributor, version=version, stream=io.BytesIO(glb_bytes()), filename="c.glb")
    version = services.submit_version(actor=contributor, version=version)
    assert version.state == AssetVersion.State.SUBMITTED and version.submitted_at is not None
    assert Asset.objects.get(pk=asset.pk).state == Asset.State.IN_REVIEW
    with pytest.raises(VersionImmutable, match="^Version Chair v1 is submitted; it is immutable. Open a new version instead.$"):
        services.add_representation(actor=contributor, version=version, stream=io.BytesIO(glb_bytes(3.0)),
                                    filename="d.glb")
    with pytest.raises(VersionImmutable):
        services.add_variant(actor=contributor, version=version, name="walnut")
    actions = list(AuditEvent.objects.filter(asset_id=asset.pk).values_list("action", flat=True))
    assert actions[-2:] == ["version.submitted", "asset.in_review"]


def test_review_rules(asset, contributor, reviewer):
    version = _version_with_model(contributor, asset)
    with pytest.raises(InvalidTransition, match="^Only a submitted version can be reviewed; Chair v1 is open.$"):
        services.approve_version(actor=reviewer, version=version)
    services.submit_version(actor=contributor, version=version)
    with pytest.raises(PermissionDenied, match="^You need the 'review' permission on asset version 'Chair v1'.$"):
        services.approve_version(actor=contributor, version=version)
    with pytest.raises(InvalidTransition, match="^Say why the version is rejected, so its author can fix it.$"):
        services.reject_version(actor=reviewer, version=version, reason="  ")
    both = user_with_role(Role.REVIEWER, asset.collection)
    services.grant_role(actor=asset.collection.owner, principal=both, role=Role.CONTRIBUTOR, obj=asset.collection)
    own = _version_with_model(both, asset)
    services.submit_version(actor=both, version=own)
    with pytest.raises(PermissionDenied, match="^You cannot review a version you created yourself.$"):
        services.approve_version(actor=both, version=own)
    approved = services.approve_version(actor=reviewer, version=version, reason="clean topology")
    assert approved.state == AssetVersion.State.APPROVED
    assert Asset.objects.get(pk=asset.pk).state == Asset.State.APPROVED
    assert AuditEvent.objects.get(action="version.approved").data == {"reason": "clean topology"}


def test_publish_policy_and_withdrawal(asset, contributor, reviewer, manager):
    version = _version_with_model(contributor, asset)
    services.submit_version(actor=contributor, version=version)
    services.approve_version(actor=reviewer, version=version)
    Asset.objects.filter(pk=asset.pk).update(licence=None)
    with pytest.raises(PolicyNotMet) as caught:
        publish_version(actor=manager, version=version)
    assert caught.value.detail == "Version Chair v1 cannot be published: the asset has no licence."
    assert caught.value.extra == {"reasons": ["the asset has no licence"]}
    Asset.objects.filter(pk=asset.pk).update(licence=LicenceFactory())
    with pytest.raises(PermissionDenied):
        publish_version(actor=reviewer, version=version)
    published = publish_version(actor=manager, version=version)
    assert published.state == AssetVersion.State.PUBLISHED and published.published_at is not None
    assert Asset.objects.get(pk=asset.pk).state == Asset.State.PUBLISHED
    withdrawn = withdraw_version(actor=manager, version=published, reason="rights expired")
    assert withdrawn.state == AssetVersion.State.WITHDRAWN
    assert Asset.objects.get(pk=asset.pk).state == Asset.State.IN_REVIEW
    with pytest.raises(InvalidTransition, match="^Only a published version can be withdrawn; Chair v1 is withdrawn.$"):
        withdraw_version(actor=manager, version=withdrawn, reason="again")


# Cost, quality, downloads ----------------------------------------------------------------------


def test_costs_are_priced_at_the_configured_rates_and_summed_per_asset(asset, contributor, settings):
    settings.ASSAY_RATES = {**settings.ASSAY_RATES, "gpu_hour": 2.0, "human_hour": 60.0}
    first = services.create_version(actor=contributor, asset=asset)
    second = services.create_version(actor=contributor, asset=asset)
    services.record_cost(actor=contributor, version=first, kind="reconstruction", gpu_seconds=3600)
    services.record_cost(actor=contributor, version=second, kind="reconstruction", gpu_seconds=1800)
    services.record_cost(actor=contributor, version=second, kind="review", human_minutes=30)
    summary = selectors.asset_cost(asset)
    assert summary["totals"] == [{
        "currency": "USD", "amount": decimal.Decimal("33.0000"), "gpu_seconds": 5400, "cpu_seconds": 0,
        "storage_bytes": 0, "postprocess_seconds": 0, "human_minutes": 30, "records": 3,
    }]
    assert [(k["kind"], k["amount"], k["records"]) for k in summary["by_kind"]] == [
        ("reconstruction", decimal.Decimal("3.0000"), 2), ("review", decimal.Decimal("30.0000"), 1),
    ]
    assert selectors.version_cost(first)["totals"][0]["amount"] == decimal.Decimal("2.0000")
    assert AuditEvent.objects.filter(action="cost.recorded").count() == 3


def test_restricted_downloads_need_the_audit_permission_and_are_audited(asset, contributor, collection):
    version = services.create_version(actor=contributor, asset=asset)
    secret = services.add_representation(actor=contributor, version=version, stream=io.BytesIO(glb_bytes()),
                                         filename="master.glb", restricted=True)
    with pytest.raises(PermissionDenied, match="^You need the 'audit' permission on representation 'master.glb'.$"):
        authorize_download(actor=contributor, representation=secret)
    officer = user_with_role(Role.COMPLIANCE_OFFICER, collection, "olga")
    authorize_download(actor=officer, representation=secret)
    event = AuditEvent.objects.get(action="file.downloaded")
    assert (event.actor_name, event.asset_id, event.data["filename"]) == ("olga", asset.pk, "master.glb")


def test_selectors_show_only_what_the_user_may_see(asset, collection):
    elsewhere = AssetFactory(collection__slug="other")
    viewer = user_with_role(Role.VIEWER, collection)
    assert list(selectors.assets_visible_to(viewer)) == [asset]
    assert list(selectors.collections_visible_to(viewer)) == [collection]
    outsider = UserFactory()
    assign_role(outsider, Role.VIEWER, elsewhere)  # a grant on one asset, not its collection
    assert list(selectors.assets_visible_to(outsider)) == [elsewhere]
    assert list(selectors.collections_visible_to(outsider)) == []
    assert Collection.objects.count() == 2
