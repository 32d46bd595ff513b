"""Safety gate records: the brand-mark reference library and each gate's verdict on a version, with its
evidence. Imported by governance.models."""
from __future__ import annotations

from django.db import models


class BrandMark(models.Model):
    """A logo compliance wants found; the image is a content-addressed StoredFile."""

    name = models.CharField(max_length=200, unique=True)
    owner = models.CharField(max_length=200, blank=True, help_text="Who holds the mark.")
    image = models.ForeignKey("catalog.StoredFile", on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=5, choices=[("flag", "flag"), ("block", "block")], default="flag")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SafetyVerdict(models.Model):
    class Outcome(models.TextChoices):
        PASS = "pass"
        FLAG = "flag"
        BLOCK = "block"

    version = models.ForeignKey("catalog.AssetVersion", on_delete=models.CASCADE, related_name="safety_verdicts")
    gate = models.CharField(max_length=64, db_index=True)
    gate_version = models.CharField(max_length=32)
    outcome = models.CharField(max_length=5, choices=Outcome.choices)
    reason = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True, help_text="Per image: boxes, text, matched marks.")
    evidence_image = models.ForeignKey("catalog.StoredFile", null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="+", help_text="The first flagged image with boxes drawn.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["version", "gate"])]

    def __str__(self) -> str:
        return f"{self.gate} {self.gate_version}: {self.outcome}"
