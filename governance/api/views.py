"""Views of the governance API: the audit trail, its proofs and tree heads, public keys, attestations, lineage.

They parse the request, read through `governance.selectors` / `catalog.selectors` and call the services;
bad input is a problem-details 400, an event or version the caller may not see a 404.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from django.http import HttpResponse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.selectors import versions_visible_to
from config.problems import DomainError, Forbidden, NotFound
from governance import selectors
from governance.api import serializers as s
from governance.api.filters import AuditEventFilter
from governance.export import export_bundle
from governance.lineage import version_lineage
from governance.merkle import ProofError
from governance.models import Attestation, SignedTreeHead, SigningKey
from governance.tree_heads import log_tree, sign_tree_head


class BadProofRequest(DomainError):
    code = "bad_proof_request"
    title = "The proof cannot be made for these parameters"


def _int_param(request: Request, name: str, *, required: bool) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if required:
            raise BadProofRequest(f"'{name}' is required", parameter=name)
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadProofRequest(f"'{name}' must be a whole number, not {raw!r}", parameter=name) from None
    if value < 0:
        raise BadProofRequest(f"'{name}' must not be negative", parameter=name)
    return value


def _datetime_param(request: Request, name: str) -> dt.datetime:
    raw = request.query_params.get(name, "")
    if not raw:
        raise DomainError(f"'{name}' is required (ISO 8601 date-time)", code="invalid_range", parameter=name)
    try:
        value = parse_datetime(raw)
    except ValueError:
        value = None
    if value is None:
        raise DomainError(f"'{name}' is not an ISO 8601 date-time: {raw!r}", code="invalid_range", parameter=name)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def _require_auditor(request: Request) -> None:
    if not selectors.may_audit_something(request.user):
        raise Forbidden("You need the audit permission (compliance officer or admin role) to read the audit trail.")


def _head_for_size(tree_size: int) -> SignedTreeHead | None:
    return SignedTreeHead.objects.select_related("key").filter(tree_size=tree_size).order_by("-id").first()


PROOF_PARAMS = [OpenApiParameter("tree_size", OpenApiTypes.INT, description="Defaults to the latest signed head's size.")]


class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Search the audit trail by asset, actor, action and time (`?asset=&actor=&action=&since=&until=`)."""

    serializer_class = s.AuditEventSerializer
    filterset_class = AuditEventFilter
    lookup_field = "seq"
    lookup_value_regex = r"\d+"
    ordering = ("-seq",)

    def get_queryset(self):
        return selectors.audit_events_visible_to(self.request.user)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        _require_auditor(request)

    @extend_schema(parameters=PROOF_PARAMS, responses=s.InclusionProofSerializer)
    @action(detail=True, methods=["get"])
    def proof(self, request: Request, seq: str) -> Response:
        """RFC 9162 inclusion proof of this event in the tree of `tree_size` leaves."""
        event = self.get_object()
        tree_size = _int_param(request, "tree_size", required=False)
        if tree_size is None:
            latest = SignedTreeHead.objects.order_by("-id").first()
            if latest is None or latest.tree_size <= event.seq:
                raise BadProofRequest(f"no signed tree head covers event seq {event.seq} yet; pass tree_size or sign one")
            tree_size = latest.tree_size
        tree = log_tree()
        try:
            proof = tree.inclusion_proof(event.seq, tree_size)
        except ProofError as exc:
            raise BadProofRequest(str(exc)) from exc
        return Response(s.InclusionProofSerializer({
            "seq": event.seq,
            "leaf_hash": event.leaf_hash,
            "tree_size": tree_size,
            "root_hash": tree.root(tree_size).hex(),
            "proof": [p.hex() for p in proof],
            "tree_head": _head_for_size(tree_size),
        }).data)


class TreeHeadViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Signed tree heads, newest first; `latest/` for the newest; POST signs one now (global auditors)."""

    serializer_class = s.SignedTreeHeadSerializer
    queryset = SignedTreeHead.objects.select_related("key")
    ordering = ("-id",)

    @action(detail=False, methods=["get"])
    def latest(self, request: Request) -> Response:
        head = self.get_queryset().order_by("-id").first()
        if head is None:
            raise NotFound("No tree head has been signed yet.")
        return Response(self.get_serializer(head).data)

    @extend_schema(request=None, responses={201: s.SignedTreeHeadSerializer})
    def create(self, request: Request) -> Response:
        if not selectors.may_audit_everything(request.user):
            raise Forbidden("Only global auditors may sign a tree head on demand.")
        return Response(self.get_serializer(sign_tree_head()).data, status=status.HTTP_201_CREATED)


class ConsistencyProofView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("first", OpenApiTypes.INT, required=True),
                    OpenApiParameter("second", OpenApiTypes.INT, required=True)],
        responses=s.ConsistencyProofSerializer,
    )
    def get(self, request: Request) -> Response:
        """RFC 9162 consistency proof between the trees of `first` and `second` leaves."""
        first = _int_param(request, "first", required=True)
        second = _int_param(request, "second", required=True)
        assert first is not None and second is not None
        if first > second:
            raise BadProofRequest(f"'first' ({first}) must not be larger than 'second' ({second})")
        tree = log_tree()
        try:
            proof = tree.consistency_proof(first, second)
            first_root, second_root = tree.root(first), tree.root(second)
        except ProofError as exc:
            raise BadProofRequest(str(exc)) from exc
        return Response(s.ConsistencyProofSerializer({
            "first": first, "second": second, "first_root": first_root.hex(), "second_root": second_root.hex(),
            "proof": [p.hex() for p in proof],
        }).data)


class AuditExportView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("from", OpenApiTypes.DATETIME, required=True),
                    OpenApiParameter("to", OpenApiTypes.DATETIME, required=True)],
        responses={(200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description="Signed bundle")},
    )
    def get(self, request: Request) -> HttpResponse:
        """A signed JSON-lines bundle of the events in [from, to) you may audit; verify with governance/verify_bundle.py."""
        _require_auditor(request)
        since, until = _datetime_param(request, "from"), _datetime_param(request, "to")
        body = export_bundle(actor=request.user, since=since, until=until)
        response = HttpResponse(body, content_type="application/x-ndjson")
        name = f"audit-{since:%Y%m%dT%H%M%S}-{until:%Y%m%dT%H%M%S}.jsonl"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


class SigningKeyListView(APIView):
    """Public keys that verify tree heads and attestations: key id, status and PEM. No authentication needed."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses=s.SigningKeySerializer(many=True))
    def get(self, request: Request) -> Response:
        keys = SigningKey.objects.order_by("-created_at", "-id")
        return Response({"keys": s.SigningKeySerializer(keys, many=True).data})


class VersionAttestationsView(APIView):
    @extend_schema(responses=s.AttestationSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        """The DSSE-enveloped attestations of one asset version and its files."""
        version = versions_visible_to(request.user).filter(pk=pk).first()
        if version is None:
            raise NotFound(f"No version {pk} that you may see.")
        attestations = Attestation.objects.filter(version=version).select_related("key").order_by("id")
        return Response({"attestations": s.AttestationSerializer(attestations, many=True).data})


class VersionLineageView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, pk: int) -> Response:
        """captures → job → version → parent and derived versions and files, with digests and attestation ids."""
        version = versions_visible_to(request.user).filter(pk=pk).first()
        if version is None:
            raise NotFound(f"No version {pk} that you may see.")
        return Response(version_lineage(version, viewer=request.user))
