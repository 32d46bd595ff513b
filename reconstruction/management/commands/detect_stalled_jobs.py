"""`manage.py detect_stalled_jobs`: the beat task's sweep, once, for cron-style deployments and operators."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from reconstruction import services


class Command(BaseCommand):
    help = ("Re-queue running jobs whose worker went silent (or fail them once their attempts are used) and "
            "send queued jobs the broker refused again.")

    def handle(self, *args: Any, **options: Any) -> None:
        outcome = services.detect_stalled_jobs()
        for label, ids in outcome.items():
            listed = ", ".join(str(i) for i in ids) if ids else "none"
            self.stdout.write(f"{label}: {listed}")
