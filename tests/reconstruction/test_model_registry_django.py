"""Learned models in the catalog: synced from the engine's model registry with audit events, linked to the jobs
whose results cite them (and into the versions' provenance), refused when unregistered, listed by the API with
only the versions the caller may see, and shown read-only in the admin."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command

from catalog import services as catalog
from catalog.models import AssetVersion
from catalog.permissions import Role
from governance.attestations import SLSA_PROVENANCE, provenance_predicate
from governance.models import Attestation, AuditEvent
from reconstruction import tasks
from reconstruction.engine import model_registry, registry
from reconstruction.engine.model_registry import checkpoint_reference, find_model, load_checkpoint
from reconstruction.model_catalog import sync_after_migrate, sync_learned_models
from reconstruction.models import LearnedModel, ReconstructionJob
from tests.factories import CollectionFactory, UserFactory
from tests.reconstruction.backends import GpuBackend, IcosphereBackend
from tests.reconstruction.conftest import client_for, user_with_role

pytestmark = pytest.mark.django_db
State = ReconstructionJob.State
DATA = {"description": "renders of procedural meshes", "digest": "cd" * 32}


@pytest.fixture
def model_dir(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "weights"
    monkeypatch.setenv("ASSAY_MODEL_DIR", str(directory))
    return directory


def register(tmp_path: Path, version: str = "1.0.0", scale: float = 1.0, **card) -> model_registry.ModelCard:
    source = tmp_path / f"trained-{version}-{scale}.pt"
    torch.save({"weight": torch.full((2, 2), scale)}, source)
    fields = {"name": "tiny-unet", "architecture": "unet-2d", "training_config": {"steps": 5},
              "training_data": DATA, "metrics": {"val_loss": 0.5}, "description": "test network", **card}
    return model_registry.register_checkpoint(source, version=version, **fields)


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


class CheckpointBackend(IcosphereBackend):
    """Loads the newest registered tiny-unet through the engine registry, as a learned backend does, and cites it."""

    name = "test-checkpoint"

    def run(self, capture, workdir, *, params, progress, cancel):
        card = find_model("tiny-unet")
        weights = load_checkpoint(card)["weight"]
        result = super().run(capture, workdir, params={**params, "radius": float(weights.mean())}, progress=progress,
                             cancel=cancel)
        result.backend = self.name
        result.metrics["model_checkpoints"] = [checkpoint_reference(card)]
        return result


@pytest.fixture
def checkpoint_backend(monkeypatch, settings, tmp_path, quiet_dispatch):
    backends = {b.name: b for b in (IcosphereBackend(), GpuBackend(), CheckpointBackend())}
    monkeypatch.setattr(registry, "available_backends", lambda: dict(sorted(backends.items())))
    settings.ASSAY_JOB_WORKDIR = str(tmp_path / "work")
    (tmp_path / "work").mkdir()
    return backends["test-checkpoint"]


@pytest.fixture
def quiet_dispatch(monkeypatch):
    monkeypatch.setattr(tasks.run_job, "apply_async", lambda args, queue, **kw: None)


def run_checkpoint_job(owner, capture, asset) -> ReconstructionJob:
    from reconstruction import services

    job, _ = services.submit_job(owner, capture=capture, asset=asset, backend="test-checkpoint",
                                 parameters={"subdivisions": 1}, idempotency_key=f"k{asset.pk}")
    tasks.run_job.apply(args=[job.pk]).get()
    job.refresh_from_db()
    return job


# Sync ------------------------------------------------------------------------------------------------------------


def test_sync_creates_updates_and_retires_rows_with_audit_events(model_dir, tmp_path):
    old, new = register(tmp_path, "1.0.0"), register(tmp_path, "1.1.0", scale=2.0, metrics={"val_loss": 0.25})

    report = sync_learned_models()

    assert report.registered == ["tiny-unet@1.0.0", "tiny-unet@1.1.0"] and report.conflicts == []
    row = LearnedModel.objects.get(sha256=new.sha256)
    assert (row.name, row.version, row.architecture, row.size_bytes, row.licence, row.available) == (
        "tiny-unet", "1.1.0", "unet-2d", new.size_bytes, "Apache-2.0", True)
    assert (row.training_data, row.metrics, row.file) == (DATA, {"val_loss": 0.25}, "tiny-unet-1.1.0.pt")
    assert [e.data["sha256"] for e in events("learned_model.registered")] == [old.sha256, new.sha256]
    assert events("learned_model.registered")[0].actor_name == "system:model-registry"

    assert sync_learned_models().lines() == ["registered: none", "updated: none", "unavailable: none",
                                             "conflicts: none"]
    assert AuditEvent.objects.filter(action__startswith="learned_model.").count() == 2  # a no-op writes nothing

    manifest = model_dir / "registry.json"
    cards = json.loads(manifest.read_text())
    cards[1]["metrics"] = {"val_loss": 0.2}
    manifest.write_text(json.dumps(cards[1:]))  # 1.0.0 leaves the registry; 1.1.0 has a new metric
    report = sync_learned_models()

    assert (report.updated, report.unavailable) == (["tiny-unet@1.1.0"], ["tiny-unet@1.0.0"])
    assert LearnedModel.objects.get(sha256=old.sha256).available is False  # kept: history matters
    assert events("learned_model.updated")[0].changes == {"metrics": [{"val_loss": 0.25}, {"val_loss": 0.2}]}
    assert events("learned_model.unavailable")[0].changes == {"available": [True, False]}


def test_a_version_reused_with_another_digest_is_a_conflict_not_a_rewrite(model_dir, tmp_path):
    first = register(tmp_path, "1.0.0")
    sync_learned_models()
    second = register(tmp_path, "1.0.0", scale=3.0)

    with pytest.raises(CommandError, match="a version names one file forever"):
        call_command("sync_models")

    row = LearnedModel.objects.get(name="tiny-unet", version="1.0.0")
    assert (row.sha256, row.available) == (first.sha256, False)
    assert not LearnedModel.objects.filter(sha256=second.sha256).exists()


def test_sync_command_and_post_migrate_hook(model_dir, tmp_path, settings, capsys):
    register(tmp_path, "1.0.0")
    settings.ASSAY_SYNC_MODELS_ON_MIGRATE = False
    sync_after_migrate(sender=None, using="default")
    assert not LearnedModel.objects.exists()

    settings.ASSAY_SYNC_MODELS_ON_MIGRATE = True
    sync_after_migrate(sender=None, using="default")
    assert list(LearnedModel.objects.values_list("name", "version")) == [("tiny-unet", "1.0.0")]
    call_command("sync_models")
    assert "registered: none" in capsys.readouterr().out


def test_one_file_under_two_names_is_registered_once(model_dir, tmp_path):
    first = register(tmp_path, "1.0.0")
    register(tmp_path, "1.0.0", name="copy-net")  # the same bytes, so the same digest

    report = sync_learned_models()

    assert report.registered == ["copy-net@1.0.0"]
    assert report.conflicts == [f"tiny-unet@1.0.0: sha256 {first.sha256[:12]} is already registered as copy-net@1.0.0"]
    assert LearnedModel.objects.get().name == "copy-net"


def test_an_unreadable_registry_fails_the_command_clearly(model_dir):
    model_dir.mkdir()
    (model_dir / "registry.json").write_text("{not json")

    with pytest.raises(CommandError, match=r"registry.json is not readable JSON"):
        call_command("sync_models")


# Ingest ----------------------------------------------------------------------------------------------------------


def test_ingest_links_the_job_to_the_model_and_provenance_cites_its_digest(
    model_dir, tmp_path, owner, capture, asset, checkpoint_backend
):
    card = register(tmp_path, "1.0.0", scale=0.7)
    sync_learned_models()
    model = LearnedModel.objects.get()

    job = run_checkpoint_job(owner, capture, asset)

    assert job.state == State.SUCCEEDED, job.error
    assert list(job.learned_models.all()) == [model]
    reference = {"name": "tiny-unet@1.0.0", "sha256": card.sha256, "uri": "assay:model/tiny-unet@1.0.0"}
    assert job.model_checkpoints == [reference]
    assert events("job.succeeded")[-1].data["model_checkpoints"] == [reference]
    cited = {"uri": "assay:model/tiny-unet@1.0.0", "name": "tiny-unet@1.0.0", "digest": {"sha256": card.sha256}}
    assert cited in provenance_predicate(job.produced_version)["buildDefinition"]["resolvedDependencies"]

    catalog.submit_version(actor=owner, version=job.produced_version)  # the signed provenance carries it too
    attestation = Attestation.objects.get(version=job.produced_version, predicate_type=SLSA_PROVENANCE,
                                          representation=None)
    statement = json.loads(base64.b64decode(attestation.envelope["payload"]))
    assert cited in statement["predicate"]["buildDefinition"]["resolvedDependencies"]


def test_an_unregistered_digest_fails_the_ingest_and_creates_no_version(
    model_dir, tmp_path, owner, capture, asset, checkpoint_backend
):
    card = register(tmp_path, "1.0.0")  # in the engine's registry, never synced into the catalog

    job = run_checkpoint_job(owner, capture, asset)

    assert (job.state, job.error_code) == (State.FAILED, "ingest_failed")
    assert job.error == (
        f"The result names model checkpoint(s) this catalog has not registered: tiny-unet@1.0.0 (sha256 "
        f"{card.sha256}). Register them in the engine's model registry and run `manage.py sync_models` first."
    )
    assert not AssetVersion.objects.filter(asset=asset).exists()
    assert job.produced_version is None and not job.learned_models.exists()


# API -------------------------------------------------------------------------------------------------------------


def test_api_lists_models_and_shows_only_versions_the_caller_may_see(
    model_dir, tmp_path, owner, collection, capture, asset, checkpoint_backend, django_assert_max_num_queries
):
    register(tmp_path, "1.0.0")
    register(tmp_path, "1.0.0", name="other-net", scale=5.0)
    sync_learned_models()
    job = run_checkpoint_job(owner, capture, asset)
    model = LearnedModel.objects.get(name="tiny-unet")
    viewer = user_with_role(Role.VIEWER, collection, username="viewer")
    outsider = user_with_role(Role.VIEWER, CollectionFactory(owner=UserFactory()), username="outsider")

    listed = client_for(outsider).get("/api/v1/models/")
    assert listed.status_code == 200
    assert [(m["reference"], m["available"]) for m in listed.json()["results"]] == [
        ("other-net@1.0.0", True), ("tiny-unet@1.0.0", True)]
    filtered = client_for(outsider).get("/api/v1/models/", {"name": "tiny-unet"}).json()["results"]
    assert [m["id"] for m in filtered] == [model.pk] and filtered[0]["sha256"] == model.sha256
    assert "versions" not in filtered[0]

    with django_assert_max_num_queries(6):
        seen = client_for(viewer).get(f"/api/v1/models/{model.pk}/")
    assert seen.status_code == 200
    version = job.produced_version
    assert seen.json()["versions"] == [{"id": version.pk, "asset": asset.pk, "asset_slug": "oak-chair",
                                        "number": version.number}]
    assert seen.json()["training_data"] == DATA
    hidden = client_for(outsider).get(f"/api/v1/models/{model.pk}/")
    assert hidden.status_code == 200 and hidden.json()["versions"] == []
    missing = client_for(viewer).get("/api/v1/models/999999/")
    assert missing.status_code == 404 and missing["Content-Type"] == "application/problem+json"
    assert client_for(viewer).get(f"/api/v1/jobs/{job.pk}/").json()["model_checkpoints"] == job.model_checkpoints


def test_api_needs_a_login(client):
    assert client.get("/api/v1/models/").status_code in (401, 403)


# Admin -----------------------------------------------------------------------------------------------------------


def test_admin_changelist_and_read_only_detail_list_the_jobs(
    model_dir, tmp_path, owner, capture, asset, checkpoint_backend, client
):
    card = register(tmp_path, "1.0.0", metrics={"val_loss": 0.125})
    sync_learned_models()
    job = run_checkpoint_job(owner, capture, asset)
    model = LearnedModel.objects.get()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))

    changelist = client.get("/admin/reconstruction/learnedmodel/")
    assert changelist.status_code == 200
    html = changelist.content.decode()
    assert f'<code title="{card.sha256}">{card.sha256[:12]}</code>' in html and "val_loss=0.125" in html

    detail = client.get(f"/admin/reconstruction/learnedmodel/{model.pk}/change/")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert f'/admin/reconstruction/reconstructionjob/{job.pk}/change/">job {job.pk}</a>' in html
    assert f"/admin/catalog/assetversion/{job.produced_version_id}/change/" in html
    assert client.post(f"/admin/reconstruction/learnedmodel/{model.pk}/change/", {}).status_code == 403
    assert client.get("/admin/reconstruction/learnedmodel/add/").status_code == 403
