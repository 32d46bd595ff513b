"""Run the safety gates over a version's stored images (capture photos and the asset thumbnail) and keep each
verdict with its evidence: found boxes drawn on the image, stored by sha256."""
from __future__ import annotations

import io
from typing import Any

import cv2
import numpy as np
from django.db import transaction

from catalog.models import AssetVersion, CaptureImage, StoredFile
from catalog.storage import open_blob, store_stream
from governance.attestations import attest_safety_verdicts
from governance.audit import record_event
from governance.gate_models import SafetyVerdict
from governance.gates import Gate, GateContext, GateImage, GateResult, load_gates
from governance.rights import effective_rights, lineage_captures, lineage_versions


def _read(blob: StoredFile, name: str) -> GateImage:
    try:
        with open_blob(blob) as handle:
            data = handle.read()
    except OSError as exc:
        return GateImage(name, blob.sha256, None, f"cannot open the stored file ({exc})")
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        return GateImage(name, blob.sha256, None, "not a decodable image")
    return GateImage(name, blob.sha256, pixels)


def version_images(version: AssetVersion) -> list[GateImage]:
    """The capture images of the version's lineage, then the asset thumbnail (a rendered view) if it has one."""
    captures = lineage_captures(lineage_versions(version))
    images = [_read(ci.file, ci.filename) for ci in
              CaptureImage.objects.filter(capture_id__in=captures).select_related("file").order_by("capture_id", "id")]
    if version.asset.thumbnail_id:
        images.append(_read(version.asset.thumbnail, "thumbnail"))
    return images


def version_context(version: AssetVersion) -> GateContext:
    quality = getattr(version, "quality", None)
    rights = effective_rights(version)
    return GateContext(category=version.asset.category, metadata=version.metadata or {},
                       quality_metrics=(quality.metrics if quality else {}) or {},
                       territories=None if rights.territories is None else sorted(rights.territories))


def _evidence_image(images: list[GateImage], result: GateResult) -> StoredFile | None:
    by_name = {i.name: i for i in images if i.pixels is not None}
    for finding in result.findings:
        image = by_name.get(finding.image)
        if image is None or not finding.boxes:
            continue
        canvas = image.pixels.copy()
        for x, y, w, h in finding.boxes:
            cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 0, 255), max(2, min(canvas.shape[:2]) // 200))
        ok, png = cv2.imencode(".png", canvas)
        if ok:
            blob, _ = store_stream(io.BytesIO(png.tobytes()), filename=f"evidence-{image.sha256[:12]}.png")
            return blob
    return None


def run_gates(*, version: AssetVersion, gates: list[Gate] | None = None, actor: Any = "system:gates") -> list[SafetyVerdict]:
    """Run every gate (or those given) on the version and store one verdict each; an exception inside a gate
    becomes a BLOCK verdict naming it (fail closed)."""
    version = AssetVersion.objects.select_related("asset", "asset__thumbnail").get(pk=version.pk)
    images = version_images(version)
    context = version_context(version)
    verdicts = []
    for gate in gates if gates is not None else load_gates():
        try:
            result = gate.check(images, context)
        except Exception as exc:  # a gate that crashes must not pass silently
            result = GateResult("block", f"gate {gate.name} failed to run: {type(exc).__name__}: {exc}")
        with transaction.atomic():
            evidence = _evidence_image(images, result)
            verdict = SafetyVerdict.objects.create(
                version=version, gate=gate.name, gate_version=gate.version, outcome=result.outcome, reason=result.reason,
                evidence={**result.evidence(), "images": [{"name": i.name, "sha256": i.sha256} for i in images]},
                evidence_image=evidence,
            )
            record_event(actor=actor, action="gate.verdict", obj=verdict, asset_id=version.asset_id,
                         data={"gate": gate.name, "gate_version": gate.version, "outcome": result.outcome,
                               "reason": result.reason, "evidence_sha256": evidence.sha256 if evidence else None})
        verdicts.append(verdict)
    with transaction.atomic():  # the verdicts become part of the version's signed attestations
        attestation = attest_safety_verdicts(version=version, verdicts=verdicts)
        record_event(actor=actor, action="gate.attested", obj=version, asset_id=version.asset_id,
                     data={"attestation": attestation.pk, "verdicts": [v.pk for v in verdicts]})
    return verdicts


def latest_verdicts(version: AssetVersion) -> dict[str, SafetyVerdict]:
    """The newest verdict of each gate on the version."""
    latest: dict[str, SafetyVerdict] = {}
    for verdict in SafetyVerdict.objects.filter(version=version).order_by("id"):
        latest[verdict.gate] = verdict
    return latest
