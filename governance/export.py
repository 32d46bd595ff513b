"""Export of a time range of the audit trail as a signed bundle that verifies offline.

The bundle is JSON lines: a header (range, the signed tree head, the public key), one line per event (its
document, leaf hash and inclusion proof against that head), and a closing line signing the SHA-256 of
everything before it. `governance/verify_bundle.py` checks all of it with only the public key.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from django.db import transaction
from django.utils import timezone

from config.problems import Conflict, DomainError
from governance import keys
from governance.audit import event_document, record_event
from governance.models import SignedTreeHead, SigningKey
from governance.selectors import audit_events_visible_to
from governance.tree_heads import head_document, log_tree, sign_tree_head

BUNDLE_FORMAT = "assay.audit-bundle/v1"
BUNDLE_SIGNATURE_CONTEXT = b"assay-audit-bundle/v1\n"
MAX_EVENTS = 100_000


def _line(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _covering_head(last_seq: int) -> SignedTreeHead:
    """The latest head if it covers the events and is signed by the active key; otherwise a fresh one."""
    active = keys.active_key(SigningKey.Purpose.TREE_HEAD)
    head = SignedTreeHead.objects.select_related("key").order_by("-id").first()
    if head is None or head.tree_size <= last_seq or head.key_id != active.pk:
        head = sign_tree_head()
    return head


def export_bundle(*, actor: Any, since: dt.datetime, until: dt.datetime) -> bytes:
    """The events the actor may audit with `since <= occurred_at < until`, as a signed bundle."""
    if since >= until:
        raise DomainError(f"'from' ({since.isoformat()}) must be before 'to' ({until.isoformat()})", code="invalid_range")
    events = list(audit_events_visible_to(actor).filter(occurred_at__gte=since, occurred_at__lt=until).order_by("seq")[
        : MAX_EVENTS + 1
    ])
    if len(events) > MAX_EVENTS:
        raise DomainError(f"the range holds more than {MAX_EVENTS} events; export a shorter range", code="range_too_large")
    head = _covering_head(events[-1].seq if events else -1)
    tree = log_tree()
    if tree.size < head.tree_size or tree.root(head.tree_size).hex() != head.root_hash:
        raise Conflict("the audit log does not match its latest signed tree head; run `manage.py verify_audit`",
                       code="audit_log_tampered")
    header = {
        "type": BUNDLE_FORMAT,
        "from": since.astimezone(dt.UTC).isoformat(),
        "to": until.astimezone(dt.UTC).isoformat(),
        "exported_at": timezone.now().astimezone(dt.UTC).isoformat(),
        "exported_by": actor.get_username(),
        "event_count": len(events),
        "tree_head": head_document(head),
        "public_key": {"key_id": head.key.key_id, "algorithm": head.key.algorithm, "pem": keys.public_key_pem(head.key)},
    }
    body = bytearray(_line(header))
    for event in events:
        body += _line({
            "type": "event",
            "event": event_document(event),
            "leaf_hash": event.leaf_hash,
            "inclusion_proof": [p.hex() for p in tree.inclusion_proof(event.seq, head.tree_size)],
        })
    digest = hashlib.sha256(body).digest()
    body += _line({
        "type": "signature",
        "sha256": digest.hex(),
        "key_id": head.key.key_id,
        "signature": keys.sign(head.key, BUNDLE_SIGNATURE_CONTEXT + digest).hex(),
    })
    with transaction.atomic():
        record_event(actor=actor, action="audit.exported",
                     data={"from": header["from"], "to": header["to"], "events": len(events), "tree_head": head.pk})
    return bytes(body)
