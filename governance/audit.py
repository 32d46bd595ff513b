"""Appending to the audit log. Every state change calls `record_event` inside its own transaction.

Each event is a leaf of a Merkle log (RFC 9162 style): `leaf_hash = SHA-256(0x00 || canonical JSON)`.
Sequence numbers are dense and gap-free because appends are serialised (an advisory lock on
PostgreSQL; SQLite serialises writers by itself).
"""
from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import uuid
from typing import Any

from django.db import connection, transaction
from django.db.models import Max, Model
from django.utils import timezone

from governance.context import current_context
from governance.models import AuditEvent

_APPEND_LOCK_KEY = 0x41535341  # "ASSA": one advisory lock id for the whole log


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, Model):
        return value.pk
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, no spaces, UTF-8; the bytes that get hashed and signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode()


def plain(value: Any) -> Any:
    """The value as it will read back from a JSON column (dates as ISO strings, decimals as text)."""
    return json.loads(canonical_json(value))


def event_document(event: AuditEvent) -> dict[str, Any]:
    """The fields covered by the leaf hash, as plain JSON values."""
    return {
        "seq": event.seq,
        "occurred_at": event.occurred_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "asset_id": event.asset_id,
        "changes": event.changes,
        "data": event.data,
        "request_id": event.request_id,
        "ip_address": event.ip_address,
    }


def leaf_hash(event: AuditEvent) -> str:
    return hashlib.sha256(b"\x00" + canonical_json(event_document(event))).hexdigest()


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """{field: [before, after]} for the fields whose value changed."""
    before, after = plain(before), plain(after)
    return {k: [before.get(k), after.get(k)] for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}


def _lock_log() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_APPEND_LOCK_KEY])


def record_event(
    *,
    actor: Any,
    action: str,
    obj: Model | None = None,
    changes: dict[str, list[Any]] | None = None,
    data: dict[str, Any] | None = None,
    asset_id: int | None = None,
) -> AuditEvent:
    """Append one event; must run inside the caller's transaction so the event and the change commit together."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("record_event must be called inside transaction.atomic()")
    _lock_log()
    context = current_context()
    user = actor if getattr(actor, "is_authenticated", False) else None
    last = AuditEvent.objects.aggregate(last=Max("seq"))["last"]
    event = AuditEvent(
        seq=0 if last is None else last + 1,
        occurred_at=timezone.now(),
        actor=user,
        actor_name=user.get_username() if user else (actor if isinstance(actor, str) else "system"),
        action=action,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        asset_id=asset_id,
        changes=plain(changes or {}),
        data=plain(data or {}),
        request_id=context.request_id,
        ip_address=context.ip_address,
    )
    event.leaf_hash = leaf_hash(event)
    event.save(force_insert=True)
    return event
