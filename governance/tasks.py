"""Celery tasks of governance; named and routed explicitly, safe to run twice."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="governance.sign_tree_head", queue="cpu", acks_late=True)
def sign_tree_head() -> dict[str, int | str]:
    """Celery beat runs this every few minutes (CELERY_BEAT_SCHEDULE); a second run just signs another head."""
    from governance.tree_heads import sign_tree_head as sign

    head = sign()
    return {"id": head.pk, "tree_size": head.tree_size, "root_hash": head.root_hash}


@shared_task(name="governance.run_gates", queue="cpu", acks_late=True)
def run_gates(version_id: int) -> dict[str, str]:
    """Run the safety gates on a version; running twice adds a newer verdict per gate (the newest counts)."""
    from catalog.models import AssetVersion
    from governance.gates.runner import run_gates as run

    version = AssetVersion.objects.get(pk=version_id)
    return {v.gate: v.outcome for v in run(version=version)}


@shared_task(name="governance.expire_rights", queue="cpu", acks_late=True)
def expire_rights() -> dict[str, list[int]]:
    """Celery beat runs this hourly: expired licences and consents withdraw what depends on them (each once)."""
    from governance.rights import expire_rights as sweep

    return sweep()
