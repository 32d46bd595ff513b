"""Effective rights of an asset version: every licence and consent inherited through its lineage (the asset,
its captures, the job's capture, parent versions), combined so that the strictest term wins; and the
withdrawal of what depends on a consent that is revoked or a licence that expires."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from catalog.models import AssetVersion, Capture
from governance.audit import record_event
from governance.errors import RightsError
from governance.models import Consent, Licence, LicenceAttachment, Notification
from governance.rights_models import CHANNELS

SYSTEM_ACTOR = "system:rights"


@dataclass
class EffectiveRights:
    """The terms that hold for a version: channels and territories all its licences allow, the latest start and
    the earliest expiry; `contradictions` says when no use at all is possible and why."""

    licences: list[Licence] = field(default_factory=list)
    consents: list[Consent] = field(default_factory=list)
    channels: set[str] = field(default_factory=lambda: set(CHANNELS))
    territories: set[str] | None = None  # None: worldwide
    valid_from: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    attributions: list[str] = field(default_factory=list)
    contradictions: list[str] = field(default_factory=list)

    def refusal(self, *, channel: str, at: dt.datetime | None = None, territory: str | None = None) -> str | None:
        """Why the version may not be used on `channel` at `at` (in `territory`), or None when it may."""
        at = at or timezone.now()
        if channel not in CHANNELS:
            return f"unknown channel '{channel}'; channels are {', '.join(CHANNELS)}"
        if not self.licences:
            return "the version has no licence"
        if self.contradictions:
            return "; ".join(self.contradictions)
        if channel not in self.channels:
            allowed = ", ".join(sorted(self.channels)) or "none"
            return f"the licences do not allow the '{channel}' channel (allowed: {allowed})"
        if self.valid_from and at < self.valid_from:
            return f"the licences are valid only from {self.valid_from.isoformat()}"
        if self.expires_at and at >= self.expires_at:
            return f"the licences expired at {self.expires_at.isoformat()}"
        if territory and self.territories is not None and territory.upper() not in self.territories:
            return f"the licences do not cover territory {territory.upper()}"
        for consent in self.consents:
            if consent.revoked_at is not None:
                return f"consent of {consent.subject} was revoked: {consent.revocation_reason}"
            if consent.expires_at is not None and at >= consent.expires_at:
                return f"consent of {consent.subject} expired at {consent.expires_at.isoformat()}"
            if channel not in (consent.channels or []):
                return f"consent of {consent.subject} does not cover the '{channel}' channel"
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "channels": sorted(self.channels),
            "territories": None if self.territories is None else sorted(self.territories),
            "valid_from": self.valid_from.isoformat() if self.valid_from else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "attributions": self.attributions,
            "contradictions": self.contradictions,
            "licences": [
                {"id": lic.pk, "spdx_id": lic.spdx_id, "name": lic.name, "licensor": lic.licensor,
                 "channels": sorted(lic.channels or []), "territories": sorted(lic.territories or []),
                 "valid_from": lic.valid_from.isoformat() if lic.valid_from else None,
                 "expires_at": lic.expires_at.isoformat() if lic.expires_at else None, "attribution": lic.attribution}
                for lic in self.licences
            ],
            "consents": [
                {"id": c.pk, "subject": c.subject, "channels": sorted(c.channels or []),
                 "expires_at": c.expires_at.isoformat() if c.expires_at else None,
                 "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None}
                for c in self.consents
            ],
        }


def lineage_versions(version: AssetVersion) -> list[AssetVersion]:
    """The version and its ancestors, nearest first (a cycle cannot occur: parents are older rows)."""
    chain, seen = [], set()
    current: AssetVersion | None = version
    while current is not None and current.pk not in seen:
        seen.add(current.pk)
        chain.append(current)
        current = AssetVersion.objects.select_related("asset").filter(pk=current.parent_id).first() if current.parent_id else None
    return chain


def lineage_captures(versions: list[AssetVersion]) -> list[int]:
    """Ids of every capture the versions were made from: linked sources and the producing jobs' captures."""
    ids = set(Capture.objects.filter(versions__in=versions).values_list("pk", flat=True))
    for v in versions:
        job = getattr(v, "produced_by_job", None)
        if job is not None:
            ids.add(job.capture_id)
    return sorted(ids)


def effective_rights(version: AssetVersion) -> EffectiveRights:
    """All terms inherited through the lineage of `version`, combined (intersection, latest start, earliest end)."""
    versions = lineage_versions(version)
    capture_ids = lineage_captures(versions)
    asset_ids = {v.asset_id for v in versions}
    licence_ids = {v.asset.licence_id for v in versions if v.asset.licence_id}
    licence_ids |= set(LicenceAttachment.objects.filter(capture_id__in=capture_ids).values_list("licence_id", flat=True))
    licences = list(Licence.objects.filter(pk__in=licence_ids).order_by("pk"))
    consents = list(
        (Consent.objects.filter(captures__in=capture_ids) | Consent.objects.filter(assets__in=asset_ids)).distinct().order_by("pk")
    )
    rights = EffectiveRights(licences=licences, consents=consents)
    for lic in licences:
        allowed = set(lic.channels or [])
        unknown = allowed - set(CHANNELS)
        if unknown:
            rights.contradictions.append(f"licence {lic} names unknown channels {', '.join(sorted(unknown))}")
        rights.channels &= allowed
        if lic.territories:
            terr = {t.upper() for t in lic.territories}
            rights.territories = terr if rights.territories is None else rights.territories & terr
        if lic.valid_from and (rights.valid_from is None or lic.valid_from > rights.valid_from):
            rights.valid_from = lic.valid_from
        if lic.expires_at and (rights.expires_at is None or lic.expires_at < rights.expires_at):
            rights.expires_at = lic.expires_at
        if lic.attribution and lic.attribution not in rights.attributions:
            rights.attributions.append(lic.attribution)
    names = ", ".join(str(lic) for lic in licences)
    if licences and not rights.channels:
        rights.contradictions.append(f"the licences {names} share no channel")
    if rights.territories is not None and not rights.territories:
        rights.contradictions.append(f"the licences {names} share no territory")
    if rights.valid_from and rights.expires_at and rights.valid_from >= rights.expires_at:
        rights.contradictions.append(
            f"the licences {names} have no common period (latest start {rights.valid_from.isoformat()}, "
            f"earliest expiry {rights.expires_at.isoformat()})"
        )
    return rights


def check_channel(version: AssetVersion, channel: str, *, at: dt.datetime | None = None) -> str | None:
    """Why `version` may not be used on `channel` now, or None."""
    return effective_rights(version).refusal(channel=channel, at=at)


def dependent_published_versions(*, capture_ids: set[int], asset_ids: set[int]) -> list[AssetVersion]:
    """Published versions whose lineage includes one of these captures or assets (children of such versions too)."""
    published = AssetVersion.objects.filter(state=AssetVersion.State.PUBLISHED).select_related("asset").order_by("pk")
    found = []
    for version in published:
        chain = lineage_versions(version)
        if {v.asset_id for v in chain} & asset_ids or set(lineage_captures(chain)) & capture_ids:
            found.append(version)
    return found


def _notify_and_withdraw(*, versions: list[AssetVersion], reason: str) -> list[AssetVersion]:
    from governance.publishing import withdraw_version

    withdrawn = []
    for version in versions:
        withdrawn.append(withdraw_version(actor=SYSTEM_ACTOR, version=version, reason=reason))
        Notification.objects.create(recipient_id=version.asset.owner_id, kind="version.withdrawn", asset=version.asset,
                                    message=f"Version {version} was withdrawn: {reason}.")
    return withdrawn


@transaction.atomic
def revoke_consent(*, actor: Any, consent: Consent, reason: str) -> list[AssetVersion]:
    """Revoke a consent and withdraw every published version that depends on it; returns those versions."""
    if not reason.strip():
        raise RightsError("Say why the consent is revoked; the owners of withdrawn assets are told.")
    consent = Consent.objects.select_for_update().get(pk=consent.pk)
    if consent.revoked_at is not None:
        raise RightsError(f"The consent of {consent.subject} was already revoked at {consent.revoked_at.isoformat()}.")
    consent.revoked_at = timezone.now()
    consent.revocation_reason = reason
    consent.save(update_fields=["revoked_at", "revocation_reason"])
    versions = dependent_published_versions(capture_ids=set(consent.captures.values_list("pk", flat=True)),
                                            asset_ids=set(consent.assets.values_list("pk", flat=True)))
    withdrawn = _notify_and_withdraw(versions=versions, reason=f"consent of {consent.subject} revoked: {reason}")
    record_event(actor=actor, action="rights.revoked", obj=consent,
                 changes={"revoked_at": [None, consent.revoked_at]},
                 data={"kind": "consent", "reason": reason, "withdrawn_versions": [v.pk for v in withdrawn]})
    return withdrawn


def _licence_dependents(licence: Licence) -> list[AssetVersion]:
    capture_ids = set(LicenceAttachment.objects.filter(licence=licence).values_list("capture_id", flat=True))
    asset_ids = set(licence.assets.values_list("pk", flat=True))
    return dependent_published_versions(capture_ids=capture_ids, asset_ids=asset_ids)


@transaction.atomic
def expire_rights(*, now: dt.datetime | None = None) -> dict[str, list[int]]:
    """The sweep Celery beat runs: licences and consents past their expiry withdraw what depends on them, once."""
    now = now or timezone.now()
    report: dict[str, list[int]] = {"licences": [], "consents": [], "withdrawn_versions": []}
    for licence in Licence.objects.select_for_update().filter(expires_at__lte=now, expired_handled_at__isnull=True):
        withdrawn = _notify_and_withdraw(versions=_licence_dependents(licence), reason=f"licence {licence} expired")
        licence.expired_handled_at = now
        licence.save(update_fields=["expired_handled_at"])
        record_event(actor=SYSTEM_ACTOR, action="rights.revoked", obj=licence,
                     data={"kind": "licence_expired", "expires_at": licence.expires_at,
                           "withdrawn_versions": [v.pk for v in withdrawn]})
        report["licences"].append(licence.pk)
        report["withdrawn_versions"] += [v.pk for v in withdrawn]
    for consent in Consent.objects.select_for_update().filter(expires_at__lte=now, revoked_at__isnull=True):
        consent.revoked_at = now
        consent.revocation_reason = "expired"
        consent.save(update_fields=["revoked_at", "revocation_reason"])
        versions = dependent_published_versions(capture_ids=set(consent.captures.values_list("pk", flat=True)),
                                                asset_ids=set(consent.assets.values_list("pk", flat=True)))
        withdrawn = _notify_and_withdraw(versions=versions, reason=f"consent of {consent.subject} expired")
        record_event(actor=SYSTEM_ACTOR, action="rights.revoked", obj=consent,
                     data={"kind": "consent_expired", "withdrawn_versions": [v.pk for v in withdrawn]})
        report["consents"].append(consent.pk)
        report["withdrawn_versions"] += [v.pk for v in withdrawn]
    return report


@transaction.atomic
def record_consent(*, actor: Any, subject: str, channels: list[str], captures: list[Capture] = (),  # type: ignore[assignment]
                   assets: list[Any] = (), signed_form: Any = None, scope: str = "",  # type: ignore[assignment]
                   expires_at: dt.datetime | None = None) -> Consent:
    """Record a person's consent for some channels, attached to captures and/or assets (signed form: a StoredFile)."""
    unknown = set(channels) - set(CHANNELS)
    if unknown:
        raise RightsError(f"Unknown channels {', '.join(sorted(unknown))}; channels are {', '.join(CHANNELS)}.")
    if not subject.strip():
        raise RightsError("Name the person who consented.")
    if not captures and not assets:
        raise RightsError("Attach the consent to at least one capture or asset.")
    consent = Consent.objects.create(subject=subject, channels=sorted(channels), scope=scope, signed_form=signed_form,
                                     expires_at=expires_at)
    consent.captures.set(captures)
    consent.assets.set(assets)
    asset_ids = [a.pk for a in assets]
    record_event(actor=actor, action="rights.consent_recorded", obj=consent, asset_id=asset_ids[0] if asset_ids else None,
                 data={"subject": subject, "channels": sorted(channels), "captures": [c.pk for c in captures],
                       "assets": asset_ids, "signed_form": signed_form.sha256 if signed_form else None})
    return consent


@transaction.atomic
def attach_licence(*, actor: Any, licence: Licence, capture: Capture) -> LicenceAttachment:
    """Put a capture's source images under a licence; it is inherited by every version made from them."""
    attachment, created = LicenceAttachment.objects.get_or_create(licence=licence, capture=capture)
    if created:
        record_event(actor=actor, action="rights.licence_attached", obj=attachment,
                     data={"licence": licence.pk, "capture": capture.pk})
    return attachment


@transaction.atomic
def save_rights_record(*, actor: Any, record: Licence | Consent, created: bool) -> Licence | Consent:
    """Save a licence or consent edited by compliance (the admin), after checking its channels; audited."""
    unknown = set(record.channels or []) - set(CHANNELS)
    if unknown:
        raise RightsError(f"Unknown channels {', '.join(sorted(unknown))}; channels are {', '.join(CHANNELS)}.")
    if record.valid_from and record.expires_at and record.valid_from >= record.expires_at:
        raise RightsError("The expiry must come after the start of validity.")
    record.save()
    kind = record._meta.model_name
    record_event(actor=actor, action=f"rights.{kind}_{'created' if created else 'changed'}", obj=record,
                 data={"channels": record.channels, "expires_at": record.expires_at})
    return record
