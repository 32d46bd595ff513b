"""C2PA content credentials for images (thumbnails, previews, capture renditions), signed with c2pa-python.

The signing key is an Ed25519 `SigningKey` (purpose `c2pa`, encrypted at rest like the others); C2PA
refuses self-signed leaves, so on first use the key gets a certificate from a local issuing CA whose private
key is discarded right after (the CA certificate is the trust anchor to configure in verifiers; a
production deployment replaces the chain with one from a real CA). The manifest records the action and an
`dev.assay.provenance` assertion naming the version, the source files' digests and the attestation ids.

c2pa-python has no embedding for glTF/GLB/USD/FBX; those files are covered by the DSSE attestations.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.db import transaction

from config.problems import DomainError
from governance import keys
from governance.models import SigningKey

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "image/png": "image/png",
               "image/jpeg": "image/jpeg"}
PROVENANCE_LABEL = "dev.assay.provenance"
ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia"


class ContentCredentialsError(DomainError):
    code = "content_credentials"
    title = "The image cannot carry or does not carry valid content credentials"


@dataclass(frozen=True)
class Credentials:
    """What a reader found: the validation state (`Valid`, `Trusted`, `Invalid`) and the active manifest."""

    state: str
    manifest: dict[str, Any]
    failures: list[str]

    def assertion(self, label: str) -> Any:
        return next((a["data"] for a in self.manifest.get("assertions", []) if a["label"] == label), None)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Assay")])


def _usage(*, signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, key_cert_sign=not signing, crl_sign=not signing, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False,
    )


def issue_certificate_chain(key: SigningKey) -> str:
    """A leaf certificate for `key` from a one-off local CA (its private key is dropped); PEM, leaf first.

    C2PA's profile wants: CA:FALSE, digitalSignature (critical), EKU emailProtection, key identifiers.
    """
    now = dt.datetime.now(dt.UTC)
    ca_key = Ed25519PrivateKey.generate()
    ca = (
        x509.CertificateBuilder().subject_name(_name("Assay content credentials CA")).issuer_name(
            _name("Assay content credentials CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(signing=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, None)
    )
    public = keys.public_key_of(key)
    leaf = (
        x509.CertificateBuilder().subject_name(_name(f"Assay C2PA signer {key.key_id[:16]}")).issuer_name(ca.subject)
        .public_key(public).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(signing=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, None)
    )
    return (leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)).decode()


def trust_anchor(key: SigningKey) -> str:
    """The CA certificate (last of the chain), PEM: what a verifier trusts to see `Trusted` rather than `Valid`."""
    certificates = x509.load_pem_x509_certificates(key.certificate_chain.encode())
    return certificates[-1].public_bytes(serialization.Encoding.PEM).decode()


def signing_key() -> SigningKey:
    """The active C2PA key, with its certificate chain issued on first use."""
    key = keys.active_key(SigningKey.Purpose.C2PA)
    if key.certificate_chain:
        return key
    with transaction.atomic():
        key = SigningKey.objects.select_for_update().get(pk=key.pk)
        if not key.certificate_chain:
            key.certificate_chain = issue_certificate_chain(key)
            key.save(update_fields=["certificate_chain"])
    return key


def _media_type(kind: str) -> str:
    media_type = MEDIA_TYPES.get(kind.lower())
    if media_type is None:
        raise ContentCredentialsError(f"C2PA manifests are embedded in PNG and JPEG images here, not in {kind!r}")
    return media_type


def sign_image(data: bytes, *, kind: str, title: str, provenance: dict[str, Any], action: str = "c2pa.created") -> bytes:
    """The image with an embedded C2PA manifest (action + Assay provenance assertion), signed with the C2PA key.

    Name things in `provenance` with strings (URIs such as `assay:attestation/12`): the C2PA SDK stores a JSON
    array of small integers as a CBOR byte string, which reads back as base64.
    """
    media_type = _media_type(kind)
    key = signing_key()
    manifest = {
        "claim_generator_info": [{"name": "assay", "version": "1"}],
        "title": title,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{"action": action, "digitalSourceType": ALGORITHMIC_MEDIA}]}},
            {"label": PROVENANCE_LABEL, "data": {**provenance, "key_id": key.key_id}},
        ],
    }
    signer = c2pa.Signer.from_callback(
        lambda payload: keys.sign(key, payload), c2pa.C2paSigningAlg.ED25519, key.certificate_chain, None
    )
    out = io.BytesIO()
    try:
        with signer, c2pa.Builder(json.dumps(manifest)) as builder:
            builder.sign(signer, media_type, io.BytesIO(data), out)
    except c2pa.C2paError as exc:
        raise ContentCredentialsError(f"the {kind} image could not be signed: {exc}") from exc
    return out.getvalue()


def read_credentials(data: bytes, *, kind: str, trust_anchors: str | None = None) -> Credentials:
    """Read and validate the embedded manifest; `trust_anchors` (PEM) turns `Valid` into `Trusted`."""
    media_type = _media_type(kind)
    try:
        if trust_anchors:
            settings = c2pa.Settings.from_dict({"trust": {"user_anchors": trust_anchors}})
            with c2pa.Context(settings) as context, c2pa.Reader(media_type, io.BytesIO(data), context=context) as reader:
                return _credentials(reader)
        with c2pa.Reader(media_type, io.BytesIO(data)) as reader:
            return _credentials(reader)
    except c2pa.C2paError as exc:
        raise ContentCredentialsError(f"no readable C2PA manifest in the {kind} image: {exc}") from exc


def _credentials(reader: Any) -> Credentials:
    results = reader.get_validation_results() or {}
    failures = [f"{f['code']}: {f.get('explanation', '')}" for f in results.get("activeManifest", {}).get("failure", [])]
    return Credentials(state=reader.get_validation_state() or "", manifest=reader.get_active_manifest() or {},
                       failures=failures)


def _is_ours(data: bytes, kind: str) -> bool:
    try:
        credentials = read_credentials(data, kind=kind)
    except ContentCredentialsError:
        return False
    provenance = credentials.assertion(PROVENANCE_LABEL)
    return credentials.state in ("Valid", "Trusted") and isinstance(provenance, dict) and bool(
        SigningKey.objects.filter(key_id=provenance.get("key_id"), purpose=SigningKey.Purpose.C2PA).exists()
    )


def sign_asset_image(*, asset: Any, data: bytes, kind: str) -> bytes:
    """`data` (a rendering of `asset`) with embedded credentials naming the asset, its newest decided version and
    that version's attestations."""
    from catalog.models import AssetVersion
    from governance.models import Attestation

    version = asset.versions.exclude(state=AssetVersion.State.OPEN).order_by("-number").first()
    provenance: dict[str, Any] = {"asset": f"assay:asset/{asset.pk}", "source_sha256": hashlib.sha256(data).hexdigest()}
    if version is not None:
        provenance["version"] = f"assay:version/{version.pk}"
        provenance["attestations"] = [
            f"assay:attestation/{pk}" for pk in Attestation.objects.filter(version=version).values_list("pk", flat=True)
        ]
    return sign_image(data, kind=kind, title=f"{asset.slug}.{'png' if kind == 'png' else 'jpg'}", provenance=provenance)


def credential_asset_thumbnail(*, actor: Any, asset: Any) -> Any:
    """Give the asset's thumbnail embedded content credentials (replacing it through `catalog.services.set_thumbnail`,
    which checks the permission and audits); a thumbnail that already carries ours is left as it is."""
    from catalog import services as catalog
    from catalog.storage import open_blob

    if asset.thumbnail_id is None:
        raise ContentCredentialsError(f"asset {asset.pk} has no thumbnail to sign")
    thumbnail = asset.thumbnail
    kind = "png" if thumbnail.media_type == "image/png" else "jpeg" if thumbnail.media_type == "image/jpeg" else thumbnail.media_type
    with open_blob(thumbnail) as blob:
        data = blob.read()
    if _is_ours(data, kind):
        return asset
    signed = sign_asset_image(asset=asset, data=data, kind=kind)
    return catalog.set_thumbnail(actor=actor, asset=asset, stream=io.BytesIO(signed),
                                 filename=f"{asset.slug}.{'png' if kind == 'png' else 'jpg'}")
