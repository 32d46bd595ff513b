"""Signing keys: Ed25519 pairs whose private halves are encrypted at rest, rotated and revoked by services.

The key-encryption key (KEK) sits behind `KeyEncryptor`, so a cloud KMS can replace the local AES-GCM one
(set ASSAY_KEY_ENCRYPTOR to its dotted path). The local encryptor takes the KEK from
ASSAY_KEY_ENCRYPTION_KEY (base64 of 32 bytes); without it, it generates one under ASSAY_KEY_DIR and warns,
which is fine on a laptop and wrong in production.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from config.problems import DomainError
from governance.audit import record_event
from governance.models import SigningKey

logger = logging.getLogger(__name__)

_KEY_CREATION_LOCK = 0x41535342  # serialises "create the first active key" per database
_BLOB_VERSION = b"\x01"


class SigningKeyError(DomainError):
    """A key cannot be used as asked (cannot be decrypted, already revoked, …)."""

    code = "signing_key"
    title = "The signing key cannot be used"


class ImproperlyConfiguredKey(SigningKeyError):
    title = "The key-encryption key is misconfigured"


class KeyEncryptor(Protocol):
    """Wraps private keys at rest. `key_id` names the KEK so a blob is never opened with the wrong one."""

    key_id: str

    def encrypt(self, plaintext: bytes, *, associated_data: bytes) -> bytes: ...

    def decrypt(self, blob: bytes, *, associated_data: bytes) -> bytes: ...


class LocalKeyEncryptor:
    """AES-256-GCM under a KEK from the environment (or a generated dev file); blob = version || nonce || ct."""

    def __init__(self, kek: bytes | None = None):
        kek = kek if kek is not None else self._load_kek()
        self._aead = AESGCM(kek)
        self.key_id = hashlib.sha256(b"assay-kek" + kek).hexdigest()[:32]

    @staticmethod
    def _load_kek() -> bytes:
        configured = settings.ASSAY_KEY_ENCRYPTION_KEY
        if configured:
            try:
                kek = base64.b64decode(configured, validate=True)
            except binascii.Error as exc:
                raise ImproperlyConfiguredKey("ASSAY_KEY_ENCRYPTION_KEY is not valid base64") from exc
            if len(kek) != 32:
                raise ImproperlyConfiguredKey(f"ASSAY_KEY_ENCRYPTION_KEY must decode to 32 bytes, not {len(kek)}")
            return kek
        path = Path(settings.ASSAY_KEY_DIR) / "key-encryption-key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(base64.b64encode(AESGCM.generate_key(bit_length=256)))
            logger.warning(
                "ASSAY_KEY_ENCRYPTION_KEY is not set: generated a development key-encryption key at %s. "
                "Set ASSAY_KEY_ENCRYPTION_KEY (or a KMS encryptor) in production.", path,
            )
        return base64.b64decode(path.read_bytes().strip())

    def encrypt(self, plaintext: bytes, *, associated_data: bytes) -> bytes:
        nonce = os.urandom(12)
        return _BLOB_VERSION + nonce + self._aead.encrypt(nonce, plaintext, associated_data)

    def decrypt(self, blob: bytes, *, associated_data: bytes) -> bytes:
        if blob[:1] != _BLOB_VERSION:
            raise SigningKeyError("the private key blob has an unknown format")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], associated_data)
        except InvalidTag as exc:
            raise SigningKeyError("the private key blob does not decrypt under this key-encryption key") from exc


def key_encryptor() -> KeyEncryptor:
    return import_string(settings.ASSAY_KEY_ENCRYPTOR)()


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """The key id: sha256 of the raw 32-byte public key, hex (as in the API, DSSE keyid and tree heads)."""
    return hashlib.sha256(public_key.public_bytes_raw()).hexdigest()


def public_key_of(key: SigningKey) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes(key.public_key))


def public_key_pem(key: SigningKey) -> str:
    return public_key_of(key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


# Decrypted private keys, per process: signing a tree head or an attestation must not pay for AES-GCM each time.
_private_cache: dict[str, Ed25519PrivateKey] = {}
_private_cache_lock = threading.Lock()


def _private_key(key: SigningKey) -> Ed25519PrivateKey:
    with _private_cache_lock:
        cached = _private_cache.get(key.key_id)
    if cached is not None:
        return cached
    encryptor = key_encryptor()
    if key.encryption_key_id != encryptor.key_id:
        raise SigningKeyError(
            f"signing key {key.key_id} is wrapped by key-encryption key {key.encryption_key_id}, "
            f"but the configured one is {encryptor.key_id}"
        )
    raw = encryptor.decrypt(bytes(key.encrypted_private_key), associated_data=key.key_id.encode())
    private = Ed25519PrivateKey.from_private_bytes(raw)
    if key_id_for(private.public_key()) != key.key_id:
        raise SigningKeyError(f"the private key stored for {key.key_id} does not match its public key")
    with _private_cache_lock:
        _private_cache[key.key_id] = private
    return private


def sign(key: SigningKey, message: bytes) -> bytes:
    """Ed25519 signature of `message` with `key`; only an active key signs."""
    if key.status != SigningKey.Status.ACTIVE:
        raise SigningKeyError(f"signing key {key.key_id} is {key.status} and no longer signs")
    return _private_key(key).sign(message)


def signature_is_valid(key: SigningKey, message: bytes, signature: bytes) -> bool:
    """Cryptographic check only; the caller decides what a retired or revoked key means."""
    try:
        public_key_of(key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _new_key(*, purpose: str) -> SigningKey:
    private = Ed25519PrivateKey.generate()
    key_id = key_id_for(private.public_key())
    encryptor = key_encryptor()
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    key = SigningKey.objects.create(
        key_id=key_id,
        purpose=purpose,
        public_key=private.public_key().public_bytes_raw(),
        encrypted_private_key=encryptor.encrypt(raw, associated_data=key_id.encode()),
        encryption_key_id=encryptor.key_id,
    )
    with _private_cache_lock:
        _private_cache[key_id] = private
    return key


def _lock_key_creation() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_KEY_CREATION_LOCK])


def active_key(purpose: str) -> SigningKey:
    """The key that signs for `purpose` now; the first call (or the first after a revocation) creates one."""
    key = SigningKey.objects.filter(purpose=purpose, rotated_at__isnull=True, revoked_at__isnull=True).first()
    if key is not None:
        return key
    with transaction.atomic():
        _lock_key_creation()
        key = SigningKey.objects.filter(purpose=purpose, rotated_at__isnull=True, revoked_at__isnull=True).first()
        if key is None:
            key = _new_key(purpose=purpose)
            record_event(actor="system", action="key.created", obj=key, data={"key_id": key.key_id, "purpose": purpose})
    return key


@transaction.atomic
def rotate_signing_key(*, actor: Any, purpose: str) -> SigningKey:
    """Retire the active key of `purpose` (it still verifies) and make a new one that signs from now on."""
    if purpose not in SigningKey.Purpose.values:
        raise SigningKeyError(f"unknown key purpose {purpose!r}; one of {', '.join(SigningKey.Purpose.values)}")
    _lock_key_creation()
    old = (
        SigningKey.objects.select_for_update()
        .filter(purpose=purpose, rotated_at__isnull=True, revoked_at__isnull=True)
        .first()
    )
    if old is not None:
        old.rotated_at = timezone.now()
        old.save(update_fields=["rotated_at"])
    try:
        with transaction.atomic():
            new = _new_key(purpose=purpose)
    except IntegrityError as exc:  # pragma: no cover - the advisory lock makes this a PostgreSQL-free race only
        raise SigningKeyError("another rotation of this key purpose ran at the same time; try again") from exc
    record_event(
        actor=actor, action="key.rotated", obj=new,
        data={"purpose": purpose, "old_key_id": old.key_id if old else None, "new_key_id": new.key_id},
    )
    return new


@transaction.atomic
def revoke_signing_key(*, actor: Any, key: SigningKey, reason: str) -> SigningKey:
    """Mark `key` revoked with a reason; what it signed is reported as signed by a revoked key from now on."""
    if not reason.strip():
        raise SigningKeyError("a revocation needs a reason")
    key = SigningKey.objects.select_for_update().get(pk=key.pk)
    if key.revoked_at is not None:
        raise SigningKeyError(f"signing key {key.key_id} was already revoked at {key.revoked_at.isoformat()}")
    before = key.status
    key.revoked_at = timezone.now()
    key.revocation_reason = reason.strip()
    key.save(update_fields=["revoked_at", "revocation_reason"])
    record_event(
        actor=actor, action="key.revoked", obj=key,
        changes={"status": [before, SigningKey.Status.REVOKED]}, data={"key_id": key.key_id, "reason": key.revocation_reason},
    )
    return key
