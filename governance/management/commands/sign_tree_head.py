"""`manage.py sign_tree_head`: sign the audit log now (Celery beat does it on a schedule)."""
from django.core.management.base import BaseCommand

from governance.tree_heads import sign_tree_head


class Command(BaseCommand):
    help = "Sign a tree head for the audit log as it stands."

    def handle(self, *args, **options):
        head = sign_tree_head()
        self.stdout.write(f"STH {head.pk}: tree size {head.tree_size}, root {head.root_hash}, key {head.key.key_id}")
