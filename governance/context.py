"""Who is acting and from where, for the audit trail, without passing the request everywhere."""
from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    request_id: str = ""
    ip_address: str | None = None


# RequestContext is frozen, so sharing one default instance is safe.
_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "assay_request_context", default=RequestContext()  # noqa: B039
)


def current_context() -> RequestContext:
    return _current.get()


def set_context(context: RequestContext) -> contextvars.Token:
    return _current.set(context)


def reset_context(token: contextvars.Token) -> None:
    _current.reset(token)
