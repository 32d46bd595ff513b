"""Permission-filtered reads of reconstruction jobs and installed backends."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from catalog.permissions import Action, asset_filter
from reconstruction.engine import registry
from reconstruction.models import ReconstructionJob


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
