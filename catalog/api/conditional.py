"""ETags and conditional requests (RFC 9110 §13).

An ETag is a digest of the representation a detail endpoint returns, so it changes whenever anything the
client sees changes (including related rows such as tags or the latest version), not only the row itself.
Writes to an existing resource compare If-Match with the ETag of the current state while the row is locked,
so two clients that read the same state cannot both write over it.

Asset PATCH and lifecycle transitions *require* If-Match (428 without it): they edit fields people type and
a lost update would go unnoticed. Version actions (submit, approve, reject, publish, withdraw) accept it and
enforce it when sent; without it the version state machine still refuses a double decision with 409.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.errors import PreconditionRequired, StaleObject


def etag_for(data: Any) -> str:
    """A strong ETag: the digest of the canonical JSON of a representation."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


def _tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def is_not_modified(request: Request, etag: str) -> bool:
    """If-None-Match uses the weak comparison: W/"x" matches "x"."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    tags = _tags(header)
    return "*" in tags or etag.removeprefix("W/") in {t.removeprefix("W/") for t in tags}


def check_if_match(request: Request, etag: str, *, required: bool, what: str) -> None:
    """Raise 412 when If-Match names another state, 428 when it is missing and `required`.

    If-Match uses the strong comparison: a weak tag never matches.
    """
    header = request.headers.get("If-Match")
    if header is None:
        if required:
            raise PreconditionRequired(
                f"Send If-Match with the ETag from your last GET of {what}, so a change made since is not overwritten."
            )
        return
    tags = _tags(header)
    if "*" in tags or etag in tags:
        return
    raise StaleObject(
        f"{what[0].upper()}{what[1:]} changed since you read it: If-Match {header.strip()} does not match the "
        f"current ETag {etag}. GET it again and re-apply your change.",
        current_etag=etag,
    )


def conditional_response(request: Request, data: Any, *, status_code: int = status.HTTP_200_OK) -> Response:
    """The representation with its ETag, or 304 Not Modified when a safe request already holds it."""
    etag = etag_for(data)
    if request.method in ("GET", "HEAD") and is_not_modified(request, etag):
        return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return Response(data, status=status_code, headers={"ETag": etag})
