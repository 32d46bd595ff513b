"""Content-addressed file storage behind Django's storage API (local disk, or S3 through django-storages).

A blob lives at `blobs/ab/cd/<sha256>` and is written once. Uploads are streamed through a hash into a
temporary file in chunks, so no file is held whole in memory. Blobs written during a service call that
then fails are removed again (`blobs_cleaned_on_failure`); `sweep_orphan_blobs` catches the rest.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.errors import CatalogErrorCode, InvalidFile
from catalog.file_checks import FileKind, identify
from catalog.models import StoredFile

CHUNK_SIZE = 1024 * 1024
BLOB_PREFIX = "blobs"

_new_blobs: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("assay_new_blobs", default=None)


def blob_name(sha256: str) -> str:
    return f"{BLOB_PREFIX}/{sha256[:2]}/{sha256[2:4]}/{sha256}"


@contextlib.contextmanager
def blobs_cleaned_on_failure() -> Iterator[None]:
    """Blobs first written inside this block are deleted if the block raises (its rows rolled back)."""
    written: list[str] = []
    token = _new_blobs.set(written)
    try:
        yield
    except BaseException:
        for name in written:
            if not StoredFile.objects.filter(storage_name=name).exists():
                default_storage.delete(name)
        raise
    finally:
        _new_blobs.reset(token)


@contextlib.contextmanager
def spooled_upload(source: IO[bytes], *, max_bytes: int) -> Iterator[tuple[IO[bytes], str, int]]:
    """Copy a stream to a temporary file while hashing it; yields (file, sha256, size)."""
    digest = hashlib.sha256()
    size = 0
    with tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR) as spool:
        if hasattr(source, "seek"):
            with contextlib.suppress(OSError, ValueError):
                source.seek(0)
        while chunk := source.read(CHUNK_SIZE):
            size += len(chunk)
            if size > max_bytes:
                raise InvalidFile(
                    f"The file is larger than the limit of {max_bytes} bytes.", code=CatalogErrorCode.FILE_TOO_LARGE
                )
            digest.update(chunk)
            spool.write(chunk)
        if size == 0:
            raise InvalidFile("The file is empty.", code=CatalogErrorCode.CORRUPT_FILE)
        spool.seek(0)
        yield spool, digest.hexdigest(), size


def store_stream(source: IO[bytes], *, filename: str, max_bytes: int | None = None) -> tuple[StoredFile, FileKind]:
    """Check a file by content and store it once under its sha256; returns the (possibly existing) blob row."""
    limit = settings.ASSAY_MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    with spooled_upload(source, max_bytes=limit) as (spool, sha256, size):
        kind = identify(spool, size=size, filename=filename)
        existing = StoredFile.objects.filter(sha256=sha256).first()
        if existing is not None:
            return existing, kind
        name = blob_name(sha256)
        if not default_storage.exists(name):
            spool.seek(0)
            saved = default_storage.save(name, File(spool, name=sha256))
            if saved != name:  # another writer raced us to the same bytes; keep one copy
                default_storage.delete(saved)
            else:
                written = _new_blobs.get()
                if written is not None:
                    written.append(name)
        try:
            with transaction.atomic():
                blob = StoredFile.objects.create(sha256=sha256, size=size, media_type=kind.media_type, storage_name=name)
        except IntegrityError:
            blob = StoredFile.objects.get(sha256=sha256)
        return blob, kind


def store_path(path: str | os.PathLike[str], *, filename: str | None = None) -> tuple[StoredFile, FileKind]:
    path = Path(path)
    with path.open("rb") as handle:
        return store_stream(handle, filename=filename or path.name)


def open_blob(blob: StoredFile) -> IO[bytes]:
    return default_storage.open(blob.storage_name, "rb")


def blob_url(blob: StoredFile, *, filename: str) -> str | None:
    """A presigned URL when the storage can make one (S3); None for local disk, where we stream ourselves."""
    if not settings.ASSAY_S3_BUCKET:
        return None
    return default_storage.url(
        blob.storage_name,
        parameters={"ResponseContentDisposition": f'attachment; filename="{filename}"', "ResponseContentType": blob.media_type},
    )


def verify_blob(blob: StoredFile) -> bool:
    """Re-hash the stored bytes: True when they still match the recorded sha256."""
    digest = hashlib.sha256()
    with open_blob(blob) as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest() == blob.sha256


def sweep_orphan_blobs(*, older_than: dt.timedelta = dt.timedelta(hours=1)) -> list[str]:
    """Delete stored blobs that no StoredFile row names (left by a crash between write and commit).

    Young blobs are kept: their upload may still be inside a transaction that has not committed yet.
    """
    removed: list[str] = []
    cutoff = timezone.now() - older_than
    known = set(StoredFile.objects.values_list("storage_name", flat=True))
    for first in default_storage.listdir(BLOB_PREFIX)[0] if default_storage.exists(BLOB_PREFIX) else []:
        for second in default_storage.listdir(f"{BLOB_PREFIX}/{first}")[0]:
            for name in default_storage.listdir(f"{BLOB_PREFIX}/{first}/{second}")[1]:
                full = f"{BLOB_PREFIX}/{first}/{second}/{name}"
                if full not in known and default_storage.get_modified_time(full) < cutoff:
                    default_storage.delete(full)
                    removed.append(full)
    return removed
