"""Rights per asset and version, and the review queue (list, claim, decide). Views parse and call services."""
from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.models import AssetVersion
from catalog.selectors import assets_visible_to, versions_visible_to
from config.problems import NotFound
from governance.review import claim_review, decide_review
from governance.review_models import ReviewItem
from governance.rights import effective_rights
from governance.rights_models import CHANNELS


def _version_rights(version: AssetVersion) -> dict[str, Any]:
    rights = effective_rights(version)
    return {"version": version.pk, "number": version.number, "state": version.state, **rights.as_dict(),
            "refusals": {c: rights.refusal(channel=c) for c in CHANNELS}}


class AssetRightsView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, pk: int) -> Response:
        """Effective rights of each version of the asset that the caller may see (newest first)."""
        asset = assets_visible_to(request.user).filter(pk=pk).first()
        if asset is None:
            raise NotFound(f"No asset {pk} that you may see.")
        versions = versions_visible_to(request.user).filter(asset=asset).select_related("asset").order_by("-number")
        return Response({"asset": asset.pk, "versions": [_version_rights(v) for v in versions]})


class VersionRightsView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, pk: int) -> Response:
        """Effective rights of one version: combined terms, each licence and consent, and per-channel refusals."""
        version = versions_visible_to(request.user).filter(pk=pk).select_related("asset").first()
        if version is None:
            raise NotFound(f"No version {pk} that you may see.")
        return Response(_version_rights(version))


class ReviewItemSerializer(serializers.ModelSerializer):
    asset = serializers.IntegerField(source="version.asset_id", read_only=True)
    overdue = serializers.SerializerMethodField()

    class Meta:
        model = ReviewItem
        fields = ["id", "version", "asset", "state", "claimed_by", "claimed_at", "required_approvals", "due_at",
                  "overdue", "created_at", "decided_at"]

    def get_overdue(self, item: ReviewItem) -> bool:
        return item.state in (ReviewItem.State.WAITING, ReviewItem.State.CLAIMED) and item.due_at < timezone.now()


class DecisionSerializer(serializers.Serializer):
    approve = serializers.BooleanField()
    reason = serializers.CharField()
    overrides = serializers.ListField(child=serializers.CharField(), required=False, default=list)


def _visible_item(request: Request, pk: int) -> ReviewItem:
    item = ReviewItem.objects.filter(pk=pk, version__in=versions_visible_to(request.user)).first()
    if item is None:
        raise NotFound(f"No review item {pk} that you may see.")
    return item


class ReviewListView(APIView):
    @extend_schema(responses=ReviewItemSerializer(many=True))
    def get(self, request: Request) -> Response:
        """Open review items the caller may see, most urgent first (`?state=` to filter)."""
        items = ReviewItem.objects.filter(version__in=versions_visible_to(request.user)).select_related("version")
        state = request.query_params.get("state")
        items = items.filter(state=state) if state else items.filter(state__in=["waiting", "claimed"])
        return Response(ReviewItemSerializer(items.order_by("due_at", "id")[:200], many=True).data)


class ReviewClaimView(APIView):
    @extend_schema(request=None, responses=ReviewItemSerializer)
    def post(self, request: Request, pk: int) -> Response:
        """Claim a waiting item; 409 when someone else has it."""
        return Response(ReviewItemSerializer(claim_review(actor=request.user, item=_visible_item(request, pk))).data)


class ReviewDecideView(APIView):
    @extend_schema(request=DecisionSerializer, responses=ReviewItemSerializer)
    def post(self, request: Request, pk: int) -> Response:
        """Approve or reject a claimed item with a reason (four-eyes rule applies)."""
        body = DecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        item = decide_review(actor=request.user, item=_visible_item(request, pk), **body.validated_data)
        return Response(ReviewItemSerializer(item).data)
