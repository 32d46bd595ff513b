"""Signed tree heads (STH) of the audit log: the log's size and Merkle root at a moment, signed with Ed25519.

The signed message is the canonical JSON of {"log", "tree_size", "root_hash", "timestamp_ms", "key_id"}
(see `head_message`); `governance/verify_bundle.py` rebuilds the same bytes offline.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from governance import keys
from governance.audit import canonical_json
from governance.merkle import MerkleTree
from governance.models import AuditEvent, SignedTreeHead, SigningKey

LOG_ID = "assay-audit/v1"


def head_message(*, tree_size: int, root_hash: str, signed_at: dt.datetime, key_id: str) -> bytes:
    """The exact bytes an STH signature covers."""
    return canonical_json({
        "log": LOG_ID,
        "tree_size": tree_size,
        "root_hash": root_hash,
        "timestamp_ms": timestamp_ms(signed_at),
        "key_id": key_id,
    })


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def timestamp_ms(moment: dt.datetime) -> int:
    """Milliseconds since the Unix epoch, in integer arithmetic (no float rounding)."""
    return (moment - _EPOCH) // dt.timedelta(milliseconds=1)


def leaf_hashes(up_to: int | None = None) -> bytes:
    """The stored leaf hashes in seq order, packed, for the dense prefix of the log (seq 0, 1, 2, … without gaps)."""
    rows = AuditEvent.objects.order_by("seq").values_list("seq", "leaf_hash")
    if up_to is not None:
        rows = rows.filter(seq__lt=up_to)
    packed = bytearray()
    for expected, (seq, leaf) in enumerate(rows.iterator(chunk_size=10_000)):
        if seq != expected:
            break
        packed += bytes.fromhex(leaf)
    return bytes(packed)


def log_tree(up_to: int | None = None) -> MerkleTree:
    return MerkleTree(leaf_hashes(up_to))


def sign_tree_head() -> SignedTreeHead:
    """Sign the log as it stands (its committed, gap-free prefix) with the active tree-head key."""
    key = keys.active_key(SigningKey.Purpose.TREE_HEAD)  # first: creating a key appends an event the head covers
    tree = log_tree()
    now = timezone.now()
    signed_at = now.replace(microsecond=now.microsecond - now.microsecond % 1000)
    root = tree.root().hex()
    message = head_message(tree_size=tree.size, root_hash=root, signed_at=signed_at, key_id=key.key_id)
    with transaction.atomic():
        return SignedTreeHead.objects.create(
            tree_size=tree.size, root_hash=root, signed_at=signed_at, key=key, signature=keys.sign(key, message).hex()
        )


def head_problem(head: SignedTreeHead) -> str | None:
    """Why the head's signature does not hold (bad signature, revoked key), or None when it does."""
    message = head_message(tree_size=head.tree_size, root_hash=head.root_hash, signed_at=head.signed_at, key_id=head.key.key_id)
    try:
        signature = bytes.fromhex(head.signature)
    except ValueError:
        return "its signature is not hex"
    if not keys.signature_is_valid(head.key, message, signature):
        return f"the signature does not verify with key {head.key.key_id}"
    if head.key.revoked_at is not None:
        return f"signed with revoked key {head.key.key_id} (revoked {head.key.revoked_at.isoformat()}: {head.key.revocation_reason})"
    return None


def head_document(head: SignedTreeHead) -> dict[str, Any]:
    """An STH as published (API, export bundles)."""
    return {
        "id": head.pk,
        "log": LOG_ID,
        "tree_size": head.tree_size,
        "root_hash": head.root_hash,
        "signed_at": head.signed_at.astimezone(dt.UTC).isoformat(timespec="milliseconds"),
        "timestamp_ms": timestamp_ms(head.signed_at),
        "key_id": head.key.key_id,
        "signature": head.signature,
    }
