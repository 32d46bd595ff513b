"""`manage.py credential_thumbnails --actor USERNAME`: embed C2PA content credentials in asset thumbnails."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from catalog.models import Asset
from config.problems import DomainError
from governance.content_credentials import credential_asset_thumbnail


class Command(BaseCommand):
    help = "Sign every asset thumbnail (or those of --asset ids) with a C2PA manifest; already signed ones are skipped."

    def add_arguments(self, parser):
        parser.add_argument("--actor", required=True, help="Username acting (needs the contribute permission).")
        parser.add_argument("--asset", type=int, action="append", help="Asset id; repeat for several.")

    def handle(self, *args, actor, asset, **options):
        user = get_user_model().objects.filter(username=actor).first()
        if user is None:
            raise CommandError(f"no user named {actor}")
        assets = Asset.objects.exclude(thumbnail=None).select_related("thumbnail").order_by("id")
        if asset:
            assets = assets.filter(pk__in=asset)
        failed = 0
        for item in assets:
            before = item.thumbnail_id
            try:
                after = credential_asset_thumbnail(actor=user, asset=item).thumbnail_id
            except DomainError as exc:
                failed += 1
                self.stderr.write(f"asset {item.pk}: {exc.detail}")
                continue
            self.stdout.write(f"asset {item.pk}: {'signed' if after != before else 'already signed'}")
        if failed:
            raise CommandError(f"{failed} thumbnail(s) could not be signed")
