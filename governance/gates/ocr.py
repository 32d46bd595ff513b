"""Text gate: Tesseract OCR finds legible text (real or hallucinated) on images; found text flags."""
from __future__ import annotations

import re

import cv2

from governance.gates import BLOCK, FLAG, PASS, Finding, GateContext, GateImage, GateResult, register, unreadable

_WORD = re.compile(r"[A-Za-z0-9]{3,}")


@register
class TextGate:
    name = "text"
    version = "1.1"
    min_confidence = 70.0
    target_short_side = 960

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
            grey = cv2.cvtColor(image.pixels, cv2.COLOR_BGR2GRAY)
            # Tesseract misses signs in busy photos at capture-preview sizes; measured on the gate benchmark,
            # upscaling to a short side near 960 px helps, and page layout (psm 3) and sparse text (psm 11) each
            # find words the other misses, so both run and their words are joined.
            scale = min(2.0, max(1.0, self.target_short_side / min(grey.shape[:2])))
            if scale > 1.0:
                grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            words, boxes = [], []
            for psm in (3, 11):
                data = pytesseract.image_to_data(grey, config=f"--psm {psm}", output_type=pytesseract.Output.DICT)
                for i, text in enumerate(data["text"]):
                    box = [round(data[k][i] / scale) for k in ("left", "top", "width", "height")]
                    word = (text or "").strip()
                    seen = any(w == word and abs(b[0] - box[0]) < 10 and abs(b[1] - box[1]) < 10
                               for w, b in zip(words, boxes, strict=True))
                    if float(data["conf"][i]) >= self.min_confidence and _WORD.search(word) and not seen:
                        words.append(word)
                        boxes.append(box)
            if words:
                findings.append(Finding(image=image.name, label="text", boxes=boxes, detail={"text": " ".join(words)}))
        if findings:
            return GateResult(FLAG, f"text found on {len(findings)} image(s): "
                              + "; ".join(f"{f.image}: {f.detail['text'][:80]!r}" for f in findings), findings)
        return GateResult(PASS)
