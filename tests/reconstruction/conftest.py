"""Fixtures of the job tests: the small real test backends registered in place of the installed ones, real
captures stored through the catalog services, and users holding roles."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from catalog import services as catalog
from catalog.models import CaptureStandard
from reconstruction.engine import registry
from tests.catalog import conftest as catalog_fixtures
from tests.catalog.conftest import _fast_password_hashing, client_for, user_with_role  # noqa: F401
from tests.reconstruction.backends import GpuBackend, IcosphereBackend

# The catalog's fixtures (a user `owner` and the collection they administer), shared rather than copied.
owner = catalog_fixtures.owner
collection = catalog_fixtures.collection


@pytest.fixture
def backend(monkeypatch) -> IcosphereBackend:
    instance = IcosphereBackend()
    backends = {instance.name: instance, GpuBackend.name: GpuBackend()}
    monkeypatch.setattr(registry, "available_backends", lambda: dict(sorted(backends.items())))
    return instance


def png(seed: int, size: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def lenient_standard(db) -> CaptureStandard:
    return CaptureStandard.objects.create(name="test", min_views=1, min_short_side_px=8, min_sharpness=0,
                                          max_clipped_fraction=1.0, min_neighbour_similarity=0)


@pytest.fixture
def asset(owner, collection):
    return catalog.create_asset(actor=owner, collection=collection, slug="oak-chair", name="Oak chair")


def make_capture(owner, collection, standard, views: int = 3, **fields):
    images = [(f"view{i:02d}.png", io.BytesIO(png(i))) for i in range(views)]
    return catalog.create_capture(actor=owner, collection=collection, name=f"Shoot of {views}", images=images,
                                  standard=standard, **fields)


@pytest.fixture
def capture(owner, collection, lenient_standard):
    return make_capture(owner, collection, lenient_standard)
