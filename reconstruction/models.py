"""Reconstruction jobs: one run of one engine backend on one capture, producing one asset version."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class ReconstructionJob(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    TERMINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    capture = models.ForeignKey("catalog.Capture", on_delete=models.PROTECT, related_name="jobs")
    asset = models.ForeignKey(
        "catalog.Asset", on_delete=models.PROTECT, related_name="jobs", help_text="The asset that receives the new version."
    )
    parent_version = models.ForeignKey(
        "catalog.AssetVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="derived_jobs"
    )
    backend = models.CharField(max_length=64, db_index=True)
    backend_version = models.CharField(max_length=32)
    parameters = models.JSONField(default=dict, blank=True, help_text="Validated against the backend's schema.")
    queue = models.CharField(max_length=8, default="cpu")
    idempotency_key = models.CharField(max_length=128, unique=True)

    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED, db_index=True)
    stage = models.CharField(max_length=64, blank=True)
    progress = models.FloatField(default=0.0, help_text="0–1 within the whole job.")
    log_tail = models.TextField(blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error = models.TextField(blank=True, help_text="Why the job failed, in words for the person who started it.")
    cancel_requested = models.BooleanField(default=False)

    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    resource_usage = models.JSONField(default=dict, blank=True)

    produced_version = models.OneToOneField(
        "catalog.AssetVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="produced_by_job"
    )
    learned_models = models.ManyToManyField(
        "LearnedModel", blank=True, related_name="jobs", help_text="The registered checkpoints the run used."
    )
    model_checkpoints = models.JSONField(
        default=list, blank=True,
        help_text='The checkpoints as the result named them ([{"name", "sha256", "uri"}]); provenance cites these.',
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    row_version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"Job {self.pk} {self.backend} on {self.capture}"

    @property
    def is_terminal(self) -> bool:
        return self.state in self.TERMINAL_STATES


class LearnedModel(models.Model):
    """A trained checkpoint from the engine's model registry (`reconstruction/engine/weights/registry.json`).

    Rows are never deleted: a checkpoint that left the registry stays, marked unavailable, because the
    versions it produced still cite it.
    """

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=64, help_text="Semantic version.")
    architecture = models.CharField(max_length=100)
    sha256 = models.CharField(max_length=64, unique=True, help_text="Digest of the checkpoint file.")
    size_bytes = models.BigIntegerField()
    file = models.CharField(max_length=255, blank=True, help_text="Path inside the engine's model directory.")
    training_config = models.JSONField(default=dict, blank=True)
    training_data = models.JSONField(default=dict, blank=True, help_text="Description and sha256 of the data set.")
    metrics = models.JSONField(default=dict, blank=True)
    licence = models.CharField(max_length=100, help_text="SPDX identifier.")
    description = models.TextField(blank=True)
    registered_at = models.DateTimeField(help_text="When the checkpoint was registered in the engine's registry.")
    available = models.BooleanField(default=True, help_text="False once the checkpoint left the registry.")
    synced_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "-registered_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="learned_model_name_version")]

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"
