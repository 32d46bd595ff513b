"""Celery tasks of governance; named and routed explicitly, safe to run twice."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="governance.sign_tree_head", queue="cpu", acks_late=True)
def sign_tree_head() -> dict[str, int | str]:
    """Celery beat runs this every few minutes (CELERY_BEAT_SCHEDULE); a second run just signs another head."""
    from governance.tree_heads import sign_tree_head as sign

    head = sign()
    return {"id": head.pk, "tree_size": head.tree_size, "root_hash": head.root_hash}
