"""Views of the job API. They parse the request, read through `reconstruction.selectors` and write through
`reconstruction.services`; a job the caller may not see is a 404, one they may see but not change a 403."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api import serializers as catalog_serializers
from catalog.api.views import IF_NONE_MATCH, NOT_MODIFIED, CatalogViewSet, RetrieveWithETagMixin
from reconstruction import selectors, services
from reconstruction.api import serializers as s
from reconstruction.api.filters import JobFilter, LearnedModelFilter
from reconstruction.models import ReconstructionJob

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Makes the request safe to repeat: the same key and body return the same job (200), the same key "
                "with another body is 409. Give this header or the `idempotency_key` field.",
)


@extend_schema_view(retrieve=extend_schema(parameters=[IF_NONE_MATCH], responses={200: s.JobSerializer,
                                                                                   304: NOT_MODIFIED}))
class JobViewSet(RetrieveWithETagMixin, mixins.ListModelMixin, CatalogViewSet):
    serializer_class = s.JobSerializer
    filterset_class = JobFilter

    def get_queryset(self):
        return selectors.jobs_visible_to(self.request.user)

    @extend_schema(request=s.JobCreateSerializer, parameters=[IDEMPOTENCY_KEY],
                   responses={201: s.JobSerializer, 200: OpenApiResponse(s.JobSerializer, "The job this key made before.")})
    def create(self, request: Request) -> Response:
        """Queue a reconstruction of a capture into a new version of an asset."""
        data = self.input(s.JobCreateSerializer)
        header = request.headers.get("Idempotency-Key", "").strip()
        field = data.pop("idempotency_key", "").strip()
        if header and field and header != field:
            raise ValidationError({"idempotency_key": ["The Idempotency-Key header and the idempotency_key field differ."]})
        if not (header or field):
            raise ValidationError({"idempotency_key": ["Send an Idempotency-Key header or an idempotency_key field."]})
        job, created = services.submit_job(request.user, idempotency_key=header or field, **data)
        return self.detail_response(self.reread(job), status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=catalog_serializers.NoInputSerializer,
                   responses={200: s.JobSerializer, 202: OpenApiResponse(s.JobSerializer, "Running: asked to stop.")})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel a queued job now, or ask a running one to stop (202; its worker stops at its next check)."""
        self.input(catalog_serializers.NoInputSerializer)
        job = services.cancel_job(request.user, job=self.get_object())
        code = status.HTTP_202_ACCEPTED if job.state == ReconstructionJob.State.RUNNING else status.HTTP_200_OK
        return self.detail_response(self.reread(job), status_code=code)

    @extend_schema(request=catalog_serializers.NoInputSerializer, responses={200: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        """Queue a failed or cancelled job again."""
        self.input(catalog_serializers.NoInputSerializer)
        job = services.retry_job(request.user, job=self.get_object())
        return self.detail_response(self.reread(job))


class BackendListView(APIView):
    """The reconstruction backends installed on this server, with their capabilities and parameter schemas."""

    @extend_schema(responses={200: s.BackendSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(selectors.installed_backends())


@extend_schema_view(
    list=extend_schema(responses={200: s.LearnedModelSerializer(many=True)}),
    retrieve=extend_schema(parameters=[IF_NONE_MATCH], responses={200: s.LearnedModelDetailSerializer,
                                                                  304: NOT_MODIFIED}),
)
class LearnedModelViewSet(RetrieveWithETagMixin, mixins.ListModelMixin, CatalogViewSet):
    """Trained checkpoints registered from the engine's model registry, with the versions they made."""

    filterset_class = LearnedModelFilter
    ordering = ("name", "id")  # versions of one model in the order they were registered

    def get_queryset(self):
        return selectors.learned_models()

    def get_serializer_class(self):
        return s.LearnedModelDetailSerializer if self.action == "retrieve" else s.LearnedModelSerializer
