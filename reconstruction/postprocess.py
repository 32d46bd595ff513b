"""Post-processing an AssetVersion: its source GLB goes through an engine preset and comes back as a NEW
version (parent = source) with every LOD's files, LOD rows (triangle counts, screen sizes), validator verdicts
and the switch distances, all ingested through `catalog.services` in one audited transaction.

The heavy work (the engine pipeline) runs outside any transaction; only the ingest holds locks.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import shared_task
from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework import status

from catalog import services as catalog
from catalog.models import AssetVersion, Representation
from catalog.permissions import Action
from catalog.storage import blobs_cleaned_on_failure, open_blob
from config.problems import DomainError
from governance.audit import record_event
from reconstruction.engine.errors import Cancelled
from reconstruction.engine.postprocess.errors import PostprocessError
from reconstruction.engine.postprocess.presets import PRESETS
from reconstruction.engine.protocol import CancelFn, ProgressFn

logger = logging.getLogger(__name__)

# Source formats the pipeline reads, best first: GLB keeps materials and textures in one file.
SOURCE_FORMATS = (Representation.Format.GLB, Representation.Format.PLY, Representation.Format.OBJ)
_TEXTURE_SUFFIXES = {".png": Representation.Role.TEXTURE, ".jpg": Representation.Role.TEXTURE}


class PostprocessRefused(DomainError):
    """The version cannot be post-processed as asked (unknown preset, no source mesh, bad mesh)."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "postprocess_refused"
    title = "The version cannot be post-processed"


def source_representation(version: AssetVersion) -> Representation:
    """The model file post-processing starts from: the default variant's lowest LOD, GLB preferred."""
    models = Representation.objects.filter(
        lod__variant__version=version, role=Representation.Role.MODEL, format__in=list(SOURCE_FORMATS)
    ).select_related("file", "lod__variant").order_by("lod__level", "id")
    candidates = sorted(models, key=lambda r: (r.lod.variant.name != "default", r.lod.level, SOURCE_FORMATS.index(r.format)))
    if not candidates:
        raise PostprocessRefused(
            f"Version {version} has no GLB, PLY or OBJ model file to post-process.", code="no_source_mesh"
        )
    return candidates[0]


def _validation_status(verdict: dict[str, Any]) -> str:
    if verdict["errors"]:
        return Representation.Validation.INVALID
    if verdict["warnings"]:
        return Representation.Validation.WARNINGS
    return Representation.Validation.VALID


def postprocess_version(
    actor: Any,
    *,
    version: AssetVersion,
    preset: str,
    overrides: dict[str, dict[str, Any]] | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> AssetVersion:
    """Run `preset` on `version`'s source mesh; returns the new version holding the LODs (left open)."""
    from reconstruction.engine.postprocess.pipeline import run_pipeline

    catalog.require(actor, Action.CONTRIBUTE, version)
    if preset not in PRESETS:
        raise PostprocessRefused(f"Unknown preset '{preset}'; choose one of {', '.join(PRESETS)}.", code="unknown_preset")
    source = source_representation(version)
    with tempfile.TemporaryDirectory(prefix="postprocess-") as scratch:
        folder = Path(scratch)
        mesh_path = folder / "source" / f"{version.asset.slug}.{source.format}"
        mesh_path.parent.mkdir()
        with open_blob(source.file) as blob, mesh_path.open("wb") as handle:
            shutil.copyfileobj(blob, handle, length=1 << 20)
        unit = (version.metadata or {}).get("units", "m")
        up_axis = (version.metadata or {}).get("up_axis", "Y")
        try:
            report = run_pipeline(mesh_path, folder / "out", preset, overrides=overrides, unit=unit, up_axis=up_axis,
                                  progress=progress, cancel=cancel)
        except Cancelled:
            raise
        except PostprocessError as exc:
            raise PostprocessRefused(f"Post-processing {version} with '{preset}' failed: {exc}", code=exc.code) from exc
        return _ingest(actor, version=version, preset=preset, source=source, report=report)


def _ingest(actor: Any, *, version: AssetVersion, preset: str, source: Representation, report: dict[str, Any]) -> AssetVersion:
    lods = [
        {key: row[key] for key in ("level", "ratio", "triangles", "vertices", "screen_size", "switch_distance_m", "error_m")}
        for row in report["lods"]
    ]
    summary = {
        "preset": preset,
        "source_version": version.pk,
        "source_file": source.file.sha256,
        "lods": lods,
        "budgets": report.get("budgets", {}),
        "validation_passed": report["validation_passed"],
        "steps": report.get("steps", []),
        "cleanup": {k: v for k, v in report.get("cleanup", {}).items() if k not in ("input", "output")},
        "texel_density": report.get("texel_density"),
    }
    metadata = {**(version.metadata or {}), "units": "m", "up_axis": "Y", "postprocess": summary}
    with blobs_cleaned_on_failure(), transaction.atomic():
        new = catalog.create_version(
            actor=actor, asset=version.asset, parent=version, metadata=metadata,
            notes=f"Post-processed from version {version.number} with the '{preset}' preset.",
            captures=version.captures.all(),
        )
        for row in report["lods"]:
            for result in row["files"].values():
                path = Path(result["path"])
                with path.open("rb") as handle:
                    representation = catalog.add_representation(
                        actor=actor, version=new, stream=handle, filename=path.name, lod_level=row["level"],
                        triangle_count=row["triangles"], screen_size=row["screen_size"],
                    )
                verdict = result["validation"]
                catalog.set_validation(actor=actor, representation=representation, status=_validation_status(verdict),
                                       report=verdict)
                for extra in result.get("extra_files", []):
                    extra_path = Path(extra)
                    if extra_path.suffix.lower() not in _TEXTURE_SUFFIXES:
                        continue
                    with extra_path.open("rb") as handle:
                        catalog.add_representation(
                            actor=actor, version=new, stream=handle, filename=extra_path.name, lod_level=row["level"],
                            role=Representation.Role.TEXTURE,
                        )
        if (chain := report.get("lod_chain")) is not None:
            # The MSFT_lod file holds every level; viewers without the extension show LOD0, so it sits there.
            path = Path(chain["path"])
            with path.open("rb") as handle:
                representation = catalog.add_representation(actor=actor, version=new, stream=handle, filename=path.name,
                                                            lod_level=0)
            catalog.set_validation(actor=actor, representation=representation,
                                   status=_validation_status(chain["validation"]), report=chain["validation"])
        record_event(
            actor=actor, action="version.postprocessed", obj=new, asset_id=new.asset_id,
            data={"preset": preset, "source_version": version.pk, "lods": [(r["level"], r["triangles"]) for r in lods],
                  "validation_passed": report["validation_passed"]},
        )
    return new


@transaction.atomic
def request_postprocess(actor: Any, *, version: AssetVersion, preset: str) -> None:
    """Queue `preset` on `version` for a cpu worker once this transaction commits; audited as requested."""
    catalog.require(actor, Action.CONTRIBUTE, version)
    if preset not in PRESETS:
        raise PostprocessRefused(f"Unknown preset '{preset}'; choose one of {', '.join(PRESETS)}.", code="unknown_preset")
    source = source_representation(version)
    record_event(actor=actor, action="version.postprocess_requested", obj=version, asset_id=version.asset_id,
                 data={"preset": preset, "source_sha256": source.file.sha256})
    transaction.on_commit(lambda: postprocess_version_task.delay(version.pk, preset, actor.pk))


@shared_task(name="reconstruction.postprocess_version", queue="cpu", acks_late=True)
def postprocess_version_task(version_id: int, preset: str, actor_id: int,
                             overrides: dict[str, dict[str, Any]] | None = None) -> int:
    """Celery entry point: ids in, the new version's id out. Bad input is not retried."""
    version = AssetVersion.objects.select_related("asset").get(pk=version_id)
    actor = get_user_model().objects.get(pk=actor_id)
    existing = AssetVersion.objects.filter(
        parent=version, metadata__postprocess__preset=preset, metadata__postprocess__source_version=version.pk
    ).order_by("-number").first()
    if existing is not None:  # delivered twice (acks_late): the work is already done
        logger.info("version %s already post-processed with %s as version %s", version_id, preset, existing.pk)
        return existing.pk
    progress: Callable[[str, float, str], None] = lambda stage, fraction, message: logger.info(  # noqa: E731
        "postprocess version %s: %s %.0f%% %s", version_id, stage, fraction * 100, message
    )
    return postprocess_version(actor, version=version, preset=preset, overrides=overrides, progress=progress).pk
