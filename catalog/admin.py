"""The admin for asset managers: every list is permission-filtered, every change goes through the services.

Querysets come from `catalog.selectors` (or the same permission filters), so an asset manager of one
collection never sees another's rows, filter choices included. Saves and bulk actions call the service
functions, which check the object permission, write the audit event and raise domain errors; those are
shown as admin messages and roll the whole request back.
"""
from __future__ import annotations

import decimal
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.staticfiles import finders
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, DecimalField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from catalog import selectors, services
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
from catalog.permissions import Action, asset_filter, can
from catalog.storage import blob_url
from config.problems import DomainError
from governance.audit import record_event
from governance.publishing import publish_version, withdraw_version

MODEL_VIEWER_SCRIPT = "catalog/vendor/model-viewer/model-viewer.min.js"
DEFAULT_CURRENCY = CostRecord._meta.get_field("currency").default


def _is_staff(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and user.is_staff)


def _download_url(representation: Representation) -> str:
    return reverse("catalog-api:representation-download", args=[representation.pk])


def _blob_image_url(blob: StoredFile) -> str:
    """Where a browser can fetch a stored image: a presigned URL on S3, the media URL on local disk."""
    return blob_url(blob, filename=f"{blob.sha256[:12]}") or default_storage.url(blob.storage_name)


def _money(amount: decimal.Decimal | None) -> str:
    return f"{amount or 0:.2f}"


def _cost_table(summary: selectors.CostSummary) -> SafeString:
    if not summary["totals"]:
        return format_html("<em>{}</em>", "No cost recorded.")
    rows = format_html_join(
        "", "<tr><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (row["kind"], _money(row["amount"]), row["currency"], f"{row['gpu_seconds']:.1f}",
             f"{row['cpu_seconds']:.1f}", f"{row['postprocess_seconds']:.1f}", row["storage_bytes"],
             f"{row['human_minutes']:.1f}")
            for row in summary["by_kind"]
        ),
    )
    totals = format_html_join(
        "", "<tr><th>total</th><th>{} {}</th><th colspan='5'>{} records</th></tr>",
        ((_money(t["amount"]), t["currency"], t["records"]) for t in summary["totals"]),
    )
    return format_html(
        "<table><thead><tr><th>kind</th><th>amount</th><th>GPU s</th><th>CPU s</th><th>post-processing s</th>"
        "<th>stored bytes</th><th>human min</th></tr></thead><tbody>{}{}</tbody></table>",
        rows, totals,
    )


class ServiceAdmin(admin.ModelAdmin):
    """Base of the catalog admins: rows come from a permission-filtered selector; nothing is edited or
    deleted behind the services' back (subclasses open exactly the service-backed paths)."""

    show_full_result_count = False  # one COUNT(*) over the whole permitted set is enough

    def visible_to(self, user: Any) -> QuerySet:
        """The rows `user` may see; each subclass names its selector (nothing is visible by default)."""
        return self.model._default_manager.none()

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = self.visible_to(request.user)
        if isinstance(self.list_select_related, (list, tuple)):
            # The changelist skips list_select_related when the selector already joined something.
            queryset = queryset.select_related(*self.list_select_related)
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _is_staff(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_staff(request) and (obj is None or can(request.user, Action.VIEW, obj))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # rows are archived or withdrawn through their lifecycle, never deleted

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # The admin runs the save in one transaction; a domain error rolls it back and is shown, not a 500.
        try:
            return super().changeform_view(request, *args, **kwargs)
        except DomainError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def run_service(self, request: HttpRequest, queryset: QuerySet, service: Callable[[Any], Any], done: str) -> None:
        """Apply a service to each selected row in its own transaction; report successes and each refusal."""
        succeeded = 0
        for obj in queryset:
            try:
                with transaction.atomic():
                    service(obj)
            except DomainError as exc:
                self.message_user(request, f"{obj}: {exc.detail}", messages.ERROR)
            else:
                succeeded += 1
        if succeeded:
            self.message_user(request, f"{succeeded} {done}.", messages.SUCCESS)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The parent page was already permission-checked; its inline rows belong to it.
        return _is_staff(request)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# Collections -----------------------------------------------------------------------------------


class CollectionForm(forms.ModelForm):
    class Meta:
        model = Collection
        fields = ["slug", "name", "description"]


@admin.register(Collection)
class CollectionAdmin(ServiceAdmin):
    visible_to = staticmethod(selectors.collections_visible_to)
    form = CollectionForm
    list_display = ["name", "slug", "owner", "asset_count", "created_at"]
    search_fields = ["name", "slug"]
    readonly_fields = ["owner", "created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(asset_total=Count("assets"))

    @admin.display(description="assets", ordering="asset_total")
    def asset_count(self, obj: Collection) -> int:
        return obj.asset_total

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        user = request.user
        return _is_staff(request) and (user.is_superuser or user.has_perm("catalog.add_collection"))

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["slug", "name", "description"] if obj is None else ["slug", "name", "description", *self.readonly_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else ["slug", "name", "description", *self.readonly_fields]

    def save_model(self, request: HttpRequest, obj: Collection, form: forms.ModelForm, change: bool) -> None:
        created = services.create_collection(
            actor=request.user, slug=form.cleaned_data["slug"], name=form.cleaned_data["name"],
            description=form.cleaned_data.get("description", ""),
        )
        _adopt(obj, created)


def _adopt(form_instance: Any, saved: Any) -> None:
    """Make the admin's unsaved form instance stand for the row a service created (for its redirect and log)."""
    form_instance.pk = saved.pk
    form_instance.__dict__.update({k: v for k, v in saved.__dict__.items() if not k.startswith("_")})
    form_instance._state.adding = False
    form_instance._state.db = saved._state.db


# Assets ----------------------------------------------------------------------------------------


class AssetForm(forms.ModelForm):
    tag_names = forms.CharField(required=False, label="Tags", help_text="Comma-separated, e.g. 'oak, outdoor'.")
    seen_row_version = forms.IntegerField(required=False, widget=forms.HiddenInput)

    class Meta:
        model = Asset
        fields = ["collection", "slug", "name", "description", "category", "licence"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["tag_names"].initial = ", ".join(t.name for t in self.instance.tags.all())
            self.fields["seen_row_version"].initial = self.instance.row_version

    def tag_list(self) -> list[str]:
        return [t.strip() for t in self.cleaned_data.get("tag_names", "").split(",") if t.strip()]


class AssetVersionInline(ReadOnlyInline):
    model = AssetVersion
    fields = ["number", "state", "created_by", "created_at", "submitted_at", "published_at"]
    readonly_fields = fields
    ordering = ["-number"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.versions_visible_to(request.user)


class CollectionVisibleFilter(admin.RelatedOnlyFieldListFilter):
    """Choices limited to the related rows of the rows the user can see (no names of other collections leak)."""


@admin.register(Asset)
class AssetAdmin(ServiceAdmin):
    visible_to = staticmethod(selectors.assets_visible_to)
    form = AssetForm
    list_display = ["thumbnail_image", "name", "slug", "collection", "state", "category", "tag_list", "owner",
                    "latest_version", "cost"]
    list_display_links = ["thumbnail_image", "name"]
    list_select_related = ["collection", "owner", "licence", "thumbnail"]
    list_filter = [
        "state",
        ("collection", CollectionVisibleFilter),
        "category",
        ("licence", admin.RelatedOnlyFieldListFilter),
        ("tags", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["name", "slug", "category", "description"]
    inlines = [AssetVersionInline]
    actions = ["send_to_review", "deprecate", "republish", "archive"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        cost = (
            CostRecord.objects.filter(version__asset=OuterRef("pk"), currency=DEFAULT_CURRENCY)
            .order_by().values("version__asset").annotate(total=Sum("amount")).values("total")
        )
        zero = Value(decimal.Decimal(0), output_field=DecimalField(max_digits=14, decimal_places=4))
        return super().get_queryset(request).annotate(total_cost=Coalesce(Subquery(cost), zero))

    @admin.display(description="thumbnail")
    def thumbnail_image(self, obj: Asset) -> SafeString | str:
        if obj.thumbnail is None:
            return ""
        return format_html("<img src='{}' alt='' width='48' height='48' style='object-fit:contain'>",
                           _blob_image_url(obj.thumbnail))

    @admin.display(description="tags")
    def tag_list(self, obj: Asset) -> str:
        return ", ".join(t.name for t in obj.tags.all())  # prefetched by the selector

    @admin.display(description="latest version", ordering="latest_version_number")
    def latest_version(self, obj: Asset) -> str:
        return f"v{obj.latest_version_number}" if obj.latest_version_number else "—"

    @admin.display(description=f"cost ({DEFAULT_CURRENCY})", ordering="total_cost")
    def cost(self, obj: Asset) -> str:
        return _money(obj.total_cost)

    @admin.display(description="cost of all versions")
    def cost_summary(self, obj: Asset) -> SafeString:
        return _cost_table(selectors.asset_cost(obj))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_staff(request) and selectors.collections_visible_to(request.user, Action.CONTRIBUTE).exists()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_staff(request) and (obj is None or can(request.user, Action.MANAGE, obj))

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        editable = ["name", "description", "category", "licence", "tag_names", "seen_row_version"]
        if obj is None:
            return ["collection", "slug", *editable]
        return ["thumbnail_image", "collection", "slug", "state", "owner", *editable, "cost_summary", "created_at",
                "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        readonly = ["thumbnail_image", "collection", "slug", "state", "owner", "cost_summary", "created_at",
                    "updated_at"]
        if not self.has_change_permission(request, obj):
            readonly += ["name", "description", "category", "licence", "tag_names"]
        return readonly

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "collection":
            kwargs["queryset"] = selectors.collections_visible_to(request.user, Action.CONTRIBUTE)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Asset, form: AssetForm, change: bool) -> None:
        data = form.cleaned_data
        if not change:
            created = services.create_asset(
                actor=request.user, collection=data["collection"], slug=data["slug"], name=data["name"],
                description=data.get("description", ""), category=data.get("category", ""),
                tags=form.tag_list(), licence=data.get("licence"),
            )
            _adopt(obj, created)
            return
        fields = {f: data[f] for f in form.changed_data if f in services.EDITABLE_ASSET_FIELDS}
        tags = form.tag_list() if "tag_names" in form.changed_data else None
        if fields or tags is not None:
            services.update_asset(actor=request.user, asset=obj, expected_row_version=data.get("seen_row_version"),
                                  tags=tags, **fields)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """Tags were set by the service (no `save_m2m`); the version inline is read-only, so saving it writes nothing."""
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def _transition(self, request: HttpRequest, queryset: QuerySet, to_state: str, reason: str) -> None:
        self.run_service(
            request, queryset,
            lambda asset: services.transition_asset(actor=request.user, asset=asset, to_state=to_state, reason=reason),
            f"asset(s) moved to {to_state}",
        )

    @admin.action(description="Send selected assets back to review")
    def send_to_review(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._transition(request, queryset, Asset.State.IN_REVIEW, f"sent to review in the admin by {request.user}")

    @admin.action(description="Deprecate selected assets")
    def deprecate(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._transition(request, queryset, Asset.State.DEPRECATED, f"deprecated in the admin by {request.user}")

    @admin.action(description="Publish selected deprecated assets again")
    def republish(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._transition(request, queryset, Asset.State.PUBLISHED, f"re-published in the admin by {request.user}")

    @admin.action(description="Archive selected assets")
    def archive(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._transition(request, queryset, Asset.State.ARCHIVED, f"archived in the admin by {request.user}")


# Versions, variants, LODs, files ---------------------------------------------------------------


class VariantInline(ReadOnlyInline):
    model = Variant
    fields = ["name", "kind", "attributes"]
    readonly_fields = fields


class VersionForm(forms.ModelForm):
    class Meta:
        model = AssetVersion
        fields = ["asset", "parent", "notes"]


def _representations_of(version: AssetVersion) -> list[Representation]:
    return list(
        Representation.objects.filter(lod__variant__version=version)
        .select_related("lod", "lod__variant", "file")
        .order_by("lod__variant_id", "lod__level", "id")
    )


@admin.register(AssetVersion)
class AssetVersionAdmin(ServiceAdmin):
    """Versions are opened here (through `create_version`) and are read-only afterwards: files come through
    the API or ingest, state changes through the bulk actions."""

    visible_to = staticmethod(selectors.versions_visible_to)
    form = VersionForm
    list_display = ["__str__", "collection", "state", "created_by", "file_count", "file_bytes", "cost",
                    "submitted_at", "published_at"]
    list_filter = ["state", ("asset__collection", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["asset__name", "asset__slug", "notes"]
    list_select_related = ["asset", "asset__collection", "created_by"]
    inlines = [VariantInline]
    actions = ["submit", "approve", "reject", "publish", "withdraw"]
    detail_fields = ["asset", "number", "state", "parent", "created_by", "created_at", "submitted_at", "published_at",
                     "notes", "metadata", "preview", "files", "quality_summary", "cost_summary"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        files = Representation.objects.filter(lod__variant__version=OuterRef("pk")).order_by().values(
            "lod__variant__version")
        cost = CostRecord.objects.filter(version=OuterRef("pk"), currency=DEFAULT_CURRENCY).order_by().values("version")
        zero = Value(decimal.Decimal(0), output_field=DecimalField(max_digits=14, decimal_places=4))
        return super().get_queryset(request).annotate(
            representation_count=Coalesce(Subquery(files.annotate(n=Count("id")).values("n")), 0),
            representation_bytes=Coalesce(Subquery(files.annotate(b=Sum("file__size")).values("b")), 0),
            total_cost=Coalesce(Subquery(cost.annotate(total=Sum("amount")).values("total")), zero),
        )

    @admin.display(description="collection", ordering="asset__collection__slug")
    def collection(self, obj: AssetVersion) -> Collection:
        return obj.asset.collection

    @admin.display(description="files", ordering="representation_count")
    def file_count(self, obj: AssetVersion) -> int:
        return obj.representation_count

    @admin.display(description="bytes", ordering="representation_bytes")
    def file_bytes(self, obj: AssetVersion) -> int:
        return obj.representation_bytes

    @admin.display(description=f"cost ({DEFAULT_CURRENCY})", ordering="total_cost")
    def cost(self, obj: AssetVersion) -> str:
        return _money(obj.total_cost)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_staff(request) and selectors.collections_visible_to(request.user, Action.CONTRIBUTE).exists()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["asset", "parent", "notes"] if obj is None else self.detail_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else self.detail_fields

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[type]:
        return self.inlines if obj is not None else []

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "asset":
            kwargs["queryset"] = selectors.assets_visible_to(request.user, Action.CONTRIBUTE)
        elif db_field.name == "parent":
            kwargs["queryset"] = selectors.versions_visible_to(request.user, Action.CONTRIBUTE)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: AssetVersion, form: VersionForm, change: bool) -> None:
        data = form.cleaned_data
        created = services.create_version(actor=request.user, asset=data["asset"], parent=data.get("parent"),
                                          notes=data.get("notes", ""))
        _adopt(obj, created)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """The default variant and LOD were made by `create_version`; the captures field is not on this form."""
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    @admin.display(description="files")
    def files(self, obj: AssetVersion) -> SafeString:
        representations = _representations_of(obj)
        if not representations:
            return format_html("<em>{}</em>", "No files yet.")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>LOD{} ({} tris, {})</td><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td><td>{}</td>"
            "<td><code title='{}'>{}…</code></td><td>{}</td></tr>",
            (
                (r.lod.variant.name, r.lod.level, r.lod.triangle_count, r.lod.screen_size, _download_url(r), r.filename,
                 r.format, r.role, r.file.size, r.file.sha256, r.file.sha256[:16],
                 r.validation_status + (" · restricted" if r.restricted else ""))
                for r in representations
            ),
        )
        return format_html(
            "<table><thead><tr><th>variant</th><th>LOD</th><th>file (download)</th><th>format</th><th>role</th>"
            "<th>bytes</th><th>sha256</th><th>validation</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="3D preview")
    def preview(self, obj: AssetVersion) -> SafeString:
        model = next((r for r in _representations_of(obj)
                      if r.format == Representation.Format.GLB and r.role == Representation.Role.MODEL), None)
        if model is None:
            return format_html("<em>{}</em>", "No GLB model file to preview.")
        if finders.find(MODEL_VIEWER_SCRIPT) is None:
            return format_html(
                "<em>{}</em>", "The 3D viewer is not installed; run `make frontend` (deploy/install-frontend.sh)."
            )
        variants = [v.name for v in obj.variants.all() if "khr_materials_variants_index" in v.attributes]
        chooser = format_html(
            "<p><label>Material variant: <select data-model-viewer-variants>{}{}</select></label></p>",
            format_html("<option value=''>{}</option>", "default"),
            format_html_join("", "<option value='{}'>{}</option>", ((name, name) for name in variants)),
        ) if variants else ""
        return format_html(
            "<script type='module' src='{}'></script><script src='{}' defer></script>"
            "<model-viewer src='{}' alt='{}' camera-controls auto-rotate shadow-intensity='1' "
            "style='width:640px;max-width:100%;height:420px;background:#f2f2f2'></model-viewer>{}",
            static(MODEL_VIEWER_SCRIPT), static("catalog/admin/preview.js"), _download_url(model), str(obj), chooser,
        )

    @admin.display(description="quality")
    def quality_summary(self, obj: AssetVersion) -> SafeString:
        report = selectors.quality_of(obj)
        if report is None:
            return format_html("<em>{}</em>", "No quality report.")
        return format_html(
            "{} triangles, {} vertices, {} textures, watertight: {}<br>bounds: {}<br>metrics: <code>{}</code>",
            report.triangle_count, report.vertex_count, report.texture_count, report.watertight, report.bounds,
            report.metrics,
        )

    @admin.display(description="cost")
    def cost_summary(self, obj: AssetVersion) -> SafeString:
        return _cost_table(selectors.version_cost(obj))

    @admin.action(description="Submit selected versions for review")
    def submit(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.run_service(request, queryset, lambda v: services.submit_version(actor=request.user, version=v),
                         "version(s) submitted")

    @admin.action(description="Approve selected versions")
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.run_service(request, queryset, lambda v: services.approve_version(actor=request.user, version=v),
                         "version(s) approved")

    @admin.action(description="Reject selected versions…")
    def reject(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._with_reason(request, queryset, "reject", "Reject versions",
                                 lambda v, reason: services.reject_version(actor=request.user, version=v, reason=reason),
                                 "version(s) rejected")

    @admin.action(description="Publish selected versions")
    def publish(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.run_service(request, queryset, lambda v: publish_version(actor=request.user, version=v),
                         "version(s) published")

    @admin.action(description="Withdraw selected versions…")
    def withdraw(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return self._with_reason(request, queryset, "withdraw", "Withdraw versions",
                                 lambda v, reason: withdraw_version(actor=request.user, version=v, reason=reason),
                                 "version(s) withdrawn")

    def _with_reason(self, request: HttpRequest, queryset: QuerySet, action: str, title: str,
                     service: Callable[[Any, str], Any], done: str) -> HttpResponse | None:
        """Ask for the reason on an intermediate page, then apply the service with it."""
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            reason = form.cleaned_data["reason"]
            self.run_service(request, queryset, lambda v: service(v, reason), done)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "objects": list(queryset),
            "form": form,
            "action": action,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/catalog/action_reason.html", context)


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
                             help_text="Shown to the author and kept in the audit trail.")


class LODInline(ReadOnlyInline):
    model = LOD
    fields = ["level", "triangle_count", "screen_size"]
    readonly_fields = fields


@admin.register(Variant)
class VariantAdmin(ServiceAdmin):
    visible_to = staticmethod(selectors.variants_visible_to)
    list_display = ["name", "version", "kind"]
    list_filter = ["kind"]
    list_select_related = ["version", "version__asset"]
    search_fields = ["name", "version__asset__name"]
    fields = ["version", "name", "kind", "attributes"]
    readonly_fields = fields
    inlines = [LODInline]


class RepresentationInline(ReadOnlyInline):
    model = Representation
    fields = ["filename", "format", "role", "size", "sha256", "validation_status", "restricted", "download"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("file")

    @admin.display(description="bytes")
    def size(self, obj: Representation) -> int:
        return obj.file.size

    @admin.display(description="sha256")
    def sha256(self, obj: Representation) -> str:
        return obj.file.sha256

    @admin.display(description="download")
    def download(self, obj: Representation) -> SafeString:
        return format_html("<a href='{}'>{}</a>", _download_url(obj), "download")


@admin.register(LOD)
class LODAdmin(ServiceAdmin):
    visible_to = staticmethod(selectors.lods_visible_to)
    list_display = ["__str__", "level", "triangle_count", "screen_size"]
    list_select_related = ["variant", "variant__version", "variant__version__asset"]
    fields = ["variant", "level", "triangle_count", "screen_size"]
    readonly_fields = fields
    inlines = [RepresentationInline]


@admin.register(Representation)
class RepresentationAdmin(ServiceAdmin):
    visible_to = staticmethod(selectors.representations_visible_to)
    list_display = ["filename", "version", "format", "role", "size", "validation_status", "restricted", "download"]
    list_filter = ["format", "role", "validation_status", "restricted"]
    search_fields = ["filename", "file__sha256"]
    fields = ["lod", "filename", "format", "role", "restricted", "size", "sha256", "media_type", "validation_status",
              "validation_report", "download", "created_at"]
    readonly_fields = fields

    @admin.display(description="version")
    def version(self, obj: Representation) -> AssetVersion:
        return obj.lod.variant.version

    @admin.display(description="bytes", ordering="file__size")
    def size(self, obj: Representation) -> int:
        return obj.file.size

    @admin.display(description="sha256")
    def sha256(self, obj: Representation) -> str:
        return obj.file.sha256

    @admin.display(description="media type")
    def media_type(self, obj: Representation) -> str:
        return obj.file.media_type

    @admin.display(description="download")
    def download(self, obj: Representation) -> SafeString:
        return format_html("<a href='{}'>{}</a>", _download_url(obj), "download")


# Captures --------------------------------------------------------------------------------------


def captures_visible_to(user: Any) -> QuerySet[Capture]:
    """The selector's captures with an image count; the list does not need every image row prefetched."""
    return selectors.captures_visible_to(user).prefetch_related(None).annotate(image_total=Count("images"))


class CaptureImageInline(ReadOnlyInline):
    model = CaptureImage
    show_change_link = False
    fields = ["filename", "width", "height", "problem_list"]
    readonly_fields = fields

    @admin.display(description="problems")
    def problem_list(self, obj: CaptureImage) -> SafeString:
        if not obj.problems:
            return format_html("<span style='color:#2a7'>{}</span>", "ok")
        return format_html("<ul style='margin:0'>{}</ul>", format_html_join(
            "", "<li>{}</li>", ((_problem_text(p),) for p in obj.problems)))


def _problem_text(problem: Any) -> str:
    if isinstance(problem, dict):
        return str(problem.get("message") or problem.get("detail") or problem)
    return str(problem)


@admin.register(Capture)
class CaptureAdmin(ServiceAdmin):
    visible_to = staticmethod(captures_visible_to)
    list_display = ["name", "collection", "check_status", "images", "device", "units", "created_by", "created_at"]
    list_filter = ["check_status", ("collection", admin.RelatedOnlyFieldListFilter), "units"]
    search_fields = ["name", "device", "category"]
    fields = ["collection", "name", "check_status", "standard", "device", "lens", "focal_length_mm", "lighting",
              "scale_reference", "units", "category", "metadata", "report", "created_by", "created_at"]
    readonly_fields = fields
    inlines = [CaptureImageInline]

    @admin.display(description="images", ordering="image_total")
    def images(self, obj: Capture) -> int:
        return obj.image_total

    @admin.display(description="check report")
    def report(self, obj: Capture) -> SafeString:
        report = obj.check_report or {}
        problems = report.get("problems") or report.get("capture_problems") or []
        return format_html(
            "status: <strong>{}</strong>, {} views checked against the standard<br>{}",
            report.get("status", obj.check_status), report.get("views", "?"),
            format_html_join("", "• {}<br>", ((_problem_text(p),) for p in problems)) if problems
            else "No problems with the capture as a whole; see each image below.",
        )


@admin.register(CaptureStandard)
class CaptureStandardAdmin(admin.ModelAdmin):
    """Studio-wide configuration: model permissions apply (superusers and holders of change_capturestandard)."""

    list_display = ["name", "min_views", "min_short_side_px", "min_sharpness", "max_clipped_fraction",
                    "min_neighbour_similarity"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # captures point at their standard

    def save_model(self, request: HttpRequest, obj: CaptureStandard, form: forms.ModelForm, change: bool) -> None:
        with transaction.atomic():
            before = {f: form.initial.get(f) for f in form.changed_data} if change else {}
            obj.save()
            record_event(actor=request.user, action="capture_standard.changed" if change else "capture_standard.created",
                         obj=obj, changes={f: [before.get(f), form.cleaned_data[f]] for f in form.changed_data})


# Quality, cost, tags ---------------------------------------------------------------------------


def _by_version(model: type, user: Any) -> QuerySet:
    return model.objects.filter(asset_filter(user, Action.VIEW, prefix="version__asset__")).select_related(
        "version", "version__asset", "version__asset__collection")


@admin.register(QualityReport)
class QualityReportAdmin(ServiceAdmin):
    visible_to = staticmethod(lambda user: _by_version(QualityReport, user))
    list_display = ["version", "triangle_count", "vertex_count", "texture_count", "watertight", "created_at"]
    list_filter = ["watertight", ("version__asset__collection", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["version__asset__name"]
    fields = ["version", "triangle_count", "vertex_count", "texture_count", "watertight", "bounds", "metrics",
              "created_at"]
    readonly_fields = fields


@admin.register(CostRecord)
class CostRecordAdmin(ServiceAdmin):
    visible_to = staticmethod(lambda user: _by_version(CostRecord, user))
    list_display = ["version", "kind", "amount", "currency", "gpu_seconds", "cpu_seconds", "storage_bytes",
                    "postprocess_seconds", "human_minutes", "source", "created_at"]
    list_filter = ["kind", "currency", ("version__asset__collection", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["version__asset__name", "source"]
    fields = [*list_display, "rates"]
    readonly_fields = fields

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """The total of the filtered rows, per currency, under the title."""
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            totals = changelist.queryset.order_by().values("currency").annotate(total=Sum("amount")).order_by("currency")
            response.context_data["subtitle"] = "Total of these records: " + (
                ", ".join(f"{_money(t['total'])} {t['currency']}" for t in totals) or "0.00")
        return response


@admin.register(Tag)
class TagAdmin(ServiceAdmin):
    """Tags are made by naming them on an asset; here they are listed with how many visible assets carry them."""

    list_display = ["name", "asset_count"]
    search_fields = ["name"]
    fields = ["name"]
    readonly_fields = fields

    @staticmethod
    def visible_to(user: Any) -> QuerySet[Tag]:
        visible = selectors.assets_visible_to(user).values("pk")
        return Tag.objects.filter(assets__in=visible).annotate(asset_total=Count("assets", distinct=True))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_staff(request) and (obj is None or self.get_queryset(request).filter(pk=obj.pk).exists())

    @admin.display(description="assets", ordering="asset_total")
    def asset_count(self, obj: Tag) -> int:
        return obj.asset_total

