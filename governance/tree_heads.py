"""Signed tree heads (STH) of the audit log: the log's size and Merkle root at a moment, signed with Ed25519.

The signed message is the canonical JSON of {"log", "tree_size", "root_hash", "timestamp_ms", "key_id"}
(see `head_message`); `governance/verify_bundle.py` rebuilds the same bytes offline.
"""
from __future__ import annotations

import datetime as dt
import threading
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


def _dense_leaves(start: int) -> bytes:
    """Stored leaf hashes from seq `start` on, packed, up to the first gap (a gap is an uncommitted or lost event)."""
    packed = bytearray()
    rows = AuditEvent.objects.filter(seq__gte=start).order_by("seq").values_list("seq", "leaf_hash")
    for expected, (seq, leaf) in enumerate(rows.iterator(chunk_size=10_000), start=start):
        if seq != expected:
            break
        packed += bytes.fromhex(leaf)
    return bytes(packed)


# One tree per process, extended as the log grows: proofs cost the new rows, not the whole log.
_tree_lock = threading.Lock()
_tree: MerkleTree | None = None


def log_tree() -> MerkleTree:
    """The Merkle tree of the log's committed, gap-free prefix, from the stored leaf hashes.

    Cached per process and extended with new rows; rebuilt when its last leaf no longer matches the database
    (another database, or a rewritten row). `verify_log` never uses it: verification recomputes everything.
    """
    global _tree
    with _tree_lock:
        tree = _tree
        if tree is not None and tree.size:
            last = AuditEvent.objects.filter(seq=tree.size - 1).values_list("leaf_hash", flat=True).first()
            if last is None or bytes.fromhex(last) != tree.leaf(tree.size - 1):
                tree = None
        if tree is None:
            tree = MerkleTree()
        tree.extend(_dense_leaves(tree.size))
        _tree = tree
        return tree


def sign_tree_head() -> SignedTreeHead:
    """Sign the log as it stands (its committed, gap-free prefix) with the active tree-head key."""
    key = keys.active_key(SigningKey.Purpose.TREE_HEAD)  # first: creating a key appends an event the head covers
    tree = log_tree()
    now = timezone.now()
    signed_at = now.replace(microsecond=now.microsecond - now.microsecond % 1000)
    size = tree.size  # read once: another thread may extend the shared tree meanwhile
    root = tree.root(size).hex()
    message = head_message(tree_size=size, root_hash=root, signed_at=signed_at, key_id=key.key_id)
    with transaction.atomic():
        return SignedTreeHead.objects.create(
            tree_size=size, root_hash=root, signed_at=signed_at, key=key, signature=keys.sign(key, message).hex()
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
