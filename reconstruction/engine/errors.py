"""Errors the engine raises; each carries a stable code a worker can store and a client can branch on."""
from __future__ import annotations


class EngineError(Exception):
    code = "engine_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class InvalidCapture(EngineError):
    """The capture folder cannot be used: missing images, unreadable files, cameras that do not match."""

    code = "invalid_capture"


class InvalidParameters(EngineError):
    """Parameters do not satisfy the backend's JSON schema."""

    code = "invalid_parameters"


class UnknownBackend(EngineError):
    code = "unknown_backend"


class Cancelled(EngineError):
    """Raised from inside a run when the cancel callback says stop; nothing partial is kept."""

    code = "cancelled"


class BackendFailed(EngineError):
    """The backend ran and could not produce a mesh (too few registered views, empty reconstruction…)."""

    code = "backend_failed"


class UnknownModel(EngineError):
    """No model card in the registry matches the requested name (and version or digest)."""

    code = "unknown_model"


class CheckpointRejected(EngineError):
    """A checkpoint file is missing, does not match its card's sha256, or is not a loadable checkpoint."""

    code = "checkpoint_rejected"


class InvalidInput(EngineError):
    """An input array cannot be used: an empty mask, a volume with nothing above the level, wrong shapes."""

    code = "invalid_input"
