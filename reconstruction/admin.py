"""Admin pages of reconstruction jobs: read-only, with progress bars and the log tail; cancel and retry go
through the services, so the admin writes the same audit events as the API. Learned models are read-only too:
they come from the engine's model registry (`manage.py sync_models`)."""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from catalog.admin import AssetVersionAdmin
from catalog.models import AssetVersion
from config.problems import DomainError
from reconstruction import selectors, services
from reconstruction.engine.postprocess.presets import PRESETS
from reconstruction.models import LearnedModel, ReconstructionJob
from reconstruction.postprocess import request_postprocess


@admin.register(ReconstructionJob)
class ReconstructionJobAdmin(admin.ModelAdmin):
    list_display = ("id", "backend", "asset", "state", "progress_bar", "stage", "queue", "attempts", "created_by",
                    "created_at")
    list_filter = ("state", "backend", "queue", "cancel_requested")
    search_fields = ("id", "idempotency_key", "asset__slug", "capture__name", "backend")
    date_hierarchy = "created_at"
    list_select_related = ("asset", "created_by")
    actions = ("cancel_jobs", "retry_jobs")
    readonly_fields = ("progress_bar", "log", *[f.name for f in ReconstructionJob._meta.fields])
    fieldsets = (
        (None, {"fields": ("id", "state", "progress_bar", "stage", "error_code", "error", "cancel_requested")}),
        ("Request", {"fields": ("capture", "asset", "parent_version", "backend", "backend_version", "parameters",
                                "queue", "idempotency_key", "created_by", "created_at")}),
        ("Execution", {"fields": ("attempts", "max_attempts", "worker", "heartbeat_at", "started_at", "finished_at",
                                  "resource_usage", "produced_version", "log")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReconstructionJob]:
        return selectors.jobs_visible_to(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs are submitted through the API, which validates them against the backend

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False if obj is not None else super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the audit trail points at jobs

    @admin.display(description="progress")
    def progress_bar(self, job: ReconstructionJob) -> str:
        percent = round(job.progress * 100)
        return format_html('<progress max="100" value="{}" title="{}%">{}%</progress> {}%', percent, percent, percent,
                           percent)

    @admin.display(description="log tail")
    def log(self, job: ReconstructionJob) -> str:
        return format_html('<pre style="max-height:30em;overflow:auto">{}</pre>', job.log_tail or "(empty)")

    def _apply(self, request: HttpRequest, queryset: QuerySet[ReconstructionJob], service: Any, verb: str) -> None:
        done, refused = 0, []
        for job in queryset.order_by("pk"):
            try:
                service(request.user, job=job)
                done += 1
            except DomainError as exc:
                refused.append(f"job {job.pk}: {exc.detail}")
        if done:
            self.message_user(request, f"{verb} {done} job(s).", messages.SUCCESS)
        for line in refused:
            self.message_user(request, line, messages.WARNING)

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[ReconstructionJob]) -> None:
        self._apply(request, queryset, services.cancel_job, "Cancelled (or asked to stop)")

    @admin.action(description="Retry selected failed or cancelled jobs")
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[ReconstructionJob]) -> None:
        self._apply(request, queryset, services.retry_job, "Re-queued")


class JobsUsingModelInline(admin.TabularInline):
    """The jobs that ran with the model and the versions they made (only those the viewer may see)."""

    model = ReconstructionJob.learned_models.through
    fk_name = "learnedmodel"
    verbose_name = "job that used this model"
    verbose_name_plural = "jobs and versions made with this model"
    fields = readonly_fields = ("job", "produced_version")
    extra = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        visible = selectors.jobs_visible_to(request.user).values("pk")
        return (
            super().get_queryset(request)
            .filter(reconstructionjob__in=visible)
            .select_related("reconstructionjob__asset", "reconstructionjob__produced_version__asset")
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="job")
    def job(self, link: Any) -> str:
        job = link.reconstructionjob
        url = reverse("admin:reconstruction_reconstructionjob_change", args=[job.pk])
        return format_html('<a href="{}">job {}</a> ({} on {})', url, job.pk, job.backend, job.asset)

    @admin.display(description="version")
    def produced_version(self, link: Any) -> str:
        version = link.reconstructionjob.produced_version
        if version is None:
            return "—"
        url = reverse("admin:catalog_assetversion_change", args=[version.pk])
        return format_html('<a href="{}">{}</a>', url, version)


@admin.register(LearnedModel)
class LearnedModelAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "architecture", "sha256_short", "size", "available", "metrics_summary",
                    "registered_at")
    list_filter = ("available", "architecture", "name")
    search_fields = ("name", "sha256", "architecture")
    readonly_fields = [f.name for f in LearnedModel._meta.fields]
    inlines = (JobsUsingModelInline,)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # registered by training into the engine's registry, then `manage.py sync_models`

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False if obj is not None else super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # provenance of published versions cites these rows

    @admin.display(description="sha256", ordering="sha256")
    def sha256_short(self, model: LearnedModel) -> str:
        return format_html('<code title="{}">{}</code>', model.sha256, model.sha256[:12])

    @admin.display(description="size", ordering="size_bytes")
    def size(self, model: LearnedModel) -> str:
        return f"{model.size_bytes / 1e6:.1f} MB"

    @admin.display(description="metrics")
    def metrics_summary(self, model: LearnedModel) -> str:
        return ", ".join(f"{key}={value}" for key, value in sorted(model.metrics.items())) or "—"


def _postprocess_action(preset: str) -> Any:
    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[AssetVersion]) -> None:
        modeladmin.run_service(  # type: ignore[attr-defined]
            request, queryset, lambda v: request_postprocess(request.user, version=v, preset=preset),
            f"version(s) queued for '{preset}' post-processing (the result arrives as a new version)",
        )

    action.__name__ = f"postprocess_{preset.replace('-', '_')}"
    return admin.action(description=f"Post-process selected versions for {preset}")(action)


# Asset managers re-run post-processing from the catalog's version page; the catalog itself stays unaware of
# the engine, so the actions are added from here.
AssetVersionAdmin.actions = [*AssetVersionAdmin.actions, *(_postprocess_action(p) for p in PRESETS)]
