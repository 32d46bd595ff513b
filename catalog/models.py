"""The asset catalog: Collection → Asset → AssetVersion → Variant → LOD → Representation, plus captures.

Rows change only through `catalog.services`; versions are immutable once submitted; files are
content-addressed blobs (`StoredFile`) shared by every representation or image that has the same bytes.
"""
from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

# Object permissions a role can hold on a collection (and, more narrowly, on one asset).
COLLECTION_PERMISSIONS = [
    ("contribute_collection", "Create assets, versions, captures and upload files"),
    ("manage_collection", "Change lifecycle states, edit and archive assets"),
    ("review_collection", "Approve or reject submitted versions"),
    ("audit_collection", "Read the audit trail, rights and restricted files"),
    ("grant_collection", "Grant and revoke roles on the collection"),
]
ASSET_PERMISSIONS = [
    ("contribute_asset", "Create versions and upload files"),
    ("manage_asset", "Change lifecycle state and edit"),
    ("review_asset", "Approve or reject submitted versions"),
    ("audit_asset", "Read the audit trail, rights and restricted files"),
]


class Collection(models.Model):
    """A brand, a product line or a show: the unit of access control."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_collections")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    row_version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        ordering = ["slug"]
        permissions = COLLECTION_PERMISSIONS

    def __str__(self) -> str:
        return self.name


class Tag(models.Model):
    name = models.SlugField(max_length=64, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Asset(models.Model):
    class State(models.TextChoices):
        DRAFT = "draft"
        IN_REVIEW = "in_review"
        APPROVED = "approved"
        PUBLISHED = "published"
        DEPRECATED = "deprecated"
        ARCHIVED = "archived"

    collection = models.ForeignKey(Collection, on_delete=models.PROTECT, related_name="assets")
    slug = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=120, blank=True, db_index=True, help_text="Taxonomy path, e.g. furniture/chair.")
    tags = models.ManyToManyField(Tag, blank=True, related_name="assets")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_assets")
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT, db_index=True)
    licence = models.ForeignKey("governance.Licence", null=True, blank=True, on_delete=models.PROTECT, related_name="assets")
    thumbnail = models.ForeignKey("StoredFile", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    row_version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        ordering = ["-updated_at", "-id"]
        permissions = ASSET_PERMISSIONS
        constraints = [models.UniqueConstraint(fields=["collection", "slug"], name="asset_slug_unique_in_collection")]
        indexes = [models.Index(fields=["collection", "state"])]

    def __str__(self) -> str:
        return self.name


class StoredFile(models.Model):
    """A blob stored once under its sha256, whatever number of rows point at it."""

    sha256 = models.CharField(max_length=64, unique=True)
    size = models.BigIntegerField()
    media_type = models.CharField(max_length=100)
    storage_name = models.CharField(max_length=255, help_text="Name in the default storage.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.sha256[:12]} ({self.size} B)"


class CaptureStandard(models.Model):
    """What a capture must meet before reconstruction; configurable per studio in the admin."""

    name = models.CharField(max_length=100, unique=True)
    min_views = models.PositiveIntegerField(default=12)
    min_short_side_px = models.PositiveIntegerField(default=1000)
    min_sharpness = models.FloatField(default=20.0, help_text="Variance of the Laplacian below which an image is blurred.")
    max_clipped_fraction = models.FloatField(default=0.05, help_text="Share of pixels at pure black or white.")
    min_neighbour_similarity = models.FloatField(
        default=0.35, help_text="Overlap hint: each image should resemble one other image at least this much (0–1)."
    )
    required_metadata = models.JSONField(default=list, blank=True, help_text='e.g. ["device", "units"]')

    def __str__(self) -> str:
        return self.name


class Capture(models.Model):
    """The source images of one shoot and how they were taken."""

    class CheckStatus(models.TextChoices):
        PENDING = "pending"
        PASSED = "passed"
        WARNINGS = "warnings"
        FAILED = "failed"

    class Units(models.TextChoices):
        METRES = "m"
        CENTIMETRES = "cm"
        MILLIMETRES = "mm"
        INCHES = "in"

    collection = models.ForeignKey(Collection, on_delete=models.PROTECT, related_name="captures")
    name = models.CharField(max_length=200)
    device = models.CharField(max_length=200, blank=True)
    lens = models.CharField(max_length=200, blank=True)
    focal_length_mm = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.1)])
    lighting = models.CharField(max_length=200, blank=True)
    scale_reference = models.CharField(max_length=200, blank=True, help_text="e.g. 'ruler 30 cm', 'turntable ⌀ 40 cm'.")
    units = models.CharField(max_length=4, choices=Units.choices, default=Units.METRES)
    category = models.CharField(max_length=120, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    standard = models.ForeignKey(CaptureStandard, null=True, blank=True, on_delete=models.PROTECT)
    check_status = models.CharField(max_length=10, choices=CheckStatus.choices, default=CheckStatus.PENDING)
    check_report = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class CaptureImage(models.Model):
    capture = models.ForeignKey(Capture, on_delete=models.CASCADE, related_name="images")
    file = models.ForeignKey(StoredFile, on_delete=models.PROTECT, related_name="capture_images")
    mask = models.ForeignKey(
        StoredFile, null=True, blank=True, on_delete=models.PROTECT, related_name="capture_masks",
        help_text="Optional foreground mask (white = object), the same size as the image.",
    )
    filename = models.CharField(max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    exif = models.JSONField(default=dict, blank=True)
    problems = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["filename"]
        constraints = [models.UniqueConstraint(fields=["capture", "filename"], name="capture_image_unique_name")]

    def __str__(self) -> str:
        return self.filename


class AssetVersion(models.Model):
    """One immutable state of an asset; `number` counts from 1 within the asset."""

    class State(models.TextChoices):
        OPEN = "open"
        SUBMITTED = "submitted"
        APPROVED = "approved"
        REJECTED = "rejected"
        PUBLISHED = "published"
        WITHDRAWN = "withdrawn"

    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=12, choices=State.choices, default=State.OPEN, db_index=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    captures = models.ManyToManyField(Capture, blank=True, related_name="versions")
    notes = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True, help_text="Units, up axis, bounds, source backend…")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    row_version = models.PositiveIntegerField(default=1, editable=False)

    class Meta:
        ordering = ["asset", "-number"]
        constraints = [models.UniqueConstraint(fields=["asset", "number"], name="version_number_unique_in_asset")]

    def __str__(self) -> str:
        return f"{self.asset} v{self.number}"

    @property
    def is_mutable(self) -> bool:
        return self.state == self.State.OPEN


class Variant(models.Model):
    class Kind(models.TextChoices):
        DEFAULT = "default"
        COLOURWAY = "colourway"
        MATERIAL = "material"
        SIZE = "size"
        OTHER = "other"

    version = models.ForeignKey(AssetVersion, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.DEFAULT)
    attributes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["version", "id"]
        constraints = [models.UniqueConstraint(fields=["version", "name"], name="variant_name_unique_in_version")]

    def __str__(self) -> str:
        return f"{self.version} / {self.name}"


class LOD(models.Model):
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="lods")
    level = models.PositiveSmallIntegerField()
    triangle_count = models.PositiveIntegerField(default=0)
    screen_size = models.FloatField(
        default=1.0, help_text="Switch to this level when the object covers less than this share of the screen height."
    )

    class Meta:
        ordering = ["variant", "level"]
        verbose_name = "LOD"
        constraints = [models.UniqueConstraint(fields=["variant", "level"], name="lod_level_unique_in_variant")]

    def __str__(self) -> str:
        return f"{self.variant} LOD{self.level}"


class Representation(models.Model):
    """One file of a LOD: a mesh in some format, a texture, a preview."""

    class Format(models.TextChoices):
        GLB = "glb"
        GLTF = "gltf"
        USDZ = "usdz"
        FBX = "fbx"
        OBJ = "obj"
        PLY = "ply"
        PNG = "png"
        JPEG = "jpeg"
        KTX2 = "ktx2"

    class Role(models.TextChoices):
        MODEL = "model"
        TEXTURE = "texture"
        PREVIEW = "preview"

    class Validation(models.TextChoices):
        PENDING = "pending"
        VALID = "valid"
        WARNINGS = "warnings"
        INVALID = "invalid"

    lod = models.ForeignKey(LOD, on_delete=models.CASCADE, related_name="representations")
    file = models.ForeignKey(StoredFile, on_delete=models.PROTECT, related_name="representations")
    filename = models.CharField(max_length=255)
    format = models.CharField(max_length=8, choices=Format.choices)
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MODEL)
    restricted = models.BooleanField(default=False, help_text="Downloads need the audit permission and are audited.")
    validation_status = models.CharField(max_length=8, choices=Validation.choices, default=Validation.PENDING)
    validation_report = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["lod", "id"]
        constraints = [models.UniqueConstraint(fields=["lod", "filename"], name="representation_unique_name_in_lod")]

    def __str__(self) -> str:
        return self.filename


class QualityReport(models.Model):
    version = models.OneToOneField(AssetVersion, on_delete=models.CASCADE, related_name="quality")
    triangle_count = models.PositiveIntegerField(default=0)
    vertex_count = models.PositiveIntegerField(default=0)
    texture_count = models.PositiveIntegerField(default=0)
    watertight = models.BooleanField(null=True)
    bounds = models.JSONField(default=list, blank=True, help_text="[[minx,miny,minz],[maxx,maxy,maxz]] in metres")
    metrics = models.JSONField(default=dict, blank=True, help_text="Chamfer, F-score, PSNR… as measured by the producer.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Quality of {self.version}"


class CostRecord(models.Model):
    """One costed piece of work on a version; amounts are priced by the rates in force when recorded."""

    class Kind(models.TextChoices):
        RECONSTRUCTION = "reconstruction"
        POSTPROCESS = "postprocess"
        STORAGE = "storage"
        REVIEW = "review"
        UPLOAD = "upload"

    version = models.ForeignKey(AssetVersion, on_delete=models.CASCADE, related_name="costs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    gpu_seconds = models.FloatField(default=0)
    cpu_seconds = models.FloatField(default=0)
    storage_bytes = models.BigIntegerField(default=0)
    postprocess_seconds = models.FloatField(default=0)
    human_minutes = models.FloatField(default=0)
    amount = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    currency = models.CharField(max_length=3, default="USD")
    rates = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=100, blank=True, help_text="e.g. job id, reviewer")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.currency}"


# Direct foreign-key object permissions: guardian queries these without generic joins, so
# "what may this user see" stays one indexed subquery at any scale.
class CollectionUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Collection, on_delete=models.CASCADE)


class CollectionGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Collection, on_delete=models.CASCADE)


class AssetUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Asset, on_delete=models.CASCADE)


class AssetGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Asset, on_delete=models.CASCADE)
