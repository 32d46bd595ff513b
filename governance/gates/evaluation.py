"""A labelled evaluation set for the safety gates, and precision/recall per gate.

Positives are made by drawing on real background images: printed text (PIL with DejaVu), a synthetic brand mark
pasted at a random scale and rotation, and a drawn face (skin-tone oval, brows, eyes, nose shadow, mouth: the
light/dark pattern frontal-face detectors key on). No photo of a real person is used: none is licence-clean here."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
WORDS = ["ACME", "SALE", "OPEN", "CAFE", "HOTEL", "PARIS", "EXIT", "BANK", "MUSEUM", "PHARMACY", "STORE", "GARAGE"]


def brand_mark(size: int = 160, seed: int = 0) -> np.ndarray:
    """A synthetic logo (BGR): a ring, a star, a bar and strokes whose layout depends on `seed`."""
    rng = random.Random(seed)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.ellipse((8, 8, size - 8, size - 8), outline=(200, rng.randint(0, 60), 0), width=10)
    c, points = size // 2, 5 + seed % 3
    star = [(c + int((0.38 if i % 2 == 0 else 0.16) * size * np.cos(i * np.pi / points)),
             c + int((0.38 if i % 2 == 0 else 0.16) * size * np.sin(i * np.pi / points))) for i in range(2 * points)]
    d.polygon(star, fill=(0, rng.randint(0, 80), 150))
    d.rectangle((c - size // 8, c - size // 20, c + size // 8, c + size // 20), fill=(255, 200, 0))
    for i in range(6):
        d.line((size // 8 + i * size // 8, size - size // 5, size // 5 + i * size // 8, size - size // 3),
               fill=(0, 120, 0), width=4)
    return cv2.cvtColor(np.array(img), cv2.COLOR_RGB2BGR)


def draw_text(img: np.ndarray, text: str, *, height: int, at: tuple[int, int]) -> np.ndarray:
    """Print `text` on a light plate (a sign), `height` pixels tall, top-left at `at`."""
    pil = Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    d = ImageDraw.Draw(pil)
    font = ImageFont.truetype(FONT, height)
    x0, y0, x1, y1 = d.textbbox(at, text, font=font)
    pad = height // 4
    d.rectangle((x0 - pad, y0 - pad, x1 + pad, y1 + pad), fill=(245, 245, 240))
    d.text(at, text, fill=(20, 20, 20), font=font)
    return cv2.cvtColor(np.array(pil), cv2.COLOR_RGB2BGR)


def paste_mark(img: np.ndarray, mark: np.ndarray, *, side: int, at: tuple[int, int], angle: float = 0.0) -> np.ndarray:
    """Paste `mark` scaled to `side` pixels and rotated by `angle` degrees, top-left at `at`."""
    m = cv2.resize(mark, (side, side), interpolation=cv2.INTER_AREA)
    if angle:
        rot = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
        m = cv2.warpAffine(m, rot, (side, side), borderValue=(255, 255, 255))
    out = img.copy()
    x, y = at
    out[y:y + side, x:x + side] = m
    return out


def draw_face(img: np.ndarray, *, side: int, at: tuple[int, int], tone: int = 200) -> np.ndarray:
    """A drawn frontal face about `side` pixels tall with its box's top-left at `at`."""
    u = side / 1.2  # proportions below are fractions of this unit; the oval is 1.1 units tall
    canvas = Image.new("L", (side, side), 0)
    alpha = Image.new("L", (side, side), 0)
    d, a = ImageDraw.Draw(canvas), ImageDraw.Draw(alpha)
    c = side // 2

    def p(f: float) -> int:
        return int(round(f * u))

    oval = (c - p(0.42), c - p(0.55), c + p(0.42), c + p(0.55))
    d.ellipse(oval, fill=tone)
    a.ellipse(oval, fill=255)
    for sign in (-1, 1):
        ex = c + sign * p(0.17)
        d.rectangle((ex - p(0.11), c - p(0.20), ex + p(0.11), c - p(0.16)), fill=tone - 140)
        d.ellipse((ex - p(0.08), c - p(0.12), ex + p(0.08), c - p(0.04)), fill=tone - 160)
    d.polygon([(c, c - p(0.05)), (c - p(0.05), c + p(0.12)), (c + p(0.05), c + p(0.12))], fill=tone - 50)
    d.ellipse((c - p(0.13), c + p(0.20), c + p(0.13), c + p(0.27)), fill=tone - 130)
    canvas = canvas.filter(ImageFilter.GaussianBlur(max(1.0, u / 40)))
    out = img.copy()
    x, y = at
    region = out[y:y + side, x:x + side].astype(np.float32)
    face = np.repeat(np.asarray(canvas, np.float32)[:, :, None], 3, axis=2)
    mask = np.asarray(alpha, np.float32)[:, :, None] / 255.0
    out[y:y + side, x:x + side] = (face * mask + region * (1 - mask)).astype(np.uint8)
    return out


@dataclass
class Sample:
    name: str
    pixels: np.ndarray
    labels: set[str] = field(default_factory=set)  # gates that should fire: text, logos, faces


def make_set(backgrounds: list[np.ndarray], *, mark: np.ndarray, per_background: int = 4, seed: int = 0) -> list[Sample]:
    """Each background yields `per_background` samples: one clean, the rest with random overlays
    (text, the mark, a face, or two of them), placed in separate thirds of the image so they do not overlap."""
    rng = random.Random(seed)
    samples = []
    kinds = ["text", "logos", "faces"]
    for b, background in enumerate(backgrounds):
        for k in range(per_background):
            img, labels = background.copy(), set()
            chosen = [] if k == 0 else rng.sample(kinds, rng.choice([1, 1, 2]))
            hgt, wid = img.shape[:2]
            for slot, kind in enumerate(chosen):
                x0 = slot * wid // 2 + rng.randint(10, 40)
                if kind == "text":
                    size = rng.randint(28, 48)
                    img = draw_text(img, rng.choice(WORDS), height=size, at=(x0, rng.randint(20, hgt - size - 30)))
                elif kind == "logos":
                    side = rng.randint(110, 170)
                    img = paste_mark(img, mark, side=side, at=(x0, rng.randint(10, hgt - side - 10)),
                                     angle=rng.uniform(-20, 20))
                else:
                    side = rng.randint(110, 170)
                    img = draw_face(img, side=side, at=(x0, rng.randint(10, hgt - side - 10)), tone=rng.randint(170, 225))
                labels.add(kind)
            samples.append(Sample(f"bg{b}-{k}", img, labels))
    return samples


def precision_recall(predicted: list[bool], expected: list[bool]) -> dict[str, float | int]:
    tp = sum(p and e for p, e in zip(predicted, expected, strict=True))
    fp = sum(p and not e for p, e in zip(predicted, expected, strict=True))
    fn = sum(e and not p for p, e in zip(predicted, expected, strict=True))
    return {"tp": tp, "fp": fp, "fn": fn, "tn": len(expected) - tp - fp - fn,
            "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0, "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0}
