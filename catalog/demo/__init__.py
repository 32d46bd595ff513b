"""The demo collection: real, licensed models (shipped beside this file) loaded as published assets.

`load_demo` is idempotent: a second run finds the admin, the collection and each published asset and
changes nothing. Every catalog row is written through the services, so the audit trail tells the story.
"""
from __future__ import annotations

import json
import os
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trimesh
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from catalog import services
from catalog.errors import Duplicate
from catalog.models import Asset, AssetVersion, Collection, Representation, Variant
from catalog.role_groups import ensure_role_groups
from governance.audit import record_event
from governance.models import Licence
from governance.publishing import publish_version

DEMO_DIR = Path(__file__).resolve().parent
DEMO_COLLECTION_SLUG = "demo"
ADMIN_USERNAME = "admin"
PASSWORD_ENV = "ASSAY_ADMIN_PASSWORD"


@dataclass(frozen=True)
class DemoLicence:
    spdx_id: str
    name: str
    url: str
    licensor: str
    attribution: str


@dataclass(frozen=True)
class DemoAsset:
    slug: str
    name: str
    filename: str
    category: str
    tags: tuple[str, ...]
    description: str
    licence: DemoLicence

    @property
    def path(self) -> Path:
        return DEMO_DIR / self.filename

    @property
    def licence_file(self) -> Path:
        return DEMO_DIR / f"{Path(self.filename).stem}.LICENSE.md"


PUBLIC_DOMAIN = DemoLicence(
    spdx_id="LicenseRef-PublicDomain", name="Public domain (author's release)",
    url="https://www.cs.cmu.edu/~kmcrane/Projects/ModelRepository/", licensor="Keenan Crane",
    attribution="“Spot” by Keenan Crane, released into the public domain.",
)
CC0_MICROSOFT = DemoLicence(
    spdx_id="CC0-1.0", name="Creative Commons Zero v1.0 Universal",
    url="https://creativecommons.org/publicdomain/zero/1.0/legalcode", licensor="Microsoft",
    attribution="Avocado © 2017 Microsoft, released under CC0 1.0 (KhronosGroup/glTF-Sample-Assets).",
)
CC_BY_WAYFAIR = DemoLicence(
    spdx_id="CC-BY-4.0", name="Creative Commons Attribution 4.0 International",
    url="https://creativecommons.org/licenses/by/4.0/legalcode", licensor="Wayfair LLC",
    attribution="SheenChair © 2020 Wayfair LLC, model by Eric Chadwick, CC BY 4.0 (KhronosGroup/glTF-Sample-Assets).",
)

DEMO_ASSETS: tuple[DemoAsset, ...] = (
    DemoAsset(
        slug="spot", name="Spot the cow", filename="spot.glb", category="toys/figure", tags=("demo", "textured"),
        description="Keenan Crane's cow: a UV-mapped, mostly white surface with one base-colour texture.",
        licence=PUBLIC_DOMAIN,
    ),
    DemoAsset(
        slug="avocado", name="Avocado", filename="Avocado.glb", category="food/fruit", tags=("demo", "scan", "pbr"),
        description="A photogrammetry scan: few triangles, the detail lives in its 2048² PBR textures.",
        licence=CC0_MICROSOFT,
    ),
    DemoAsset(
        slug="sheen-chair", name="Sheen slipper chair", filename="SheenChair.glb", category="furniture/chair",
        tags=("demo", "pbr", "velvet"),
        description="A velvet slipper chair modelled to a real product, with two fabric variants "
                    "(KHR_materials_variants) and sheen.",
        licence=CC_BY_WAYFAIR,
    ),
)


def glb_document(path: Path) -> dict[str, Any]:
    """The glTF JSON chunk of a GLB file (header: magic, version, length; then the JSON chunk)."""
    with path.open("rb") as handle:
        magic, _version, _length, chunk_length, chunk_type = struct.unpack("<4sIIII", handle.read(20))
        if magic != b"glTF" or chunk_type != 0x4E4F534A:  # "JSON"
            raise ValueError(f"{path.name} is not a GLB file with a JSON chunk first.")
        return json.loads(handle.read(chunk_length))


def material_variants(document: dict[str, Any]) -> list[str]:
    """Names of the KHR_materials_variants the file declares, in index order."""
    return [v["name"] for v in document.get("extensions", {}).get("KHR_materials_variants", {}).get("variants", [])]


def measure(path: Path) -> dict[str, Any]:
    """Geometry metrics of a GLB: the whole scene merged into one mesh by trimesh, in the file's units (metres)."""
    mesh = trimesh.load(path, force="mesh")
    document = glb_document(path)
    return {
        "triangle_count": int(len(mesh.faces)),
        "vertex_count": int(len(mesh.vertices)),
        "texture_count": len(document.get("images", [])),
        "watertight": bool(mesh.is_watertight),
        "bounds": [[round(float(v), 6) for v in corner] for corner in mesh.bounds],
        "metrics": {
            "extents_m": [round(float(v), 6) for v in mesh.extents],
            "surface_area_m2": round(float(mesh.area), 6),
            "materials": len(document.get("materials", [])),
            "extensions_used": sorted(document.get("extensionsUsed", [])),
        },
    }


@dataclass
class DemoResult:
    admin_created: bool = False
    password_file: Path | None = None
    collection_created: bool = False
    assets_created: list[str] = field(default_factory=list)
    assets_present: list[str] = field(default_factory=list)
    thumbnails_requested: list[str] = field(default_factory=list)


def ensure_admin(*, password_file: Path) -> tuple[Any, bool]:
    """The `admin` superuser. A new one gets ASSAY_ADMIN_PASSWORD or a random password written to
    `password_file` (mode 0600); an existing one keeps its password unless ASSAY_ADMIN_PASSWORD is set."""
    User = get_user_model()
    env_password = os.environ.get(PASSWORD_ENV) or None
    user = User.objects.filter(username=ADMIN_USERNAME).first()
    created = user is None
    if user is None:
        user = User(username=ADMIN_USERNAME, email="admin@localhost", is_staff=True, is_superuser=True)
        password = env_password or secrets.token_urlsafe(18)
        user.set_password(password)
        user.save()
        if env_password is None:
            _write_secret(password_file, password)
    elif env_password is not None and not user.check_password(env_password):
        user.set_password(env_password)
        user.save(update_fields=["password"])
    if env_password is not None and password_file.exists():
        password_file.unlink()  # the environment holds the password now; a stale file would mislead
    return user, created


def _write_secret(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that already existed


@transaction.atomic
def ensure_licence(*, actor: Any, spec: DemoLicence, text: str) -> Licence:
    licence = Licence.objects.filter(spdx_id=spec.spdx_id, licensor=spec.licensor).first()
    if licence is None:
        licence = Licence.objects.create(
            spdx_id=spec.spdx_id, name=spec.name, url=spec.url, licensor=spec.licensor, attribution=spec.attribution,
            text=text,
        )
        record_event(actor=actor, action="licence.created", obj=licence,
                     data={"spdx_id": spec.spdx_id, "licensor": spec.licensor})
    return licence


@transaction.atomic
def ensure_collection(*, actor: Any) -> tuple[Collection, bool]:
    existing = Collection.objects.filter(slug=DEMO_COLLECTION_SLUG).first()
    if existing is not None:
        return existing, False
    collection = services.create_collection(
        actor=actor, slug=DEMO_COLLECTION_SLUG, name="Demo",
        description="Real, licensed sample models, published through the full review flow.",
    )
    return collection, True


def _validation_report(metrics: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    return {
        "checked_by": "load_demo",
        "parser": f"trimesh {trimesh.__version__}",
        "gltf_version": document.get("asset", {}).get("version"),
        "generator": document.get("asset", {}).get("generator", ""),
        "triangles": metrics["triangle_count"],
        "problems": [],
    }


@transaction.atomic
def create_demo_asset(*, actor: Any, collection: Collection, spec: DemoAsset, licence: Licence) -> Asset:
    """One asset, from draft to published: version, variants, the GLB, validation, quality, cost, review."""
    document = glb_document(spec.path)
    started = time.process_time()
    metrics = measure(spec.path)
    measure_seconds = time.process_time() - started

    asset = services.create_asset(
        actor=actor, collection=collection, slug=spec.slug, name=spec.name, description=spec.description,
        category=spec.category, tags=spec.tags, licence=licence,
    )
    version = services.create_version(
        actor=actor, asset=asset, notes=f"Imported from catalog/demo/{spec.filename}.",
        metadata={"units": "m", "up_axis": "Y", "bounds": metrics["bounds"], "source": f"catalog/demo/{spec.filename}"},
    )
    variant_names = ["default"]
    for index, name in enumerate(material_variants(document)):
        services.add_variant(actor=actor, version=version, name=name, kind=Variant.Kind.MATERIAL,
                             attributes={"khr_materials_variants_index": index, "file": spec.filename})
        variant_names.append(name)
    representations: list[Representation] = []
    for variant_name in variant_names:
        # Every variant lives in the same file (selected by KHR_materials_variants): one blob, many rows.
        with spec.path.open("rb") as stream:
            representations.append(services.add_representation(
                actor=actor, version=version, stream=stream, filename=spec.filename, variant_name=variant_name,
                triangle_count=metrics["triangle_count"], screen_size=1.0,
            ))
    report = _validation_report(metrics, document)
    for representation in representations:
        services.set_validation(actor=actor, representation=representation,
                                status=Representation.Validation.VALID, report=report)
    services.record_quality(actor=actor, version=version, **metrics)
    services.record_cost(actor=actor, version=version, kind="postprocess", source="load_demo: quality metrics",
                         cpu_seconds=round(measure_seconds, 3))
    services.record_cost(actor=actor, version=version, kind="storage", source="load_demo",
                         storage_bytes=services.stored_bytes(version))
    services.submit_version(actor=actor, version=version)
    services.approve_version(actor=actor, version=version, reason="Demo content: licence and files checked.")
    publish_version(actor=actor, version=version)
    asset.refresh_from_db()
    return asset


def _is_loaded(collection: Collection, slug: str) -> bool:
    return AssetVersion.objects.filter(
        asset__collection=collection, asset__slug=slug, state=AssetVersion.State.PUBLISHED
    ).exists()


def request_thumbnails(*, actor: Any, collection: Collection) -> list[str]:
    """Queue a thumbnail render (the worker's `reconstruction.render_thumbnail` task, asked for by name so the
    catalog does not import the renderer) for each published demo asset that has none yet."""
    from config.celery import app

    versions = list(AssetVersion.objects.filter(
        asset__collection=collection, asset__thumbnail__isnull=True, state=AssetVersion.State.PUBLISHED,
    ).select_related("asset"))
    for version in versions:
        app.send_task("reconstruction.render_thumbnail", args=[version.pk, actor.pk], queue="cpu")
    return [v.asset.slug for v in versions]


def load_demo(*, password_file: Path | None = None, thumbnails: bool = True,
              log: Callable[[str], None] = lambda _: None) -> DemoResult:
    """Roles, the admin login and the demo collection with its published assets; a no-op when all exist
    (apart from asking the worker again for thumbnails it has not rendered yet)."""
    result = DemoResult()
    ensure_role_groups()
    result.password_file = password_file or Path(settings.VAR_DIR) / "admin-password.txt"
    admin, result.admin_created = ensure_admin(password_file=result.password_file)
    collection, result.collection_created = ensure_collection(actor=admin)
    for spec in DEMO_ASSETS:
        if _is_loaded(collection, spec.slug):
            result.assets_present.append(spec.slug)
            continue
        if Asset.objects.filter(collection=collection, slug=spec.slug).exists():
            raise Duplicate(
                f"The demo collection has an asset '{spec.slug}' that is not published; "
                f"delete or rename it, then run load_demo again."
            )
        licence = ensure_licence(actor=admin, spec=spec.licence, text=spec.licence_file.read_text(encoding="utf-8"))
        log(f"Loading {spec.name} from {spec.filename}…")
        create_demo_asset(actor=admin, collection=collection, spec=spec, licence=licence)
        result.assets_created.append(spec.slug)
    if thumbnails:
        result.thumbnails_requested = request_thumbnails(actor=admin, collection=collection)
    return result
