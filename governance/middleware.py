"""Gives each request an id (kept from X-Request-ID when a proxy set one) and records the caller's IP."""
from __future__ import annotations

import re
import uuid

from governance.context import RequestContext, reset_context, set_context

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = set_context(RequestContext(request_id=request_id, ip_address=request.META.get("REMOTE_ADDR") or None))
        try:
            response = self.get_response(request)
        finally:
            reset_context(token)
        response["X-Request-ID"] = request_id
        return response
