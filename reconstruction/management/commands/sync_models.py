"""`manage.py sync_models`: copy the engine's model registry into the LearnedModel table (see model_catalog)."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from reconstruction.engine.errors import EngineError
from reconstruction.engine.model_registry import model_dir
from reconstruction.model_catalog import sync_learned_models


class Command(BaseCommand):
    help = ("Register every checkpoint of the engine's model registry (ASSAY_MODEL_DIR or the shipped weights) "
            "as a LearnedModel and mark the ones that left it unavailable. Exits 1 when a card conflicts.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = sync_learned_models()
        except EngineError as exc:
            raise CommandError(f"{model_dir()}: {exc.message}") from None
        for line in report.lines():
            self.stdout.write(line)
        if report.conflicts:
            raise CommandError("Some model cards conflict with registered models: " + "; ".join(report.conflicts))
