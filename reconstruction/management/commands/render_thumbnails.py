"""`manage.py render_thumbnails`: render catalog thumbnails from each asset's latest version, here and now."""
from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.models import Asset
from config.problems import DomainError
from reconstruction.engine.errors import EngineError
from reconstruction.thumbnails import render_asset_thumbnail


class Command(BaseCommand):
    help = "Render a thumbnail for each asset from its latest version's model file (only missing ones with --missing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--missing", action="store_true", help="Only assets that have no thumbnail yet.")
        parser.add_argument("--actor", default="admin", help="Username the audit trail names (default: admin).")

    def handle(self, *args: Any, missing: bool, actor: str, **options: Any) -> None:
        user = get_user_model().objects.filter(username=actor).first()
        if user is None:
            raise CommandError(f"No user named '{actor}'; pass --actor with an existing username.")
        assets = Asset.objects.order_by("pk")
        if missing:
            assets = assets.filter(thumbnail__isnull=True)
        for asset in assets:
            version = asset.versions.order_by("-number").first()
            if version is None:
                self.stdout.write(f"{asset.slug}: no version, skipped")
                continue
            try:
                render_asset_thumbnail(user, version=version)
            except (DomainError, EngineError) as exc:
                self.stderr.write(f"{asset.slug}: {exc}")
                continue
            self.stdout.write(f"{asset.slug}: thumbnail rendered from version {version.number}")
