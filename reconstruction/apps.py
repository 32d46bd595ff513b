from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ReconstructionConfig(AppConfig):
    name = "reconstruction"
    verbose_name = "Reconstruction"

    def ready(self) -> None:
        # Registers the Celery tasks that live outside tasks.py.
        from reconstruction import postprocess, thumbnails  # noqa: F401
        from reconstruction.model_catalog import sync_after_migrate

        # After this app's migrations (and those of governance, whose audit log the sync writes to).
        post_migrate.connect(sync_after_migrate, sender=self, dispatch_uid="reconstruction.sync_learned_models")
