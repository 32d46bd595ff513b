"""Every change to the catalog goes through these functions.

Each takes the acting user first (keyword-only), checks permission, locks the rows it changes in primary
key order, validates the rule, writes its audit event in the same transaction, and raises a domain
error from `catalog.errors` when the request breaks a rule.
"""
from __future__ import annotations

import decimal
from collections.abc import Iterable
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone
from PIL import Image

from catalog.capture_checks import StandardRules, analyse_image, check_capture
from catalog.errors import (
    CatalogErrorCode,
    Duplicate,
    InvalidFile,
    InvalidTransition,
    PermissionDenied,
    StaleObject,
    VersionImmutable,
)
from catalog.file_checks import IMAGE_FORMATS
from catalog.models import (
    LOD,
    Asset,
    AssetVersion,
    Capture,
    CaptureImage,
    CaptureStandard,
    Collection,
    CostRecord,
    QualityReport,
    Representation,
    StoredFile,
    Tag,
    Variant,
)
from catalog.permissions import Action, Principal, Role, assign_role, can, remove_role
from catalog.storage import blobs_cleaned_on_failure, store_stream
from governance.attestations import attest_version
from governance.audit import diff, record_event

ASSET_TRANSITIONS: dict[str, set[str]] = {
    Asset.State.DRAFT: {Asset.State.IN_REVIEW, Asset.State.ARCHIVED},
    Asset.State.IN_REVIEW: {Asset.State.DRAFT, Asset.State.APPROVED},
    Asset.State.APPROVED: {Asset.State.PUBLISHED, Asset.State.IN_REVIEW},
    Asset.State.PUBLISHED: {Asset.State.DEPRECATED, Asset.State.IN_REVIEW},
    Asset.State.DEPRECATED: {Asset.State.PUBLISHED, Asset.State.ARCHIVED},
    Asset.State.ARCHIVED: set(),
}
# Which action a lifecycle move needs: reviewers approve, managers do the rest.
_TRANSITION_ACTION = {Asset.State.APPROVED: Action.REVIEW}

EDITABLE_ASSET_FIELDS = ("name", "description", "category", "licence")
REPRESENTATION_FORMATS = {c.value for c in Representation.Format}


def require(actor: Any, action: Action, obj: Any) -> None:
    if not can(actor, action, obj):
        raise PermissionDenied(f"You need the '{action}' permission on {obj._meta.verbose_name} '{obj}'.")


def _check_row_version(obj: Any, expected: int | None) -> None:
    if expected is not None and expected != obj.row_version:
        raise StaleObject(
            f"{obj._meta.verbose_name.capitalize()} '{obj}' changed since you read it (revision {expected}, now "
            f"{obj.row_version}); fetch it again and re-apply your change."
        )


def _snapshot(obj: Any, fields: Iterable[str]) -> dict[str, Any]:
    return {f: getattr(obj, f"{f}_id" if obj._meta.get_field(f).is_relation else f) for f in fields}


# Collections and access ------------------------------------------------------------------------


@transaction.atomic
def create_collection(*, actor: Any, slug: str, name: str, description: str = "") -> Collection:
    """Create a collection; its creator becomes its admin. Needs the global add permission."""
    if not (actor.is_superuser or actor.has_perm("catalog.add_collection")):
        raise PermissionDenied("You need the permission to add collections.")
    if Collection.objects.filter(slug=slug).exists():
        raise Duplicate(f"A collection with the slug '{slug}' already exists.")
    collection = Collection.objects.create(slug=slug, name=name, description=description, owner=actor)
    assign_role(actor, Role.ADMIN, collection)
    record_event(actor=actor, action="collection.created", obj=collection, changes=diff({}, {"slug": slug, "name": name}))
    return collection


@transaction.atomic
def grant_role(*, actor: Any, principal: Principal, role: Role, obj: Collection | Asset) -> list[str]:
    """Give a user or group a role on a collection or asset; audited as permission.changed."""
    require(actor, Action.GRANT, obj if isinstance(obj, Collection) else obj.collection)
    codenames = assign_role(principal, Role(role), obj)
    record_event(
        actor=actor, action="permission.changed", obj=obj,
        asset_id=obj.pk if isinstance(obj, Asset) else None,
        data={"grant": str(role), "principal": _principal_label(principal), "permissions": codenames},
    )
    return codenames


@transaction.atomic
def revoke_role(*, actor: Any, principal: Principal, role: Role, obj: Collection | Asset) -> list[str]:
    require(actor, Action.GRANT, obj if isinstance(obj, Collection) else obj.collection)
    codenames = remove_role(principal, Role(role), obj)
    record_event(
        actor=actor, action="permission.changed", obj=obj,
        asset_id=obj.pk if isinstance(obj, Asset) else None,
        data={"revoke": str(role), "principal": _principal_label(principal), "permissions": codenames},
    )
    return codenames


def _principal_label(principal: Principal) -> str:
    return f"group:{principal.name}" if isinstance(principal, Group) else f"user:{principal.get_username()}"


# Assets ----------------------------------------------------------------------------------------


def _tags(names: Iterable[str]) -> list[Tag]:
    clean = sorted({n.strip().lower() for n in names if n and n.strip()})
    existing = {t.name: t for t in Tag.objects.filter(name__in=clean)}
    Tag.objects.bulk_create([Tag(name=n) for n in clean if n not in existing], ignore_conflicts=True)
    return list(Tag.objects.filter(name__in=clean))


@transaction.atomic
def create_asset(
    *,
    actor: Any,
    collection: Collection,
    slug: str,
    name: str,
    description: str = "",
    category: str = "",
    tags: Iterable[str] = (),
    licence: Any = None,
) -> Asset:
    require(actor, Action.CONTRIBUTE, collection)
    if Asset.objects.filter(collection=collection, slug=slug).exists():
        raise Duplicate(f"The collection '{collection.slug}' already has an asset with the slug '{slug}'.")
    try:
        with transaction.atomic():
            asset = Asset.objects.create(
                collection=collection, slug=slug, name=name, description=description, category=category,
                owner=actor, licence=licence,
            )
    except IntegrityError as exc:  # a concurrent request took the slug between our check and insert
        raise Duplicate(f"The collection '{collection.slug}' already has an asset with the slug '{slug}'.") from exc
    tag_rows = _tags(tags)
    asset.tags.set(tag_rows)
    record_event(
        actor=actor, action="asset.created", obj=asset, asset_id=asset.pk,
        changes=diff({}, {**_snapshot(asset, ("slug", "name", "category", "licence")), "tags": [t.name for t in tag_rows]}),
    )
    return asset


@transaction.atomic
def update_asset(*, actor: Any, asset: Asset, expected_row_version: int | None = None, tags: Iterable[str] | None = None,
                 **fields: Any) -> Asset:
    """Edit an asset's descriptive fields; `expected_row_version` (from If-Match) guards lost updates."""
    unknown = set(fields) - set(EDITABLE_ASSET_FIELDS)
    if unknown:
        raise ValueError(f"Not editable: {', '.join(sorted(unknown))}")
    asset = Asset.objects.select_for_update().get(pk=asset.pk)
    require(actor, Action.MANAGE, asset)
    _check_row_version(asset, expected_row_version)
    before = {**_snapshot(asset, fields), "tags": sorted(asset.tags.values_list("name", flat=True))}
    for field, value in fields.items():
        setattr(asset, field, value)
    after_tags = before["tags"]
    if tags is not None:
        tag_rows = _tags(tags)
        asset.tags.set(tag_rows)
        after_tags = sorted(t.name for t in tag_rows)
    changes = diff(before, {**_snapshot(asset, fields), "tags": after_tags})
    if changes:
        asset.row_version = F("row_version") + 1
        asset.save()
        asset.refresh_from_db()
        record_event(actor=actor, action="asset.updated", obj=asset, asset_id=asset.pk, changes=changes)
    return asset


def set_thumbnail(*, actor: Any, asset: Asset, stream: IO[bytes], filename: str) -> Asset:
    """Store a PNG/JPEG preview of the asset (by content, once) and make it the asset's thumbnail."""
    with blobs_cleaned_on_failure(), transaction.atomic():
        asset = Asset.objects.select_for_update().get(pk=asset.pk)
        require(actor, Action.CONTRIBUTE, asset)
        blob, kind = store_stream(stream, filename=filename)
        if kind.format not in IMAGE_FORMATS:
            raise InvalidTransition(f"A thumbnail must be an image, not a {kind.format.upper()} file.")
        if asset.thumbnail_id == blob.pk:
            return asset
        previous = asset.thumbnail.sha256 if asset.thumbnail_id else None
        asset.thumbnail = blob
        asset.save(update_fields=["thumbnail", "updated_at"])
        record_event(
            actor=actor, action="asset.thumbnail_set", obj=asset, asset_id=asset.pk,
            changes={"thumbnail": [previous, blob.sha256]},
        )
        return asset


@transaction.atomic
def transition_asset(*, actor: Any, asset: Asset, to_state: str, reason: str = "",
                     expected_row_version: int | None = None) -> Asset:
    """Move an asset along its lifecycle (draft → in_review → approved → published → deprecated → archived)."""
    asset = Asset.objects.select_for_update().get(pk=asset.pk)
    require(actor, _TRANSITION_ACTION.get(to_state, Action.MANAGE), asset)
    _check_row_version(asset, expected_row_version)
    if to_state not in ASSET_TRANSITIONS.get(asset.state, set()):
        allowed = ", ".join(sorted(ASSET_TRANSITIONS.get(asset.state, set()))) or "none (it is final)"
        raise InvalidTransition(f"An asset in state '{asset.state}' cannot move to '{to_state}'; allowed: {allowed}.")
    return _set_asset_state(actor=actor, asset=asset, to_state=to_state, reason=reason)


def _set_asset_state(*, actor: Any, asset: Asset, to_state: str, reason: str = "") -> Asset:
    before = asset.state
    asset.state = to_state
    asset.row_version = F("row_version") + 1
    asset.save(update_fields=["state", "row_version", "updated_at"])
    asset.refresh_from_db(fields=["row_version"])
    record_event(
        actor=actor, action=f"asset.{to_state}", obj=asset, asset_id=asset.pk,
        changes={"state": [before, to_state]}, data={"reason": reason} if reason else None,
    )
    return asset


# Versions --------------------------------------------------------------------------------------


@transaction.atomic
def create_version(*, actor: Any, asset: Asset, parent: AssetVersion | None = None, notes: str = "",
                   captures: Iterable[Capture] = (), metadata: dict[str, Any] | None = None) -> AssetVersion:
    """Open a new version (with a default variant and LOD0) that files can be added to until it is submitted."""
    asset = Asset.objects.select_for_update().get(pk=asset.pk)
    require(actor, Action.CONTRIBUTE, asset)
    if asset.state == Asset.State.ARCHIVED:
        raise InvalidTransition(f"Asset '{asset}' is archived; it takes no new versions.")
    if parent is not None and parent.asset_id != asset.pk:
        raise InvalidTransition("A version's parent must be a version of the same asset.")
    captures = list(captures)
    for capture in captures:
        if capture.collection_id != asset.collection_id:
            raise InvalidTransition(f"Capture '{capture}' belongs to another collection.")
    number = (asset.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = AssetVersion.objects.create(
        asset=asset, number=number, parent=parent, notes=notes, metadata=metadata or {}, created_by=actor
    )
    version.captures.set(captures)
    variant = Variant.objects.create(version=version, name="default")
    LOD.objects.create(variant=variant, level=0)
    record_event(
        actor=actor, action="version.created", obj=version, asset_id=asset.pk,
        data={"number": number, "parent": parent.pk if parent else None, "captures": [c.pk for c in captures]},
    )
    return version


def _lock_open_version(version: AssetVersion) -> AssetVersion:
    version = AssetVersion.objects.select_for_update().select_related("asset").get(pk=version.pk)
    if not version.is_mutable:
        raise VersionImmutable(f"Version {version} is {version.state}; it is immutable. Open a new version instead.")
    return version


@transaction.atomic
def add_variant(*, actor: Any, version: AssetVersion, name: str, kind: str = Variant.Kind.OTHER,
                attributes: dict[str, Any] | None = None) -> Variant:
    version = _lock_open_version(version)
    require(actor, Action.CONTRIBUTE, version)
    if version.variants.filter(name=name).exists():
        raise Duplicate(f"Version {version} already has a variant named '{name}'.")
    variant = Variant.objects.create(version=version, name=name, kind=kind, attributes=attributes or {})
    LOD.objects.create(variant=variant, level=0)
    record_event(actor=actor, action="variant.created", obj=variant, asset_id=version.asset_id,
                 data={"name": name, "kind": kind, "attributes": attributes or {}})
    return variant


def add_representation(
    *,
    actor: Any,
    version: AssetVersion,
    stream: IO[bytes],
    filename: str,
    variant_name: str = "default",
    lod_level: int = 0,
    role: str = Representation.Role.MODEL,
    triangle_count: int | None = None,
    screen_size: float | None = None,
    restricted: bool = False,
) -> Representation:
    """Store a file by content and attach it to a LOD of an open version (the LOD is created if new)."""
    with blobs_cleaned_on_failure(), transaction.atomic():
        version = _lock_open_version(version)
        require(actor, Action.CONTRIBUTE, version)
        variant = version.variants.filter(name=variant_name).first()
        if variant is None:
            raise InvalidTransition(f"Version {version} has no variant named '{variant_name}'.")
        blob, kind = store_stream(stream, filename=filename)
        if kind.format not in REPRESENTATION_FORMATS:
            raise InvalidTransition(f"A {kind.format.upper()} file cannot be a representation.")
        lod, _ = LOD.objects.get_or_create(variant=variant, level=lod_level)
        if triangle_count is not None or screen_size is not None:
            lod.triangle_count = triangle_count if triangle_count is not None else lod.triangle_count
            lod.screen_size = screen_size if screen_size is not None else lod.screen_size
            lod.save()
        if lod.representations.filter(filename=filename).exists():
            raise Duplicate(f"LOD{lod_level} of '{variant_name}' already has a file named '{filename}'.")
        representation = Representation.objects.create(
            lod=lod, file=blob, filename=filename, format=kind.format, role=role, restricted=restricted,
        )
        record_event(
            actor=actor, action="representation.added", obj=representation, asset_id=version.asset_id,
            data={"sha256": blob.sha256, "size": blob.size, "format": kind.format, "variant": variant_name,
                  "lod": lod_level, "role": role},
        )
        return representation


@transaction.atomic
def set_validation(*, actor: Any, representation: Representation, status: str, report: dict[str, Any]) -> Representation:
    """Record an outside validator's verdict on a file (allowed on submitted versions: it is not their content)."""
    representation = Representation.objects.select_for_update().get(pk=representation.pk)
    before = representation.validation_status
    representation.validation_status = status
    representation.validation_report = report
    representation.save(update_fields=["validation_status", "validation_report"])
    record_event(actor=actor, action="representation.validated", obj=representation,
                 asset_id=representation.lod.variant.version.asset_id,
                 changes={"validation_status": [before, status]})
    return representation


@transaction.atomic
def submit_version(*, actor: Any, version: AssetVersion) -> AssetVersion:
    """Freeze a version for review; it needs at least one model file. The asset goes to review with it."""
    version = _lock_open_version(version)
    require(actor, Action.CONTRIBUTE, version)
    if not Representation.objects.filter(lod__variant__version=version, role=Representation.Role.MODEL).exists():
        raise InvalidTransition(f"Version {version} has no model file; add one before submitting.")
    version.state = AssetVersion.State.SUBMITTED
    version.submitted_at = timezone.now()
    version.row_version = F("row_version") + 1
    version.save(update_fields=["state", "submitted_at", "row_version"])
    version.refresh_from_db(fields=["row_version"])
    attested = attest_version(version=version)  # provenance is signed in the same transaction
    from governance.review import enqueue_review  # governance.review calls back into this module

    enqueue_review(version=version, submitted_by=actor)  # the review queue item, in the same transaction
    record_event(actor=actor, action="version.submitted", obj=version, asset_id=version.asset_id,
                 changes={"state": [AssetVersion.State.OPEN, AssetVersion.State.SUBMITTED]},
                 data={"attestations": [a.pk for a in attested]})
    asset = Asset.objects.select_for_update().get(pk=version.asset_id)
    if asset.state == Asset.State.DRAFT:
        _set_asset_state(actor=actor, asset=asset, to_state=Asset.State.IN_REVIEW, reason=f"version {version.number} submitted")
    return version


def _decide_version(*, actor: Any, version: AssetVersion, approve: bool, reason: str) -> AssetVersion:
    version = AssetVersion.objects.select_for_update().get(pk=version.pk)
    require(actor, Action.REVIEW, version)
    if version.state != AssetVersion.State.SUBMITTED:
        raise InvalidTransition(f"Only a submitted version can be reviewed; {version} is {version.state}.")
    if version.created_by_id == actor.pk and not actor.is_superuser:
        raise PermissionDenied("You cannot review a version you created yourself.")
    from governance.review import sync_direct_decision  # the review queue follows (or refuses) a direct decision

    sync_direct_decision(actor=actor, version=version, approve=approve, reason=reason)
    to_state = AssetVersion.State.APPROVED if approve else AssetVersion.State.REJECTED
    version.state = to_state
    version.row_version = F("row_version") + 1
    version.save(update_fields=["state", "row_version"])
    version.refresh_from_db(fields=["row_version"])
    record_event(actor=actor, action="version.approved" if approve else "version.rejected", obj=version,
                 asset_id=version.asset_id, changes={"state": [AssetVersion.State.SUBMITTED, to_state]},
                 data={"reason": reason} if reason else None)
    asset = Asset.objects.select_for_update().get(pk=version.asset_id)
    if approve and asset.state == Asset.State.IN_REVIEW:
        _set_asset_state(actor=actor, asset=asset, to_state=Asset.State.APPROVED, reason=f"version {version.number} approved")
    return version


@transaction.atomic
def approve_version(*, actor: Any, version: AssetVersion, reason: str = "") -> AssetVersion:
    return _decide_version(actor=actor, version=version, approve=True, reason=reason)


@transaction.atomic
def reject_version(*, actor: Any, version: AssetVersion, reason: str) -> AssetVersion:
    if not reason.strip():
        raise InvalidTransition("Say why the version is rejected, so its author can fix it.")
    return _decide_version(actor=actor, version=version, approve=False, reason=reason)


# Quality and cost ------------------------------------------------------------------------------


def price(*, gpu_seconds: float = 0, cpu_seconds: float = 0, storage_bytes: int = 0, postprocess_seconds: float = 0,
          human_minutes: float = 0, rates: dict[str, float] | None = None) -> decimal.Decimal:
    """The cost of a piece of work at the configured rates (storage is paid for the whole retention)."""
    r = rates or settings.ASSAY_RATES
    amount = (
        gpu_seconds / 3600 * r["gpu_hour"]
        + (cpu_seconds + postprocess_seconds) / 3600 * r["cpu_hour"]
        + storage_bytes / 1e9 * r["storage_gb_month"] * r["retention_months"]
        + human_minutes / 60 * r["human_hour"]
    )
    return decimal.Decimal(str(round(amount, 4)))


@transaction.atomic
def record_cost(*, actor: Any, version: AssetVersion, kind: str, source: str = "", **usage: Any) -> CostRecord:
    rates = dict(settings.ASSAY_RATES)
    record = CostRecord.objects.create(
        version=version, kind=kind, source=source, rates=rates, amount=price(rates=rates, **usage), **usage
    )
    record_event(actor=actor, action="cost.recorded", obj=record, asset_id=version.asset_id,
                 data={"kind": kind, "amount": str(record.amount), **usage})
    return record


@transaction.atomic
def record_quality(*, actor: Any, version: AssetVersion, **values: Any) -> QualityReport:
    report, _ = QualityReport.objects.update_or_create(version=version, defaults=values)
    record_event(actor=actor, action="quality.recorded", obj=report, asset_id=version.asset_id,
                 data={"metrics": values.get("metrics", {}), "triangle_count": values.get("triangle_count")})
    return report


def stored_bytes(version: AssetVersion) -> int:
    """Bytes the version's distinct files occupy (a blob shared by two files counts once)."""
    ids = Representation.objects.filter(lod__variant__version=version).values("file_id")
    return sum(StoredFile.objects.filter(pk__in=ids).values_list("size", flat=True))



# Captures --------------------------------------------------------------------------------------


def _rules(standard: CaptureStandard) -> StandardRules:
    return StandardRules(
        min_views=standard.min_views, min_short_side_px=standard.min_short_side_px, min_sharpness=standard.min_sharpness,
        max_clipped_fraction=standard.max_clipped_fraction, min_neighbour_similarity=standard.min_neighbour_similarity,
        required_metadata=tuple(standard.required_metadata or ()),
    )


def default_capture_standard() -> CaptureStandard:
    standard, _ = CaptureStandard.objects.get_or_create(name="default")
    return standard


CAPTURE_FIELDS = ("device", "lens", "focal_length_mm", "lighting", "scale_reference", "units", "category")


def create_capture(
    *,
    actor: Any,
    collection: Collection,
    name: str,
    images: Iterable[tuple[str, IO[bytes]]],
    masks: Iterable[tuple[str, IO[bytes]]] = (),
    standard: CaptureStandard | None = None,
    metadata: dict[str, Any] | None = None,
    **fields: Any,
) -> Capture:
    """Store a shoot's images by content, check them against the capture standard and keep the per-image report.

    `masks` are optional foreground masks, matched to images by file stem (`masks/0001.png` ↔ `0001.jpg`).
    A capture that fails its standard is still kept (with the reasons), so the photographer sees what to redo.
    """
    unknown = set(fields) - set(CAPTURE_FIELDS)
    if unknown:
        raise ValueError(f"Unknown capture fields: {', '.join(sorted(unknown))}")
    require(actor, Action.CONTRIBUTE, collection)
    standard = standard or default_capture_standard()
    with blobs_cleaned_on_failure(), transaction.atomic():
        capture = Capture.objects.create(
            collection=collection, name=name, standard=standard, metadata=metadata or {}, created_by=actor, **fields
        )
        analyses = []
        names: set[str] = set()
        for filename, stream in images:
            if filename in names:
                raise Duplicate(f"Two images are named '{filename}'; names must be unique within a capture.")
            names.add(filename)
            blob, kind = store_stream(stream, filename=filename)
            if kind.format not in IMAGE_FORMATS:
                raise InvalidFile(f"'{filename}' is a {kind.format.upper()} file, not a JPEG or PNG photo.",
                                  code=CatalogErrorCode.UNSUPPORTED_FILE)
            stream.seek(0)
            analysis = analyse_image(stream, filename=filename, sha256=blob.sha256)
            analyses.append((analysis, blob))
        report = check_capture([a for a, _ in analyses], {**(metadata or {}), **fields}, _rules(standard))
        mask_blobs = _store_masks(masks, {a.filename: (a.width, a.height) for a, _ in analyses})
        CaptureImage.objects.bulk_create([
            CaptureImage(capture=capture, file=blob, filename=a.filename, width=a.width, height=a.height, exif=a.exif,
                         problems=a.problems, mask=mask_blobs.get(a.filename))
            for a, blob in analyses
        ])
        capture.check_status = report["status"]
        capture.check_report = report
        capture.save(update_fields=["check_status", "check_report"])
        record_event(actor=actor, action="capture.created", obj=capture,
                     data={"views": len(analyses), "check_status": report["status"], "standard": standard.name,
                           "images": {a.filename: blob.sha256 for a, blob in analyses}})
        return capture


def _store_masks(masks: Iterable[tuple[str, IO[bytes]]], sizes: dict[str, tuple[int, int]]) -> dict[str, StoredFile]:
    """Store each mask by content, matched to its image by file stem; it must be an image of the same size."""
    by_stem = {filename.rsplit(".", 1)[0]: filename for filename in sizes}
    stored: dict[str, StoredFile] = {}
    for mask_name, stream in masks:
        image_name = by_stem.get(mask_name.rsplit(".", 1)[0])
        if image_name is None:
            raise InvalidFile(f"Mask '{mask_name}' matches no image of the capture (masks are matched by file stem).",
                              code=CatalogErrorCode.UNSUPPORTED_FILE)
        if image_name in stored:
            raise Duplicate(f"Two masks are given for image '{image_name}'.")
        blob, kind = store_stream(stream, filename=mask_name)
        if kind.format not in IMAGE_FORMATS:
            raise InvalidFile(f"Mask '{mask_name}' is a {kind.format.upper()} file, not a PNG or JPEG image.",
                              code=CatalogErrorCode.UNSUPPORTED_FILE)
        stream.seek(0)
        with Image.open(stream) as mask_image:
            size = mask_image.size
        if size != sizes[image_name]:
            width, height = sizes[image_name]
            raise InvalidFile(f"Mask '{mask_name}' is {size[0]}×{size[1]} but image '{image_name}' is {width}×{height}.",
                              code=CatalogErrorCode.UNSUPPORTED_FILE)
        stored[image_name] = blob
    if stored and len(stored) != len(sizes):
        missing = sorted(set(sizes) - set(stored))
        raise InvalidFile(f"Masks are given for {len(stored)} of {len(sizes)} images; give one for every image or "
                          f"none (missing: {', '.join(missing[:5])}).", code=CatalogErrorCode.UNSUPPORTED_FILE)
    return stored
