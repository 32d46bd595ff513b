"""Governance records: the append-only audit log and the licences assets are offered under."""
from __future__ import annotations

from django.conf import settings
from django.db import models

from governance.rights_models import all_channels


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
    channels = models.JSONField(default=all_channels, blank=True,
                                help_text="Channels the licence allows: web, ar, print, games, training.")
    territories = models.JSONField(default=list, blank=True, help_text="ISO 3166 codes; empty means worldwide.")
    valid_from = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    expired_handled_at = models.DateTimeField(null=True, blank=True, editable=False,
                                              help_text="When the expiry sweep withdrew what depended on it.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.spdx_id or self.name


class SigningKey(models.Model):
    """An Ed25519 key pair; the private half is stored encrypted under a key-encryption key (see governance.keys).

    A key is *active* until it is rotated (it keeps verifying what it signed) or revoked (its signatures are
    reported as made with a revoked key). At most one active key per purpose.
    """

    class Purpose(models.TextChoices):
        TREE_HEAD = "tree_head", "Signed tree heads of the audit log"
        ATTESTATION = "attestation", "Provenance attestations"
        C2PA = "c2pa", "C2PA content credentials of images"

    class Status(models.TextChoices):
        ACTIVE = "active"
        RETIRED = "retired"
        REVOKED = "revoked"

    key_id = models.CharField(max_length=64, unique=True, editable=False, help_text="sha256 of the raw public key, hex.")
    algorithm = models.CharField(max_length=16, default="ed25519", editable=False)
    purpose = models.CharField(max_length=16, choices=Purpose.choices, db_index=True)
    public_key = models.BinaryField(editable=False, help_text="Raw 32-byte Ed25519 public key.")
    encrypted_private_key = models.BinaryField(editable=False)
    encryption_key_id = models.CharField(max_length=64, editable=False, help_text="Which key-encryption key wraps it.")
    certificate_chain = models.TextField(
        blank=True, editable=False, help_text="PEM chain (leaf first) certifying the key; C2PA signing needs one."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True, help_text="Retired from signing; still verifies.")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["purpose"], condition=models.Q(rotated_at__isnull=True, revoked_at__isnull=True),
                name="one_active_signing_key_per_purpose",
            )
        ]

    def __str__(self) -> str:
        return f"{self.purpose} {self.key_id[:16]} ({self.status})"

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return self.Status.REVOKED
        if self.rotated_at is not None:
            return self.Status.RETIRED
        return self.Status.ACTIVE


class SignedTreeHead(models.Model):
    """The size and root of the audit log at one moment, signed; successive heads must be consistent."""

    tree_size = models.BigIntegerField(db_index=True)
    root_hash = models.CharField(max_length=64)
    signed_at = models.DateTimeField(db_index=True)
    key = models.ForeignKey(SigningKey, on_delete=models.PROTECT, related_name="tree_heads")
    signature = models.CharField(max_length=128, help_text="Ed25519 signature of the canonical head, hex.")

    class Meta:
        ordering = ["-id"]
        get_latest_by = "id"

    def __str__(self) -> str:
        return f"STH {self.pk}: size {self.tree_size}, root {self.root_hash[:12]}"


class Attestation(models.Model):
    """A DSSE envelope (in-toto Statement v1) about one asset version or one of its files, signed by `key`."""

    version = models.ForeignKey("catalog.AssetVersion", on_delete=models.PROTECT, related_name="attestations")
    representation = models.ForeignKey(
        "catalog.Representation", null=True, blank=True, on_delete=models.PROTECT, related_name="attestations"
    )
    predicate_type = models.CharField(max_length=200, db_index=True)
    envelope = models.JSONField(help_text="DSSE envelope: payloadType, payload (base64), signatures.")
    payload_sha256 = models.CharField(max_length=64)
    key = models.ForeignKey(SigningKey, on_delete=models.PROTECT, related_name="attestations")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        target = f"representation {self.representation_id}" if self.representation_id else f"version {self.version_id}"
        return f"{self.predicate_type.rsplit('/', 2)[-2] if '/' in self.predicate_type else self.predicate_type} for {target}"


# Rights, review and safety-gate models live in their own modules; importing them registers them with this app.
from governance.gate_models import BrandMark, SafetyVerdict  # noqa: E402,F401
from governance.review_models import ReviewDecision, ReviewItem  # noqa: E402,F401
from governance.rights_models import Consent, LicenceAttachment, Notification  # noqa: E402,F401
