"""The human review queue: one item per submitted version, claimed by one reviewer at a time, decided with a
reason; public-facing or brand-critical versions need two approvals. Imported by governance.models."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class ReviewItem(models.Model):
    class State(models.TextChoices):
        WAITING = "waiting"
        CLAIMED = "claimed"
        APPROVED = "approved"
        REJECTED = "rejected"

    version = models.OneToOneField("catalog.AssetVersion", on_delete=models.CASCADE, related_name="review_item")
    state = models.CharField(max_length=10, choices=State.choices, default=State.WAITING, db_index=True)
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="claimed_reviews")
    claimed_at = models.DateTimeField(null=True, blank=True)
    required_approvals = models.PositiveSmallIntegerField(default=1)
    due_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["due_at", "id"]
        constraints = [models.CheckConstraint(condition=models.Q(required_approvals__in=[1, 2]),
                                              name="review_needs_one_or_two_approvals")]

    def __str__(self) -> str:
        return f"review of version {self.version_id} ({self.state})"


class ReviewDecision(models.Model):
    class Outcome(models.TextChoices):
        APPROVE = "approve"
        REJECT = "reject"

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="decisions")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    reason = models.TextField()
    overrides = models.JSONField(default=list, blank=True, help_text="Names of flagged gates this reviewer overrides.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["item", "reviewer"], name="one_decision_per_reviewer")]

    def __str__(self) -> str:
        return f"{self.outcome} by {self.reviewer_id}"
