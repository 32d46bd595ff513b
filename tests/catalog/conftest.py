"""Fixtures of the catalog tests: real files (a GLB made with trimesh, PNG, JPEG) and users holding roles."""
from __future__ import annotations

import io

import pytest
import trimesh
from django.test import override_settings
from PIL import Image
from rest_framework.test import APIClient

from catalog.models import Collection
from catalog.permissions import Role, assign_role
from tests.factories import CollectionFactory, UserFactory


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing():
    """Factories set real passwords; PBKDF2 at a million rounds would dominate these tests' time."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


def glb_bytes(extent: float = 1.0) -> bytes:
    """A real, valid GLB: a box mesh exported by trimesh (different extents give different bytes)."""
    return trimesh.creation.box(extents=(extent, extent, extent)).export(file_type="glb")


def image_bytes(fmt: str, size: tuple[int, int] = (16, 16), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def user_with_role(role: Role, collection: Collection, username: str | None = None):
    user = UserFactory(username=username) if username else UserFactory()
    assign_role(user, role, collection)
    return user


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def owner(db):
    return UserFactory(username="owner")


@pytest.fixture
def collection(owner) -> Collection:
    collection = CollectionFactory(owner=owner, slug="spring-line", name="Spring line")
    assign_role(owner, Role.ADMIN, collection)
    return collection


@pytest.fixture
def glb() -> bytes:
    return glb_bytes()
