"""Views of the catalog API. They parse the request, read through `catalog.selectors` and write through
`catalog.services` (or `governance.publishing`); they hold no rules of their own.

Reads start from a permission-filtered queryset, so an object the caller may not see is a 404, while an
object they may see but not change gives the service's 403.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.http import FileResponse, HttpResponseRedirect
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer

from catalog import selectors, services
from catalog.api import serializers as s
from catalog.api.conditional import check_if_match, conditional_response, etag_for, is_not_modified
from catalog.api.filters import (
    AssetFilter,
    CaptureFilter,
    CollectionFilter,
    LODFilter,
    RepresentationFilter,
    VariantFilter,
    VersionFilter,
)
from catalog.api.renderers import FileRenderer
from catalog.downloads import authorize_download
from catalog.errors import CatalogErrorCode, CatalogNotFound, InvalidFile
from catalog.models import Representation
from catalog.storage import blob_url, open_blob
from governance.publishing import publish_version, withdraw_version

IF_MATCH_REQUIRED = OpenApiParameter(
    "If-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True,
    description="The ETag of your last GET; 412 if the resource changed since, 428 if missing.",
)
IF_MATCH_OPTIONAL = OpenApiParameter(
    "If-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="The ETag of your last GET; when sent, 412 if the version changed since.",
)
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="An ETag you hold; 304 Not Modified if it is still current.",
)
NOT_MODIFIED = OpenApiResponse(description="Not modified: the ETag in If-None-Match is current.")

# Multipart framing around the file: a body larger than the file limit plus this cannot hold an acceptable file.
MULTIPART_SLACK_BYTES = 64 * 1024


class CatalogViewSet(viewsets.GenericViewSet):
    """Shared plumbing: numeric ids, cursor ordering, strict input parsing, ETag responses, row locking."""

    lookup_value_regex = r"\d+"
    ordering: tuple[str, ...] = ("-id",)

    def input(self, serializer_class: type[Serializer], data: Any = None) -> dict[str, Any]:
        serializer = serializer_class(data=self.request.data if data is None else data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def detail_response(self, instance: models.Model, *, status_code: int = status.HTTP_200_OK) -> Response:
        return conditional_response(self.request, self.get_serializer(instance).data, status_code=status_code)

    def reread(self, instance: models.Model) -> models.Model:
        """The object as the caller now sees it, through the same selector as a GET (fresh annotations)."""
        return self.get_queryset().get(pk=instance.pk)

    def locked_object(self, *, if_match_required: bool) -> Any:
        """Inside a transaction: lock the row named in the URL, read it, and check If-Match against it.

        The lock is held until the surrounding transaction ends, so nobody changes the row between the
        precondition check and the write. Services lock the same row again (a no-op) in the same order.
        """
        model = self.get_queryset().model
        list(model.objects.select_for_update().filter(pk=self.kwargs["pk"]).values_list("pk", flat=True))
        instance = self.get_object()
        etag = etag_for(self.get_serializer(instance).data)
        check_if_match(self.request, etag, required=if_match_required, what=f"{model._meta.verbose_name} {instance.pk}")
        return instance


class RetrieveWithETagMixin:
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.detail_response(self.get_object())  # type: ignore[attr-defined]


def _retrieve_schema(serializer: type[Serializer]) -> dict[str, Any]:
    return {"retrieve": extend_schema(parameters=[IF_NONE_MATCH], responses={200: serializer, 304: NOT_MODIFIED})}


# Captures --------------------------------------------------------------------------------------


@extend_schema_view(**_retrieve_schema(s.CaptureSerializer))
class CaptureViewSet(RetrieveWithETagMixin, mixins.ListModelMixin, CatalogViewSet):
    """The photos of a shoot with its metadata, checked against the capture standard image by image."""

    serializer_class = s.CaptureSerializer
    filterset_class = CaptureFilter
    parser_classes = [MultiPartParser]

    def get_queryset(self):
        return selectors.captures_visible_to(self.request.user)

    @extend_schema(request={"multipart/form-data": s.CaptureUploadSerializer}, responses={201: s.CaptureSerializer})
    def create(self, request: Request) -> Response:
        """Upload a shoot: every image is streamed, checked by content and stored once; the report says what to redo."""
        data = self.input(s.CaptureUploadSerializer)
        images = [(upload.name, upload) for upload in data.pop("images")]
        masks = [(upload.name, upload) for upload in data.pop("masks")]
        capture = services.create_capture(
            actor=request.user, collection=data.pop("collection"), name=data.pop("name"), images=images, masks=masks,
            metadata=data.pop("metadata"), **data,
        )
        return self.detail_response(self.reread(capture), status_code=status.HTTP_201_CREATED)


# Collections -----------------------------------------------------------------------------------


@extend_schema_view(**_retrieve_schema(s.CollectionSerializer))
class CollectionViewSet(RetrieveWithETagMixin, mixins.ListModelMixin, CatalogViewSet):
    serializer_class = s.CollectionSerializer
    filterset_class = CollectionFilter
    ordering = ("slug",)

    def get_queryset(self):
        return selectors.collections_visible_to(self.request.user)

    @extend_schema(request=s.CollectionCreateSerializer, responses={201: s.CollectionSerializer})
    def create(self, request: Request) -> Response:
        data = self.input(s.CollectionCreateSerializer)
        collection = services.create_collection(actor=request.user, **data)
        return self.detail_response(self.reread(collection), status_code=status.HTTP_201_CREATED)

    @extend_schema(request=s.GrantSerializer, responses={201: s.GrantResultSerializer})
    @action(detail=True, methods=["post"])
    def grants(self, request: Request, pk: str) -> Response:
        """Give a user or group a role on this collection (needs the grant permission)."""
        collection = self.get_object()
        data = self.input(s.GrantSerializer)
        codenames = services.grant_role(actor=request.user, principal=data["principal"], role=data["role"], obj=collection)
        result = {"role": data["role"], "principal": data["label"], "permissions": codenames}
        return Response(s.GrantResultSerializer(result).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[
            OpenApiParameter("role", OpenApiTypes.STR, required=True, enum=[r[0] for r in s.ROLE_CHOICES]),
            OpenApiParameter("user", OpenApiTypes.STR, description="Username; give this or `group`."),
            OpenApiParameter("group", OpenApiTypes.STR, description="Group name; give this or `user`."),
        ],
        request=None,
        responses={204: OpenApiResponse(description="Revoked.")},
    )
    @grants.mapping.delete
    def revoke_grant(self, request: Request, pk: str) -> Response:
        """Take a role away from a user or group on this collection (query parameters name which)."""
        collection = self.get_object()
        data = self.input(s.GrantSerializer, data=request.query_params)
        services.revoke_role(actor=request.user, principal=data["principal"], role=data["role"], obj=collection)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Assets ----------------------------------------------------------------------------------------


@extend_schema_view(**_retrieve_schema(s.AssetSerializer))
class AssetViewSet(RetrieveWithETagMixin, mixins.ListModelMixin, CatalogViewSet):
    serializer_class = s.AssetSerializer
    filterset_class = AssetFilter
    ordering = ("-updated_at", "-id")

    def get_queryset(self):
        return selectors.assets_visible_to(self.request.user)

    @extend_schema(request=s.AssetCreateSerializer, responses={201: s.AssetSerializer})
    def create(self, request: Request) -> Response:
        asset = services.create_asset(actor=request.user, **self.input(s.AssetCreateSerializer))
        return self.detail_response(self.reread(asset), status_code=status.HTTP_201_CREATED)

    @extend_schema(request=s.AssetUpdateSerializer, responses={200: s.AssetSerializer}, parameters=[IF_MATCH_REQUIRED])
    def partial_update(self, request: Request, pk: str) -> Response:
        data = self.input(s.AssetUpdateSerializer)
        with transaction.atomic():
            asset = self.locked_object(if_match_required=True)
            services.update_asset(actor=request.user, asset=asset, expected_row_version=asset.row_version, **data)
        return self.detail_response(self.reread(asset))

    @extend_schema(request=s.TransitionSerializer, responses={200: s.AssetSerializer}, parameters=[IF_MATCH_REQUIRED])
    @action(detail=True, methods=["post"])
    def transition(self, request: Request, pk: str) -> Response:
        """Move the asset along its lifecycle (draft → in_review → approved → published → deprecated → archived)."""
        data = self.input(s.TransitionSerializer)
        with transaction.atomic():
            asset = self.locked_object(if_match_required=True)
            services.transition_asset(
                actor=request.user, asset=asset, to_state=data["to_state"], reason=data["reason"],
                expected_row_version=asset.row_version,
            )
        return self.detail_response(self.reread(asset))

    @extend_schema(responses={200: s.CostSummarySerializer})
    @action(detail=True, methods=["get"])
    def cost(self, request: Request, pk: str) -> Response:
        """What the asset has cost so far, summed over all its versions."""
        return conditional_response(request, s.CostSummarySerializer(selectors.asset_cost(self.get_object())).data)


# Versions --------------------------------------------------------------------------------------


VersionService = Callable[..., Any]


@extend_schema_view(**_retrieve_schema(s.VersionSerializer))
class VersionViewSet(RetrieveWithETagMixin, mixins.ListModelMixin, CatalogViewSet):
    serializer_class = s.VersionSerializer
    filterset_class = VersionFilter

    def get_queryset(self):
        return selectors.versions_visible_to(self.request.user)

    @extend_schema(request=s.VersionCreateSerializer, responses={201: s.VersionSerializer})
    def create(self, request: Request) -> Response:
        version = services.create_version(actor=request.user, **self.input(s.VersionCreateSerializer))
        return self.detail_response(self.reread(version), status_code=status.HTTP_201_CREATED)

    def _change_state(self, service: VersionService, serializer_class: type[Serializer]) -> Response:
        data = self.input(serializer_class)
        with transaction.atomic():
            version = self.locked_object(if_match_required=False)
            service(actor=self.request.user, version=version, **data)
        return self.detail_response(self.reread(version))

    @extend_schema(request=s.NoInputSerializer, responses={200: s.VersionSerializer}, parameters=[IF_MATCH_OPTIONAL])
    @action(detail=True, methods=["post"])
    def submit(self, request: Request, pk: str) -> Response:
        """Freeze the version for review; it needs a model file."""
        return self._change_state(services.submit_version, s.NoInputSerializer)

    @extend_schema(request=s.ApproveSerializer, responses={200: s.VersionSerializer}, parameters=[IF_MATCH_OPTIONAL])
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        """Approve a submitted version (reviewers; never the version's own author)."""
        return self._change_state(services.approve_version, s.ApproveSerializer)

    @extend_schema(request=s.ReasonSerializer, responses={200: s.VersionSerializer}, parameters=[IF_MATCH_OPTIONAL])
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str) -> Response:
        """Send a submitted version back, saying why."""
        return self._change_state(services.reject_version, s.ReasonSerializer)

    @extend_schema(request=s.NoInputSerializer, responses={200: s.VersionSerializer}, parameters=[IF_MATCH_OPTIONAL])
    @action(detail=True, methods=["post"])
    def publish(self, request: Request, pk: str) -> Response:
        """Publish an approved version if the publish policy holds (409 lists every unmet rule)."""
        return self._change_state(publish_version, s.NoInputSerializer)

    @extend_schema(request=s.ReasonSerializer, responses={200: s.VersionSerializer}, parameters=[IF_MATCH_OPTIONAL])
    @action(detail=True, methods=["post"])
    def withdraw(self, request: Request, pk: str) -> Response:
        """Take a published version down, saying why."""
        return self._change_state(withdraw_version, s.ReasonSerializer)

    @extend_schema(responses={200: s.CostSummarySerializer})
    @action(detail=True, methods=["get"])
    def cost(self, request: Request, pk: str) -> Response:
        """What making this version cost, summed per kind of work."""
        return conditional_response(request, s.CostSummarySerializer(selectors.version_cost(self.get_object())).data)

    @extend_schema(responses={200: s.QualityReportSerializer})
    @action(detail=True, methods=["get"])
    def quality(self, request: Request, pk: str) -> Response:
        """Geometry and texture metrics measured for this version."""
        version = self.get_object()
        report = selectors.quality_of(version)
        if report is None:
            raise CatalogNotFound(f"Version {version} has no quality report yet.")
        return conditional_response(request, s.QualityReportSerializer(report).data)


# Variants and LODs -----------------------------------------------------------------------------


@extend_schema_view(**_retrieve_schema(s.VariantSerializer))
class VariantViewSet(RetrieveWithETagMixin, mixins.ListModelMixin, CatalogViewSet):
    serializer_class = s.VariantSerializer
    filterset_class = VariantFilter

    def get_queryset(self):
        return selectors.variants_visible_to(self.request.user)

    @extend_schema(request=s.VariantCreateSerializer, responses={201: s.VariantSerializer})
    def create(self, request: Request) -> Response:
        variant = services.add_variant(actor=request.user, **self.input(s.VariantCreateSerializer))
        return self.detail_response(self.reread(variant), status_code=status.HTTP_201_CREATED)


@extend_schema_view(**_retrieve_schema(s.LODSerializer))
class LODViewSet(RetrieveWithETagMixin, mixins.ListModelMixin, CatalogViewSet):
    """LODs are made by uploading a representation at a new level; here they are read."""

    serializer_class = s.LODSerializer
    filterset_class = LODFilter

    def get_queryset(self):
        return selectors.lods_visible_to(self.request.user)


# Representations (files) -----------------------------------------------------------------------


@extend_schema_view(**_retrieve_schema(s.RepresentationSerializer))
class RepresentationViewSet(RetrieveWithETagMixin, mixins.ListModelMixin, CatalogViewSet):
    serializer_class = s.RepresentationSerializer
    filterset_class = RepresentationFilter
    parser_classes = [MultiPartParser]

    def get_queryset(self):
        return selectors.representations_visible_to(self.request.user)

    @extend_schema(request={"multipart/form-data": s.RepresentationUploadSerializer}, responses={201: s.RepresentationSerializer})
    def create(self, request: Request) -> Response:
        """Upload a file to a LOD of an open version; it is streamed to disk, checked by content and stored once."""
        self._refuse_oversized_body(request)
        data = self.input(s.RepresentationUploadSerializer)
        upload = data.pop("file")
        representation = services.add_representation(
            actor=request.user, version=data.pop("version"), stream=upload, filename=upload.name,
            variant_name=data.pop("variant"), **data,
        )
        return self.detail_response(self.reread(representation), status_code=status.HTTP_201_CREATED)

    @staticmethod
    def _refuse_oversized_body(request: Request) -> None:
        """Refuse from Content-Length alone, before the body is read; storage re-checks the file while streaming."""
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.ASSAY_MAX_UPLOAD_BYTES
        if length > limit + MULTIPART_SLACK_BYTES:
            raise InvalidFile(
                f"The upload is {length} bytes, above the limit of {limit} bytes for one file.",
                code=CatalogErrorCode.FILE_TOO_LARGE,
            )

    @extend_schema(
        parameters=[IF_NONE_MATCH],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The file's bytes."),
            302: OpenApiResponse(description="On S3: a short-lived presigned URL in Location."),
            304: NOT_MODIFIED,
        },
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, FileRenderer])
    def download(self, request: Request, pk: str) -> Any:
        """The file itself: streamed from local storage, or a redirect to a presigned URL on S3.

        Restricted files need the audit permission, are never cached, and each download is audited.
        """
        representation: Representation = self.get_object()
        authorize_download(actor=request.user, representation=representation, channel=request.query_params.get("channel"))
        blob = representation.file
        url = blob_url(blob, filename=representation.filename)
        if url is not None:
            response: Any = HttpResponseRedirect(url)
            response["Cache-Control"] = "private, no-store"
            return response
        etag = f'"{blob.sha256}"'  # content-addressed: the hash is the perfect validator
        if not representation.restricted and is_not_modified(request, etag):
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        response = FileResponse(
            open_blob(blob), as_attachment=True, filename=representation.filename, content_type=blob.media_type
        )
        response["Content-Length"] = str(blob.size)
        response["ETag"] = etag
        response["Cache-Control"] = "private, no-store" if representation.restricted else "private, max-age=3600"
        return response
