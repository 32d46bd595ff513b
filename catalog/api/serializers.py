"""Serializers of the catalog API: output serializers describe what clients read, strict input serializers
what they may send. Inputs only parse and check shape; every rule lives in `catalog.services`."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog import selectors
from catalog.api.strict import StrictCharField, StrictChoiceField, StrictInputSerializer, StrictSlugField
from catalog.models import (
    LOD,
    Asset,
    AssetVersion,
    Capture,
    CaptureImage,
    Collection,
    QualityReport,
    Representation,
    Variant,
)
from catalog.permissions import Role
from governance.models import Licence

# Output ----------------------------------------------------------------------------------------


class CollectionSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)

    class Meta:
        model = Collection
        fields = ["id", "slug", "name", "description", "owner", "row_version", "created_at", "updated_at"]
        read_only_fields = fields


class LicenceSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Licence
        fields = ["id", "spdx_id", "name", "url", "attribution"]
        read_only_fields = fields


class AssetSerializer(serializers.ModelSerializer):
    collection_slug = serializers.CharField(source="collection.slug", read_only=True)
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    licence = LicenceSummarySerializer(read_only=True, allow_null=True)
    latest_version = serializers.IntegerField(
        source="latest_version_number", read_only=True, allow_null=True, help_text="Number of the newest version."
    )

    class Meta:
        model = Asset
        fields = [
            "id", "collection", "collection_slug", "slug", "name", "description", "category", "tags", "state",
            "licence", "owner", "latest_version", "row_version", "created_at", "updated_at",
        ]
        read_only_fields = fields


class VersionSerializer(serializers.ModelSerializer):
    asset_slug = serializers.CharField(source="asset.slug", read_only=True)
    collection = serializers.IntegerField(source="asset.collection_id", read_only=True)
    created_by = serializers.CharField(source="created_by.get_username", read_only=True)
    captures = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = AssetVersion
        fields = [
            "id", "asset", "asset_slug", "collection", "number", "state", "parent", "captures", "notes", "metadata",
            "created_by", "created_at", "submitted_at", "published_at", "row_version",
        ]
        read_only_fields = fields


class VariantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Variant
        fields = ["id", "version", "name", "kind", "attributes"]
        read_only_fields = fields


class LODSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="variant.version_id", read_only=True)

    class Meta:
        model = LOD
        fields = ["id", "variant", "version", "level", "triangle_count", "screen_size"]
        read_only_fields = fields


class RepresentationSerializer(serializers.ModelSerializer):
    variant = serializers.IntegerField(source="lod.variant_id", read_only=True)
    variant_name = serializers.CharField(source="lod.variant.name", read_only=True)
    version = serializers.IntegerField(source="lod.variant.version_id", read_only=True)
    lod_level = serializers.IntegerField(source="lod.level", read_only=True)
    sha256 = serializers.CharField(source="file.sha256", read_only=True)
    size = serializers.IntegerField(source="file.size", read_only=True)
    media_type = serializers.CharField(source="file.media_type", read_only=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Representation
        fields = [
            "id", "lod", "lod_level", "variant", "variant_name", "version", "filename", "format", "role",
            "restricted", "validation_status", "validation_report", "sha256", "size", "media_type", "download_url",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_download_url(self, obj: Representation) -> str:
        path = reverse("catalog-api:representation-download", args=[obj.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class QualityReportSerializer(serializers.ModelSerializer):
    class Meta:
        model = QualityReport
        fields = [
            "version", "triangle_count", "vertex_count", "texture_count", "watertight", "bounds", "metrics", "created_at"
        ]
        read_only_fields = fields


class CostTotalsSerializer(serializers.Serializer):
    currency = serializers.CharField()
    amount = serializers.DecimalField(max_digits=14, decimal_places=4)
    gpu_seconds = serializers.FloatField()
    cpu_seconds = serializers.FloatField()
    storage_bytes = serializers.IntegerField()
    postprocess_seconds = serializers.FloatField()
    human_minutes = serializers.FloatField()
    records = serializers.IntegerField(help_text="How many cost records were summed.")


class CostOfKindSerializer(CostTotalsSerializer):
    kind = serializers.CharField()


class CostSummarySerializer(serializers.Serializer):
    totals = CostTotalsSerializer(many=True, help_text="One entry per currency.")
    by_kind = CostOfKindSerializer(many=True, help_text="Per kind of work (reconstruction, storage, review…).")


class GrantResultSerializer(serializers.Serializer):
    role = serializers.CharField()
    principal = serializers.CharField(help_text="`user:<username>` or `group:<name>`.")
    permissions = serializers.ListField(child=serializers.CharField(), help_text="Object permission codenames.")


class CaptureImageSerializer(serializers.ModelSerializer):
    sha256 = serializers.CharField(source="file.sha256", read_only=True)
    size = serializers.IntegerField(source="file.size", read_only=True)
    mask_sha256 = serializers.CharField(source="mask.sha256", read_only=True, allow_null=True, default=None)

    class Meta:
        model = CaptureImage
        fields = ["filename", "width", "height", "sha256", "size", "mask_sha256", "exif", "problems"]
        read_only_fields = fields


class CaptureSerializer(serializers.ModelSerializer):
    collection_slug = serializers.CharField(source="collection.slug", read_only=True)
    standard = serializers.CharField(source="standard.name", read_only=True, allow_null=True, default=None)
    created_by = serializers.CharField(source="created_by.get_username", read_only=True)
    images = CaptureImageSerializer(many=True, read_only=True)

    class Meta:
        model = Capture
        fields = [
            "id", "collection", "collection_slug", "name", "device", "lens", "focal_length_mm", "lighting",
            "scale_reference", "units", "category", "metadata", "standard", "check_status", "check_report", "images",
            "created_by", "created_at",
        ]
        read_only_fields = fields


# Input -----------------------------------------------------------------------------------------


class VisibleRelatedField(serializers.PrimaryKeyRelatedField):
    """A primary key of a row the caller can see: one they cannot reads as "does not exist", never "forbidden"."""

    def __init__(self, *, model: type[models.Model], selector: Callable[[Any], QuerySet], **kwargs: Any) -> None:
        self.selector = selector
        super().__init__(queryset=model.objects.none(), **kwargs)  # the model types the schema

    def get_queryset(self) -> QuerySet:
        return self.selector(self.context["request"].user)


class CollectionCreateSerializer(StrictInputSerializer):
    slug = StrictSlugField(max_length=100)
    name = StrictCharField(max_length=200)
    description = StrictCharField(required=False, allow_blank=True, default="")


ROLE_CHOICES = [(r.value, r.value) for r in Role]


class GrantSerializer(StrictInputSerializer):
    """Exactly one of `user` (a username) or `group` (a group name) receives or loses the role."""

    role = StrictChoiceField(choices=ROLE_CHOICES)
    user = StrictCharField(required=False, max_length=150)
    group = StrictCharField(required=False, max_length=150)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("user" in attrs) == ("group" in attrs):
            raise serializers.ValidationError("Name exactly one of 'user' or 'group'.")
        if "user" in attrs:
            user_model = get_user_model()
            principal = user_model.objects.filter(**{user_model.USERNAME_FIELD: attrs["user"]}).first()
            if principal is None:
                raise serializers.ValidationError({"user": f"No user is named '{attrs['user']}'."})
            label = f"user:{attrs['user']}"
        else:
            principal = Group.objects.filter(name=attrs["group"]).first()
            if principal is None:
                raise serializers.ValidationError({"group": f"No group is named '{attrs['group']}'."})
            label = f"group:{attrs['group']}"
        return {"role": Role(attrs["role"]), "principal": principal, "label": label}


class AssetCreateSerializer(StrictInputSerializer):
    collection = VisibleRelatedField(model=Collection, selector=selectors.collections_visible_to)
    slug = StrictSlugField(max_length=100)
    name = StrictCharField(max_length=200)
    description = StrictCharField(required=False, allow_blank=True, default="")
    category = StrictCharField(required=False, allow_blank=True, default="", max_length=120)
    tags = serializers.ListField(child=StrictSlugField(max_length=64), required=False, default=list)
    licence = serializers.PrimaryKeyRelatedField(queryset=Licence.objects.all(), required=False, allow_null=True)


class AssetUpdateSerializer(StrictInputSerializer):
    name = StrictCharField(required=False, max_length=200)
    description = StrictCharField(required=False, allow_blank=True)
    category = StrictCharField(required=False, allow_blank=True, max_length=120)
    tags = serializers.ListField(child=StrictSlugField(max_length=64), required=False)
    licence = serializers.PrimaryKeyRelatedField(queryset=Licence.objects.all(), required=False, allow_null=True)


class TransitionSerializer(StrictInputSerializer):
    to_state = StrictChoiceField(choices=Asset.State.choices)
    reason = StrictCharField(required=False, allow_blank=True, default="", max_length=1000)


class VersionCreateSerializer(StrictInputSerializer):
    asset = VisibleRelatedField(model=Asset, selector=selectors.assets_visible_to)
    parent = VisibleRelatedField(model=AssetVersion, selector=selectors.versions_visible_to, required=False, allow_null=True)
    notes = StrictCharField(required=False, allow_blank=True, default="")
    captures = VisibleRelatedField(model=Capture, selector=selectors.captures_visible_to, many=True, required=False, default=list)
    metadata = serializers.DictField(required=False, default=dict)


class CaptureUploadSerializer(StrictInputSerializer):
    """A multipart form: repeat `images` once per photo, and `masks` (optional) once per image, named by its stem."""

    collection = VisibleRelatedField(model=Collection, selector=selectors.collections_visible_to)
    name = serializers.CharField(max_length=200)
    images = serializers.ListField(child=serializers.FileField(), min_length=1, help_text="The photos (JPEG or PNG).")
    masks = serializers.ListField(
        child=serializers.FileField(), required=False, default=list,
        help_text="Foreground masks (white = object), one per image, matched by file stem, same size as the image.",
    )
    device = serializers.CharField(max_length=200, required=False, allow_blank=True)
    lens = serializers.CharField(max_length=200, required=False, allow_blank=True)
    focal_length_mm = serializers.FloatField(min_value=0.1, required=False)
    lighting = serializers.CharField(max_length=200, required=False, allow_blank=True)
    scale_reference = serializers.CharField(max_length=200, required=False, allow_blank=True)
    units = serializers.ChoiceField(choices=Capture.Units.choices, required=False)
    category = serializers.CharField(max_length=120, required=False, allow_blank=True)
    metadata = serializers.JSONField(
        binary=True, required=False, default=dict,
        help_text="JSON object; known cameras go in `colmap` as the text of COLMAP's cameras.txt and images.txt.",
    )

    def validate_metadata(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


class NoInputSerializer(StrictInputSerializer):
    """Actions that take no body; anything sent is an error rather than silently ignored."""


class ApproveSerializer(StrictInputSerializer):
    reason = StrictCharField(required=False, allow_blank=True, default="", max_length=2000)


class ReasonSerializer(StrictInputSerializer):
    reason = StrictCharField(max_length=2000, help_text="Why; shown to the version's author and kept in the audit log.")


class VariantCreateSerializer(StrictInputSerializer):
    version = VisibleRelatedField(model=AssetVersion, selector=selectors.versions_visible_to)
    name = StrictCharField(max_length=100)
    kind = StrictChoiceField(choices=Variant.Kind.choices, required=False, default=Variant.Kind.OTHER)
    attributes = serializers.DictField(required=False, default=dict)


class RepresentationUploadSerializer(StrictInputSerializer):
    """A multipart form: values arrive as text, so these fields parse them (`lod_level=1`, `restricted=true`)."""

    version = VisibleRelatedField(model=AssetVersion, selector=selectors.versions_visible_to)
    file = serializers.FileField(help_text="The file; its type is judged by its bytes and must match its extension.")
    variant = serializers.CharField(max_length=100, required=False, default="default")
    lod_level = serializers.IntegerField(min_value=0, max_value=32, required=False, default=0)
    role = serializers.ChoiceField(choices=Representation.Role.choices, required=False, default=Representation.Role.MODEL)
    triangle_count = serializers.IntegerField(min_value=0, required=False)
    screen_size = serializers.FloatField(min_value=0, max_value=1, required=False)
    restricted = serializers.BooleanField(required=False, default=False)

