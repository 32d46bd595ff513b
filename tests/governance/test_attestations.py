"""Provenance attestations: made on submission, verified by third-party DSSE code (securesystemslib), and every
kind of tampering reported precisely."""
from __future__ import annotations

import base64
import io
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from catalog.models import Representation, StoredFile
from governance import attestations, keys
from governance.models import Attestation, AuditEvent, SigningKey
from tests.governance.conftest import client_for_user, submitted_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(contributor, collection):
    return submitted_version(contributor, collection, files=("chair.glb", "chair_lod1.glb"))


def _statement(attestation: Attestation) -> dict:
    return json.loads(base64.b64decode(attestation.envelope["payload"]))


def test_submission_attests_the_version_each_file_and_the_rights(version):
    made = list(Attestation.objects.filter(version=version).order_by("id"))
    reps = list(Representation.objects.filter(lod__variant__version=version).select_related("file").order_by("id"))
    assert [(a.predicate_type, a.representation_id) for a in made] == [
        (attestations.SLSA_PROVENANCE, None),
        (attestations.SLSA_PROVENANCE, reps[0].pk),
        (attestations.SLSA_PROVENANCE, reps[1].pk),
        (attestations.ASSAY_RIGHTS, None),
    ]
    whole = _statement(made[0])
    assert whole["_type"] == "https://in-toto.io/Statement/v1"
    assert whole["subject"] == [{"name": r.filename, "digest": {"sha256": r.file.sha256}} for r in reps]
    assert whole["predicate"]["buildDefinition"]["buildType"] == "https://assay.dev/build-types/upload@1"
    assert whole["predicate"]["buildDefinition"]["externalParameters"]["uploaded_by"] == "carla"
    assert whole["predicate"]["runDetails"]["builder"]["id"] == "https://assay.dev/builders/catalog-upload"
    assert _statement(made[1])["subject"] == [{"name": "chair.glb", "digest": {"sha256": reps[0].file.sha256}}]
    rights = _statement(made[3])["predicate"]
    assert rights["licence"]["spdx_id"] == "CC-BY-4.0" and rights["consents"] == []
    event = AuditEvent.objects.get(action="version.submitted")
    assert event.data["attestations"] == [a.pk for a in made] and event.actor_name == "carla"
    for attestation in made:
        assert attestations.verify_attestation(attestation) == []
        # The in-toto bindings (third-party) parse and validate the structure; they raise ValueError if not.
        Statement.copy_from_pb(json_format.ParseDict(_statement(attestation), statement_pb2.Statement())).validate()


def test_a_reconstruction_job_becomes_the_slsa_build(version, contributor):
    from reconstruction.models import ReconstructionJob

    capture_image = _capture_with_image(version, contributor)
    job = ReconstructionJob(
        capture=capture_image.capture, asset=version.asset, backend="photogrammetry", backend_version="1.2.0",
        parameters={"max_image_size": 1600}, idempotency_key="k1", worker="gpu-worker-7", created_by=contributor,
        resource_usage={"model_checkpoints": [{"name": "depth.pt", "sha256": "ab" * 32}]},
    )
    job.save()
    job.produced_version = version
    job.save()
    version.refresh_from_db()
    predicate = attestations.provenance_predicate(version)
    build = predicate["buildDefinition"]
    assert build["buildType"] == "https://assay.dev/build-types/photogrammetry@1.2.0"
    assert build["externalParameters"] == {"backend": "photogrammetry", "parameters": {"max_image_size": 1600},
                                           "capture": capture_image.capture_id}
    assert build["resolvedDependencies"] == [
        {"uri": f"assay:capture/{capture_image.capture_id}/front.png", "name": "front.png",
         "digest": {"sha256": capture_image.file.sha256}},
        {"uri": "assay:checkpoint/depth.pt", "name": "depth.pt", "digest": {"sha256": "ab" * 32}},
    ]
    assert predicate["runDetails"]["builder"]["id"] == "https://assay.dev/builders/worker/gpu-worker-7"
    assert predicate["runDetails"]["metadata"]["invocationId"] == f"assay:job/{job.pk}"


def _capture_with_image(version, actor):
    from catalog.models import Capture, CaptureImage

    capture = Capture.objects.create(collection=version.asset.collection, name="turntable", created_by=actor)
    stored = StoredFile.objects.create(sha256="cd" * 32, size=10, media_type="image/png", storage_name="x")
    return CaptureImage.objects.create(capture=capture, file=stored, filename="front.png", width=4, height=4)


def test_securesystemslib_verifies_our_envelopes(version):
    for attestation in Attestation.objects.filter(version=version):
        envelope = Envelope.from_dict(attestation.envelope)
        public = SSlibKey.from_crypto(keys.public_key_of(attestation.key), keyid=attestation.key.key_id)
        accepted = envelope.verify([public], 1)
        assert list(accepted) == [attestation.key.key_id]
        assert json.loads(envelope.pae()[envelope.pae().index(b"{"):]) == _statement(attestation)


def test_securesystemslib_refuses_a_tampered_envelope(version):
    from securesystemslib.exceptions import VerificationError

    attestation = Attestation.objects.filter(version=version).first()
    statement = _statement(attestation)
    statement["subject"][0]["digest"]["sha256"] = "00" * 32
    forged = dict(attestation.envelope, payload=base64.b64encode(json.dumps(statement).encode()).decode())
    public = SSlibKey.from_crypto(keys.public_key_of(attestation.key), keyid=attestation.key.key_id)
    with pytest.raises(VerificationError):
        Envelope.from_dict(forged).verify([public], 1)


def test_envelopes_signed_by_securesystemslib_verify_with_ours():
    from securesystemslib.signer import CryptoSigner

    key = keys.active_key(SigningKey.Purpose.ATTESTATION)
    signer = CryptoSigner(keys._private_key(key), public_key=SSlibKey.from_crypto(keys.public_key_of(key), keyid=key.key_id))
    payload = json.dumps(attestations.statement([], attestations.ASSAY_RIGHTS, {"licence": None})).encode()
    envelope = Envelope(payload=payload, payload_type=attestations.PAYLOAD_TYPE, signatures={})
    envelope.sign(signer)
    assert attestations.verify_envelope(envelope.to_dict())["predicateType"] == attestations.ASSAY_RIGHTS


def test_a_tampered_payload_is_reported(version):
    attestation = Attestation.objects.filter(version=version).first()
    statement = _statement(attestation)
    statement["predicate"]["buildDefinition"]["externalParameters"]["uploaded_by"] = "mallory"
    attestation.envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    problems = attestations.verify_attestation(attestation)
    assert problems[0].startswith("tampered payload: its sha256 is ")
    assert problems[1] == f"tampered payload: the signature by key {attestation.key.key_id} does not verify over the payload"
    with pytest.raises(attestations.AttestationInvalid, match="^tampered payload: the signature by key"):
        attestations.verify_envelope(attestation.envelope)


def test_a_wrong_key_is_reported(version):
    attestation = Attestation.objects.filter(version=version).first()
    stranger = Ed25519PrivateKey.generate()
    with pytest.raises(attestations.AttestationInvalid) as caught:
        attestations.verify_envelope(attestation.envelope, expected_key=stranger.public_key())
    assert caught.value.problems == [
        f"wrong key: signed by key {attestation.key.key_id}, not by the expected key {keys.key_id_for(stranger.public_key())}"
    ]
    unknown = dict(attestation.envelope, signatures=[{"keyid": "ee" * 32, "sig": attestation.envelope["signatures"][0]["sig"]}])
    with pytest.raises(attestations.AttestationInvalid, match=f"^unknown key: no signing key has id {'ee' * 32}$"):
        attestations.verify_envelope(unknown)


def test_a_revoked_key_is_reported_and_rotation_keeps_old_envelopes_valid(version):
    attestation = Attestation.objects.filter(version=version).first()
    keys.rotate_signing_key(actor="ops", purpose=SigningKey.Purpose.ATTESTATION)
    attestation.key.refresh_from_db()
    assert attestations.verify_attestation(attestation) == []  # retired, still verifies
    key = keys.revoke_signing_key(actor="ops", key=attestation.key, reason="compromised HSM")
    attestation.key.refresh_from_db()
    assert attestations.verify_attestation(attestation) == [
        f"revoked key: signed with key {key.key_id}, revoked {key.revoked_at.isoformat()}: compromised HSM"
    ]


def test_a_digest_mismatch_is_reported(version):
    attestation = Attestation.objects.filter(version=version, representation__isnull=False).first()
    stored = attestation.representation.file
    swapped = StoredFile.objects.create(sha256="ff" * 32, size=stored.size, media_type=stored.media_type,
                                        storage_name="elsewhere")
    Representation.objects.filter(pk=attestation.representation_id).update(file=swapped)
    assert attestations.verify_attestation(attestation) == [
        f"digest mismatch: subject chair.glb is attested as sha256 {stored.sha256}, the stored file is {'ff' * 32}"
    ]


@pytest.mark.parametrize(("envelope", "problem"), [
    ("not an object", "the envelope is not a JSON object"),
    ({"payloadType": attestations.PAYLOAD_TYPE, "payload": "%%%", "signatures": []}, "the payload is not valid base64"),
    ({"payloadType": attestations.PAYLOAD_TYPE, "payload": "e30=", "signatures": []}, "the envelope has no signatures"),
])
def test_malformed_envelopes_are_reported(envelope, problem):
    with pytest.raises(attestations.AttestationInvalid) as caught:
        attestations.verify_envelope(envelope)
    assert caught.value.problems == [problem]


def test_attestations_and_lineage_endpoints(version, contributor, collection):
    from catalog import services

    client = client_for_user(contributor)
    response = client.get(f"/api/v1/versions/{version.pk}/attestations/")
    assert response.status_code == 200
    body = response.json()["attestations"]
    assert [a["predicate_type"] for a in body].count(attestations.SLSA_PROVENANCE) == 3
    assert body[0]["envelope"]["signatures"][0]["keyid"] == body[0]["key_id"]

    child = services.create_version(actor=contributor, asset=version.asset, parent=version)
    lineage = client.get(f"/api/v1/versions/{version.pk}/lineage").json()
    ids = [n["id"] for n in lineage["nodes"]]
    reps = list(Representation.objects.filter(lod__variant__version=version).order_by("id"))
    assert ids == [f"version:{version.pk}", f"version:{child.pk}", *(f"representation:{r.pk}" for r in reps)]
    version_node = lineage["nodes"][0]
    assert len(version_node["attestations"]) == 2  # provenance + rights
    rep_node = lineage["nodes"][2]
    assert rep_node["sha256"] == reps[0].file.sha256 and len(rep_node["attestations"]) == 1
    assert {"from": f"version:{version.pk}", "to": f"version:{child.pk}", "relation": "parent_of"} in lineage["edges"]

    from tests.factories import UserFactory
    outsider = client_for_user(UserFactory())
    assert outsider.get(f"/api/v1/versions/{version.pk}/lineage").status_code == 404
    problem = outsider.get(f"/api/v1/versions/{version.pk}/attestations/")
    assert problem.status_code == 404 and problem["Content-Type"] == "application/problem+json"


def test_the_rights_statement_names_the_consents_of_the_asset_and_its_captures(contributor, collection):
    from catalog import services
    from catalog.models import Capture
    from governance.rights_models import Consent
    from tests.governance.conftest import glb_bytes

    asset = services.create_asset(actor=contributor, collection=collection, slug="bust", name="Bust")
    capture = Capture.objects.create(collection=collection, name="studio", created_by=contributor)
    on_asset = Consent.objects.create(subject="Ada Model", channels=["web"])
    on_asset.assets.add(asset)
    on_capture = Consent.objects.create(subject="Ben Sitter", channels=["web", "print"])
    on_capture.captures.add(capture)
    version = services.create_version(actor=contributor, asset=asset)
    version.captures.add(capture)
    services.add_representation(actor=contributor, version=version, stream=io.BytesIO(glb_bytes()), filename="bust.glb")
    services.submit_version(actor=contributor, version=version)
    rights = Attestation.objects.get(version=version, predicate_type=attestations.ASSAY_RIGHTS)
    consents = _statement(rights)["predicate"]["consents"]
    assert [(c.get("asset"), c.get("capture"), c["consent"], c["subject"], c["revoked"]) for c in consents] == [
        (asset.pk, None, f"assay:consent/{on_asset.pk}", "Ada Model", False),
        (None, capture.pk, f"assay:consent/{on_capture.pk}", "Ben Sitter", False),
    ]
