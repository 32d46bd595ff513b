"""Serializers of the job API: what clients read about jobs, backends and learned models, and the strict job
request."""
from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog import selectors
from catalog import selectors as catalog_selectors
from catalog.api.serializers import VisibleRelatedField
from catalog.api.strict import StrictCharField, StrictInputSerializer
from catalog.models import Asset, AssetVersion, Capture
from reconstruction import selectors as reconstruction_selectors
from reconstruction.models import LearnedModel, ReconstructionJob


class JobSerializer(serializers.ModelSerializer):
    asset_slug = serializers.CharField(source="asset.slug", read_only=True)
    collection = serializers.IntegerField(source="asset.collection_id", read_only=True)
    created_by = serializers.CharField(source="created_by.get_username", read_only=True)
    error = serializers.SerializerMethodField()
    produced_version_url = serializers.SerializerMethodField()

    class Meta:
        model = ReconstructionJob
        fields = [
            "id", "capture", "asset", "asset_slug", "collection", "parent_version", "backend", "backend_version",
            "parameters", "queue", "idempotency_key", "state", "stage", "progress", "log_tail", "error",
            "cancel_requested", "attempts", "max_attempts", "heartbeat_at", "resource_usage", "model_checkpoints",
            "produced_version", "produced_version_url", "created_by", "created_at", "started_at", "finished_at", "row_version",
        ]
        read_only_fields = fields

    @extend_schema_field({
        "type": "object", "nullable": True,
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    })
    def get_error(self, job: ReconstructionJob) -> dict[str, str] | None:
        if not job.error_code and not job.error:
            return None
        return {"code": job.error_code, "message": job.error}

    @extend_schema_field(OpenApiTypes.URI)
    def get_produced_version_url(self, job: ReconstructionJob) -> str | None:
        if job.produced_version_id is None:
            return None
        path = reverse("catalog-api:version-detail", args=[job.produced_version_id])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class JobCreateSerializer(StrictInputSerializer):
    capture = VisibleRelatedField(model=Capture, selector=selectors.captures_visible_to)
    asset = VisibleRelatedField(model=Asset, selector=catalog_selectors.assets_visible_to)
    backend = StrictCharField(max_length=64)
    parameters = serializers.DictField(required=False, default=dict, help_text="Checked against the backend's schema.")
    parent_version = VisibleRelatedField(
        model=AssetVersion, selector=catalog_selectors.versions_visible_to, required=False, allow_null=True
    )
    idempotency_key = StrictCharField(
        required=False, max_length=128, help_text="Or send the Idempotency-Key header; the same key twice makes one job."
    )


class BackendSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()
    capabilities = serializers.DictField(help_text="Input kinds, view limits, needs_gpu, typical memory…")
    parameter_schema = serializers.DictField(help_text="JSON Schema (draft 2020-12) of the job's `parameters`.")

    def to_representation(self, instance: Any) -> Any:
        return instance  # already plain JSON from the selector


class LearnedModelSerializer(serializers.ModelSerializer):
    reference = serializers.CharField(source="__str__", read_only=True, help_text="name@version")

    class Meta:
        model = LearnedModel
        fields = [
            "id", "name", "version", "reference", "architecture", "sha256", "size_bytes", "training_config",
            "training_data", "metrics", "licence", "description", "registered_at", "available",
        ]
        read_only_fields = fields


class ModelVersionSerializer(serializers.Serializer):
    """A version a job made with the model."""

    id = serializers.IntegerField()
    asset = serializers.IntegerField(source="asset_id")
    asset_slug = serializers.CharField(source="asset.slug")
    number = serializers.IntegerField()


class LearnedModelDetailSerializer(LearnedModelSerializer):
    versions = serializers.SerializerMethodField(help_text="Versions made with this model that you may see.")

    class Meta(LearnedModelSerializer.Meta):
        fields = [*LearnedModelSerializer.Meta.fields, "versions"]
        read_only_fields = fields

    @extend_schema_field(ModelVersionSerializer(many=True))
    def get_versions(self, model: LearnedModel) -> list[dict[str, Any]]:
        request = self.context.get("request")
        user = request.user if request is not None else None
        versions = reconstruction_selectors.versions_made_with(model, user)
        return list(ModelVersionSerializer(versions, many=True).data)
