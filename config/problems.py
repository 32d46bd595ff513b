"""RFC 9457 problem details for every API error, and the base class of all domain errors.

Services raise `DomainError` subclasses with a stable machine code; one handler turns them,
DRF's own exceptions and Django's validation errors into `application/problem+json`.
"""
from __future__ import annotations

import enum
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://assay.dev/problems/"


class DomainError(Exception):
    """A rule of the domain refused the request; `code` lets clients branch without parsing text."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    code: enum.Enum | str = "invalid"
    title: str = "The request breaks a rule of the catalog"

    def __init__(self, detail: str, *, code: enum.Enum | str | None = None, status_code: int | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.extra = extra

    @property
    def code_value(self) -> str:
        return self.code.value if isinstance(self.code, enum.Enum) else str(self.code)


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"
    title = "The resource's state does not allow this"


class Forbidden(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "forbidden"
    title = "You may not do this"


def problem_response(*, status_code: int, code: str, title: str, detail: str, instance: str = "", **extra: Any) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code.replace("_", "-"),
        "title": title,
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return Response(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)


def _flatten(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    """DRF's nested error dicts as a flat list of {field, message}, which clients can show as is."""
    if isinstance(detail, dict):
        out: list[dict[str, str]] = []
        for key, value in detail.items():
            name = key if not prefix else f"{prefix}.{key}"
            out.extend(_flatten(value, "" if key == "non_field_errors" else name))
        return out
    if isinstance(detail, list):
        out = []
        for i, value in enumerate(detail):
            nested = isinstance(value, (dict, list))
            out.extend(_flatten(value, f"{prefix}[{i}]" if nested and prefix else prefix))
        return out
    return [{"field": prefix, "message": str(detail)}]


def problem_details_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    request = context.get("request")
    instance = request.get_full_path() if request is not None else ""
    if isinstance(exc, DomainError):
        return problem_response(
            status_code=exc.status_code, code=exc.code_value, title=exc.title, detail=exc.detail, instance=instance, **exc.extra
        )
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
        problem = problem_response(
            status_code=response.status_code, code="invalid", title="The request is not valid", detail=detail,
            instance=instance, errors=errors,
        )
    else:
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        code = code if isinstance(code, str) else "error"
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        problem = problem_response(
            status_code=response.status_code, code=code, title=response.status_text, detail=str(detail), instance=instance
        )
    for header in ("WWW-Authenticate", "Retry-After", "Allow"):
        if header in response:
            problem[header] = response[header]
    return problem
