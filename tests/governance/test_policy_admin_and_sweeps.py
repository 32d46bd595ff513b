"""The review queue and rights records in the admin, the expiry sweep, overdue detection, the gate task and its
fail-closed handling of unreadable images, and the publish policy's quality and attestation rules."""
from __future__ import annotations

import datetime as dt
import io

import pytest
from django.test import Client
from django.utils import timezone

from catalog import services
from catalog.errors import PermissionDenied
from catalog.models import AssetVersion, CaptureImage, Tag
from catalog.permissions import Role
from governance.errors import PolicyNotMet, RightsError
from governance.gate_models import BrandMark, SafetyVerdict
from governance.gates.evaluation import brand_mark
from governance.models import AuditEvent, Consent, Licence, Notification
from governance.publishing import publish_version, unmet_rules
from governance.review import claim_review, decide_review, overdue_items
from governance.review_models import ReviewItem
from governance.rights import expire_rights, record_consent, revoke_consent
from governance.tasks import run_gates as run_gates_task
from tests.catalog.conftest import glb_bytes, image_bytes
from tests.factories import UserFactory
from tests.governance.conftest import submitted_version, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser():
    return UserFactory(username="root", is_staff=True, is_superuser=True)


def admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def approved_and_published(contributor, collection, *, slug="chair"):
    version = submitted_version(contributor, collection, slug=slug)
    reviewer = user_with_role(Role.REVIEWER, collection, f"rev-{slug}")
    item = ReviewItem.objects.get(version=version)
    claim_review(actor=reviewer, item=item)
    decide_review(actor=reviewer, item=item, approve=True, reason="fine")
    manager = user_with_role(Role.ASSET_MANAGER, collection, f"mgr-{slug}")
    return publish_version(actor=manager, version=version), manager


def test_licence_expiry_sweep_withdraws_dependents_once_and_notifies(collection, contributor):
    version, _ = approved_and_published(contributor, collection)
    licence = version.asset.licence
    licence.expires_at = timezone.now() - dt.timedelta(minutes=1)
    licence.save()
    report = expire_rights()
    assert report == {"licences": [licence.pk], "consents": [], "withdrawn_versions": [version.pk]}
    version.refresh_from_db()
    assert version.state == AssetVersion.State.WITHDRAWN
    assert Notification.objects.get().message == f"Version {version} was withdrawn: licence {licence} expired."
    assert expire_rights() == {"licences": [], "consents": [], "withdrawn_versions": []}  # once only
    assert AuditEvent.objects.filter(action="rights.revoked", object_type="governance.licence").count() == 1


def test_expired_licence_blocks_publishing_with_every_reason(collection, contributor, settings):
    version = submitted_version(contributor, collection)
    reviewer = user_with_role(Role.REVIEWER, collection, "rev")
    item = ReviewItem.objects.get(version=version)
    claim_review(actor=reviewer, item=item)
    decide_review(actor=reviewer, item=item, approve=True, reason="fine")
    Licence.objects.filter(pk=version.asset.licence_id).update(expires_at=timezone.now() - dt.timedelta(days=1),
                                                               channels=["print"])
    settings.ASSAY_REQUIRED_GATES = ["text"]
    settings.ASSAY_PUBLISH_QUALITY = {"min_fscore": 0.8}
    services.record_quality(actor=contributor, version=version, metrics={"fscore": 0.5})
    version.refresh_from_db()
    assert unmet_rules(version) == [
        "rights: the licences do not allow the 'web' channel (allowed: print)",
        "safety gate text has not run",
        "F-score 0.5 is below the minimum 0.8",
    ]
    with pytest.raises(PolicyNotMet):
        publish_version(actor=user_with_role(Role.ASSET_MANAGER, collection, "m"), version=version)


def test_a_broken_attestation_blocks_publishing(collection, contributor):
    version = submitted_version(contributor, collection)
    from governance.models import Attestation

    attestation = Attestation.objects.filter(version=version, representation__isnull=True).first()
    Attestation.objects.filter(pk=attestation.pk).update(payload_sha256="0" * 64)
    reasons = unmet_rules(version)
    assert any(r.startswith(f"attestations do not verify: attestation {attestation.pk}: tampered payload") for r in reasons)


def test_consent_input_is_checked_and_revoking_twice_is_refused(collection, contributor):
    asset = submitted_version(contributor, collection).asset
    with pytest.raises(RightsError, match=r"^Unknown channels tv; channels are web, ar, print, games, training\.$"):
        record_consent(actor=contributor, subject="A", channels=["tv"], assets=[asset])
    with pytest.raises(RightsError, match="at least one capture or asset"):
        record_consent(actor=contributor, subject="A", channels=["web"])
    consent = record_consent(actor=contributor, subject="A", channels=["web"], assets=[asset])
    assert revoke_consent(actor=contributor, consent=consent, reason="asked") == []  # nothing published depends on it
    with pytest.raises(RightsError, match="already revoked"):
        revoke_consent(actor=contributor, consent=consent, reason="again")


def test_overdue_items_are_found_and_highlighted_in_the_admin(collection, contributor, superuser):
    version = submitted_version(contributor, collection)
    item = ReviewItem.objects.get(version=version)
    assert list(overdue_items()) == []
    ReviewItem.objects.filter(pk=item.pk).update(due_at=timezone.now() - dt.timedelta(hours=1))
    assert list(overdue_items()) == [item]
    page = admin_client(superuser).get("/admin/governance/reviewitem/", {"overdue": "yes"}).content.decode()
    assert "overdue since" in page and str(version) in page


def test_review_page_shows_evidence_rights_and_lineage_and_claims_through_the_service(collection, contributor, superuser):
    version = submitted_version(contributor, collection)
    SafetyVerdict.objects.create(version=version, gate="text", gate_version="1.0", outcome="flag", reason="text 'ACME'")
    item = ReviewItem.objects.get(version=version)
    client = admin_client(superuser)
    page = client.get(f"/admin/governance/reviewitem/{item.pk}/change/").content.decode()
    assert "text 1.0" in page and "text &#x27;ACME&#x27;" in page
    assert "&quot;channels&quot;" in page and "&quot;nodes&quot;" in page
    client.post("/admin/governance/reviewitem/", {"action": "claim", "_selected_action": [item.pk]})
    item.refresh_from_db()
    assert item.state == ReviewItem.State.CLAIMED and item.claimed_by == superuser
    client.post("/admin/governance/reviewitem/", {"action": "reject", "_selected_action": [item.pk], "apply": "1",
                                                  "reason": "text must go"})
    item.refresh_from_db()
    assert item.state == ReviewItem.State.REJECTED
    assert item.decisions.get().reason == "text must go"


def test_brand_marks_are_added_in_the_admin_by_sha256_and_bad_images_refused(superuser):
    import cv2

    client = admin_client(superuser)
    good = io.BytesIO(cv2.imencode(".png", brand_mark())[1].tobytes())
    good.name = "acme.png"
    client.post("/admin/governance/brandmark/add/", {"name": "Acme", "owner": "Acme Inc", "action": "flag", "active": "on",
                                                     "upload": good})
    mark = BrandMark.objects.get(name="Acme")
    assert len(mark.image.sha256) == 64
    bad = io.BytesIO(b"not an image at all")
    bad.name = "x.png"
    response = client.post("/admin/governance/brandmark/add/", {"name": "Bad", "action": "flag", "upload": bad}, follow=True)
    assert not BrandMark.objects.filter(name="Bad").exists()
    assert response.status_code == 200


def test_consents_are_revoked_from_the_admin_with_a_reason(collection, contributor, superuser):
    version, _ = approved_and_published(contributor, collection)
    consent = record_consent(actor=contributor, subject="Jane", channels=["web"], assets=[version.asset])
    admin_client(superuser).post("/admin/governance/consent/", {"action": "revoke", "_selected_action": [consent.pk],
                                                                "apply": "1", "reason": "withdrawn by Jane"})
    consent.refresh_from_db()
    assert consent.revocation_reason == "withdrawn by Jane"
    version.refresh_from_db()
    assert version.state == AssetVersion.State.WITHDRAWN


def test_gate_task_blocks_on_an_unreadable_capture_image(collection, contributor):
    version = submitted_version(contributor, collection)
    capture = services.create_capture(actor=contributor, collection=collection, name="shoot",
                                      images=[("a.png", io.BytesIO(image_bytes("PNG", (64, 64))))])
    version.captures.add(capture)
    image = CaptureImage.objects.get(capture=capture)
    from django.core.files.storage import default_storage

    default_storage.delete(image.file.storage_name)
    with default_storage.open(image.file.storage_name, "wb") as handle:
        handle.write(b"garbage")
    outcomes = run_gates_task(version.pk)
    assert outcomes == {"export_control": "pass", "faces": "block", "logos": "block", "text": "block"}
    verdict = SafetyVerdict.objects.get(version=version, gate="faces")
    assert verdict.reason == "cannot read 1 image(s), so the gate cannot vouch for them: a.png: not a decodable image"
    assert "safety gate faces blocks" in "; ".join(unmet_rules(version))


def test_consent_channels_are_kept_sorted(collection, contributor):
    asset = submitted_version(contributor, collection).asset
    consent = record_consent(actor=contributor, subject="B", channels=["web", "ar"], assets=[asset])
    assert Consent.objects.get(pk=consent.pk).channels == ["ar", "web"]


def test_a_direct_catalog_approval_closes_the_queue_item_or_is_refused_when_two_are_needed(collection, contributor):
    reviewer = user_with_role(Role.REVIEWER, collection, "rev")
    version = submitted_version(contributor, collection)
    services.approve_version(actor=reviewer, version=version, reason="ok")
    item = ReviewItem.objects.get(version=version)
    assert item.state == ReviewItem.State.APPROVED and item.decisions.get().reviewer == reviewer

    asset = version.asset
    asset.tags.add(Tag.objects.get_or_create(name="public-facing")[0])
    second = services.create_version(actor=contributor, asset=asset, parent=version)
    services.add_representation(actor=contributor, version=second, stream=io.BytesIO(glb_bytes(2.0)), filename="c.glb")
    services.submit_version(actor=contributor, version=second)
    with pytest.raises(PermissionDenied, match=r"needs 2 approvals from different reviewers; decide it through the review"):
        services.approve_version(actor=reviewer, version=second)
    second.refresh_from_db()
    assert second.state == AssetVersion.State.SUBMITTED


def test_submitting_queues_the_gates_after_commit(collection, contributor, django_capture_on_commit_callbacks, monkeypatch):
    queued = []
    monkeypatch.setattr("governance.tasks.run_gates.delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        version = submitted_version(contributor, collection)
    assert queued == [version.pk]
