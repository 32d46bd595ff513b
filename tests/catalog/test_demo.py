"""`manage.py load_demo`: real licensed models published through the services, and a second run changes nothing."""
from __future__ import annotations

import io
import stat

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command

from catalog.demo import DEMO_ASSETS, PASSWORD_ENV, ensure_admin, glb_document, material_variants
from catalog.models import Asset, AssetVersion, QualityReport, Representation, StoredFile, Variant
from catalog.storage import verify_blob
from governance.models import AuditEvent

pytestmark = pytest.mark.django_db


def run(password_file) -> str:
    out = io.StringIO()
    call_command("load_demo", password_file=password_file, thumbnails=False, stdout=out)
    return out.getvalue()


@pytest.mark.slow
def test_load_demo_publishes_the_licensed_models_once(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    password_file = tmp_path / "admin-password.txt"
    first = run(password_file)
    assert "Demo collection: published spot, avocado, sheen-chair." in first

    assets = {a.slug: a for a in Asset.objects.filter(collection__slug="demo").select_related("licence")}
    assert set(assets) == {"spot", "avocado", "sheen-chair"}
    assert all(a.state == Asset.State.PUBLISHED for a in assets.values())
    assert {slug: a.licence.spdx_id for slug, a in assets.items()} == {
        "spot": "LicenseRef-PublicDomain", "avocado": "CC0-1.0", "sheen-chair": "CC-BY-4.0"}
    assert "Wayfair LLC" in assets["sheen-chair"].licence.attribution
    assert "Eric Chadwick" in assets["sheen-chair"].licence.attribution
    assert "CC0 1.0 Universal" in assets["avocado"].licence.text  # the upstream licence file is kept with the row

    assert set(AssetVersion.objects.filter(asset__collection__slug="demo").values_list("state", flat=True)) == {
        AssetVersion.State.PUBLISHED}
    chair_variants = Variant.objects.filter(version__asset=assets["sheen-chair"]).order_by("id")
    assert [(v.name, v.kind) for v in chair_variants] == [
        ("default", "default"), ("Mango Velvet", "material"), ("Peacock Velvet", "material")]
    # One file on disk per model, however many variants point at it; the bytes are the shipped ones.
    assert StoredFile.objects.count() == 3
    assert Representation.objects.filter(lod__variant__version__asset=assets["sheen-chair"]).count() == 3
    for spec in DEMO_ASSETS:
        rep = Representation.objects.filter(lod__variant__version__asset=assets[spec.slug]).select_related("file").first()
        assert rep.file.size == spec.path.stat().st_size and verify_blob(rep.file)
        assert rep.validation_status == Representation.Validation.VALID

    triangles = dict(QualityReport.objects.values_list("version__asset__slug", "triangle_count"))
    assert triangles == {"spot": 5856, "avocado": 682, "sheen-chair": 39936}
    avocado = QualityReport.objects.get(version__asset__slug="avocado")
    extents = [hi - lo for lo, hi in zip(*avocado.bounds, strict=True)]
    assert [round(e, 3) for e in extents] == [0.043, 0.063, 0.028]
    assert avocado.texture_count == 3

    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"collection.created", "asset.created", "representation.added", "version.submitted", "version.approved",
            "version.published", "quality.recorded", "cost.recorded", "licence.created"} <= actions
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password_file.read_text().strip())
    assert set(Group.objects.values_list("name", flat=True)) >= {"viewer", "contributor", "asset_manager", "reviewer",
                                                                 "compliance_officer", "admin"}

    events, password = AuditEvent.objects.count(), password_file.read_text()
    second = run(password_file)
    assert "Demo collection already loaded; nothing to do." in second
    assert "password is unchanged" in second
    assert AuditEvent.objects.count() == events and password_file.read_text() == password
    assert Asset.objects.count() == 3 and StoredFile.objects.count() == 3


def test_an_existing_admin_keeps_its_password_unless_the_environment_sets_one(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    password_file = tmp_path / "var" / "admin-password.txt"
    user, created = ensure_admin(password_file=password_file)
    assert created and stat.S_IMODE(password_file.stat().st_mode) == 0o600
    generated = password_file.read_text().strip()
    assert len(generated) >= 20 and user.check_password(generated)

    _, created = ensure_admin(password_file=password_file)
    user.refresh_from_db()
    assert not created and user.check_password(generated)

    monkeypatch.setenv(PASSWORD_ENV, "from the environment")
    ensure_admin(password_file=password_file)
    user.refresh_from_db()
    assert user.check_password("from the environment")
    assert not password_file.exists()  # a stale generated password would mislead


def test_a_new_admin_takes_the_environment_password_and_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-from-env")
    password_file = tmp_path / "admin-password.txt"
    user, created = ensure_admin(password_file=password_file)
    assert created and user.check_password("s3cret-from-env") and not password_file.exists()


def test_the_chair_declares_its_two_fabric_variants():
    chair = next(spec for spec in DEMO_ASSETS if spec.slug == "sheen-chair")
    assert material_variants(glb_document(chair.path)) == ["Mango Velvet", "Peacock Velvet"]
    assert all(spec.licence_file.exists() for spec in DEMO_ASSETS)


def test_a_stray_unpublished_demo_asset_is_reported_not_overwritten(tmp_path, monkeypatch):
    from django.core.management.base import CommandError

    from catalog.demo import DEMO_COLLECTION_SLUG, ensure_collection

    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    admin, _ = ensure_admin(password_file=tmp_path / "pw.txt")
    collection, _ = ensure_collection(actor=admin)
    Asset.objects.create(collection=collection, slug="spot", name="Someone's spot", owner=admin)
    with pytest.raises(CommandError, match="The demo collection has an asset 'spot' that is not published"):
        run(tmp_path / "pw.txt")
    assert collection.slug == DEMO_COLLECTION_SLUG
    assert Asset.objects.get(slug="spot").name == "Someone's spot"


def test_thumbnails_are_requested_by_task_name_for_assets_without_one(monkeypatch, owner):
    from catalog.demo import request_thumbnails
    from config.celery import app
    from tests.factories import AssetVersionFactory, CollectionFactory, StoredFileFactory

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args, queue: sent.append((name, args, queue)))
    collection = CollectionFactory(slug="demo")
    bare = AssetVersionFactory(asset__collection=collection, state="published")
    AssetVersionFactory(asset__collection=collection, state="published", asset__thumbnail=StoredFileFactory())
    AssetVersionFactory(asset__collection=collection, state="open")
    assert request_thumbnails(actor=owner, collection=collection) == [bare.asset.slug]
    assert sent == [("reconstruction.render_thumbnail", [bare.pk, owner.pk], "cpu")]
