"""Brand-mark gate: ORB features of each active BrandMark matched against the images, confirmed by a RANSAC
homography with enough inliers; a match flags (or blocks, per mark)."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from governance.gates import BLOCK, FLAG, PASS, Finding, GateContext, GateImage, GateResult, register, unreadable, worst


@dataclass
class ReferenceMark:
    name: str
    action: str
    pixels: np.ndarray


def match_mark(orb: cv2.ORB, mark: ReferenceMark, grey: np.ndarray, *, min_inliers: int = 15) -> list[int] | None:
    """The bounding box [x, y, w, h] of `mark` in `grey`, or None when it is not there."""
    mark_grey = cv2.cvtColor(mark.pixels, cv2.COLOR_BGR2GRAY)
    kp1, des1 = orb.detectAndCompute(mark_grey, None)
    kp2, des2 = orb.detectAndCompute(grey, None)
    if des1 is None or des2 is None or len(kp1) < 8 or len(kp2) < 8:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(des1, des2, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]
    if len(good) < min_inliers:
        return None
    src = np.float32([kp1[m.queryIdx].pt for m in good]).reshape(-1, 1, 2)
    dst = np.float32([kp2[m.trainIdx].pt for m in good]).reshape(-1, 1, 2)
    homography, mask = cv2.findHomography(src, dst, cv2.RANSAC, 5.0)
    if homography is None or int(mask.sum()) < min_inliers:
        return None
    h, w = mark_grey.shape
    corners = cv2.perspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2), homography)
    if not cv2.isContourConvex(corners.astype(np.int32)):  # a folded quadrilateral is a false match
        return None
    x, y, bw, bh = cv2.boundingRect(corners.astype(np.int32))
    return [int(x), int(y), int(bw), int(bh)]


def load_marks() -> list[ReferenceMark]:
    from catalog.storage import open_blob
    from governance.gate_models import BrandMark

    marks = []
    for mark in BrandMark.objects.filter(active=True).select_related("image"):
        with open_blob(mark.image) as handle:
            pixels = cv2.imdecode(np.frombuffer(handle.read(), np.uint8), cv2.IMREAD_COLOR)
        if pixels is None:
            raise ValueError(f"the reference image of brand mark {mark.name} cannot be read")
        marks.append(ReferenceMark(mark.name, mark.action, pixels))
    return marks


@register
class LogoGate:
    name = "logos"
    version = "1.0"

    def __init__(self, marks: list[ReferenceMark] | None = None):
        self.marks = marks

    def check(self, images: list[GateImage], context: GateContext) -> GateResult:
        if (blocked := unreadable(images)) is not None:
            return blocked
        try:
            marks = self.marks if self.marks is not None else load_marks()
        except ValueError as exc:
            return GateResult(BLOCK, str(exc))
        orb = cv2.ORB_create(nfeatures=2000)
        findings, outcome = [], PASS
        for image in images:
            grey = cv2.cvtColor(image.pixels, cv2.COLOR_BGR2GRAY)
            for mark in marks:
                box = match_mark(orb, mark, grey)
                if box is not None:
                    findings.append(Finding(image=image.name, label=f"logo:{mark.name}", boxes=[box], detail={"mark": mark.name}))
                    outcome = worst(outcome, BLOCK if mark.action == BLOCK else FLAG)
        if findings:
            return GateResult(outcome, "brand marks found: " + "; ".join(f"{f.detail['mark']} on {f.image}" for f in findings),
                              findings)
        return GateResult(PASS)


def register_brand_mark(*, actor: Any, name: str, owner: str, image: Any, action: str = FLAG) -> Any:
    """Add a mark to the reference library from an uploaded image (stored by sha256); audited."""
    from django.db import transaction

    from catalog.storage import store_stream
    from governance.audit import record_event
    from governance.errors import BrandMarkInvalid
    from governance.gate_models import BrandMark

    data = image.read()
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None:
        raise BrandMarkInvalid(f"The image of brand mark {name} cannot be read; upload a PNG or JPEG.")
    with transaction.atomic():
        blob, _ = store_stream(io.BytesIO(data), filename=getattr(image, "name", f"{name}.png"))
        mark = BrandMark.objects.create(name=name, owner=owner, image=blob, action=action)
        record_event(actor=actor, action="gate.brand_mark_added", obj=mark, data={"sha256": blob.sha256, "action": action})
    return mark
