"""Text gate: Tesseract OCR finds legible text (real or hallucinated) on images; found text flags."""
from __future__ import annotations

import re

import cv2

from governance.gates import BLOCK, FLAG, PASS, Finding, GateContext, GateImage, GateResult, register, unreadable

_WORD = re.compile(r"[A-Za-z0-9]{3,}")


@register
class TextGate:
    name = "text"
    version = "1.0"
    min_confidence = 70.0

    def check(self, images: list[GateImage], context: GateContext) -> GateResult:
        import pytesseract

        if (blocked := unreadable(images)) is not None:
            return blocked
        try:
            pytesseract.get_tesseract_version()
        except (pytesseract.TesseractNotFoundError, OSError) as exc:
            return GateResult(BLOCK, f"Tesseract is not installed or not on PATH ({exc}); install Debian's tesseract-ocr")
        findings = []
        for image in images:
            rgb = cv2.cvtColor(image.pixels, cv2.COLOR_BGR2RGB)
            data = pytesseract.image_to_data(rgb, output_type=pytesseract.Output.DICT)
            words, boxes = [], []
            for i, text in enumerate(data["text"]):
                conf = float(data["conf"][i])
                if conf >= self.min_confidence and _WORD.search(text or ""):
                    words.append(text.strip())
                    boxes.append([data["left"][i], data["top"][i], data["width"][i], data["height"][i]])
            if words:
                findings.append(Finding(image=image.name, label="text", boxes=boxes, detail={"text": " ".join(words)}))
        if findings:
            return GateResult(FLAG, f"text found on {len(findings)} image(s): "
                              + "; ".join(f"{f.image}: {f.detail['text'][:80]!r}" for f in findings), findings)
        return GateResult(PASS)
