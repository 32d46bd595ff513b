"""Domain errors of reconstruction jobs, each with a stable code clients can branch on."""
from __future__ import annotations

import enum

from rest_framework import status

from config.problems import Conflict, DomainError, NotFound


class JobErrorCode(enum.StrEnum):
    UNKNOWN_BACKEND = "unknown_backend"
    INVALID_PARAMETERS = "invalid_parameters"
    CAPTURE_UNSUITABLE = "capture_unsuitable"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    INVALID_JOB_TRANSITION = "invalid_job_transition"
    JOB_NOT_FOUND = "job_not_found"
    # Stored on failed jobs (error_code), next to the engine's own codes.
    WORKER_LOST = "worker_lost"
    TRANSIENT_EXHAUSTED = "transient_exhausted"
    BACKEND_CRASHED = "backend_crashed"
    INGEST_FAILED = "ingest_failed"
    TIME_LIMIT = "time_limit"


class JobError(DomainError):
    code = JobErrorCode.INVALID_PARAMETERS
    title = "The reconstruction job was refused"


class UnknownBackendError(JobError):
    code = JobErrorCode.UNKNOWN_BACKEND
    title = "No such reconstruction backend"


class InvalidJobParameters(JobError):
    """The parameters break the backend's JSON schema; `errors` lists each field with its message."""

    code = JobErrorCode.INVALID_PARAMETERS
    title = "The parameters do not fit the backend's schema"


class CaptureUnsuitable(JobError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = JobErrorCode.CAPTURE_UNSUITABLE
    title = "The capture does not suit this backend"


class IdempotencyConflict(Conflict):
    code = JobErrorCode.IDEMPOTENCY_CONFLICT
    title = "The idempotency key was used for another request"


class InvalidJobTransition(Conflict):
    code = JobErrorCode.INVALID_JOB_TRANSITION
    title = "The job's state does not allow this"


class JobNotFound(NotFound):
    code = JobErrorCode.JOB_NOT_FOUND


class LeaseLost(Exception):
    """This worker no longer holds the job (it was re-queued, cancelled or taken by another worker).

    Not a domain error: it never reaches a client. The worker stops and writes nothing more.
    """
