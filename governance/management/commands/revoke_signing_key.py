"""`manage.py revoke_signing_key KEY_ID --reason TEXT`."""
from django.core.management.base import BaseCommand, CommandError

from governance.keys import SigningKeyError, revoke_signing_key
from governance.models import SigningKey


class Command(BaseCommand):
    help = "Revoke a signing key with a reason; its signatures are reported as made with a revoked key."

    def add_arguments(self, parser):
        parser.add_argument("key_id")
        parser.add_argument("--reason", required=True)
        parser.add_argument("--actor", default="cli")

    def handle(self, *args, key_id, reason, actor, **options):
        key = SigningKey.objects.filter(key_id=key_id).first()
        if key is None:
            raise CommandError(f"no signing key with id {key_id}")
        try:
            revoke_signing_key(actor=actor, key=key, reason=reason)
        except SigningKeyError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(f"revoked {key_id}")
