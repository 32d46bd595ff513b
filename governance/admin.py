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
