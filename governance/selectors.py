"""Permission-filtered reads of governance records."""
from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from catalog.models import Asset, Collection
from catalog.permissions import Action, asset_filter, collection_filter, has_global
from governance.models import AuditEvent


def may_audit_everything(user: Any) -> bool:
    """Global compliance officers and admins see the whole trail, events about no asset included."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return has_global(user, Action.AUDIT) or user.has_perm("governance.view_auditevent")


def may_audit_something(user: Any) -> bool:
    """Holds the audit role somewhere (a collection or an asset), even where no event exists yet."""
    return (
        may_audit_everything(user)
        or Collection.objects.filter(collection_filter(user, Action.AUDIT)).exists()
        or Asset.objects.filter(asset_filter(user, Action.AUDIT)).exists()
    )


def audit_events_visible_to(user: Any) -> QuerySet[AuditEvent]:
    """Events the user may read: all of them for global auditors, else those about assets they may audit."""
    if may_audit_everything(user):
        return AuditEvent.objects.all()
    if user is None or not user.is_authenticated:
        return AuditEvent.objects.none()
    assets = Asset.objects.filter(asset_filter(user, Action.AUDIT)).values("id")
    return AuditEvent.objects.filter(Q(asset_id__in=assets))
