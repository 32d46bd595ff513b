from django.apps import AppConfig


class ReconstructionConfig(AppConfig):
    name = "reconstruction"
    verbose_name = "Reconstruction"

    def ready(self) -> None:
        # Registers the `reconstruction.postprocess_version` Celery task (a module outside tasks.py).
        from reconstruction import postprocess  # noqa: F401
