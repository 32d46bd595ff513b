"""The audit API: search with the audit permission, inclusion and consistency proofs, tree heads, and the signed
export bundle that verifies offline with only the public key (the documented script, run as a subprocess)."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import timezone

from catalog.permissions import Role
from governance import keys
from governance.merkle import verify_consistency, verify_inclusion
from governance.models import AuditEvent, SigningKey
from governance.tree_heads import sign_tree_head
from tests.factories import UserFactory
from tests.governance.conftest import append_events, client_for_user, submitted_version, user_with_role

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def auditor(collection):
    return user_with_role(Role.COMPLIANCE_OFFICER, collection, "olga")


@pytest.fixture
def global_auditor():
    from django.contrib.auth.models import Permission

    user = UserFactory(username="gabi")
    user.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    return type(user).objects.get(pk=user.pk)


def test_search_needs_the_audit_permission(contributor):
    response = client_for_user(contributor).get("/api/v1/audit/events/")
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "You need the audit permission (compliance officer or admin role) to read the audit trail."
    )
    from rest_framework.test import APIClient
    assert APIClient().get("/api/v1/audit/events/").status_code in (401, 403)


def test_collection_auditors_see_their_assets_events_only(auditor, contributor, collection):
    version = submitted_version(contributor, collection)
    append_events(2, action="user.logged_in")  # about no asset: global auditors only
    client = client_for_user(auditor)
    events = client.get("/api/v1/audit/events/", {"page_size": 200}).json()["results"]
    assert events and {e["asset_id"] for e in events} == {version.asset_id}
    assert "user.logged_in" not in {e["action"] for e in events}

    by_action = client.get("/api/v1/audit/events/", {"action": "version.submitted"}).json()["results"]
    assert [e["object_id"] for e in by_action] == [str(version.pk)]
    prefix = client.get("/api/v1/audit/events/", {"action": "version."}).json()["results"]
    assert {e["action"] for e in prefix} == {"version.created", "version.submitted"}
    by_actor = client.get("/api/v1/audit/events/", {"actor": "carla", "asset": version.asset_id}).json()["results"]
    assert by_actor and {e["actor_name"] for e in by_actor} == {"carla"}
    future = (timezone.now() + dt.timedelta(hours=1)).isoformat()
    assert client.get("/api/v1/audit/events/", {"since": future}).json()["results"] == []
    bad = client.get("/api/v1/audit/events/", {"since": "yesterday"})
    assert bad.status_code == 400 and bad["Content-Type"] == "application/problem+json"


def test_global_auditors_see_everything(global_auditor, contributor, collection):
    submitted_version(contributor, collection)
    append_events(1, action="user.logged_in")
    events = client_for_user(global_auditor).get("/api/v1/audit/events/", {"page_size": 200}).json()["results"]
    assert len(events) == AuditEvent.objects.count()
    assert [e["seq"] for e in events] == sorted((e["seq"] for e in events), reverse=True)


def test_inclusion_proof_verifies_against_the_signed_head(global_auditor):
    append_events(10)
    head = sign_tree_head()
    client = client_for_user(global_auditor)
    event = client.get("/api/v1/audit/events/4/").json()
    assert event["seq"] == 4 and event["leaf_hash"] == AuditEvent.objects.get(seq=4).leaf_hash
    body = client.get("/api/v1/audit/events/4/proof").json()
    assert body["tree_size"] == head.tree_size and body["tree_head"]["id"] == head.pk
    verify_inclusion(bytes.fromhex(body["leaf_hash"]), 4, body["tree_size"], [bytes.fromhex(p) for p in body["proof"]],
                     bytes.fromhex(head.root_hash))
    smaller = client.get("/api/v1/audit/events/4/proof", {"tree_size": 7}).json()
    assert smaller["tree_size"] == 7 and smaller["tree_head"] is None


@pytest.mark.parametrize(("params", "detail"), [
    ({"tree_size": "abc"}, "'tree_size' must be a whole number, not 'abc'"),
    ({"tree_size": "-1"}, "'tree_size' must not be negative"),
    ({"tree_size": "3"}, "leaf index 4 is not in a tree of size 3"),
    ({"tree_size": "99"}, "tree size 99 is out of range: the log holds 11 leaves"),
])
def test_malformed_proof_requests_are_problems(global_auditor, params, detail):
    append_events(10)
    sign_tree_head()  # + key.created: 11 events
    response = client_for_user(global_auditor).get("/api/v1/audit/events/4/proof", params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "bad_proof_request" and response.json()["detail"] == detail


def test_proof_of_an_unseen_event_is_not_found(auditor):
    append_events(3)
    assert client_for_user(auditor).get("/api/v1/audit/events/1/proof").status_code == 404


def test_consistency_proof_between_heads(global_auditor):
    append_events(5)
    first = sign_tree_head()
    append_events(9)
    second = sign_tree_head()
    client = client_for_user(global_auditor)
    body = client.get("/api/v1/audit/consistency", {"first": first.tree_size, "second": second.tree_size}).json()
    assert body["first_root"] == first.root_hash and body["second_root"] == second.root_hash
    verify_consistency(first.tree_size, second.tree_size, bytes.fromhex(first.root_hash), bytes.fromhex(second.root_hash),
                       [bytes.fromhex(p) for p in body["proof"]])
    bad = client.get("/api/v1/audit/consistency", {"first": 9, "second": 3})
    assert bad.status_code == 400 and bad.json()["detail"] == "'first' (9) must not be larger than 'second' (3)"
    missing = client.get("/api/v1/audit/consistency", {"first": 2})
    assert missing.status_code == 400 and missing.json()["detail"] == "'second' is required"


def test_tree_heads_list_latest_and_sign_on_demand(global_auditor, auditor):
    client = client_for_user(global_auditor)
    assert client.get("/api/v1/audit/tree-heads/latest").status_code == 404
    created = client.post("/api/v1/audit/tree-heads/")
    assert created.status_code == 201
    append_events(2)
    second = client.post("/api/v1/audit/tree-heads/").json()
    latest = client.get("/api/v1/audit/tree-heads/latest").json()
    assert latest == second and latest["tree_size"] == created.json()["tree_size"] + 2
    assert [h["id"] for h in client.get("/api/v1/audit/tree-heads/").json()["results"]] == [second["id"], created.json()["id"]]
    assert client_for_user(auditor).post("/api/v1/audit/tree-heads/").status_code == 403


def _export(client, since, until) -> bytes:
    response = client.get("/api/v1/audit/export", {"from": since.isoformat(), "to": until.isoformat()})
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/x-ndjson"
    return response.content


def _run_verifier(tmp_path: Path, bundle: bytes, pem: str) -> subprocess.CompletedProcess:
    """The documented offline use: the script and merkle.py copied to a folder, no Django on the path."""
    folder = tmp_path / "offline"
    folder.mkdir(exist_ok=True)
    shutil.copy(REPO / "governance" / "verify_bundle.py", folder)
    shutil.copy(REPO / "governance" / "merkle.py", folder)
    (folder / "bundle.jsonl").write_bytes(bundle)
    (folder / "key.pem").write_text(pem)
    return subprocess.run(
        [sys.executable, "-I", str(folder / "verify_bundle.py"), "--public-key", str(folder / "key.pem"),
         str(folder / "bundle.jsonl")], capture_output=True, text=True, cwd=folder, check=False,
    )


def test_export_bundle_verifies_offline_and_tampering_is_named(global_auditor, tmp_path):
    before = timezone.now() - dt.timedelta(seconds=1)
    append_events(6)
    bundle = _export(client_for_user(global_auditor), before, timezone.now() + dt.timedelta(seconds=1))
    lines = [json.loads(line) for line in bundle.splitlines()]
    assert lines[0]["type"] == "assay.audit-bundle/v1" and lines[0]["event_count"] == 6
    assert lines[0]["tree_head"]["tree_size"] == 7  # the head, signed for the export, also covers key.created
    pem = lines[0]["public_key"]["pem"]
    assert pem == keys.public_key_pem(keys.active_key(SigningKey.Purpose.TREE_HEAD))
    assert AuditEvent.objects.filter(action="audit.exported").count() == 1

    ok = _run_verifier(tmp_path, bundle, pem)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip() == "OK: 6 events verified against the signed tree head"

    edited = bundle.replace(b'"data":{"i":3}', b'"data":{"i":4}')
    result = _run_verifier(tmp_path, edited, pem)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "the bundle's lines do not match the signed digest (lines added, dropped or edited)",
        "event seq 3: its content does not match its leaf hash",
    ]

    dropped = b"".join(line for i, line in enumerate(bundle.splitlines(keepends=True)) if i != 2)
    result = _run_verifier(tmp_path, dropped, pem)
    assert result.stdout.splitlines() == [
        "the bundle's lines do not match the signed digest (lines added, dropped or edited)",
        "the header announces 6 events, the bundle holds 5",
    ]

    other_pem = keys.public_key_pem(keys.rotate_signing_key(actor="ops", purpose=SigningKey.Purpose.TREE_HEAD))
    result = _run_verifier(tmp_path, bundle, other_pem)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith("the bundle is signed by key ")


def test_export_rejects_bad_ranges(global_auditor, contributor):
    client = client_for_user(global_auditor)
    missing = client.get("/api/v1/audit/export", {"to": "2026-01-01T00:00:00Z"})
    assert missing.status_code == 400 and missing.json()["detail"] == "'from' is required (ISO 8601 date-time)"
    garbage = client.get("/api/v1/audit/export", {"from": "soon", "to": "2026-01-01T00:00:00Z"})
    assert garbage.json()["detail"] == "'from' is not an ISO 8601 date-time: 'soon'"
    backwards = client.get("/api/v1/audit/export", {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"})
    assert backwards.status_code == 400
    assert backwards.json()["detail"] == "'from' (2026-01-02T00:00:00+00:00) must be before 'to' (2026-01-01T00:00:00+00:00)"
    assert client_for_user(contributor).get("/api/v1/audit/export", {"from": "2026-01-01", "to": "2026-01-02"}).status_code == 403


def test_search_costs_the_same_queries_at_any_page_size(global_auditor, auditor, contributor, collection):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    submitted_version(contributor, collection)
    append_events(120)
    counts = {}
    for user in (global_auditor, auditor):
        client = client_for_user(user)
        client.get("/api/v1/audit/events/", {"page_size": 1})  # warm the user's permission cache
        for size in (10, 100):
            with CaptureQueriesContext(connection) as queries:
                assert client.get("/api/v1/audit/events/", {"page_size": size}).status_code == 200
            counts[(user.username, size)] = len(queries)
    assert counts[("gabi", 10)] == counts[("gabi", 100)]
    assert counts[("olga", 10)] == counts[("olga", 100)]
    assert max(counts.values()) <= 8, counts


@pytest.mark.parametrize(("bundle", "problem"), [
    (b"{}", "the bundle needs a header and a signature line"),
    (b"{}\nnot json\n", "a line is not JSON: Expecting value: line 1 column 1 (char 0)"),
    (b"[]\n{}\n", "the header and the closing line must be JSON objects"),
    (b'{"type": "assay.audit-bundle/v1"}\n{"type": "signature"}\n', "the header has no tree head"),
    (b'{"type": "assay.audit-bundle/v1", "tree_head": {"root_hash": "zz", "key_id": 1}}\n{"type": "signature"}\n',
     "the tree head's root hash is not hex"),
])
def test_the_offline_verifier_reports_malformed_bundles(bundle, problem):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from governance.verify_bundle import verify

    problems, verified = verify(bundle, Ed25519PrivateKey.generate().public_key())
    assert problems[-1] == problem and verified == 0
