"""Likeness gate: OpenCV's Haar frontal-face detector (shipped inside opencv-python) finds faces; a face flags,
and publishing then needs a consent record."""
from __future__ import annotations

from pathlib import Path

import cv2

from governance.gates import BLOCK, FLAG, PASS, Finding, GateContext, GateImage, GateResult, register, unreadable

CASCADE = "haarcascade_frontalface_default.xml"


@register
class FaceGate:
    name = "faces"
    version = "1.1"
    min_face_divisor = 8

    def check(self, images: list[GateImage], context: GateContext) -> GateResult:
        if (blocked := unreadable(images)) is not None:
            return blocked
        path = Path(cv2.data.haarcascades) / CASCADE
        detector = cv2.CascadeClassifier(str(path))
        if detector.empty():
            return GateResult(BLOCK, f"the face detector model {path} is missing from this OpenCV build")
        findings = []
        for image in images:
            grey = cv2.equalizeHist(cv2.cvtColor(image.pixels, cv2.COLOR_BGR2GRAY))
            # Faces smaller than 1/8 of the short side are not looked for: below that, the Haar cascade fires on
            # stonework and foliage (gate benchmark on the castle photos); such faces are not recognisable either.
            side = max(48, min(grey.shape[:2]) // self.min_face_divisor)
            found = detector.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
            if len(found):
                findings.append(Finding(image=image.name, label="face", boxes=[[int(v) for v in b] for b in found]))
        if findings:
            count = sum(len(f.boxes) for f in findings)
            return GateResult(FLAG, f"{count} face(s) found on {len(findings)} image(s); a consent record is needed", findings)
        return GateResult(PASS)
