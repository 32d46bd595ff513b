"""A job's capture becomes an engine capture folder that `Capture.load` reads as it is, masks included."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from catalog import services as catalog
from reconstruction.engine.capture import Capture
from reconstruction.models import ReconstructionJob
from reconstruction.tasks import materialise_capture
from tests.reconstruction.conftest import png


def _mask(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((32, 32)) > 0.5).astype(np.uint8) * 255).save(buffer, "PNG")
    return buffer.getvalue()


def test_masks_and_images_arrive_in_the_engine_folder(tmp_path, owner, collection, asset, lenient_standard):
    images = [(f"view{i:02d}.png", io.BytesIO(png(i))) for i in range(3)]
    masks = [(f"view{i:02d}.png", io.BytesIO(_mask(i))) for i in range(3)]
    capture = catalog.create_capture(actor=owner, collection=collection, name="Masked", images=images, masks=masks,
                                     standard=lenient_standard)
    job = ReconstructionJob(capture=capture, asset=asset, backend="icosphere", created_by=owner)

    loaded = Capture.load(materialise_capture(job, tmp_path / "capture"))

    assert [p.name for p in loaded.images] == ["view00.png", "view01.png", "view02.png"]
    assert loaded.masks is not None
    assert [p.name for p in loaded.masks] == ["view00.png", "view01.png", "view02.png"]
    assert loaded.masks[1].read_bytes() == _mask(1)
