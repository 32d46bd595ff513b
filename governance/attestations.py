"""Provenance attestations: in-toto Statement v1 with a SLSA Provenance v1 predicate (and an Assay rights
predicate), wrapped in a DSSE envelope signed with Ed25519.

For each submitted AssetVersion: one provenance statement whose subjects are all its files, one per
Representation (subject: that file), and one rights statement (licence, consent references). The
envelopes verify with any DSSE implementation (securesystemslib's is tested) given the public key from
`GET /api/v1/keys`; the DSSE `keyid` is the key id there (sha256 of the raw public key).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.db import transaction

from catalog.models import AssetVersion, CaptureImage, Representation
from config.problems import DomainError
from governance import keys
from governance.audit import canonical_json
from governance.lineage import producing_job
from governance.models import Attestation, SigningKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
ASSAY_RIGHTS = "https://assay.dev/attestations/rights/v1"
BUILD_TYPE_BASE = "https://assay.dev/build-types/"
BUILDER_BASE = "https://assay.dev/builders/"


class AttestationInvalid(DomainError):
    code = "attestation_invalid"
    title = "The attestation does not verify"

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems), problems=problems)
        self.problems = problems


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: the bytes that are signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign_statement(statement: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """A DSSE envelope of the statement's canonical JSON, signed with `key`."""
    payload = canonical_json(statement)
    signature = keys.sign(key, pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key.key_id, "sig": base64.b64encode(signature).decode()}],
    }


def _decode(envelope: Any) -> tuple[bytes, list[dict[str, Any]], list[str]]:
    problems: list[str] = []
    if not isinstance(envelope, dict):
        return b"", [], ["the envelope is not a JSON object"]
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        problems.append(f"payloadType is {envelope.get('payloadType')!r}, expected {PAYLOAD_TYPE!r}")
    try:
        payload = base64.b64decode(envelope.get("payload", ""), validate=True)
    except (binascii.Error, TypeError, ValueError):
        return b"", [], [*problems, "the payload is not valid base64"]
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        return payload, [], [*problems, "the envelope has no signatures"]
    return payload, signatures, problems


def envelope_problems(
    envelope: Any, *, expected_key: SigningKey | Ed25519PublicKey | None = None
) -> tuple[dict[str, Any] | None, list[str]]:
    """Check a DSSE envelope's signature; returns (statement, problems). No problems means it verifies.

    Without `expected_key`, the signer is looked up by the envelope's keyid among our keys (a hint only: the
    signature must still verify under that key). Reports: unknown key, wrong key, revoked key, tampered payload.
    """
    payload, signatures, problems = _decode(envelope)
    if problems and not signatures:
        return None, problems
    message = pae(PAYLOAD_TYPE, payload)
    verified = False
    for entry in signatures:
        keyid = entry.get("keyid", "") if isinstance(entry, dict) else ""
        try:
            signature = base64.b64decode(entry.get("sig", ""), validate=True)
        except (binascii.Error, TypeError, ValueError, AttributeError):
            problems.append(f"signature by key {keyid or '?'} is not valid base64")
            continue
        if isinstance(expected_key, Ed25519PublicKey):
            public, key = expected_key, None
            expected_id = keys.key_id_for(expected_key)
        else:
            key = expected_key or SigningKey.objects.filter(key_id=keyid).first()
            if key is None:
                problems.append(f"unknown key: no signing key has id {keyid}")
                continue
            public, expected_id = keys.public_key_of(key), key.key_id
        try:
            public.verify(signature, message)
        except InvalidSignature:
            if keyid and keyid != expected_id:
                problems.append(f"wrong key: signed by key {keyid}, not by the expected key {expected_id}")
            else:
                problems.append(f"tampered payload: the signature by key {expected_id} does not verify over the payload")
            continue
        if key is not None and key.revoked_at is not None:
            problems.append(
                f"revoked key: signed with key {key.key_id}, revoked {key.revoked_at.isoformat()}: {key.revocation_reason}"
            )
            continue
        verified = True
    if not verified:
        return None, problems or ["no signature verifies"]
    try:
        statement = json.loads(payload)
    except ValueError:
        return None, [*problems, "the payload is not JSON"]
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        return None, [*problems, f"the payload is not an in-toto Statement v1 (_type {STATEMENT_TYPE})"]
    return statement, problems


def verify_envelope(envelope: Any, *, expected_key: SigningKey | Ed25519PublicKey | None = None) -> dict[str, Any]:
    """The statement when the envelope verifies; AttestationInvalid listing every problem otherwise."""
    statement, problems = envelope_problems(envelope, expected_key=expected_key)
    if problems or statement is None:
        raise AttestationInvalid(problems)
    return statement


def _current_subjects(attestation: Attestation) -> dict[str, str]:
    if attestation.representation_id is not None:
        rep = Representation.objects.select_related("file").get(pk=attestation.representation_id)
        return {rep.filename: rep.file.sha256}
    return {
        rep.filename: rep.file.sha256
        for rep in Representation.objects.filter(lod__variant__version_id=attestation.version_id).select_related("file")
    }


def verify_attestation(attestation: Attestation) -> list[str]:
    """Every reason a stored attestation does not hold now: its envelope, its payload digest, its subjects' files."""
    statement, problems = envelope_problems(attestation.envelope, expected_key=attestation.key)
    try:
        payload = base64.b64decode(attestation.envelope.get("payload", ""), validate=True)
    except (binascii.Error, TypeError, ValueError, AttributeError):
        payload = b""
    if hashlib.sha256(payload).hexdigest() != attestation.payload_sha256:
        problems.insert(0, f"tampered payload: its sha256 is {hashlib.sha256(payload).hexdigest()}, "
                           f"the attestation recorded {attestation.payload_sha256}")
    if statement is not None:
        files = _current_subjects(attestation)
        for subject in statement.get("subject", []):
            name, digest = subject.get("name"), subject.get("digest", {}).get("sha256")
            if name not in files:
                problems.append(f"digest mismatch: subject {name} is no longer a file of the version")
            elif files[name] != digest:
                problems.append(f"digest mismatch: subject {name} is attested as sha256 {digest}, the stored file is {files[name]}")
    return problems


def _capture_dependencies(version: AssetVersion, job: Any) -> list[dict[str, Any]]:
    capture_ids = set(version.captures.values_list("id", flat=True))
    if job is not None:
        capture_ids.add(job.capture_id)
    images = CaptureImage.objects.filter(capture_id__in=capture_ids).select_related("file").order_by("capture_id", "id")
    return [
        {"uri": f"assay:capture/{image.capture_id}/{image.filename}", "name": image.filename,
         "digest": {"sha256": image.file.sha256}}
        for image in images
    ]


def _checkpoint_dependencies(version: AssetVersion, job: Any) -> list[dict[str, Any]]:
    """Model checkpoints the producer used: `[{"name", "sha256", "uri"?}]` from the job or the version metadata."""
    usage = getattr(job, "resource_usage", None) or {}
    checkpoints = getattr(job, "model_checkpoints", None) or usage.get("model_checkpoints")
    checkpoints = checkpoints or version.metadata.get("model_checkpoints") or []
    return [
        {"uri": c.get("uri") or f"assay:checkpoint/{c['name']}", "name": c["name"], "digest": {"sha256": c["sha256"]}}
        for c in checkpoints if isinstance(c, dict) and c.get("name") and c.get("sha256")
    ]


def provenance_predicate(version: AssetVersion) -> dict[str, Any]:
    """SLSA Provenance v1: how the version was built (a reconstruction job, or an upload by a person)."""
    job = producing_job(version)
    dependencies = _capture_dependencies(version, job) + _checkpoint_dependencies(version, job)
    if job is not None:
        build_definition = {
            "buildType": f"{BUILD_TYPE_BASE}{job.backend}@{job.backend_version}",
            "externalParameters": {"backend": job.backend, "parameters": job.parameters, "capture": job.capture_id},
            "internalParameters": {"queue": job.queue},
            "resolvedDependencies": dependencies,
        }
        run_details = {
            "builder": {"id": f"{BUILDER_BASE}worker/{job.worker or 'unknown'}"},
            "metadata": {
                "invocationId": f"assay:job/{job.pk}",
                **({"startedOn": job.started_at.isoformat()} if job.started_at else {}),
                **({"finishedOn": job.finished_at.isoformat()} if job.finished_at else {}),
            },
        }
    else:
        build_definition = {
            "buildType": f"{BUILD_TYPE_BASE}upload@1",
            "externalParameters": {"uploaded_by": version.created_by.get_username(), "notes": version.notes},
            "internalParameters": {},
            "resolvedDependencies": dependencies,
        }
        run_details = {
            "builder": {"id": f"{BUILDER_BASE}catalog-upload"},
            "metadata": {
                "invocationId": f"assay:version/{version.pk}",
                "startedOn": version.created_at.isoformat(),
                **({"finishedOn": version.submitted_at.isoformat()} if version.submitted_at else {}),
            },
        }
    if version.parent_id is not None:
        build_definition["externalParameters"]["parent_version"] = version.parent_id
    return {"buildDefinition": build_definition, "runDetails": run_details}


def _consent_reference(consent: Any, **where: Any) -> dict[str, Any]:
    signed_form = getattr(consent, "signed_form", None)
    return {
        **where, "consent": f"assay:consent/{consent.pk}", "subject": str(getattr(consent, "subject", consent)),
        "channels": getattr(consent, "channels", None),
        "signed_form_sha256": signed_form.sha256 if signed_form is not None else None,
        "expires_at": _iso_or_none(getattr(consent, "expires_at", None)),
        "revoked": getattr(consent, "revoked_at", None) is not None,
    }


def _iso_or_none(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def rights_predicate(version: AssetVersion) -> dict[str, Any]:
    """Assay rights: the asset's licence and the consent records on the asset and on the version's captures."""
    licence = version.asset.licence
    consents: list[dict[str, Any]] = []
    on_asset = getattr(version.asset, "consents", None)  # the consent model arrives with the rights work
    if on_asset is not None:
        consents.extend(_consent_reference(c, asset=version.asset_id) for c in on_asset.select_related("signed_form"))
    for capture in version.captures.all():
        related = getattr(capture, "consents", None)
        if related is not None:
            consents.extend(_consent_reference(c, capture=capture.pk) for c in related.select_related("signed_form"))
    return {
        "licence": None if licence is None else {
            "spdx_id": licence.spdx_id, "name": licence.name, "url": licence.url, "licensor": licence.licensor,
            "attribution": licence.attribution,
        },
        "consents": consents,
    }


def statement(subjects: list[dict[str, Any]], predicate_type: str, predicate: dict[str, Any]) -> dict[str, Any]:
    return {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": predicate_type, "predicate": predicate}


def attest_version(*, version: AssetVersion) -> list[Attestation]:
    """Sign provenance (version and each file) and rights statements for a version being submitted.

    Runs inside the caller's transaction; the caller's audit event (`version.submitted`) names the ids.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("attest_version must be called inside transaction.atomic()")
    key = keys.active_key(SigningKey.Purpose.ATTESTATION)
    representations = list(
        Representation.objects.filter(lod__variant__version=version).select_related("file").order_by("id")
    )
    subjects = [{"name": r.filename, "digest": {"sha256": r.file.sha256}} for r in representations]
    provenance = provenance_predicate(version)
    planned: list[tuple[Representation | None, str, dict[str, Any]]] = [
        (None, SLSA_PROVENANCE, statement(subjects, SLSA_PROVENANCE, provenance)),
        *((r, SLSA_PROVENANCE, statement([s], SLSA_PROVENANCE, provenance)) for r, s in zip(representations, subjects, strict=True)),
        (None, ASSAY_RIGHTS, statement(subjects, ASSAY_RIGHTS, rights_predicate(version))),
    ]
    created = []
    for representation, predicate_type, body in planned:
        envelope = sign_statement(body, key)
        created.append(Attestation(
            version=version, representation=representation, predicate_type=predicate_type, envelope=envelope,
            payload_sha256=hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest(), key=key,
        ))
    return Attestation.objects.bulk_create(created)


ASSAY_SAFETY = "https://assay.dev/attestations/safety-verdicts/v1"


def attest_safety_verdicts(*, version: AssetVersion, verdicts: list[Any]) -> Attestation:
    """Sign the safety gates' verdicts on a version (gate, version, outcome, reason, evidence digest) over the
    version's files; runs in the caller's transaction, after the verdicts are stored."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("attest_safety_verdicts must be called inside transaction.atomic()")
    key = keys.active_key(SigningKey.Purpose.ATTESTATION)
    representations = Representation.objects.filter(lod__variant__version=version).select_related("file").order_by("id")
    subjects = [{"name": r.filename, "digest": {"sha256": r.file.sha256}} for r in representations]
    predicate = {"verdicts": [
        {"gate": v.gate, "gateVersion": v.gate_version, "outcome": v.outcome, "reason": v.reason, "verdictId": v.pk,
         "evidenceImage": v.evidence_image.sha256 if v.evidence_image_id else None,
         "images": [i["sha256"] for i in v.evidence.get("images", [])]}
        for v in verdicts
    ]}
    envelope = sign_statement(statement(subjects, ASSAY_SAFETY, predicate), key)
    return Attestation.objects.create(
        version=version, predicate_type=ASSAY_SAFETY, envelope=envelope, key=key,
        payload_sha256=hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest(),
    )
