"""`manage.py verify_audit`: recompute the audit log and check every signed tree head; exit 1 on any finding."""
from django.core.management.base import BaseCommand, CommandError

from governance.verification import verify_log


class Command(BaseCommand):
    help = "Recompute every audit leaf and Merkle root, check seq order and every signed tree head."

    def handle(self, *args, **options):
        report = verify_log()
        for line in report.problems:
            self.stdout.write(line)
        if report.problems:
            raise CommandError(f"audit log verification failed: {len(report.problems)} problem(s)")
        self.stdout.write(self.style.SUCCESS(
            f"audit log intact: {report.events} events, {report.tree_heads} signed tree heads verified"
        ))
