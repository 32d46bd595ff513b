"""Fixtures of the governance tests."""
from __future__ import annotations

import pytest
from django.db import transaction

from governance.audit import record_event


def append_events(count: int, action: str = "test.event") -> list:
    """Real audit events through the one write path, each in its own (nested) transaction."""
    events = []
    for i in range(count):
        with transaction.atomic():
            events.append(record_event(actor="tester", action=action, data={"i": i}))
    return events


@pytest.fixture(autouse=True)
def _clear_key_cache():
    """Decrypted keys are cached per process; each test starts with its own database and key-encryption key."""
    from governance import keys

    keys._private_cache.clear()
    yield
    keys._private_cache.clear()


from tests.catalog.conftest import _fast_password_hashing, glb_bytes, user_with_role  # noqa: E402,F401


@pytest.fixture
def collection(db):
    from catalog.permissions import Role, assign_role
    from tests.factories import CollectionFactory, UserFactory

    owner = UserFactory(username="owner")
    collection = CollectionFactory(owner=owner, slug="spring-line", name="Spring line")
    assign_role(owner, Role.ADMIN, collection)
    return collection


@pytest.fixture
def contributor(collection):
    from catalog.permissions import Role

    return user_with_role(Role.CONTRIBUTOR, collection, "carla")


def submitted_version(actor, collection, *, slug: str = "chair", files: tuple[str, ...] = ("chair.glb",)):
    """A version built and submitted through the catalog services (which attest it on submission)."""
    import io

    from catalog import services
    from tests.factories import LicenceFactory

    asset = services.create_asset(actor=actor, collection=collection, slug=slug, name=slug.title(),
                                  licence=LicenceFactory(spdx_id="CC-BY-4.0", name="Creative Commons Attribution 4.0"))
    version = services.create_version(actor=actor, asset=asset)
    for i, name in enumerate(files):
        services.add_representation(actor=actor, version=version, stream=io.BytesIO(glb_bytes(1.0 + i)), filename=name,
                                    lod_level=i)
    return services.submit_version(actor=actor, version=version)


def client_for_user(user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client
