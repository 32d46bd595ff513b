"""Fixtures and helpers of the governance tests: audit events through the real write path, a collection with
its roles, and versions built and submitted through the catalog services."""
from __future__ import annotations

import io

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from catalog import services
from catalog.permissions import Role, assign_role
from governance.audit import record_event
from tests.catalog.conftest import _fast_password_hashing, glb_bytes, image_bytes, user_with_role  # noqa: F401
from tests.factories import CollectionFactory, LicenceFactory, UserFactory


def append_events(count: int, action: str = "test.event") -> list:
    """Real audit events through the one write path, each in its own (nested) transaction."""
    events = []
    for i in range(count):
        with transaction.atomic():
            events.append(record_event(actor="tester", action=action, data={"i": i}))
    return events


def client_for_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def submitted_version(actor, collection, *, slug: str = "chair", files: tuple[str, ...] = ("chair.glb",)):
    """A version built and submitted through the catalog services (which attest it on submission)."""
    asset = services.create_asset(actor=actor, collection=collection, slug=slug, name=slug.title(),
                                  licence=LicenceFactory(spdx_id="CC-BY-4.0", name="Creative Commons Attribution 4.0"))
    version = services.create_version(actor=actor, asset=asset)
    for i, name in enumerate(files):
        services.add_representation(actor=actor, version=version, stream=io.BytesIO(glb_bytes(1.0 + i)), filename=name,
                                    lod_level=i)
    return services.submit_version(actor=actor, version=version)


@pytest.fixture(autouse=True)
def _clear_key_cache():
    """Decrypted keys are cached per process; each test starts with its own database and key-encryption key."""
    from governance import keys

    keys._private_cache.clear()
    yield
    keys._private_cache.clear()


@pytest.fixture
def collection(db):
    owner = UserFactory(username="owner")
    collection = CollectionFactory(owner=owner, slug="spring-line", name="Spring line")
    assign_role(owner, Role.ADMIN, collection)
    return collection


@pytest.fixture
def contributor(collection):
    return user_with_role(Role.CONTRIBUTOR, collection, "carla")
