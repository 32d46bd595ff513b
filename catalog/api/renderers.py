"""A renderer that lets a download endpoint answer any Accept header (model/gltf-binary, image/png, …).

The endpoint returns a FileResponse or a redirect, which DRF passes through untouched; this renderer is only
asked to render when the answer is a problem document (403, 404), which it writes as JSON.
"""
from __future__ import annotations

from typing import Any

from rest_framework.renderers import BaseRenderer, JSONRenderer


class FileRenderer(BaseRenderer):
    media_type = "*/*"
    format = "file"
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: dict | None = None) -> bytes:
        if data is None:
            return b""
        if isinstance(data, bytes):
            return data
        return JSONRenderer().render(data, renderer_context=renderer_context)
