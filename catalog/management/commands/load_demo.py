import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from catalog.demo import PASSWORD_ENV, load_demo
from config.problems import DomainError


class Command(BaseCommand):
    help = (
        "Create the role groups, an 'admin' superuser (random password in var/admin-password.txt unless "
        f"{PASSWORD_ENV} is set) and the demo collection of published, licensed assets. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--password-file", type=Path, default=None,
                            help="Where a new admin's random password is written (default: var/admin-password.txt).")
        parser.add_argument("--no-thumbnails", dest="thumbnails", action="store_false",
                            help="Do not queue thumbnail renders for the worker.")

    def handle(self, *args, password_file: Path | None, thumbnails: bool, **options) -> None:
        try:
            result = load_demo(password_file=password_file, thumbnails=thumbnails, log=self.stdout.write)
        except (DomainError, OSError, ValueError) as exc:
            raise CommandError(f"load_demo failed: {exc}") from exc
        source = f"${PASSWORD_ENV}" if os.environ.get(PASSWORD_ENV) else str(result.password_file)
        if result.admin_created:
            self.stdout.write(f"Created superuser 'admin'; password: see {source}.")
        elif os.environ.get(PASSWORD_ENV):
            self.stdout.write(f"Superuser 'admin' exists; its password is ${PASSWORD_ENV}.")
        else:
            self.stdout.write("Superuser 'admin' exists; its password is unchanged.")
        if result.assets_created:
            self.stdout.write(self.style.SUCCESS(f"Demo collection: published {', '.join(result.assets_created)}."))
        else:
            self.stdout.write("Demo collection already loaded; nothing to do.")
        if result.thumbnails_requested:
            self.stdout.write(f"Queued thumbnail renders for the worker: {', '.join(result.thumbnails_requested)}.")
