"""The compliance admin: a read-only, permission-filtered audit trail, key rotation and revocation through the
services, and attestations shown decoded with their verification."""
from __future__ import annotations

import pytest
from django.test import Client

from catalog.permissions import Role
from governance import keys
from governance.models import Attestation, AuditEvent, SigningKey
from governance.tree_heads import sign_tree_head
from tests.factories import UserFactory
from tests.governance.conftest import append_events, submitted_version, user_with_role

pytestmark = pytest.mark.django_db


def admin_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def superuser():
    return UserFactory(username="root", is_staff=True, is_superuser=True)


def test_the_trail_is_read_only_and_pretty(superuser, contributor, collection):
    version = submitted_version(contributor, collection)
    client = admin_client(superuser)
    listing = client.get("/admin/governance/auditevent/", {"action__exact": "version.submitted"})
    assert listing.status_code == 200 and "version.submitted" in listing.content.decode()
    event = AuditEvent.objects.get(action="version.submitted", object_id=str(version.pk))
    detail = client.get(f"/admin/governance/auditevent/{event.pk}/change/").content.decode()
    assert "&quot;attestations&quot;" in detail and "<pre" in detail
    assert client.get("/admin/governance/auditevent/add/").status_code == 403
    before = AuditEvent.objects.count()
    client.post(f"/admin/governance/auditevent/{event.pk}/delete/", {"post": "yes"})
    assert AuditEvent.objects.filter(pk=event.pk).exists() and AuditEvent.objects.count() >= before
    assert client.get("/admin/governance/auditevent/", {"asset": version.asset_id, "q": "carla"}).status_code == 200


def test_a_collection_auditor_sees_only_their_assets_events(contributor, collection):
    version = submitted_version(contributor, collection)
    append_events(1, action="user.logged_in")
    auditor = user_with_role(Role.COMPLIANCE_OFFICER, collection, "olga")
    auditor.is_staff = True
    auditor.save()
    page = admin_client(auditor).get("/admin/governance/auditevent/").content.decode()
    assert "version.submitted" in page and "user.logged_in" not in page
    assert f"asset {version.asset_id}" in page
    assert admin_client(auditor).get("/admin/governance/signingkey/").status_code == 403


def test_rotate_and_revoke_through_admin_actions(superuser):
    old = keys.active_key(SigningKey.Purpose.TREE_HEAD)
    client = admin_client(superuser)
    client.post("/admin/governance/signingkey/", {"action": "rotate", "_selected_action": [old.pk]})
    old.refresh_from_db()
    assert old.status == "retired" and AuditEvent.objects.filter(action="key.rotated", actor_name="root").exists()
    ask = client.post("/admin/governance/signingkey/", {"action": "revoke", "_selected_action": [old.pk]})
    assert "Revoke signing keys" in ask.content.decode() and old.key_id in ask.content.decode()
    client.post("/admin/governance/signingkey/", {"action": "revoke", "_selected_action": [old.pk], "apply": "1",
                                                  "reason": "found on a public gist"})
    old.refresh_from_db()
    assert old.status == "revoked" and old.revocation_reason == "found on a public gist"


def test_tree_head_signature_check_action(superuser):
    head = sign_tree_head()
    response = admin_client(superuser).post("/admin/governance/signedtreehead/", {
        "action": "check_signatures", "_selected_action": [head.pk]}, follow=True)
    assert f"STH {head.pk} (tree size {head.tree_size}): signature valid." in response.content.decode()


def test_attestation_detail_shows_the_statement_and_its_verification(superuser, contributor, collection):
    version = submitted_version(contributor, collection)
    attestation = Attestation.objects.filter(version=version).first()
    page = admin_client(superuser).get(f"/admin/governance/attestation/{attestation.pk}/change/").content.decode()
    assert "verifies" in page and "https://slsa.dev/provenance/v1" in page and "buildDefinition" in page
    assert f"version:{version.pk}" in page  # the lineage
