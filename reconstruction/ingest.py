"""Turns a backend's result folder into catalog rows: a new AssetVersion (parent lineage, source capture),
its model file on LOD0 of the default variant, textures, a QualityReport and a CostRecord — and marks the
job succeeded, linked to the registered checkpoints the result names in metrics["model_checkpoints"]. All of it
commits together or not at all; blobs written for a failed ingest are removed.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import trimesh
from django.db import transaction

from catalog import services as catalog
from catalog.file_checks import EXTENSIONS, IMAGE_FORMATS
from catalog.models import CostRecord, Representation
from catalog.storage import blobs_cleaned_on_failure, store_path
from reconstruction import services
from reconstruction.engine.model_registry import CHECKPOINTS_METRIC
from reconstruction.engine.protocol import ReconstructionResult, ResourceUsage
from reconstruction.model_catalog import UnregisteredCheckpoint, registered_checkpoints
from reconstruction.models import ReconstructionJob


class IngestError(Exception):
    """The result folder cannot become a version (missing or unreadable mesh, unsupported texture)."""


def _as_glb(mesh_path: Path, scratch: Path) -> tuple[Path, trimesh.Trimesh]:
    """The result mesh as a GLB file (converted when the backend wrote PLY/OBJ) and as one trimesh mesh."""
    if not mesh_path.is_file():
        raise IngestError(f"The backend reported the mesh '{mesh_path.name}', but no such file was written.")
    try:
        mesh = trimesh.load(mesh_path, force="mesh")
    except Exception as exc:  # trimesh raises many kinds for a damaged file
        raise IngestError(f"The result mesh '{mesh_path.name}' could not be read: {exc}") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise IngestError(f"The result mesh '{mesh_path.name}' has no triangles.")
    if mesh_path.suffix.lower() == ".glb":
        return mesh_path, mesh
    converted = scratch / (mesh_path.stem + ".glb")
    converted.write_bytes(mesh.export(file_type="glb"))
    return converted, mesh


def _texture_format(path: Path) -> str:
    fmt = EXTENSIONS.get(path.suffix.lower().lstrip("."), "")
    if fmt not in IMAGE_FORMATS:
        raise IngestError(f"The texture '{path.name}' is not a PNG or JPEG file.")
    return fmt


def quality_values(mesh: trimesh.Trimesh, *, texture_count: int, metrics: dict[str, Any]) -> dict[str, Any]:
    bounds = mesh.bounds.tolist() if len(mesh.vertices) else []
    return {
        "triangle_count": int(len(mesh.faces)),
        "vertex_count": int(len(mesh.vertices)),
        "texture_count": texture_count,
        # Welded by position first: a UV atlas or split normals duplicate vertices along seams of a closed surface.
        "watertight": bool(trimesh.Trimesh(mesh.vertices, mesh.faces).is_watertight),
        "bounds": bounds,
        "metrics": metrics,
    }


def ingest_result(*, job_id: int, worker: str, result: ReconstructionResult, usage: ResourceUsage) -> ReconstructionJob:
    """Store the result of the job `worker` holds as a new version and mark the job succeeded, atomically.

    Raises LeaseLost (nothing written) when the job is no longer this worker's, IngestError for a bad result,
    and the catalog's domain errors (e.g. the requester lost the contribute permission) unchanged.
    """
    with tempfile.TemporaryDirectory(prefix="assay-ingest-") as scratch, blobs_cleaned_on_failure(), \
            transaction.atomic():
        # The job row first, then (inside create_version) the asset: the same order as every other writer.
        job = services.lock_held(job_id, worker)
        actor = job.created_by
        try:  # before anything is stored: provenance must never cite a checkpoint the catalog does not know
            checkpoints, learned_models = registered_checkpoints(result.metrics.get(CHECKPOINTS_METRIC))
        except UnregisteredCheckpoint as exc:
            raise IngestError(str(exc)) from None
        glb_path, mesh = _as_glb(result.mesh_path, Path(scratch))
        textures = [(path, _texture_format(path)) for path in result.texture_paths]
        # Store every blob inside this block first, so a failure below removes each one it wrote.
        store_path(glb_path, filename="model.glb")
        for path, _ in textures:
            store_path(path)

        version = catalog.create_version(
            actor=actor, asset=job.asset, parent=job.parent_version, captures=[job.capture],
            notes=f"Reconstructed from capture '{job.capture}' by {job.backend} {job.backend_version} (job {job.pk}).",
            metadata={"source": {"job": job.pk, "backend": job.backend, "backend_version": job.backend_version,
                                 "parameters": job.parameters}, "units": job.capture.units},
        )
        with glb_path.open("rb") as stream:
            catalog.add_representation(actor=actor, version=version, stream=stream, filename="model.glb",
                                       triangle_count=int(len(mesh.faces)))
        for path, _ in textures:
            with path.open("rb") as stream:
                catalog.add_representation(actor=actor, version=version, stream=stream, filename=path.name,
                                           role=Representation.Role.TEXTURE)
        catalog.record_quality(actor=actor, version=version,
                               **quality_values(mesh, texture_count=len(textures), metrics=result.metrics))
        catalog.record_cost(actor=actor, version=version, kind=CostRecord.Kind.RECONSTRUCTION, source=f"job:{job.pk}",
                            gpu_seconds=usage.gpu_s, cpu_seconds=usage.cpu_s,
                            storage_bytes=catalog.stored_bytes(version))
        return services.finish_job(job=job, version=version, usage=usage.to_dict(), log=result.log,
                                   model_checkpoints=checkpoints, learned_models=learned_models)
