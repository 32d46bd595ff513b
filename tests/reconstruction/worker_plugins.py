"""Imported by a test worker (`celery -A config worker -I tests.reconstruction.worker_plugins`): the worker
finds the test backends as if they were installed plugins. Never imported by the product."""
from reconstruction.engine import registry
from tests.reconstruction.backends import GpuBackend, IcosphereBackend

_BACKENDS = {IcosphereBackend.name: IcosphereBackend(), GpuBackend.name: GpuBackend()}
registry.available_backends = lambda: dict(sorted(_BACKENDS.items()))
