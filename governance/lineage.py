"""The lineage graph of one asset version: captures → reconstruction job → version → parent/derived versions
and its files, each node with its sha256 digests and the ids of the attestations about it."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from catalog.models import AssetVersion, Capture, CaptureImage, Representation
from catalog.selectors import versions_visible_to
from governance.models import Attestation


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def producing_job(version: AssetVersion) -> Any:
    """The reconstruction job that produced the version, if any (the reverse one-to-one raises when absent)."""
    return getattr(version, "produced_by_job", None)


def version_lineage(version: AssetVersion, *, viewer: Any) -> dict[str, Any]:
    """Nodes and edges of the graph around `version`; related versions appear only when `viewer` may see them."""
    attestations: dict[tuple[str, int], list[int]] = defaultdict(list)
    for att_id, version_id, representation_id in Attestation.objects.filter(version=version).values_list(
        "id", "version_id", "representation_id"
    ):
        target = ("representation", representation_id) if representation_id else ("version", version_id)
        attestations[target].append(att_id)

    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []
    version_node = f"version:{version.pk}"

    job = producing_job(version)
    captures = {c.pk: c for c in Capture.objects.filter(versions=version)}
    if job is not None and job.capture_id not in captures:
        captures[job.capture_id] = Capture.objects.get(pk=job.capture_id)
    images: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for image in CaptureImage.objects.filter(capture_id__in=captures).select_related("file").order_by("capture_id", "id"):
        images[image.capture_id].append({"filename": image.filename, "sha256": image.file.sha256, "size": image.file.size})
    for capture in captures.values():
        nodes.append({"id": f"capture:{capture.pk}", "type": "capture", "name": capture.name, "images": images[capture.pk]})

    if job is not None:
        job_node = f"job:{job.pk}"
        nodes.append({
            "id": job_node, "type": "job", "backend": job.backend, "backend_version": job.backend_version,
            "state": job.state, "worker": job.worker, "started_at": _iso(job.started_at), "finished_at": _iso(job.finished_at),
        })
        edges.append({"from": f"capture:{job.capture_id}", "to": job_node, "relation": "input_of"})
        edges.append({"from": job_node, "to": version_node, "relation": "produced"})
    else:
        for capture_id in captures:
            edges.append({"from": f"capture:{capture_id}", "to": version_node, "relation": "source_of"})

    nodes.append({
        "id": version_node, "type": "version", "asset_id": version.asset_id, "number": version.number,
        "state": version.state, "attestations": attestations[("version", version.pk)],
    })

    visible = versions_visible_to(viewer)
    if version.parent_id is not None and visible.filter(pk=version.parent_id).exists():
        nodes.append({"id": f"version:{version.parent_id}", "type": "version", "relation": "parent"})
        edges.append({"from": f"version:{version.parent_id}", "to": version_node, "relation": "parent_of"})
    for child in visible.filter(parent=version).order_by("id").values("id", "number"):
        nodes.append({"id": f"version:{child['id']}", "type": "version", "number": child["number"], "relation": "derived"})
        edges.append({"from": version_node, "to": f"version:{child['id']}", "relation": "parent_of"})

    representations = (
        Representation.objects.filter(lod__variant__version=version)
        .select_related("file", "lod", "lod__variant")
        .order_by("lod__variant_id", "lod__level", "id")
    )
    for rep in representations:
        node = f"representation:{rep.pk}"
        nodes.append({
            "id": node, "type": "representation", "filename": rep.filename, "format": rep.format, "role": rep.role,
            "variant": rep.lod.variant.name, "lod": rep.lod.level, "sha256": rep.file.sha256, "size": rep.file.size,
            "attestations": attestations[("representation", rep.pk)],
        })
        edges.append({"from": version_node, "to": node, "relation": "has_file"})
    return {"version": version.pk, "nodes": nodes, "edges": edges}
