"""Permission-filtered, query-optimised reads of the catalog.

Every list and detail (API, admin, exports) starts from one of these querysets, so no caller can forget the
permission filter. Filters are subqueries built by `catalog.permissions`, and related rows are joined or
prefetched here, so the number of SQL queries a page costs does not depend on how many rows it holds.
"""
from __future__ import annotations

import decimal
from collections.abc import Iterable
from typing import Any, TypedDict

from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery, Sum

from catalog.models import (
    LOD,
    Asset,
    AssetVersion,
    Capture,
    CaptureImage,
    Collection,
    CostRecord,
    QualityReport,
    Representation,
    Variant,
)
from catalog.permissions import Action, asset_filter, collection_filter


def collections_visible_to(user: Any, action: Action | str = Action.VIEW) -> QuerySet[Collection]:
    """Collections the user may take `action` on."""
    return Collection.objects.filter(collection_filter(user, Action(action))).select_related("owner")


def captures_visible_to(user: Any, action: Action | str = Action.VIEW) -> QuerySet[Capture]:
    """Captures in collections the user may take `action` on, with their images in one more query."""
    images = CaptureImage.objects.select_related("file", "mask").order_by("filename")
    return (
        Capture.objects.filter(collection_filter(user, Action(action), prefix="collection__"))
        .select_related("collection", "created_by", "standard")
        .prefetch_related(Prefetch("images", queryset=images))
    )


def assets_visible_to(user: Any, action: Action | str = Action.VIEW) -> QuerySet[Asset]:
    """Assets the user may take `action` on (through their collection or a grant on the asset itself).

    Annotated with `latest_version_number` so a list shows each asset's newest version without N+1 queries.
    """
    latest = AssetVersion.objects.filter(asset=OuterRef("pk")).order_by("-number").values("number")[:1]
    return (
        Asset.objects.filter(asset_filter(user, Action(action)))
        .select_related("collection", "owner", "licence")
        .prefetch_related("tags")
        .annotate(latest_version_number=Subquery(latest))
    )


def versions_visible_to(user: Any, action: Action | str = Action.VIEW) -> QuerySet[AssetVersion]:
    return (
        AssetVersion.objects.filter(asset_filter(user, Action(action), prefix="asset__"))
        .select_related("asset", "asset__collection", "created_by")
        .prefetch_related("captures")
    )


def variants_visible_to(user: Any, action: Action | str = Action.VIEW) -> QuerySet[Variant]:
    return Variant.objects.filter(asset_filter(user, Action(action), prefix="version__asset__")).select_related(
        "version"
    )


def lods_visible_to(user: Any, action: Action | str = Action.VIEW) -> QuerySet[LOD]:
    return LOD.objects.filter(asset_filter(user, Action(action), prefix="variant__version__asset__")).select_related(
        "variant", "variant__version"
    )


def representations_visible_to(user: Any, action: Action | str = Action.VIEW) -> QuerySet[Representation]:
    return Representation.objects.filter(
        asset_filter(user, Action(action), prefix="lod__variant__version__asset__")
    ).select_related("lod", "lod__variant", "lod__variant__version", "lod__variant__version__asset", "file")


def quality_of(version: AssetVersion) -> QualityReport | None:
    return QualityReport.objects.filter(version=version).first()


class CostTotals(TypedDict):
    currency: str
    amount: decimal.Decimal
    gpu_seconds: float
    cpu_seconds: float
    storage_bytes: int
    postprocess_seconds: float
    human_minutes: float
    records: int


class CostOfKind(CostTotals):
    kind: str


class CostSummary(TypedDict):
    totals: list[CostTotals]
    by_kind: list[CostOfKind]


_USAGE_FIELDS = ("gpu_seconds", "cpu_seconds", "storage_bytes", "postprocess_seconds", "human_minutes")


def _summarise(records: QuerySet[CostRecord]) -> CostSummary:
    """One grouped query; totals are summed per currency, since amounts in two currencies do not add up."""
    rows = list(
        records.order_by()
        .values("kind", "currency")
        .annotate(amount=Sum("amount"), records=Count("id"), **{f: Sum(f) for f in _USAGE_FIELDS})
        .order_by("currency", "kind")
    )
    by_kind: list[CostOfKind] = []
    totals: dict[str, CostTotals] = {}
    for row in rows:
        entry = _totals(row["currency"], [row])
        by_kind.append(CostOfKind(**entry, kind=row["kind"]))
        totals[row["currency"]] = _totals(row["currency"], [r for r in rows if r["currency"] == row["currency"]])
    return {"totals": list(totals.values()), "by_kind": by_kind}


def _totals(currency: str, rows: Iterable[dict[str, Any]]) -> CostTotals:
    rows = list(rows)
    return {
        "currency": currency,
        "amount": sum((r["amount"] or decimal.Decimal(0) for r in rows), decimal.Decimal(0)),
        "gpu_seconds": sum(r["gpu_seconds"] or 0 for r in rows),
        "cpu_seconds": sum(r["cpu_seconds"] or 0 for r in rows),
        "storage_bytes": sum(r["storage_bytes"] or 0 for r in rows),
        "postprocess_seconds": sum(r["postprocess_seconds"] or 0 for r in rows),
        "human_minutes": sum(r["human_minutes"] or 0 for r in rows),
        "records": sum(r["records"] for r in rows),
    }


def version_cost(version: AssetVersion) -> CostSummary:
    """Every cost recorded against one version, summed per kind of work and in total."""
    return _summarise(CostRecord.objects.filter(version=version))


def asset_cost(asset: Asset) -> CostSummary:
    """The cost of an asset: the sum over all its versions."""
    return _summarise(CostRecord.objects.filter(version__asset=asset))
