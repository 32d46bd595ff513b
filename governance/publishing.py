"""The publish policy: a version goes public only when every rule holds, and is withdrawn when one stops holding."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from catalog.errors import InvalidTransition
from catalog.models import Asset, AssetVersion, Representation
from catalog.permissions import Action
from catalog.services import require
from governance.audit import record_event
from governance.errors import PolicyNotMet

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


# Later rules (safety gates, rights, attestations) append themselves here.
PUBLISH_RULES: list[PolicyRule] = [_approved_by_review, _files_not_invalid, _licensed]


def unmet_rules(version: AssetVersion) -> list[str]:
    """Every reason the version may not be published now; empty when the policy holds."""
    return [reason for rule in PUBLISH_RULES if (reason := rule(version))]


@transaction.atomic
def publish_version(*, actor: Any, version: AssetVersion) -> AssetVersion:
    """Publish an approved version; the previously published version of the asset is superseded."""
    version = AssetVersion.objects.select_for_update().select_related("asset").get(pk=version.pk)
    require(actor, Action.MANAGE, version)
    reasons = unmet_rules(version)
    if reasons:
        raise PolicyNotMet(f"Version {version} cannot be published: {'; '.join(reasons)}.", reasons=reasons)
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
