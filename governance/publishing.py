"""The publish policy: a version goes public only when every rule holds, and is withdrawn when one stops holding."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from catalog.errors import InvalidTransition
from catalog.models import LOD, Asset, AssetVersion, Representation
from catalog.permissions import Action
from catalog.services import require
from governance.audit import record_event
from governance.errors import PolicyNotMet
from governance.gate_models import SafetyVerdict
from governance.models import Attestation

PolicyRule = Callable[[AssetVersion], str | None]


def _approved_by_review(version: AssetVersion) -> str | None:
    if version.state != AssetVersion.State.APPROVED:
        return f"the version is {version.state}, not approved by review"
    return None


def _files_not_invalid(version: AssetVersion) -> str | None:
    bad = Representation.objects.filter(
        lod__variant__version=version, validation_status=Representation.Validation.INVALID
    ).values_list("filename", flat=True)
    if bad:
        return f"files failed validation: {', '.join(sorted(bad))}"
    return None


def _licensed(version: AssetVersion) -> str | None:
    if version.asset.licence_id is None:
        return "the asset has no licence"
    return None


def _gates_passed(version: AssetVersion) -> str | None:
    """Each gate's newest verdict passed, or flagged and an approving reviewer overrode it; blocks never pass.
    Gates named in ASSAY_REQUIRED_GATES must have run."""
    from governance.gates.runner import latest_verdicts
    from governance.review import overridden_gates

    verdicts = latest_verdicts(version)
    problems = [f"safety gate {name} has not run" for name in getattr(settings, "ASSAY_REQUIRED_GATES", ())
                if name not in verdicts]
    overridden = overridden_gates(version)
    for name, verdict in sorted(verdicts.items()):
        if verdict.outcome == SafetyVerdict.Outcome.BLOCK:
            problems.append(f"safety gate {name} blocks: {verdict.reason}")
        elif verdict.outcome == SafetyVerdict.Outcome.FLAG and name not in overridden and name != "faces":
            problems.append(f"safety gate {name} flagged ({verdict.reason}) and no reviewer overrode it")
    return "; ".join(problems) or None


def _consent_for_faces(version: AssetVersion) -> str | None:
    """A face found by the likeness gate needs a valid consent covering the publish channel."""
    from governance.gates.runner import latest_verdicts
    from governance.rights import effective_rights

    verdict = latest_verdicts(version).get("faces")
    if verdict is None or verdict.outcome != SafetyVerdict.Outcome.FLAG:
        return None
    channel = publish_channel()
    now = timezone.now()
    valid = [c for c in effective_rights(version).consents
             if c.revoked_at is None and (c.expires_at is None or c.expires_at > now) and channel in (c.channels or [])]
    if not valid:
        return f"faces were found ({verdict.reason}) and there is no valid consent for the '{channel}' channel"
    return None


def _rights_allow_channel(version: AssetVersion) -> str | None:
    from governance.rights import effective_rights

    rights = effective_rights(version)
    if not rights.licences:
        return None  # `_licensed` already says so
    refusal = rights.refusal(channel=publish_channel())
    return f"rights: {refusal}" if refusal else None


def _quality_holds(version: AssetVersion) -> str | None:
    """Thresholds of ASSAY_PUBLISH_QUALITY: min_fscore (when measured), max_triangles_per_lod, validator_passed."""
    rules = getattr(settings, "ASSAY_PUBLISH_QUALITY", {})
    problems = []
    quality = getattr(version, "quality", None)
    fscore = (quality.metrics or {}).get("fscore") if quality is not None else None
    if rules.get("min_fscore") is not None and fscore is not None and float(fscore) < float(rules["min_fscore"]):
        problems.append(f"F-score {fscore} is below the minimum {rules['min_fscore']}")
    limits = rules.get("max_triangles_per_lod") or {}
    for level, count in LOD.objects.filter(variant__version=version).values_list("level", "triangle_count"):
        limit = limits.get(str(level), limits.get(level))
        if limit is not None and count > int(limit):
            problems.append(f"LOD {level} has {count} triangles, more than {limit}")
    if rules.get("validator_passed"):
        unchecked = Representation.objects.filter(lod__variant__version=version, role=Representation.Role.MODEL).exclude(
            validation_status=Representation.Validation.VALID).values_list("filename", flat=True)
        if unchecked:
            problems.append(f"model files not validated as valid: {', '.join(sorted(unchecked))}")
    return "; ".join(problems) or None


def _attested(version: AssetVersion) -> str | None:
    from governance.attestations import verify_attestation

    attestations = list(Attestation.objects.filter(version=version, representation__isnull=True))
    if not attestations:
        return "the version has no signed attestation"
    bad = [f"attestation {a.pk}: {'; '.join(p)}" for a in attestations if (p := verify_attestation(a))]
    return ("attestations do not verify: " + "; ".join(bad)) if bad else None


def publish_channel() -> str:
    """The channel a publication opens (ASSAY_PUBLISH_CHANNEL, web by default); rights and consents must cover it."""
    return getattr(settings, "ASSAY_PUBLISH_CHANNEL", "web")


PUBLISH_RULES: list[PolicyRule] = [
    _approved_by_review, _files_not_invalid, _licensed, _rights_allow_channel, _gates_passed, _consent_for_faces,
    _quality_holds, _attested,
]


def unmet_rules(version: AssetVersion) -> list[str]:
    """Every reason the version may not be published now; empty when the policy holds."""
    return [reason for rule in PUBLISH_RULES if (reason := rule(version))]


def publish_version(*, actor: Any, version: AssetVersion) -> AssetVersion:
    """Publish an approved version when every rule holds; a refusal is audited and lists every unmet rule."""
    with transaction.atomic():
        locked = AssetVersion.objects.select_for_update().select_related("asset").get(pk=version.pk)
        require(actor, Action.MANAGE, locked)
        reasons = unmet_rules(locked)
        if not reasons:
            return _publish(actor=actor, version=locked)
        record_event(actor=actor, action="version.publish_refused", obj=locked, asset_id=locked.asset_id,
                     data={"reasons": reasons})
    raise PolicyNotMet(f"Version {locked} cannot be published: {'; '.join(reasons)}.", reasons=reasons)


def _publish(*, actor: Any, version: AssetVersion) -> AssetVersion:
    asset = Asset.objects.select_for_update().get(pk=version.asset_id)
    if asset.state not in (Asset.State.APPROVED, Asset.State.PUBLISHED, Asset.State.DEPRECATED):
        raise InvalidTransition(f"Asset '{asset}' is {asset.state}; it must be approved before publishing.")
    version.state = AssetVersion.State.PUBLISHED
    version.published_at = timezone.now()
    version.row_version = F("row_version") + 1
    version.save(update_fields=["state", "published_at", "row_version"])
    record_event(actor=actor, action="version.published", obj=version, asset_id=asset.pk,
                 changes={"state": [AssetVersion.State.APPROVED, AssetVersion.State.PUBLISHED]})
    if asset.state != Asset.State.PUBLISHED:
        before = asset.state
        asset.state = Asset.State.PUBLISHED
        asset.row_version = F("row_version") + 1
        asset.save(update_fields=["state", "row_version", "updated_at"])
        record_event(actor=actor, action="asset.published", obj=asset, asset_id=asset.pk,
                     changes={"state": [before, Asset.State.PUBLISHED]})
    version.refresh_from_db()
    return version


@transaction.atomic
def withdraw_version(*, actor: Any, version: AssetVersion, reason: str) -> AssetVersion:
    """Take a published version down (rights revoked, a defect found); its asset goes back to review."""
    version = AssetVersion.objects.select_for_update().get(pk=version.pk)
    if not isinstance(actor, str):  # a named system actor (the rights sweep) withdraws without a user's permission
        require(actor, Action.MANAGE, version)
    if version.state != AssetVersion.State.PUBLISHED:
        raise InvalidTransition(f"Only a published version can be withdrawn; {version} is {version.state}.")
    version.state = AssetVersion.State.WITHDRAWN
    version.row_version = F("row_version") + 1
    version.save(update_fields=["state", "row_version"])
    record_event(actor=actor, action="version.withdrawn", obj=version, asset_id=version.asset_id,
                 changes={"state": [AssetVersion.State.PUBLISHED, AssetVersion.State.WITHDRAWN]}, data={"reason": reason})
    asset = Asset.objects.select_for_update().get(pk=version.asset_id)
    still_published = asset.versions.filter(state=AssetVersion.State.PUBLISHED).exists()
    if asset.state == Asset.State.PUBLISHED and not still_published:
        asset.state = Asset.State.IN_REVIEW
        asset.row_version = F("row_version") + 1
        asset.save(update_fields=["state", "row_version", "updated_at"])
        record_event(actor=actor, action="asset.in_review", obj=asset, asset_id=asset.pk,
                     changes={"state": [Asset.State.PUBLISHED, Asset.State.IN_REVIEW]}, data={"reason": reason})
    version.refresh_from_db()
    return version
