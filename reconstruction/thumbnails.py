"""Catalog thumbnails rendered from an asset's model file by the engine's headless renderer."""
from __future__ import annotations

import io
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from celery import shared_task
from django.contrib.auth import get_user_model

from catalog import services as catalog
from catalog.models import Asset, AssetVersion
from catalog.storage import open_blob
from governance.content_credentials import sign_asset_image
from reconstruction.postprocess import source_representation

logger = logging.getLogger(__name__)
THUMBNAIL_SIZE = 512


def render_asset_thumbnail(actor: Any, *, version: AssetVersion, size: int = THUMBNAIL_SIZE) -> Asset:
    """Render `version`'s model (default variant, lowest LOD) and make it its asset's thumbnail, carrying
    embedded C2PA content credentials that name the asset and its attestations."""
    from reconstruction.engine.thumbnail import render_thumbnail

    source = source_representation(version)
    with tempfile.TemporaryDirectory(prefix="thumbnail-") as scratch:
        mesh_path = Path(scratch) / f"model.{source.format}"
        with open_blob(source.file) as blob, mesh_path.open("wb") as handle:
            shutil.copyfileobj(blob, handle, length=1 << 20)
        png = render_thumbnail(mesh_path, Path(scratch) / "thumbnail.png", size=size)
        signed = sign_asset_image(asset=version.asset, data=png.read_bytes(), kind="png")
    return catalog.set_thumbnail(
        actor=actor, asset=version.asset, stream=io.BytesIO(signed), filename=f"{version.asset.slug}.png"
    )


@shared_task(name="reconstruction.render_thumbnail", queue="cpu", acks_late=True)
def render_thumbnail_task(version_id: int, actor_id: int) -> int:
    """Celery entry point: renders the thumbnail of a version's asset; returns the stored blob's id."""
    version = AssetVersion.objects.select_related("asset").get(pk=version_id)
    actor = get_user_model().objects.get(pk=actor_id)
    asset = render_asset_thumbnail(actor, version=version)
    logger.info("thumbnail of asset %s rendered from version %s", asset.pk, version_id)
    return asset.thumbnail_id
