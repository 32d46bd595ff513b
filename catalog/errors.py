"""Domain errors of the catalog, each with a stable code clients can branch on."""
from __future__ import annotations

import enum

from rest_framework import status

from config.problems import Conflict, DomainError, Forbidden, NotFound


class CatalogErrorCode(enum.StrEnum):
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    PERMISSION_DENIED = "permission_denied"
    INVALID_TRANSITION = "invalid_transition"
    VERSION_IMMUTABLE = "version_immutable"
    STALE_ETAG = "stale_etag"
    PRECONDITION_REQUIRED = "precondition_required"
    DUPLICATE = "duplicate"
    FILE_TOO_LARGE = "file_too_large"
    CORRUPT_FILE = "corrupt_file"
    UNSUPPORTED_FILE = "unsupported_file"
    MISLABELLED_FILE = "mislabelled_file"
    CAPTURE_REJECTED = "capture_rejected"


class CatalogError(DomainError):
    code = CatalogErrorCode.INVALID


class InvalidFile(CatalogError):
    """An upload that is not what it claims, is damaged, or is too large."""

    status_code = status.HTTP_400_BAD_REQUEST
    title = "The file was refused"

    def __init__(self, detail: str, *, code: CatalogErrorCode = CatalogErrorCode.CORRUPT_FILE, **extra):
        status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE if code == CatalogErrorCode.FILE_TOO_LARGE else None
        super().__init__(detail, code=code, status_code=status_code, **extra)


class InvalidTransition(Conflict):
    code = CatalogErrorCode.INVALID_TRANSITION
    title = "The state change is not allowed"


class VersionImmutable(Conflict):
    code = CatalogErrorCode.VERSION_IMMUTABLE
    title = "The version is immutable"


class StaleObject(DomainError):
    """If-Match did not match: somebody changed the resource since the client read it."""

    status_code = status.HTTP_412_PRECONDITION_FAILED
    code = CatalogErrorCode.STALE_ETAG
    title = "The resource changed since you read it"


class Duplicate(Conflict):
    code = CatalogErrorCode.DUPLICATE
    title = "It already exists"


class CatalogNotFound(NotFound):
    code = CatalogErrorCode.NOT_FOUND


class PermissionDenied(Forbidden):
    code = CatalogErrorCode.PERMISSION_DENIED


class PreconditionRequired(DomainError):
    """A write that could overwrite someone else's change came without If-Match."""

    status_code = status.HTTP_428_PRECONDITION_REQUIRED
    code = CatalogErrorCode.PRECONDITION_REQUIRED
    title = "This change needs If-Match"
