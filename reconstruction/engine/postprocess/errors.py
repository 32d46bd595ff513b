"""Errors raised by post-processing: a bad input is the caller's to fix, a tool failure is ours."""
from __future__ import annotations


class PostprocessError(Exception):
    """Base class; the message is written for the person who submitted the mesh."""

    code = "postprocess_failed"


class BadInput(PostprocessError):
    """The mesh or its textures cannot be processed as given; retrying will not help."""

    code = "bad_input"


class ToolMissing(PostprocessError):
    """An outside program (node, Blender) that a step needs is not installed on this worker."""

    code = "tool_missing"
