"""C2PA content credentials on images: signed with our Ed25519 key and certificate, read back and validated by
c2pa-python (the reference C2PA implementation), and tampering and misuse reported."""
from __future__ import annotations

import io

import pytest
from cryptography import x509
from PIL import Image

from governance import content_credentials as cc
from governance import keys
from governance.models import SigningKey
from tests.governance.conftest import image_bytes

pytestmark = pytest.mark.django_db

PROVENANCE = {"version": "assay:version/7", "attestations": ["assay:attestation/11", "assay:attestation/12"],
              "source_sha256": "ab" * 32}


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_signed_images_validate_and_carry_our_provenance(kind):
    signed = cc.sign_image(image_bytes(kind.upper(), size=(64, 48)), kind=kind, title=f"thumb.{kind}",
                           provenance=PROVENANCE)
    assert Image.open(io.BytesIO(signed)).size == (64, 48)  # still the same picture
    key = cc.signing_key()
    untrusted = cc.read_credentials(signed, kind=kind)
    assert untrusted.state == "Valid"
    assert untrusted.failures == ["signingCredential.untrusted: signing certificate untrusted"]
    trusted = cc.read_credentials(signed, kind=kind, trust_anchors=cc.trust_anchor(key))
    assert trusted.state == "Trusted" and trusted.failures == []
    assert trusted.assertion(cc.PROVENANCE_LABEL) == {**PROVENANCE, "key_id": key.key_id}
    assert trusted.manifest["title"] == f"thumb.{kind}"


def test_the_certificate_certifies_our_encrypted_key_and_is_issued_once():
    key = cc.signing_key()
    leaf = x509.load_pem_x509_certificates(key.certificate_chain.encode())[0]
    assert leaf.public_key().public_bytes_raw() == bytes(key.public_key)
    assert cc.signing_key().certificate_chain == key.certificate_chain
    assert key.purpose == SigningKey.Purpose.C2PA and key.status == "active"


def test_tampered_pixels_are_detected():
    signed = cc.sign_image(image_bytes("PNG", size=(32, 32)), kind="png", title="t.png", provenance=PROVENANCE)
    picture = Image.open(io.BytesIO(signed))
    # Re-encode different pixels but keep the manifest chunk: the data hash no longer matches.
    chunk_at = signed.index(b"caBX") - 4
    length = int.from_bytes(signed[chunk_at:chunk_at + 4], "big")
    manifest_chunk = signed[chunk_at:chunk_at + 12 + length]
    other = io.BytesIO()
    Image.new("RGB", picture.size, (0, 0, 255)).save(other, format="PNG")
    forged = other.getvalue()
    forged = forged[:33] + manifest_chunk + forged[33:]  # after the IHDR chunk, where c2pa put it
    credentials = cc.read_credentials(forged, kind="png", trust_anchors=cc.trust_anchor(cc.signing_key()))
    assert credentials.state == "Invalid"
    assert any(f.startswith("assertion.dataHash.mismatch") for f in credentials.failures)


def test_rotation_gives_a_new_key_and_certificate():
    old = cc.signing_key()
    keys.rotate_signing_key(actor="ops", purpose=SigningKey.Purpose.C2PA)
    new = cc.signing_key()
    assert new != old and new.certificate_chain and new.certificate_chain != old.certificate_chain
    signed = cc.sign_image(image_bytes("PNG"), kind="png", title="t.png", provenance=PROVENANCE)
    assert cc.read_credentials(signed, kind="png").assertion(cc.PROVENANCE_LABEL)["key_id"] == new.key_id


def test_unsupported_files_and_unsigned_images_are_reported():
    with pytest.raises(cc.ContentCredentialsError,
                       match="^C2PA manifests are embedded in PNG and JPEG images here, not in 'glb'$"):
        cc.sign_image(b"glTF", kind="glb", title="chair.glb", provenance=PROVENANCE)
    with pytest.raises(cc.ContentCredentialsError, match="^no readable C2PA manifest in the png image: "):
        cc.read_credentials(image_bytes("PNG"), kind="png")


def test_asset_thumbnails_get_credentials_naming_the_versions_attestations(contributor, collection):
    from django.core.management import call_command

    from catalog import services
    from catalog.models import Asset
    from catalog.storage import open_blob
    from governance.models import Attestation, AuditEvent
    from tests.governance.conftest import submitted_version

    version = submitted_version(contributor, collection)
    asset = services.set_thumbnail(actor=contributor, asset=version.asset, stream=io.BytesIO(image_bytes("PNG")),
                                   filename="chair.png")
    plain = asset.thumbnail
    out = io.StringIO()
    call_command("credential_thumbnails", "--actor", "carla", stdout=out)
    assert out.getvalue().splitlines() == [f"asset {asset.pk}: signed"]
    asset = Asset.objects.select_related("thumbnail").get(pk=asset.pk)
    assert asset.thumbnail_id != plain.pk
    with open_blob(asset.thumbnail) as blob:
        credentials = cc.read_credentials(blob.read(), kind="png", trust_anchors=cc.trust_anchor(cc.signing_key()))
    assert credentials.state == "Trusted"
    provenance = credentials.assertion(cc.PROVENANCE_LABEL)
    assert provenance["version"] == f"assay:version/{version.pk}" and provenance["source_sha256"] == plain.sha256
    assert provenance["attestations"] == [
        f"assay:attestation/{pk}" for pk in Attestation.objects.filter(version=version).values_list("pk", flat=True)
    ]
    assert AuditEvent.objects.filter(action="asset.thumbnail_set", asset_id=asset.pk).count() == 2

    again = io.StringIO()
    call_command("credential_thumbnails", "--actor", "carla", stdout=again)
    assert again.getvalue().splitlines() == [f"asset {asset.pk}: already signed"]
