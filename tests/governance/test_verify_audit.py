"""Tamper evidence: the append-only trigger, signed tree heads, and `verify_audit` naming each edit exactly.

The tampering tests switch the trigger off inside the test's transaction (as a database owner could) and
change rows with raw SQL; the transaction rolls back afterwards, trigger included.
"""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from governance import keys
from governance.audit import canonical_json
from governance.merkle import MerkleTree, verify_consistency
from governance.models import AuditEvent, SignedTreeHead, SigningKey
from governance.tasks import sign_tree_head as sign_tree_head_task
from governance.tree_heads import head_message, sign_tree_head
from governance.verification import verify_log
from tests.governance.conftest import append_events

pytestmark = [pytest.mark.django_db, pytest.mark.skipif("connection.vendor != 'postgresql'")]

TABLE = "governance_auditevent"


def sql(statement: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def disable_trigger() -> None:
    sql(f"ALTER TABLE {TABLE} DISABLE TRIGGER governance_auditevent_no_update_delete")
    sql(f"ALTER TABLE {TABLE} DISABLE TRIGGER governance_auditevent_no_truncate")


def run_verify() -> list[str]:
    return verify_log().problems


@pytest.fixture
def signed_log():
    keys.active_key(SigningKey.Purpose.TREE_HEAD)  # seq 0: key.created
    append_events(5)
    head = sign_tree_head()
    assert run_verify() == []
    return head


def test_truncate_passes_only_when_the_session_allows_it():
    append_events(2)
    sql("SET LOCAL assay.allow_audit_truncate = 'on'")
    sql(f"TRUNCATE {TABLE}")
    assert AuditEvent.objects.count() == 0


@pytest.mark.parametrize("statement", [
    f"UPDATE {TABLE} SET action = 'forged' WHERE seq = 0",
    f"DELETE FROM {TABLE} WHERE seq = 0",
    f"TRUNCATE {TABLE}",
])
def test_the_trigger_refuses_update_delete_and_truncate(statement):
    sql("SET LOCAL assay.allow_audit_truncate = 'off'")  # as in production (only test flushes turn it on)
    append_events(1)
    with pytest.raises(DatabaseError, match="governance_auditevent is append-only"), transaction.atomic():
        sql(statement)
    assert AuditEvent.objects.get(seq=0).action == "test.event"
    disable_trigger()
    sql(statement)  # the trigger, not something else, refused it


def test_tree_head_signature_covers_size_root_time_and_key(signed_log):
    head = signed_log
    assert head.tree_size == 6
    leaves = [bytes.fromhex(h) for h in AuditEvent.objects.order_by("seq").values_list("leaf_hash", flat=True)]
    assert head.root_hash == MerkleTree(leaves).root().hex()
    message = head_message(tree_size=6, root_hash=head.root_hash, signed_at=head.signed_at, key_id=head.key.key_id)
    assert keys.signature_is_valid(head.key, message, bytes.fromhex(head.signature))
    assert not keys.signature_is_valid(
        head.key, message.replace(b'"tree_size":6', b'"tree_size":5'), bytes.fromhex(head.signature)
    )


def test_the_celery_task_signs_a_head_and_heads_stay_consistent(signed_log):
    append_events(5)
    result = sign_tree_head_task.apply().get()
    newer = SignedTreeHead.objects.get(pk=result["id"])
    assert newer.tree_size == 11
    tree = MerkleTree(bytes.fromhex(h) for h in AuditEvent.objects.values_list("leaf_hash", flat=True))
    verify_consistency(6, 11, bytes.fromhex(signed_log.root_hash), bytes.fromhex(newer.root_hash),
                       tree.consistency_proof(6, 11))
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    assert out.getvalue().strip() == "audit log intact: 11 events, 2 signed tree heads verified"


def test_an_edited_event_is_named(signed_log):
    disable_trigger()
    sql(f"""UPDATE {TABLE} SET data = '{{"i": 99}}' WHERE seq = 2""")
    assert run_verify() == ["edited: event seq 2 does not match its leaf hash"]


def test_an_edited_and_rehashed_event_breaks_the_signed_root(signed_log):
    disable_trigger()
    event = AuditEvent.objects.get(seq=2)
    event.data = {"i": 99}
    from governance.audit import leaf_hash
    sql(f"UPDATE {TABLE} SET data = %s::jsonb, leaf_hash = %s WHERE seq = 2", [canonical_json(event.data).decode(), leaf_hash(event)])
    assert run_verify() == [f"root mismatch: the first 6 events do not hash to the root of STH {signed_log.pk} (tree size 6)"]


def test_a_deleted_event_is_named(signed_log):
    disable_trigger()
    sql(f"DELETE FROM {TABLE} WHERE seq = 3")
    assert run_verify() == [
        "deleted: event seq 3 is missing",
        f"root mismatch: STH {signed_log.pk} (tree size 6) covers events the log no longer holds in order",
    ]


def test_deleting_the_newest_events_is_caught_by_the_tree_head(signed_log):
    disable_trigger()
    sql(f"DELETE FROM {TABLE} WHERE seq >= 4")
    assert run_verify() == [
        "deleted: events seq 4 to 5 are missing",
        f"root mismatch: STH {signed_log.pk} (tree size 6) covers events the log no longer holds in order",
    ]


def test_reordered_events_are_named(signed_log):
    disable_trigger()
    sql(f"UPDATE {TABLE} SET seq = -1 WHERE seq = 1")
    sql(f"UPDATE {TABLE} SET seq = 1 WHERE seq = 4")
    sql(f"UPDATE {TABLE} SET seq = 4 WHERE seq = -1")
    assert run_verify() == [
        "reordered: the event written as seq 4 now sits at seq 1",
        "reordered: the event written as seq 1 now sits at seq 4",
        f"root mismatch: the first 6 events do not hash to the root of STH {signed_log.pk} (tree size 6)",
    ]


def test_an_inserted_event_is_named(signed_log):
    disable_trigger()
    # Make room at seq 3 (two steps: the unique index is checked row by row) and slip in a well-formed event.
    sql(f"UPDATE {TABLE} SET seq = -seq - 100 WHERE seq >= 3")
    sql(f"UPDATE {TABLE} SET seq = -seq - 99 WHERE seq < -99")
    forged = AuditEvent(seq=3, occurred_at=AuditEvent.objects.get(seq=2).occurred_at, actor_name="mallory",
                        action="version.approved", object_type="catalog.assetversion", object_id="1")
    from governance.audit import leaf_hash
    forged.leaf_hash = leaf_hash(forged)
    forged.save(force_insert=True)
    assert run_verify() == [
        f"inserted: event seq 3 (row id {forged.pk}) was written after later events",
        "reordered: the event written as seq 3 now sits at seq 4",
        "reordered: the event written as seq 4 now sits at seq 5",
        "reordered: the event written as seq 5 now sits at seq 6",
        f"root mismatch: the first 6 events do not hash to the root of STH {signed_log.pk} (tree size 6)",
    ]


def test_a_bad_tree_head_signature_is_named(signed_log):
    sql("UPDATE governance_signedtreehead SET signature = %s WHERE id = %s", ["00" * 64, signed_log.pk])
    key_id = signed_log.key.key_id
    assert run_verify() == [f"bad signature: STH {signed_log.pk} (tree size 6): the signature does not verify with key {key_id}"]


def test_a_tree_head_with_a_forged_root_is_named(signed_log):
    append_events(2)
    newer = sign_tree_head()
    sql("UPDATE governance_signedtreehead SET root_hash = %s WHERE id = %s", ["ab" * 32, newer.pk])
    problems = run_verify()
    assert problems == [
        f"bad signature: STH {newer.pk} (tree size 8): the signature does not verify with key {newer.key.key_id}",
        f"root mismatch: the first 8 events do not hash to the root of STH {newer.pk} (tree size 8)",
    ]


def test_a_tree_head_signed_with_a_revoked_key_is_named(signed_log):
    keys.revoke_signing_key(actor="ops", key=signed_log.key, reason="key leaked")
    key = SigningKey.objects.get(pk=signed_log.key_id)
    assert run_verify() == [
        f"revoked key: STH {signed_log.pk} (tree size 6): signed with revoked key {key.key_id} "
        f"(revoked {key.revoked_at.isoformat()}: key leaked)"
    ]


def test_the_command_prints_each_problem_and_fails(signed_log):
    disable_trigger()
    sql(f"DELETE FROM {TABLE} WHERE seq = 1")
    sql(f"""UPDATE {TABLE} SET actor_name = 'mallory' WHERE seq = 2""")
    out = io.StringIO()
    with pytest.raises(CommandError, match="^audit log verification failed: 3 problem\\(s\\)$"):
        call_command("verify_audit", stdout=out)
    assert out.getvalue().splitlines() == [
        "deleted: event seq 1 is missing",
        "edited: event seq 2 does not match its leaf hash",
        f"root mismatch: STH {signed_log.pk} (tree size 6) covers events the log no longer holds in order",
    ]


def test_the_served_tree_grows_with_the_log_and_is_rebuilt_when_its_last_leaf_changes():
    from governance.tree_heads import log_tree

    append_events(3)
    first = log_tree()
    append_events(2)
    grown = log_tree()
    assert grown is first and grown.size == 5
    leaves = [bytes.fromhex(h) for h in AuditEvent.objects.order_by("seq").values_list("leaf_hash", flat=True)]
    assert grown.root() == MerkleTree(leaves).root()
    disable_trigger()
    sql(f"UPDATE {TABLE} SET leaf_hash = %s WHERE seq = 4", ["cd" * 32])
    rebuilt = log_tree()
    assert rebuilt is not first and rebuilt.leaf(4) == bytes.fromhex("cd" * 32)
