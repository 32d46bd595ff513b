from django.core.management.base import BaseCommand

from catalog.role_groups import ensure_role_groups


class Command(BaseCommand):
    help = "Create or repair the global role groups (viewer, contributor, asset_manager, reviewer, compliance_officer, admin)."

    def add_arguments(self, parser):
        parser.add_argument("--database", default="default", help="Database alias to write the groups to.")

    def handle(self, *args, database: str, **options) -> None:
        for role, permissions in ensure_role_groups(using=database).items():
            self.stdout.write(f"{role}: {', '.join(permissions)}")
