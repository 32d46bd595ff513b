"""The catalog's copy of the engine's model registry: one LearnedModel row per checkpoint digest.

`sync_learned_models` upserts the rows from `reconstruction.engine.model_registry` (a management command, the
demo set-up and the app's post_migrate hook call it; nothing syncs behind a request's back). Rows are never
deleted: a checkpoint that left the registry is marked unavailable, since the versions it made still cite it.
A name@version stands for one file forever; a card that reuses one with another digest is reported, not
applied. Every change writes its audit event in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.utils import timezone

from governance.audit import diff, record_event
from governance.models import AuditEvent
from reconstruction.engine.model_registry import ModelCard, list_models
from reconstruction.models import LearnedModel

SYNC_ACTOR = "system:model-registry"
log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    registered: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"{label}: {', '.join(items) if items else 'none'}"
            for label, items in (("registered", self.registered), ("updated", self.updated),
                                 ("unavailable", self.unavailable), ("conflicts", self.conflicts))
        ]


def _fields(card: ModelCard, row: LearnedModel | None) -> dict[str, Any]:
    return {
        "architecture": card.architecture,
        "size_bytes": card.size_bytes,
        "file": card.file,
        "training_config": card.training_config,
        "training_data": card.training_data,
        "metrics": card.metrics,
        "licence": card.licence,
        "description": card.description,
        "registered_at": _registered_at(card, row),
        "available": True,
    }


def _registered_at(card: ModelCard, row: LearnedModel | None) -> dt.datetime:
    try:
        created = dt.datetime.fromisoformat(card.created)
    except ValueError:  # a hand-written card without a date: first seen now, and unchanged after that
        return row.registered_at if row is not None else timezone.now()
    return created if created.tzinfo else created.replace(tzinfo=dt.UTC)


@transaction.atomic
def sync_learned_models(*, cards: Iterable[ModelCard] | None = None) -> SyncReport:
    """Bring the LearnedModel table in line with the engine's registry (or `cards`); returns what changed.

    Raises the engine's EngineError when the registry itself cannot be read."""
    cards = list_models() if cards is None else list(cards)
    report = SyncReport()
    rows = list(LearnedModel.objects.select_for_update().order_by("pk"))
    by_digest = {row.sha256: row for row in rows}
    by_reference = {(row.name, row.version): row for row in rows}
    present: set[int] = set()
    for card in cards:
        row = by_digest.get(card.sha256)
        if row is not None and (row.name, row.version) != (card.name, card.version):
            report.conflicts.append(f"{card.reference}: sha256 {card.sha256[:12]} is already registered as {row}")
            present.add(row.pk)
            continue
        if row is None and (card.name, card.version) in by_reference:
            other = by_reference[(card.name, card.version)]
            report.conflicts.append(
                f"{card.reference}: the registry's checkpoint has sha256 {card.sha256[:12]}, the catalog's has "
                f"{other.sha256[:12]}; a version names one file forever, so register the new one as a new version"
            )
            continue
        wanted = _fields(card, row)
        if row is None:
            row = LearnedModel.objects.create(name=card.name, version=card.version, sha256=card.sha256, **wanted)
            record_event(actor=SYNC_ACTOR, action="learned_model.registered", obj=row,
                         data={"sha256": row.sha256, "architecture": row.architecture, "licence": row.licence,
                               "training_data": row.training_data, "metrics": row.metrics})
            report.registered.append(str(row))
            by_digest[row.sha256] = by_reference[(row.name, row.version)] = row  # two cards, one file: a conflict
        else:
            changes = diff({k: getattr(row, k) for k in wanted}, wanted)
            if changes:
                for name, value in wanted.items():
                    setattr(row, name, value)
                row.save()
                record_event(actor=SYNC_ACTOR, action="learned_model.updated", obj=row, changes=changes)
                report.updated.append(str(row))
        present.add(row.pk)
    for row in rows:
        if row.pk not in present and row.available:
            row.available = False
            row.save(update_fields=["available", "synced_at"])
            record_event(actor=SYNC_ACTOR, action="learned_model.unavailable", obj=row,
                         changes={"available": [True, False]}, data={"sha256": row.sha256})
            report.unavailable.append(str(row))
    for conflict in report.conflicts:
        log.warning("model registry sync: %s", conflict)
    return report


def sync_after_migrate(sender: Any, **kwargs: Any) -> None:
    """post_migrate hook: a fresh database knows the shipped models (ASSAY_SYNC_MODELS_ON_MIGRATE turns it off)."""
    if not getattr(settings, "ASSAY_SYNC_MODELS_ON_MIGRATE", True):
        return
    if kwargs.get("using", DEFAULT_DB_ALIAS) != DEFAULT_DB_ALIAS:
        return
    tables = set(connection.introspection.table_names())
    if not {LearnedModel._meta.db_table, AuditEvent._meta.db_table} <= tables:  # migrated only part of the way
        return
    sync_learned_models()


def registered_checkpoints(references: Any) -> tuple[list[dict[str, str]], list[LearnedModel]]:
    """The checkpoints a result names (its metrics["model_checkpoints"]) and their LearnedModel rows.

    Raises UnregisteredCheckpoint when an entry is malformed or names a digest the catalog does not know."""
    if references in (None, []):
        return [], []
    if not isinstance(references, list) or not all(
        isinstance(r, dict) and isinstance(r.get("sha256"), str) and r.get("name") for r in references
    ):
        raise UnregisteredCheckpoint(
            'metrics["model_checkpoints"] must be a list of {"name", "sha256", "uri"} objects, '
            f"not {references!r:.200}."
        )
    digests = [r["sha256"].lower() for r in references]
    known = {m.sha256: m for m in LearnedModel.objects.filter(sha256__in=digests)}
    missing = [r for r, d in zip(references, digests, strict=True) if d not in known]
    if missing:
        listed = ", ".join(f"{r['name']} (sha256 {r['sha256']})" for r in missing)
        raise UnregisteredCheckpoint(
            f"The result names model checkpoint(s) this catalog has not registered: {listed}. "
            "Register them in the engine's model registry and run `manage.py sync_models` first."
        )
    cited = [{"name": str(r["name"]), "sha256": d, "uri": str(r.get("uri") or f"assay:model/{known[d]}")}
             for r, d in zip(references, digests, strict=True)]
    return cited, _unique(known[d] for d in digests)


def _unique(models: Iterable[LearnedModel]) -> list[LearnedModel]:
    seen: dict[int, LearnedModel] = {}
    for model in models:
        seen.setdefault(model.pk, model)
    return list(seen.values())


class UnregisteredCheckpoint(Exception):
    """A result cites a checkpoint the catalog has no LearnedModel for; provenance must not cite it."""

