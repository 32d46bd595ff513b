"""Permission-filtered reads of reconstruction jobs, installed backends and registered learned models."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from catalog.models import AssetVersion
from catalog.permissions import Action, asset_filter
from catalog.selectors import versions_visible_to
from reconstruction.engine import registry
from reconstruction.models import LearnedModel, ReconstructionJob


def jobs_visible_to(user: Any, action: Action | str = Action.VIEW) -> QuerySet[ReconstructionJob]:
    """Jobs whose asset the user may take `action` on (through its collection or a grant on the asset)."""
    return ReconstructionJob.objects.filter(asset_filter(user, Action(action), prefix="asset__")).select_related(
        "asset", "asset__collection", "capture", "created_by", "produced_version"
    )


def installed_backends() -> list[dict[str, Any]]:
    """Every backend the engine can load here, with its capabilities and parameter schema."""
    return [
        {
            "name": backend.name,
            "version": backend.version,
            "capabilities": backend.capabilities.to_dict(),
            "parameter_schema": dict(backend.parameter_schema),
        }
        for backend in registry.available_backends().values()
    ]


def learned_models() -> QuerySet[LearnedModel]:
    """Every registered checkpoint, available or not: model cards are not secret, the versions they made are."""
    return LearnedModel.objects.all()


def versions_made_with(model: LearnedModel, user: Any) -> QuerySet[AssetVersion]:
    """The versions the user may see that were produced by a job that used `model`."""
    return (
        versions_visible_to(user)
        .filter(produced_by_job__learned_models=model)
        .select_related("asset")
        .order_by("asset__slug", "number", "pk")
    )
