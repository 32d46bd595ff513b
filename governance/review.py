"""The human review queue: enqueue on submit, claim exactly once, decide with a reason under the four-eyes rule,
and find overdue items. When an item reaches its approvals the version is approved through the catalog."""
from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from catalog.errors import PermissionDenied
from catalog.models import AssetVersion
from catalog.permissions import Action
from catalog.services import require
from governance.audit import record_event
from governance.errors import ReviewConflict
from governance.review_models import ReviewDecision, ReviewItem

OPEN_STATES = (ReviewItem.State.WAITING, ReviewItem.State.CLAIMED)


def required_approvals(version: AssetVersion) -> int:
    """Two approvals for assets tagged public-facing or brand-critical (ASSAY_REVIEW_TWO_APPROVAL_TAGS), else one."""
    tags = set(getattr(settings, "ASSAY_REVIEW_TWO_APPROVAL_TAGS", ("public-facing", "brand-critical")))
    return 2 if version.asset.tags.filter(name__in=tags).exists() else 1


@transaction.atomic
def enqueue_review(*, version: AssetVersion, submitted_by: Any) -> ReviewItem:
    """Put a submitted version in the queue (once); its SLA clock starts now (ASSAY_REVIEW_SLA_HOURS)."""
    sla = dt.timedelta(hours=float(getattr(settings, "ASSAY_REVIEW_SLA_HOURS", 48)))
    item, created = ReviewItem.objects.get_or_create(
        version=version,
        defaults={"submitted_by": submitted_by if getattr(submitted_by, "pk", None) else None,
                  "required_approvals": required_approvals(version), "due_at": timezone.now() + sla},
    )
    if created:
        record_event(actor=submitted_by, action="review.enqueued", obj=item, asset_id=version.asset_id,
                     data={"version": version.pk, "required_approvals": item.required_approvals,
                           "due_at": item.due_at})
        version_id = version.pk
        transaction.on_commit(lambda: dispatch_gates(version_id))  # reviewers see the gates' evidence
    return item


def dispatch_gates(version_id: int) -> None:
    """Queue the safety gates for a version on the cpu queue (`governance.run_gates`)."""
    from governance.tasks import run_gates

    run_gates.delay(version_id)


def _check_four_eyes(actor: Any, item: ReviewItem) -> None:
    if actor.pk in (item.submitted_by_id, item.version.created_by_id):
        raise PermissionDenied("You cannot review a version you created or submitted (four-eyes rule).")
    if item.decisions.filter(reviewer=actor).exists():
        raise PermissionDenied("You already decided on this version; a second approval must come from another reviewer.")


@transaction.atomic
def claim_review(*, actor: Any, item: ReviewItem) -> ReviewItem:
    """Claim a waiting item for `actor`; exactly one of two simultaneous claims wins (a conditional update)."""
    item = ReviewItem.objects.select_related("version", "version__asset").get(pk=item.pk)
    require(actor, Action.REVIEW, item.version)
    _check_four_eyes(actor, item)
    now = timezone.now()
    won = ReviewItem.objects.filter(pk=item.pk, state=ReviewItem.State.WAITING).update(
        state=ReviewItem.State.CLAIMED, claimed_by=actor, claimed_at=now)
    if won != 1:
        item.refresh_from_db()
        holder = f" by {item.claimed_by}" if item.claimed_by_id else ""
        raise ReviewConflict(f"The review of {item.version} is {item.state}{holder}; it cannot be claimed.")
    item.refresh_from_db()
    record_event(actor=actor, action="review.claimed", obj=item, asset_id=item.version.asset_id,
                 changes={"state": [ReviewItem.State.WAITING, ReviewItem.State.CLAIMED]})
    return item


@transaction.atomic
def release_review(*, actor: Any, item: ReviewItem) -> ReviewItem:
    """Give a claimed item back to the queue without deciding."""
    released = ReviewItem.objects.filter(pk=item.pk, state=ReviewItem.State.CLAIMED, claimed_by=actor).update(
        state=ReviewItem.State.WAITING, claimed_by=None, claimed_at=None)
    if released != 1:
        raise ReviewConflict("Only the reviewer who claimed an item can release it.")
    item.refresh_from_db()
    record_event(actor=actor, action="review.released", obj=item, asset_id=item.version.asset_id,
                 changes={"state": [ReviewItem.State.CLAIMED, ReviewItem.State.WAITING]})
    return item


@transaction.atomic
def decide_review(*, actor: Any, item: ReviewItem, approve: bool, reason: str,
                  overrides: list[str] | None = None) -> ReviewItem:
    """Approve or reject a claimed item with a reason. Enough approvals approve the version; a rejection rejects it.
    `overrides` names flagged gates the reviewer accepts (a reason is then mandatory, as always)."""
    from catalog.services import approve_version, reject_version

    item = ReviewItem.objects.select_for_update().select_related("version", "version__asset").get(pk=item.pk)
    if not reason.strip():
        raise ReviewConflict("Give a reason for the decision; it is kept with the audit trail.")
    if item.state != ReviewItem.State.CLAIMED or item.claimed_by_id != actor.pk:
        raise ReviewConflict(f"Claim the review of {item.version} before deciding; it is {item.state}.")
    _check_four_eyes(actor, item)
    ReviewDecision.objects.create(item=item, reviewer=actor, reason=reason, overrides=sorted(overrides or []),
                                  outcome=ReviewDecision.Outcome.APPROVE if approve else ReviewDecision.Outcome.REJECT)
    before = item.state
    approvals = item.decisions.filter(outcome=ReviewDecision.Outcome.APPROVE).count()
    if not approve:
        item.state = ReviewItem.State.REJECTED
        item.decided_at = timezone.now()
    elif approvals >= item.required_approvals:
        item.state = ReviewItem.State.APPROVED
        item.decided_at = timezone.now()
    else:
        item.state = ReviewItem.State.WAITING  # back in the queue for a different reviewer
    item.claimed_by = None
    item.claimed_at = None
    item.save(update_fields=["state", "decided_at", "claimed_by", "claimed_at"])  # before the catalog call below
    if item.state == ReviewItem.State.REJECTED:
        reject_version(actor=actor, version=item.version, reason=reason)
    elif item.state == ReviewItem.State.APPROVED:
        approve_version(actor=actor, version=item.version, reason=reason)
    record_event(actor=actor, action="review.decided", obj=item, asset_id=item.version.asset_id,
                 changes={"state": [before, item.state]},
                 data={"approve": approve, "reason": reason, "approvals": approvals,
                       "required_approvals": item.required_approvals, "overrides": sorted(overrides or [])})
    return item


def sync_direct_decision(*, actor: Any, version: AssetVersion, approve: bool, reason: str) -> None:
    """Called by `catalog.services` when a version is approved or rejected outside the queue (API, admin):
    the open review item is closed with that decision, and an approval that needs two reviewers is refused."""
    item = ReviewItem.objects.select_for_update().filter(version=version, state__in=OPEN_STATES).first()
    if item is None:
        return  # no queue item, or the queue itself is deciding (it closes the item first)
    if approve and item.required_approvals > 1:
        raise PermissionDenied(
            f"Version {version} needs {item.required_approvals} approvals from different reviewers; "
            "decide it through the review queue."
        )
    if item.decisions.filter(reviewer=actor).exists():
        raise PermissionDenied("You already decided on this version; the next decision must come from another reviewer.")
    before = item.state
    ReviewDecision.objects.create(item=item, reviewer=actor, reason=reason or "approved outside the queue",
                                  outcome=ReviewDecision.Outcome.APPROVE if approve else ReviewDecision.Outcome.REJECT)
    item.state = ReviewItem.State.APPROVED if approve else ReviewItem.State.REJECTED
    item.decided_at = timezone.now()
    item.claimed_by = None
    item.claimed_at = None
    item.save(update_fields=["state", "decided_at", "claimed_by", "claimed_at"])
    record_event(actor=actor, action="review.decided", obj=item, asset_id=version.asset_id,
                 changes={"state": [before, item.state]}, data={"approve": approve, "reason": reason, "direct": True})


def overridden_gates(version: AssetVersion) -> set[str]:
    """Gates whose flags an approving reviewer overrode with a reason."""
    names: set[str] = set()
    for overrides in ReviewDecision.objects.filter(item__version=version, outcome=ReviewDecision.Outcome.APPROVE).values_list(
        "overrides", flat=True
    ):
        names.update(overrides or [])
    return names


def overdue_items(*, now: dt.datetime | None = None) -> QuerySet[ReviewItem]:
    """Open items past their SLA, oldest due first."""
    return ReviewItem.objects.filter(state__in=OPEN_STATES, due_at__lt=now or timezone.now()).order_by("due_at", "id")
