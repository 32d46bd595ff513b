"""Compliance admin: the audit trail (read-only, searchable), tree heads, signing keys and attestations.

Nothing here writes rows itself: key rotation and revocation call `governance.keys`, which audit them.
The trail is filtered with the same selector as the API, so a collection's compliance officer sees only
the events about the assets they may audit.
"""
from __future__ import annotations

import base64
import contextvars
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html

from config.problems import DomainError
from governance import attestations, keys, selectors
from governance.lineage import version_lineage
from governance.models import Attestation, AuditEvent, SignedTreeHead, SigningKey
from governance.tree_heads import head_problem

_viewer: contextvars.ContextVar[Any] = contextvars.ContextVar("governance_admin_viewer", default=None)


def _pretty(value: Any) -> str:
    return format_html("<pre style='white-space: pre-wrap'>{}</pre>", json.dumps(value, indent=2, sort_keys=True,
                                                                                  ensure_ascii=False))


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AssetIdFilter(admin.SimpleListFilter):
    """The assets the visible events are about (the most recent 100)."""

    title = "asset"
    parameter_name = "asset"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        ids = (
            selectors.audit_events_visible_to(request.user).exclude(asset_id=None)
            .order_by("-asset_id").values_list("asset_id", flat=True).distinct()[:100]
        )
        return [(str(i), f"asset {i}") for i in ids]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(asset_id=int(value)) if value and value.isdigit() else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("seq", "occurred_at", "actor_name", "action", "object_type", "object_repr", "asset_id", "ip_address")
    list_filter = (AssetIdFilter, "action", "object_type")
    search_fields = ("actor_name", "action", "object_repr", "=object_id", "=request_id")
    date_hierarchy = "occurred_at"
    ordering = ("-seq",)
    show_full_result_count = False  # no COUNT(*) over the whole trail
    fields = ("seq", "occurred_at", "actor_name", "actor_id", "action", "object_type", "object_id", "object_repr",
              "asset_id", "request_id", "ip_address", "pretty_changes", "pretty_data", "leaf_hash")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.audit_events_visible_to(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.may_audit_something(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff and selectors.may_audit_something(request.user)

    @admin.display(description="changes")
    def pretty_changes(self, event: AuditEvent) -> str:
        return _pretty(event.changes)

    @admin.display(description="data")
    def pretty_data(self, event: AuditEvent) -> str:
        return _pretty(event.data)


@admin.register(SignedTreeHead)
class SignedTreeHeadAdmin(ReadOnlyAdmin):
    list_display = ("id", "tree_size", "root_hash", "signed_at", "key")
    list_select_related = ("key",)
    date_hierarchy = "signed_at"
    actions = ("check_signatures",)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.may_audit_something(request.user)

    @admin.action(description="Check the signatures of the selected tree heads")
    def check_signatures(self, request: HttpRequest, queryset: QuerySet) -> None:
        for head in queryset.select_related("key"):
            problem = head_problem(head)
            if problem is None:
                self.message_user(request, f"STH {head.pk} (tree size {head.tree_size}): signature valid.", messages.SUCCESS)
            else:
                self.message_user(request, f"STH {head.pk} (tree size {head.tree_size}): {problem}.", messages.ERROR)


class RevocationForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea, help_text="Why the key may no longer be trusted.")


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    list_display = ("key_id", "purpose", "status", "created_at", "rotated_at", "revoked_at")
    list_filter = ("purpose",)
    fields = ("key_id", "algorithm", "purpose", "status", "public_key_pem", "encryption_key_id", "created_at",
              "rotated_at", "revoked_at", "revocation_reason")
    readonly_fields = fields
    actions = ("rotate", "revoke")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.may_audit_everything(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff and selectors.may_audit_everything(request.user)

    def get_actions(self, request: HttpRequest) -> dict:
        # Key operations are for superusers; auditors may look.
        return super().get_actions(request) if request.user.is_superuser else {}

    @admin.display(description="public key (PEM)")
    def public_key_pem(self, key: SigningKey) -> str:
        return format_html("<pre>{}</pre>", keys.public_key_pem(key))

    @admin.action(description="Rotate: retire the active key of each selected key's purpose and make a new one")
    def rotate(self, request: HttpRequest, queryset: QuerySet) -> None:
        for purpose in sorted(set(queryset.values_list("purpose", flat=True))):
            new = keys.rotate_signing_key(actor=request.user, purpose=purpose)
            self.message_user(request, f"New {purpose} key {new.key_id}.", messages.SUCCESS)

    @admin.action(description="Revoke the selected keys (asks for a reason)")
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        form = RevocationForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            for key in queryset:
                try:
                    keys.revoke_signing_key(actor=request.user, key=key, reason=form.cleaned_data["reason"])
                except DomainError as exc:
                    self.message_user(request, exc.detail, messages.ERROR)
                else:
                    self.message_user(request, f"Revoked {key.key_id}.", messages.SUCCESS)
            return None
        return TemplateResponse(request, "admin/governance/revoke_keys.html", {
            **self.admin_site.each_context(request), "title": "Revoke signing keys", "objects": queryset, "form": form,
            "opts": self.model._meta, "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        })


@admin.register(Attestation)
class AttestationAdmin(ReadOnlyAdmin):
    list_display = ("id", "version", "representation", "predicate_type", "key", "created_at")
    list_filter = ("predicate_type",)
    list_select_related = ("version", "version__asset", "representation", "key")
    search_fields = ("=version__id", "=payload_sha256")
    fields = ("version", "representation", "predicate_type", "key", "payload_sha256", "created_at", "verification",
              "statement", "envelope_json", "lineage")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        from catalog.selectors import versions_visible_to

        return super().get_queryset(request).filter(version__in=versions_visible_to(request.user).values("pk"))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.may_audit_something(request.user)

    @admin.display(description="verification")
    def verification(self, attestation: Attestation) -> str:
        problems = attestations.verify_attestation(attestation)
        if not problems:
            return format_html("<strong style='color: green'>{}</strong>", "verifies")
        return format_html("<strong style='color: #b00'>{}</strong>", "; ".join(problems))

    @admin.display(description="statement (decoded payload)")
    def statement(self, attestation: Attestation) -> str:
        try:
            return _pretty(json.loads(base64.b64decode(attestation.envelope["payload"])))
        except (KeyError, TypeError, ValueError):
            return "the payload cannot be decoded"

    @admin.display(description="DSSE envelope")
    def envelope_json(self, attestation: Attestation) -> str:
        return _pretty(attestation.envelope)

    @admin.display(description="lineage of the version")
    def lineage(self, attestation: Attestation) -> str:
        return _pretty(version_lineage(attestation.version, viewer=_viewer.get()))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        # The lineage lists only related versions the viewer may see; render while the viewer is known.
        token = _viewer.set(request.user)
        try:
            response = super().change_view(request, object_id, form_url, extra_context)
            if hasattr(response, "render"):
                response.render()
            return response
        finally:
            _viewer.reset(token)


# Rights, review queue and safety gates -----------------------------------------------------------

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME  # noqa: E402
from django.utils import timezone  # noqa: E402
from django.utils.html import format_html_join  # noqa: E402

from catalog.admin import ReasonForm, _blob_image_url  # noqa: E402
from catalog.models import AssetVersion  # noqa: E402
from governance import review as review_services  # noqa: E402
from governance import rights as rights_services  # noqa: E402
from governance.gate_models import BrandMark, SafetyVerdict  # noqa: E402
from governance.gates.logos import register_brand_mark  # noqa: E402
from governance.gates.runner import latest_verdicts  # noqa: E402
from governance.models import Licence  # noqa: E402
from governance.review_models import ReviewDecision, ReviewItem  # noqa: E402
from governance.rights_models import Consent, Notification  # noqa: E402


def _compliance(request: HttpRequest) -> bool:
    return bool(request.user.is_active and request.user.is_staff)


def _run(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, service: Any, done: str) -> None:
    """Apply a service per row in its own transaction; report each refusal and the count that worked."""
    from django.db import transaction

    succeeded = 0
    for obj in queryset:
        try:
            with transaction.atomic():
                service(obj)
        except DomainError as exc:
            modeladmin.message_user(request, f"{obj}: {exc.detail}", messages.ERROR)
        else:
            succeeded += 1
    if succeeded:
        modeladmin.message_user(request, f"{succeeded} {done}.", messages.SUCCESS)


def _ask_reason(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, action: str, title: str,
                service: Any, done: str) -> HttpResponse | None:
    form = ReasonForm(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        reason = form.cleaned_data["reason"]
        _run(modeladmin, request, queryset, lambda obj: service(obj, reason), done)
        return None
    return TemplateResponse(request, "admin/catalog/action_reason.html", {
        **modeladmin.admin_site.each_context(request), "title": title, "objects": list(queryset), "form": form,
        "action": action, "opts": modeladmin.model._meta, "action_checkbox_name": ACTION_CHECKBOX_NAME,
    })


class RightsRecordAdmin(admin.ModelAdmin):
    """Licences and consents are compliance records: edits go through `save_rights_record` (checked, audited)."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _compliance(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _compliance(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _compliance(request) and request.user.has_perm(f"governance.add_{self.model._meta.model_name}")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _compliance(request) and request.user.has_perm(f"governance.change_{self.model._meta.model_name}")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke or let expire; never delete what published versions depended on

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        rights_services.save_rights_record(actor=request.user, record=obj, created=not change)

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().changeform_view(request, *args, **kwargs)
        except DomainError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            from django.http import HttpResponseRedirect

            return HttpResponseRedirect(request.get_full_path())


@admin.register(Licence)
class LicenceAdmin(RightsRecordAdmin):
    list_display = ["__str__", "name", "licensor", "channels", "territories", "valid_from", "expires_at"]
    search_fields = ["spdx_id", "name", "licensor"]
    list_filter = ["spdx_id"]


@admin.register(Consent)
class ConsentAdmin(RightsRecordAdmin):
    list_display = ["subject", "channels", "expires_at", "revoked_at", "signed_form_link"]
    search_fields = ["subject"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    readonly_fields = ["revoked_at", "revocation_reason"]
    raw_id_fields = ["signed_form", "captures", "assets"]
    actions = ["revoke"]

    @admin.display(description="signed form")
    def signed_form_link(self, consent: Consent) -> str:
        if consent.signed_form is None:
            return "—"
        return format_html("<a href='{}'>{}</a>", _blob_image_url(consent.signed_form), consent.signed_form.sha256[:12])

    @admin.action(description="Revoke selected consents (withdraws what depends on them)…")
    def revoke(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return _ask_reason(self, request, queryset, "revoke", "Revoke consents",
                           lambda c, reason: rights_services.revoke_consent(actor=request.user, consent=c, reason=reason),
                           "consent(s) revoked")


class BrandMarkForm(forms.ModelForm):
    upload = forms.FileField(help_text="PNG or JPEG of the mark, cropped tight.")

    class Meta:
        model = BrandMark
        fields = ["name", "owner", "action", "active"]


@admin.register(BrandMark)
class BrandMarkAdmin(admin.ModelAdmin):
    """The reference library of logos compliance wants found; the image is stored by sha256 when added."""

    list_display = ["name", "owner", "action", "active", "preview"]
    list_editable = ["active"]
    search_fields = ["name", "owner"]

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = BrandMarkForm
        else:
            kwargs["fields"] = ["name", "owner", "action", "active"]
        return super().get_form(request, obj, **kwargs)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _compliance(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _compliance(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deactivate instead; verdicts name the marks they matched

    @admin.display(description="mark")
    def preview(self, mark: BrandMark) -> str:
        return format_html("<img src='{}' alt='' height='48'>", _blob_image_url(mark.image))

    def save_model(self, request: HttpRequest, obj: BrandMark, form: Any, change: bool) -> None:
        if change:
            obj.save()
            return
        created = register_brand_mark(actor=request.user, name=obj.name, owner=obj.owner, image=form.cleaned_data["upload"],
                                      action=obj.action)
        obj.pk, obj.image_id = created.pk, created.image_id

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().changeform_view(request, *args, **kwargs)
        except DomainError as exc:
            self.message_user(request, exc.detail, messages.ERROR)
            from django.http import HttpResponseRedirect

            return HttpResponseRedirect(request.get_full_path())


@admin.register(SafetyVerdict)
class SafetyVerdictAdmin(ReadOnlyAdmin):
    list_display = ["version", "gate", "gate_version", "outcome", "reason", "created_at"]
    list_filter = ["gate", "outcome"]
    readonly_fields = ["version", "gate", "gate_version", "outcome", "reason", "evidence_pretty", "evidence_picture"]
    fields = readonly_fields

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _compliance(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _compliance(request)

    @admin.display(description="evidence")
    def evidence_pretty(self, verdict: SafetyVerdict) -> str:
        return _pretty(verdict.evidence)

    @admin.display(description="evidence image")
    def evidence_picture(self, verdict: SafetyVerdict) -> str:
        if verdict.evidence_image is None:
            return "—"
        return format_html("<img src='{}' alt='evidence' style='max-width:640px'>", _blob_image_url(verdict.evidence_image))


class ReviewDecisionInline(admin.TabularInline):
    model = ReviewDecision
    extra = 0
    can_delete = False
    fields = readonly_fields = ["reviewer", "outcome", "reason", "overrides", "created_at"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OverdueFilter(admin.SimpleListFilter):
    title = "SLA"
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "overdue")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset & review_services.overdue_items() if self.value() == "yes" else queryset


@admin.register(ReviewItem)
class ReviewItemAdmin(ReadOnlyAdmin):
    """The review queue: claim, then approve (optionally overriding flagged gates) or reject, each with a reason.
    The page shows the asset in 3D, the gate evidence, the effective rights, the quality report and the lineage."""

    list_display = ["version", "state", "claimed_by", "required_approvals", "approvals", "due", "gates"]
    list_filter = ["state", OverdueFilter]
    list_select_related = ["version", "version__asset", "claimed_by"]
    inlines = [ReviewDecisionInline]
    readonly_fields = ["version", "state", "claimed_by", "required_approvals", "due", "preview", "gate_evidence",
                       "rights", "quality", "lineage"]
    fields = readonly_fields
    actions = ["claim", "release", "approve", "approve_overriding_flags", "reject"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _compliance(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        from catalog.permissions import Action, can

        return _compliance(request) and (obj is None or can(request.user, Action.REVIEW, obj.version))

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        from catalog.permissions import Action
        from catalog.selectors import versions_visible_to

        return super().get_queryset(request).filter(version__in=versions_visible_to(request.user, Action.REVIEW))

    @admin.display(description="due", ordering="due_at")
    def due(self, item: ReviewItem) -> str:
        if item.state in review_services.OPEN_STATES and item.due_at < timezone.now():
            return format_html("<strong style='color:#ba2121'>overdue since {}</strong>", item.due_at.strftime("%Y-%m-%d %H:%M"))
        return item.due_at.strftime("%Y-%m-%d %H:%M")

    @admin.display(description="approvals")
    def approvals(self, item: ReviewItem) -> int:
        return item.decisions.filter(outcome=ReviewDecision.Outcome.APPROVE).count()

    @admin.display(description="gates")
    def gates(self, item: ReviewItem) -> str:
        verdicts = latest_verdicts(item.version)
        return ", ".join(f"{g}: {v.outcome}" for g, v in sorted(verdicts.items())) or "not run"

    @admin.display(description="3D preview")
    def preview(self, item: ReviewItem) -> str:
        version_admin = self.admin_site._registry.get(AssetVersion)
        return version_admin.preview(item.version) if version_admin is not None else "—"

    @admin.display(description="gate evidence")
    def gate_evidence(self, item: ReviewItem) -> str:
        rows = [(v.gate, v.gate_version, v.outcome, v.reason,
                 _blob_image_url(v.evidence_image) if v.evidence_image else "")
                for v in latest_verdicts(item.version).values()]
        if not rows:
            return "No gate has run."
        return format_html("<table>{}</table>", format_html_join(
            "", "<tr><td>{} {}</td><td><strong>{}</strong></td><td>{}</td><td><img src='{}' alt='' style='max-width:320px'>"
            "</td></tr>", rows))

    @admin.display(description="rights")
    def rights(self, item: ReviewItem) -> str:
        return _pretty(rights_services.effective_rights(item.version).as_dict())

    @admin.display(description="quality report")
    def quality(self, item: ReviewItem) -> str:
        report = getattr(item.version, "quality", None)
        if report is None:
            return "No quality report."
        return _pretty({"triangles": report.triangle_count, "vertices": report.vertex_count,
                        "watertight": report.watertight, "metrics": report.metrics})

    @admin.display(description="lineage")
    def lineage(self, item: ReviewItem) -> str:
        return _pretty(version_lineage(item.version, viewer=_viewer.get()))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        token = _viewer.set(request.user)
        try:
            return super().change_view(request, object_id, form_url, extra_context)
        finally:
            _viewer.reset(token)

    @admin.action(description="Claim selected items")
    def claim(self, request: HttpRequest, queryset: QuerySet) -> None:
        _run(self, request, queryset, lambda i: review_services.claim_review(actor=request.user, item=i), "item(s) claimed")

    @admin.action(description="Release selected items back to the queue")
    def release(self, request: HttpRequest, queryset: QuerySet) -> None:
        _run(self, request, queryset, lambda i: review_services.release_review(actor=request.user, item=i),
             "item(s) released")

    @admin.action(description="Approve selected items…")
    def approve(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return _ask_reason(self, request, queryset, "approve", "Approve", lambda i, reason: review_services.decide_review(
            actor=request.user, item=i, approve=True, reason=reason), "item(s) approved")

    @admin.action(description="Approve, overriding flagged gates…")
    def approve_overriding_flags(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        def decide(item: ReviewItem, reason: str) -> Any:
            flagged = [g for g, v in latest_verdicts(item.version).items() if v.outcome == SafetyVerdict.Outcome.FLAG]
            return review_services.decide_review(actor=request.user, item=item, approve=True, reason=reason,
                                                 overrides=flagged)

        return _ask_reason(self, request, queryset, "approve_overriding_flags", "Approve and override flags", decide,
                           "item(s) approved with overrides")

    @admin.action(description="Reject selected items…")
    def reject(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        return _ask_reason(self, request, queryset, "reject", "Reject", lambda i, reason: review_services.decide_review(
            actor=request.user, item=i, approve=False, reason=reason), "item(s) rejected")


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["recipient", "kind", "message", "created_at"]
    list_filter = ["kind"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(recipient=request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _compliance(request)
