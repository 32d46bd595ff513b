"""Rights inheritance, review queue, safety gates and the publish policy, through the real services."""
from __future__ import annotations

import base64
import datetime as dt
import io
import json

import cv2
import numpy as np
import pytest
from django.utils import timezone
from PIL import Image, ImageDraw

from catalog import services
from catalog.errors import PermissionDenied
from catalog.models import AssetVersion
from catalog.permissions import Role, assign_role
from catalog.storage import store_stream
from governance.attestations import ASSAY_SAFETY, verify_attestation
from governance.errors import PolicyNotMet, ReviewConflict
from governance.gate_models import BrandMark
from governance.gates import BLOCK, FLAG, PASS, GateContext, GateImage
from governance.gates.evaluation import brand_mark, draw_face, draw_text, paste_mark
from governance.gates.export_control import ExportControlGate
from governance.gates.faces import FaceGate
from governance.gates.logos import LogoGate, ReferenceMark
from governance.gates.ocr import TextGate
from governance.gates.runner import run_gates
from governance.models import Attestation, AuditEvent, Notification
from governance.publishing import publish_version
from governance.review import claim_review, decide_review
from governance.review_models import ReviewItem
from governance.rights import attach_licence, effective_rights, record_consent, revoke_consent
from tests.catalog.conftest import glb_bytes
from tests.factories import LicenceFactory
from tests.governance.conftest import client_for_user, submitted_version, user_with_role

pytestmark = pytest.mark.django_db

def logo_image() -> np.ndarray:
    return brand_mark(160)


def scene(*, text: str | None = None, logo: bool = False, face: bool = False, seed: int = 0) -> np.ndarray:
    """A plain background with blobs, and optionally a sign with text, the brand mark and a drawn face."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (640, 480), (150, 140, 130))
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = rng.integers(0, 600), rng.integers(0, 440)
        d.ellipse((x, y, x + 40, y + 40), fill=tuple(int(v) for v in rng.integers(90, 200, 3)))
    arr = cv2.cvtColor(np.array(img), cv2.COLOR_RGB2BGR)
    if text:
        arr = draw_text(arr, text, height=48, at=(45, 385))
    if logo:
        arr = paste_mark(arr, logo_image(), side=200, at=(300, 60))
    if face:
        arr = draw_face(arr, side=150, at=(60, 60))
    return arr


def png(arr: np.ndarray) -> bytes:
    return cv2.imencode(".png", arr)[1].tobytes()


@pytest.fixture
def reviewers(collection):
    return user_with_role(Role.REVIEWER, collection, "rita"), user_with_role(Role.REVIEWER, collection, "rob")


# Rights -------------------------------------------------------------------------------------------


def test_effective_rights_take_the_strictest_terms_through_the_lineage(collection, contributor):
    now = timezone.now()
    version = submitted_version(contributor, collection)
    version.asset.licence.channels = ["web", "ar", "print"]
    version.asset.licence.expires_at = now + dt.timedelta(days=30)
    version.asset.licence.save()
    capture = services.create_capture(actor=contributor, collection=collection, name="shoot",
                                      images=[("a.png", io.BytesIO(png(scene())))])
    version.captures.add(capture)
    attach_licence(actor=contributor, licence=LicenceFactory(spdx_id="", name="Studio terms", channels=["web", "ar"],
                                                             territories=["fr", "DE"], expires_at=now + dt.timedelta(days=5),
                                                             attribution="Photo: Studio"), capture=capture)
    rights = effective_rights(version)
    assert rights.channels == {"web", "ar"}
    assert rights.territories == {"FR", "DE"}
    assert rights.expires_at == now + dt.timedelta(days=5)
    assert rights.attributions == ["Photo: Studio"]
    assert rights.refusal(channel="web") is None
    assert rights.refusal(channel="print") == "the licences do not allow the 'print' channel (allowed: ar, web)"
    assert rights.refusal(channel="web", territory="us") == "the licences do not cover territory US"
    assert rights.refusal(channel="web", at=now + dt.timedelta(days=6)).startswith("the licences expired at")


def test_contradictory_licences_are_reported(collection, contributor):
    version = submitted_version(contributor, collection)
    version.asset.licence.channels = ["print"]
    version.asset.licence.save()
    capture = services.create_capture(actor=contributor, collection=collection, name="shoot",
                                      images=[("a.png", io.BytesIO(png(scene())))])
    version.captures.add(capture)
    attach_licence(actor=contributor, licence=LicenceFactory(spdx_id="", name="Web only", channels=["web"]), capture=capture)
    rights = effective_rights(version)
    assert rights.contradictions == ["the licences CC-BY-4.0, Web only share no channel"]
    assert rights.refusal(channel="web") == "the licences CC-BY-4.0, Web only share no channel"


def test_download_for_a_channel_the_licence_does_not_allow_is_refused(collection, contributor):
    version = submitted_version(contributor, collection)
    version.asset.licence.channels = ["web"]
    version.asset.licence.save()
    rep = version.variants.first().lods.first().representations.first()
    client = client_for_user(contributor)
    ok = client.get(f"/api/v1/representations/{rep.pk}/download/?channel=web")
    assert ok.status_code == 200
    refused = client.get(f"/api/v1/representations/{rep.pk}/download/?channel=ar")
    assert refused.status_code == 403
    assert refused.json()["detail"] == ("Download for the 'ar' channel refused: the licences do not allow the 'ar' "
                                        "channel (allowed: web).")
    rights = client.get(f"/api/v1/assets/{version.asset_id}/rights/").json()
    assert rights["versions"][0]["channels"] == ["web"]
    assert rights["versions"][0]["refusals"]["web"] is None


# Review -------------------------------------------------------------------------------------------


def test_review_is_claimed_once_and_needs_two_different_reviewers_when_public_facing(collection, contributor, reviewers):
    rita, rob = reviewers
    asset = services.create_asset(actor=contributor, collection=collection, slug="logo-mug", name="Mug",
                                  licence=LicenceFactory(), tags=["public-facing"])
    version = services.create_version(actor=contributor, asset=asset)
    services.add_representation(actor=contributor, version=version, stream=io.BytesIO(glb_bytes()), filename="m.glb")
    services.submit_version(actor=contributor, version=version)
    item = ReviewItem.objects.get(version=version)
    assert item.required_approvals == 2
    assign_role(contributor, Role.REVIEWER, collection)  # a reviewer too, yet never of their own work
    with pytest.raises(PermissionDenied, match=r"^You cannot review a version you created or submitted \(four-eyes rule\)\.$"):
        claim_review(actor=contributor, item=item)
    claim_review(actor=rita, item=item)
    with pytest.raises(ReviewConflict, match="is claimed by rita; it cannot be claimed"):
        claim_review(actor=rob, item=item)
    with pytest.raises(ReviewConflict, match="Give a reason"):
        decide_review(actor=rita, item=item, approve=True, reason=" ")
    item = decide_review(actor=rita, item=item, approve=True, reason="looks right")
    assert item.state == ReviewItem.State.WAITING
    with pytest.raises(PermissionDenied, match="already decided"):
        claim_review(actor=rita, item=item)
    claim_review(actor=rob, item=item)
    item = decide_review(actor=rob, item=item, approve=True, reason="agreed")
    assert item.state == ReviewItem.State.APPROVED
    version.refresh_from_db()
    assert version.state == AssetVersion.State.APPROVED


def test_review_api_lists_claims_and_decides(collection, contributor, reviewers):
    rita, _ = reviewers
    version = submitted_version(contributor, collection)
    client = client_for_user(rita)
    listed = client.get("/api/v1/reviews/").json()
    assert [i["version"] for i in listed] == [version.pk]
    item_id = listed[0]["id"]
    assert client.post(f"/api/v1/reviews/{item_id}/claim/").json()["state"] == "claimed"
    assert client.post(f"/api/v1/reviews/{item_id}/claim/").status_code == 409
    decided = client.post(f"/api/v1/reviews/{item_id}/decide/", {"approve": False, "reason": "seams"}, format="json")
    assert decided.json()["state"] == "rejected"


# Gates --------------------------------------------------------------------------------------------


def test_text_gate_reads_text_and_passes_a_blank_scene():
    flagged = TextGate().check([GateImage("t.png", "x", scene(text="ACME SALE"))], GateContext())
    assert flagged.outcome == FLAG
    assert "ACME" in flagged.findings[0].detail["text"]
    assert TextGate().check([GateImage("b.png", "y", scene())], GateContext()).outcome == PASS


def test_a_gate_that_cannot_run_blocks(monkeypatch):
    import pytesseract

    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    result = TextGate().check([GateImage("t.png", "x", scene())], GateContext())
    assert result.outcome == BLOCK
    assert result.reason.startswith("Tesseract is not installed or not on PATH")
    unreadable = LogoGate(marks=[]).check([GateImage("bad.jpg", "z", None, "not a decodable image")], GateContext())
    assert unreadable.outcome == BLOCK
    assert unreadable.reason == "cannot read 1 image(s), so the gate cannot vouch for them: bad.jpg: not a decodable image"


def test_logo_gate_finds_the_mark_with_a_homography_and_not_elsewhere():
    gate = LogoGate(marks=[ReferenceMark("Acme", FLAG, logo_image())])
    found = gate.check([GateImage("s.png", "x", scene(logo=True))], GateContext())
    assert found.outcome == FLAG
    x, y, w, h = found.findings[0].boxes[0]
    assert abs(x - 300) < 25 and abs(y - 60) < 25 and abs(w - 200) < 40
    assert gate.check([GateImage("s.png", "x", scene(text="HELLO"))], GateContext()).outcome == PASS


def test_export_control_rules():
    gate = ExportControlGate(rules={"controlled_categories": ["defence/"], "min_accuracy_mm": 0.05,
                                    "embargoed_territories": ["KP"]})
    result = gate.check([], GateContext(category="defence/drone", quality_metrics={"accuracy_mm": 0.01}, territories=["FR"]))
    assert result.outcome == BLOCK
    assert result.reason == ("category 'defence/drone' is on the controlled list (defence/); scan accuracy 0.01 mm is "
                             "finer than the controlled threshold 0.05 mm")
    assert gate.check([], GateContext(category="furniture", territories=None)).reason == (
        "the licences are worldwide and so open embargoed territories KP")


# End to end ---------------------------------------------------------------------------------------


def test_face_gate_finds_a_drawn_face_and_not_a_logo():
    found = FaceGate().check([GateImage("f.png", "x", scene(face=True))], GateContext())
    assert found.outcome == FLAG
    x, y, w, h = found.findings[0].boxes[0]
    assert 50 <= x <= 110 and 50 <= y <= 110 and 80 <= w <= 160
    assert FaceGate().check([GateImage("l.png", "y", scene(text="ACME", logo=True))], GateContext()).outcome == PASS


def test_flagged_asset_reviewed_by_two_published_after_consent_and_withdrawn_on_revocation(
    collection, contributor, reviewers, settings
):
    """The issue's case: a capture showing a brand mark, a sign and a (drawn) face is flagged by three gates,
    approved by two different reviewers who override the logo and text flags, refused until the person's consent
    is recorded, published, then withdrawn automatically when that consent is revoked."""
    rita, rob = reviewers
    manager = user_with_role(Role.ASSET_MANAGER, collection, "mia")
    blob, _ = store_stream(io.BytesIO(png(logo_image())), filename="acme.png")
    BrandMark.objects.create(name="Acme", image=blob)
    capture = services.create_capture(actor=contributor, collection=collection, name="shop window",
                                      images=[("front.png", io.BytesIO(png(scene(text="ACME SALE", logo=True, face=True))))])
    asset = services.create_asset(actor=contributor, collection=collection, slug="window", name="Window",
                                  licence=LicenceFactory(), tags=["brand-critical"])
    version = services.create_version(actor=contributor, asset=asset)
    version.captures.add(capture)
    services.add_representation(actor=contributor, version=version, stream=io.BytesIO(glb_bytes()), filename="w.glb")
    services.submit_version(actor=contributor, version=version)
    settings.ASSAY_REQUIRED_GATES = ["text", "logos", "faces", "export_control"]

    verdicts = {v.gate: v for v in run_gates(version=version)}
    assert {g: v.outcome for g, v in verdicts.items()} == {"export_control": "pass", "faces": "flag", "logos": "flag",
                                                           "text": "flag"}
    assert verdicts["logos"].evidence["findings"][0]["label"] == "logo:Acme"
    assert "ACME" in verdicts["text"].evidence["findings"][0]["detail"]["text"]
    assert verdicts["faces"].evidence_image is not None  # the image with the face boxed, stored by sha256
    assert AuditEvent.objects.filter(action="gate.verdict", asset_id=asset.pk).count() == 4
    safety = Attestation.objects.get(version=version, predicate_type=ASSAY_SAFETY)
    assert verify_attestation(safety) == []
    signed = json.loads(base64.b64decode(safety.envelope["payload"]))["predicate"]["verdicts"]
    assert sorted((v["gate"], v["outcome"]) for v in signed) == [("export_control", "pass"), ("faces", "flag"),
                                                                 ("logos", "flag"), ("text", "flag")]

    item = ReviewItem.objects.get(version=version)
    assert item.required_approvals == 2
    claim_review(actor=rita, item=item)
    decide_review(actor=rita, item=item, approve=True, reason="brand owner agreed", overrides=["logos", "text"])
    claim_review(actor=rob, item=item)
    decide_review(actor=rob, item=item, approve=True, reason="second look fine")
    version.refresh_from_db()
    assert version.state == AssetVersion.State.APPROVED

    with pytest.raises(PolicyNotMet) as refused:
        publish_version(actor=manager, version=version)
    assert refused.value.extra["reasons"] == [
        "faces were found (1 face(s) found on 1 image(s); a consent record is needed) and there is no valid consent "
        "for the 'web' channel"]
    assert AuditEvent.objects.filter(action="version.publish_refused", object_id=str(version.pk)).exists()

    signed = draw_text(np.full((300, 800, 3), 255, np.uint8), "I consent. Jane Doe", height=40, at=(20, 120))
    form, _ = store_stream(io.BytesIO(png(signed)), filename="release-scan.png")  # a scan of the signed form
    consent = record_consent(actor=manager, subject="Jane Doe", channels=["web", "ar"], captures=[capture], signed_form=form)
    assert publish_version(actor=manager, version=version).state == AssetVersion.State.PUBLISHED

    withdrawn = revoke_consent(actor=manager, consent=consent, reason="subject asked")
    assert [v.pk for v in withdrawn] == [version.pk]
    version.refresh_from_db()
    assert version.state == AssetVersion.State.WITHDRAWN
    assert Notification.objects.get(recipient=asset.owner).message == (
        f"Version {version} was withdrawn: consent of Jane Doe revoked: subject asked.")
    assert AuditEvent.objects.filter(action="rights.revoked", data__withdrawn_versions=[version.pk]).exists()
