"""Query-string filters of the audit trail search."""
from __future__ import annotations

from django_filters import rest_framework as filters

from governance.models import AuditEvent


class AuditEventFilter(filters.FilterSet):
    asset = filters.NumberFilter(field_name="asset_id", help_text="Asset id.")
    actor = filters.CharFilter(field_name="actor_name", help_text="Username of the actor at the time.")
    action = filters.CharFilter(method="filter_action", help_text="Exact action, or a prefix ending in '.': `version.`.")
    object_type = filters.CharFilter(field_name="object_type", help_text="e.g. catalog.assetversion.")
    object_id = filters.CharFilter(field_name="object_id")
    since = filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte", help_text="ISO 8601, inclusive.")
    until = filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt", help_text="ISO 8601, exclusive.")

    class Meta:
        model = AuditEvent
        fields: list[str] = []

    def filter_action(self, queryset, name, value):
        if value.endswith("."):
            return queryset.filter(action__startswith=value)
        return queryset.filter(action=value)
