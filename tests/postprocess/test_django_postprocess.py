"""The Celery task (run eagerly) post-processes a stored version into a new, audited version on PostgreSQL."""
import pytest

from catalog import services as catalog
from catalog.errors import PermissionDenied
from catalog.models import AssetVersion, Representation
from catalog.permissions import Role
from governance.models import AuditEvent
from reconstruction.postprocess import PostprocessRefused, postprocess_version, postprocess_version_task
from tests.catalog.conftest import _fast_password_hashing, user_with_role  # noqa: F401
from tests.factories import AssetFactory, CollectionFactory, UserFactory

from .meshes import SPOT

# Small maps keep the test quick; the preset's steps and exporters are the real ones.
SMALL = {"unwrap_and_bake": {"size": 128, "ao_rays": 2}, "textures": {"max_size": 256},
         "lods": {"ratios": [1.0, 0.25], "screen_sizes": [0.4, 0.1]}, "export": {"fbx_writer": "assimp"}}


@pytest.fixture
def scans(db):
    return CollectionFactory(owner=UserFactory())


@pytest.fixture
def contributor(scans):
    return user_with_role(Role.CONTRIBUTOR, scans)


@pytest.fixture
def source_version(scans, contributor):
    asset = AssetFactory(collection=scans, owner=contributor)
    version = catalog.create_version(actor=contributor, asset=asset)
    with open(SPOT, "rb") as handle:
        catalog.add_representation(actor=contributor, version=version, stream=handle, filename="spot.glb",
                                   triangle_count=5856)
    return version


@pytest.mark.slow
def test_task_ingests_lods_as_a_new_audited_version(source_version, contributor):
    new_id = postprocess_version_task.apply(args=[source_version.pk, "mobile-ar", contributor.pk, SMALL]).get()
    new = AssetVersion.objects.get(pk=new_id)
    assert new.parent_id == source_version.pk and new.number == source_version.number + 1
    lods = list(new.variants.get(name="default").lods.order_by("level"))
    assert [lod.level for lod in lods] == [0, 1]
    assert lods[0].triangle_count == 5856 and lods[1].triangle_count == 1464
    assert [lod.screen_size for lod in lods] == [0.4, 0.1]
    summary = new.metadata["postprocess"]
    assert summary["preset"] == "mobile-ar" and summary["validation_passed"] is True
    assert summary["lods"][1]["switch_distance_m"] > summary["lods"][0]["switch_distance_m"] > 0
    for lod in lods:
        models = {r.format: r for r in lod.representations.filter(role=Representation.Role.MODEL)}
        assert set(models) == {"glb", "usdz", "fbx"}
        for representation in models.values():
            assert representation.validation_status in ("valid", "warnings")
            assert representation.validation_report["errors"] == []
        assert models["glb"].validation_report["tool"] == "Khronos glTF-Validator"
        # assimp's FBX keeps its textures beside it; they are stored as texture files of the LOD.
        assert lod.representations.filter(role=Representation.Role.TEXTURE).exists()
    actions = list(AuditEvent.objects.filter(action="version.postprocessed").values_list("data", flat=True))
    assert actions and actions[-1]["preset"] == "mobile-ar" and actions[-1]["source_version"] == source_version.pk
    # A second delivery of the same task finds the work done.
    assert postprocess_version_task.apply(args=[source_version.pk, "mobile-ar", contributor.pk, SMALL]).get() == new_id
    assert AssetVersion.objects.filter(parent=source_version).count() == 1


def test_web_stores_meshopt_copies_and_the_msft_lod_chain(source_version, contributor):
    new = postprocess_version(contributor, version=source_version, preset="web", overrides=SMALL)
    lods = list(new.variants.get(name="default").lods.order_by("level"))
    names = [set(lod.representations.filter(role=Representation.Role.MODEL).values_list("filename", flat=True))
             for lod in lods]
    slug = source_version.asset.slug
    assert {f"{slug}_lod0.glb", f"{slug}_lod0.meshopt.glb", f"{slug}_lods.glb"} <= names[0]
    assert {f"{slug}_lod1.glb", f"{slug}_lod1.meshopt.glb"} <= names[1] and f"{slug}_lods.glb" not in names[1]
    chain = lods[0].representations.get(filename=f"{slug}_lods.glb")
    assert chain.validation_report["errors"] == [] and chain.validation_status in ("valid", "warnings")


def test_unknown_preset_is_refused_with_the_choices(source_version, contributor):
    with pytest.raises(PostprocessRefused, match="^Unknown preset 'vr'; choose one of web, mobile-ar, game, archive.$"):
        postprocess_version(contributor, version=source_version, preset="vr")


def test_version_without_a_mesh_is_refused(scans, contributor):
    asset = AssetFactory(collection=scans, owner=contributor)
    empty = catalog.create_version(actor=contributor, asset=asset)
    with pytest.raises(PostprocessRefused, match="has no GLB, PLY or OBJ model file to post-process"):
        postprocess_version(contributor, version=empty, preset="web")
    assert AssetVersion.objects.filter(asset=asset).count() == 1


def test_a_viewer_may_not_post_process(scans, source_version):
    viewer = user_with_role(Role.VIEWER, scans)
    with pytest.raises(PermissionDenied):
        postprocess_version(viewer, version=source_version, preset="web")



def test_an_asset_manager_queues_post_processing_from_the_version_admin(source_version, scans, monkeypatch,
                                                                         django_capture_on_commit_callbacks):
    """The admin action goes through `request_postprocess`: permission checked, audited, queued after commit."""
    from django.contrib.admin.sites import site
    from django.test import RequestFactory

    from reconstruction import postprocess

    queued = []
    monkeypatch.setattr(postprocess.postprocess_version_task, "delay", lambda *args: queued.append(args))
    model_admin = site._registry[AssetVersion]
    messages = []
    monkeypatch.setattr(model_admin, "message_user", lambda request, text, level=None: messages.append(text))

    for role in (Role.ASSET_MANAGER, Role.VIEWER):
        user = user_with_role(role, scans)
        user.is_staff = True
        user.save()
        request = RequestFactory().post("/admin/catalog/assetversion/")
        request.user = user
        action = model_admin.get_actions(request)["postprocess_mobile_ar"][0]
        with django_capture_on_commit_callbacks(execute=True):
            action(model_admin, request, AssetVersion.objects.filter(pk=source_version.pk))
        if role is Role.ASSET_MANAGER:
            manager = user

    assert queued == [(source_version.pk, "mobile-ar", manager.pk)]
    assert messages[0] == "1 version(s) queued for 'mobile-ar' post-processing (the result arrives as a new version)."
    assert messages[1].startswith(f"{source_version}: ")
    event = AuditEvent.objects.get(action="version.postprocess_requested")
    assert event.data["preset"] == "mobile-ar" and event.actor_id == manager.pk
