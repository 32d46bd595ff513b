"""Thumbnails rendered from a version's model file: a real PNG of the object, stored by content and audited."""
from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh
from django.core.management import call_command
from PIL import Image

from catalog import services as catalog
from catalog.errors import InvalidTransition
from catalog.storage import open_blob
from governance.content_credentials import read_credentials
from governance.models import AuditEvent
from reconstruction.thumbnails import render_asset_thumbnail
from tests.catalog.conftest import image_bytes
from tests.factories import CollectionFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def version(db):
    owner = UserFactory(username="admin", is_superuser=True, is_staff=True)
    collection = CollectionFactory(owner=owner)
    asset = catalog.create_asset(actor=owner, collection=collection, slug="box", name="Box")
    version = catalog.create_version(actor=owner, asset=asset)
    box = trimesh.creation.box(extents=(1.0, 0.5, 0.25))
    box.visual.face_colors = [200, 40, 40, 255]
    catalog.add_representation(actor=owner, version=version, stream=io.BytesIO(box.export(file_type="glb")),
                               filename="box.glb")
    return version


def test_the_thumbnail_shows_the_object_on_a_transparent_background(version):
    asset = render_asset_thumbnail(version.created_by, version=version, size=96)

    with open_blob(asset.thumbnail) as handle:
        data = handle.read()
    image = np.asarray(Image.open(io.BytesIO(data)))
    credentials = read_credentials(data, kind="png")
    assert credentials.state == "Valid", credentials.failures
    assert image.shape == (96, 96, 4)
    covered = image[..., 3] > 0
    assert 0.05 < covered.mean() < 0.9  # the whole box is in view, with a margin
    red = image[covered][:, :3].astype(int)
    assert (red[:, 0] > red[:, 1] + 40).mean() > 0.9  # lit, but still the box's red
    event = AuditEvent.objects.filter(action="asset.thumbnail_set").get()
    assert event.changes == {"thumbnail": [None, asset.thumbnail.sha256]}


def test_the_command_renders_only_missing_thumbnails(version):
    out = io.StringIO()
    call_command("render_thumbnails", "--missing", stdout=out)
    assert out.getvalue() == "box: thumbnail rendered from version 1\n"
    out = io.StringIO()
    call_command("render_thumbnails", "--missing", stdout=out)
    assert out.getvalue() == ""


def test_a_thumbnail_must_be_an_image(version):
    with pytest.raises(InvalidTransition, match="A thumbnail must be an image, not a GLB file."):
        catalog.set_thumbnail(actor=version.created_by, asset=version.asset,
                              stream=io.BytesIO(trimesh.creation.box().export(file_type="glb")), filename="x.glb")
    catalog.set_thumbnail(actor=version.created_by, asset=version.asset,
                          stream=io.BytesIO(image_bytes("PNG")), filename="x.png")
