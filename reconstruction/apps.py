from django.apps import AppConfig


class ReconstructionConfig(AppConfig):
    name = "reconstruction"
    verbose_name = "Reconstruction"

    def ready(self) -> None:
        # Registers the Celery tasks that live outside tasks.py.
        from reconstruction import postprocess, thumbnails  # noqa: F401
