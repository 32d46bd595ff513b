"""Finds backends through the `assay.backends` entry-point group, so `pip install` of a plugin adds one."""
from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import entry_points

from reconstruction.engine.errors import UnknownBackend
from reconstruction.engine.protocol import Backend

GROUP = "assay.backends"
log = logging.getLogger(__name__)


@cache
def available_backends() -> dict[str, Backend]:
    """Name → backend instance for every installed plugin that loads and meets the protocol."""
    found: dict[str, Backend] = {}
    for entry in entry_points(group=GROUP):
        try:
            loaded = entry.load()
        except Exception:  # a broken third-party plugin must not take the others down
            log.exception("backend plugin %s failed to load", entry.value)
            continue
        backend = loaded() if isinstance(loaded, type) else loaded
        if not isinstance(backend, Backend):
            log.error("backend plugin %s does not meet the Backend protocol", entry.value)
            continue
        found[backend.name] = backend
    return dict(sorted(found.items()))


def get_backend(name: str) -> Backend:
    backends = available_backends()
    try:
        return backends[name]
    except KeyError:
        known = ", ".join(backends) or "none"
        raise UnknownBackend(f"No backend named {name!r} is installed (installed: {known}).") from None
