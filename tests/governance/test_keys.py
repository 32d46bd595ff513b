"""Signing keys: encrypted at rest, rotated (old keys still verify), revoked with a reason, published by the API."""
from __future__ import annotations

import base64
import logging
import os

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from governance import keys
from governance.models import AuditEvent, SigningKey

pytestmark = pytest.mark.django_db

KEK = base64.b64encode(bytes(range(32))).decode()


def test_first_use_creates_an_active_key_encrypted_at_rest(settings, caplog):
    caplog.set_level(logging.WARNING, logger="governance.keys")
    key = keys.active_key(SigningKey.Purpose.TREE_HEAD)
    assert key.status == "active" and key.algorithm == "ed25519"
    assert key.key_id == keys.key_id_for(keys.public_key_of(key))
    kek_file = settings.ASSAY_KEY_DIR / "key-encryption-key"
    assert oct(os.stat(kek_file).st_mode & 0o777) == "0o600"
    assert "ASSAY_KEY_ENCRYPTION_KEY is not set: generated a development key-encryption key" in caplog.text
    keys._private_cache.clear()
    private = keys._private_key(key)
    raw = private.private_bytes_raw()
    assert raw not in bytes(key.encrypted_private_key)
    assert keys.active_key(SigningKey.Purpose.TREE_HEAD) == key
    assert AuditEvent.objects.filter(action="key.created", object_id=str(key.pk)).count() == 1


def test_a_key_wrapped_by_another_kek_is_refused_clearly(settings):
    settings.ASSAY_KEY_ENCRYPTION_KEY = KEK
    key = keys.active_key(SigningKey.Purpose.ATTESTATION)
    keys._private_cache.clear()
    settings.ASSAY_KEY_ENCRYPTION_KEY = base64.b64encode(b"\x01" * 32).decode()
    other = keys.LocalKeyEncryptor().key_id
    with pytest.raises(keys.SigningKeyError, match=f"is wrapped by key-encryption key {key.encryption_key_id}, "
                                                   f"but the configured one is {other}$"):
        keys.sign(key, b"message")


def test_a_tampered_private_key_blob_does_not_decrypt(settings):
    settings.ASSAY_KEY_ENCRYPTION_KEY = KEK
    key = keys.active_key(SigningKey.Purpose.ATTESTATION)
    keys._private_cache.clear()
    blob = bytearray(bytes(key.encrypted_private_key))
    blob[-1] ^= 1
    key.encrypted_private_key = bytes(blob)
    with pytest.raises(keys.SigningKeyError, match="^the private key blob does not decrypt under this key-encryption key$"):
        keys.sign(key, b"message")


@pytest.mark.parametrize(("value", "message"), [
    ("not base64!", "ASSAY_KEY_ENCRYPTION_KEY is not valid base64"),
    (base64.b64encode(b"short").decode(), "ASSAY_KEY_ENCRYPTION_KEY must decode to 32 bytes, not 5"),
])
def test_a_misconfigured_kek_is_reported(settings, value, message):
    settings.ASSAY_KEY_ENCRYPTION_KEY = value
    with pytest.raises(keys.ImproperlyConfiguredKey, match=f"^{message}$"):
        keys.LocalKeyEncryptor()


def test_rotation_retires_the_old_key_which_still_verifies(settings):
    settings.ASSAY_KEY_ENCRYPTION_KEY = KEK
    old = keys.active_key(SigningKey.Purpose.TREE_HEAD)
    signature = keys.sign(old, b"before rotation")
    call_command("rotate_signing_key", "--purpose", "tree_head", stdout=open(os.devnull, "w"))
    old.refresh_from_db()
    new = keys.active_key(SigningKey.Purpose.TREE_HEAD)
    assert new != old and old.status == "retired" and new.status == "active"
    assert keys.signature_is_valid(old, b"before rotation", signature)
    assert not keys.signature_is_valid(new, b"before rotation", signature)
    with pytest.raises(keys.SigningKeyError, match=f"^signing key {old.key_id} is retired and no longer signs$"):
        keys.sign(old, b"after rotation")
    event = AuditEvent.objects.get(action="key.rotated")
    assert event.actor_name == "cli"
    assert event.data == {"purpose": "tree_head", "old_key_id": old.key_id, "new_key_id": new.key_id}
    # The other purpose is untouched.
    assert not SigningKey.objects.filter(purpose="attestation").exists()


def test_revocation_needs_a_reason_and_happens_once(settings):
    key = keys.active_key(SigningKey.Purpose.ATTESTATION)
    with pytest.raises(keys.SigningKeyError, match="^a revocation needs a reason$"):
        keys.revoke_signing_key(actor="alice", key=key, reason="  ")
    keys.revoke_signing_key(actor="alice", key=key, reason="laptop stolen")
    key.refresh_from_db()
    assert key.status == "revoked" and key.revocation_reason == "laptop stolen"
    with pytest.raises(keys.SigningKeyError, match=f"^signing key {key.key_id} was already revoked at "):
        keys.revoke_signing_key(actor="alice", key=key, reason="again")
    event = AuditEvent.objects.get(action="key.revoked")
    assert event.changes == {"status": ["active", "revoked"]}
    assert keys.active_key(SigningKey.Purpose.ATTESTATION) != key  # a fresh key takes over


def test_revoke_command_reports_an_unknown_key():
    with pytest.raises(CommandError, match="^no signing key with id abc$"):
        call_command("revoke_signing_key", "abc", "--reason", "x")


def test_keys_endpoint_publishes_public_keys_only():
    old = keys.active_key(SigningKey.Purpose.TREE_HEAD)
    new = keys.rotate_signing_key(actor="ops", purpose=SigningKey.Purpose.TREE_HEAD)
    response = APIClient().get("/api/v1/keys")
    assert response.status_code == 200
    body = response.json()
    by_id = {k["key_id"]: k for k in body["keys"]}
    assert by_id[old.key_id]["status"] == "retired" and by_id[new.key_id]["status"] == "active"
    assert by_id[new.key_id]["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert by_id[new.key_id]["algorithm"] == "ed25519" and by_id[new.key_id]["purpose"] == "tree_head"
    assert "encrypted_private_key" not in response.content.decode()


class EnvelopeKms:
    """A stand-in for a cloud KMS: the `KeyEncryptor` interface, its own key id and wrapping."""

    key_id = "kms:projects/assay/keys/signing"
    wrapped: list[bytes] = []

    def __init__(self):
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        self._aead = ChaCha20Poly1305(b"\x07" * 32)

    def encrypt(self, plaintext: bytes, *, associated_data: bytes) -> bytes:
        blob = b"\x00" * 12 + self._aead.encrypt(b"\x00" * 12, plaintext, associated_data)
        self.wrapped.append(blob)
        return blob

    def decrypt(self, blob: bytes, *, associated_data: bytes) -> bytes:
        return self._aead.decrypt(blob[:12], blob[12:], associated_data)


def test_a_kms_can_stand_in_for_the_local_encryptor(settings):
    settings.ASSAY_KEY_ENCRYPTOR = "tests.governance.test_keys.EnvelopeKms"
    key = keys.active_key(SigningKey.Purpose.ATTESTATION)
    assert key.encryption_key_id == "kms:projects/assay/keys/signing"
    assert bytes(key.encrypted_private_key) in EnvelopeKms.wrapped
    keys._private_cache.clear()
    signature = keys.sign(key, b"through the kms")
    assert keys.signature_is_valid(key, b"through the kms", signature)
    assert not (settings.ASSAY_KEY_DIR / "key-encryption-key").exists()  # the local KEK was never needed
