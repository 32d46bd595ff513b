"""Governance records: the append-only audit log and the licences assets are offered under."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One entry of the append-only audit log; `seq` is its leaf index in the Merkle log.

    Rows are written only by `governance.audit.record_event`, inside the transaction of the change
    they describe. `leaf_hash` covers the canonical JSON of every other field, so any edit shows.
    """

    seq = models.BigIntegerField(unique=True, editable=False)
    occurred_at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_constraint=False
    )
    actor_name = models.CharField(max_length=150, blank=True, help_text="Username at the time; survives user deletion.")
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=100, blank=True, db_index=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_repr = models.CharField(max_length=200, blank=True)
    asset_id = models.BigIntegerField(null=True, blank=True, db_index=True, help_text="The asset concerned, for search.")
    changes = models.JSONField(default=dict, blank=True, help_text="{field: [before, after]}")
    data = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    leaf_hash = models.CharField(max_length=64, editable=False)

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["object_type", "object_id"]), models.Index(fields=["actor", "occurred_at"])]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_repr}"


class Licence(models.Model):
    """Terms an asset or capture is offered under: an SPDX identifier or a custom text."""

    spdx_id = models.CharField(max_length=64, blank=True, help_text="e.g. CC0-1.0, CC-BY-4.0; blank for a custom licence.")
    name = models.CharField(max_length=200)
    text = models.TextField(blank=True)
    url = models.URLField(blank=True)
    licensor = models.CharField(max_length=200, blank=True)
    attribution = models.TextField(blank=True, help_text="Credit line downstream systems must show.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.spdx_id or self.name
