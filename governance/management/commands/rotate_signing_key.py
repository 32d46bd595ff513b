"""`manage.py rotate_signing_key --purpose tree_head|attestation`: retire the active key, start signing with a new one."""
from django.core.management.base import BaseCommand, CommandError

from governance.keys import SigningKeyError, rotate_signing_key
from governance.models import SigningKey


class Command(BaseCommand):
    help = "Rotate a signing key: the old key keeps verifying, new signatures use a fresh Ed25519 key."

    def add_arguments(self, parser):
        parser.add_argument("--purpose", choices=SigningKey.Purpose.values, required=True)
        parser.add_argument("--actor", default="cli", help="Name recorded as the actor of the key.rotated event.")

    def handle(self, *args, purpose, actor, **options):
        try:
            key = rotate_signing_key(actor=actor, purpose=purpose)
        except SigningKeyError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(f"new {purpose} key {key.key_id}")
