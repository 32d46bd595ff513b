"""Rights records beyond the licence itself: where licences apply, consents of people whose likeness appears,
and the notifications owners receive when rights are withdrawn. Imported by governance.models."""
from __future__ import annotations

from django.conf import settings
from django.db import models

CHANNELS = ("web", "ar", "print", "games", "training")


def all_channels() -> list[str]:
    return list(CHANNELS)


class LicenceAttachment(models.Model):
    """A licence that covers a capture (its source images); assets carry theirs on `Asset.licence`."""

    licence = models.ForeignKey("governance.Licence", on_delete=models.PROTECT, related_name="attachments")
    capture = models.ForeignKey("catalog.Capture", on_delete=models.CASCADE, related_name="licence_attachments")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["licence", "capture"], name="licence_attached_once_per_capture")]

    def __str__(self) -> str:
        return f"{self.licence} on capture {self.capture_id}"


class Consent(models.Model):
    """Consent of a person whose likeness appears in captures or assets, for some channels, until it expires
    or is revoked. The signed form is a content-addressed StoredFile."""

    subject = models.CharField(max_length=200, help_text="The person who consented (name or reference).")
    channels = models.JSONField(default=all_channels, help_text=f"Channels the consent covers: {', '.join(CHANNELS)}.")
    scope = models.TextField(blank=True, help_text="What the consent covers, in the words of the form.")
    signed_form = models.ForeignKey("catalog.StoredFile", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    captures = models.ManyToManyField("catalog.Capture", blank=True, related_name="consents")
    assets = models.ManyToManyField("catalog.Asset", blank=True, related_name="consents")
    valid_from = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"consent of {self.subject}"


class Notification(models.Model):
    """A message to a user about something that happened to what they own (a withdrawal, a review due)."""

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=64, db_index=True)
    message = models.TextField()
    asset = models.ForeignKey("catalog.Asset", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.kind} for {self.recipient_id}"
