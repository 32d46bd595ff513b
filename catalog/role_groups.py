"""The global role groups (viewer … admin) with the model-level permissions of GLOBAL_ROLE_PERMISSIONS.

Members of these groups act on every collection; per-collection roles are object permissions instead.
Created by `manage.py setup_roles` and after every `migrate`, so tests and fresh installs always have them.
"""
from __future__ import annotations

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, transaction

from catalog.permissions import GLOBAL_ROLE_PERMISSIONS


def _permission(label: str, using: str) -> Permission:
    app_label, codename = label.split(".", 1)
    found = Permission.objects.using(using).filter(content_type__app_label=app_label, codename=codename).first()
    if found is None:
        # post_migrate of an app later in INSTALLED_APPS may not have created its permissions yet.
        create_permissions(global_apps.get_app_config(app_label), verbosity=0, using=using)
        found = Permission.objects.using(using).filter(content_type__app_label=app_label, codename=codename).first()
    if found is None:
        raise ImproperlyConfigured(f"Permission '{label}' does not exist; is its app installed and migrated?")
    return found


def ensure_role_groups(*, using: str = DEFAULT_DB_ALIAS) -> dict[str, list[str]]:
    """Create or repair each role group so it holds exactly its permissions; safe to run any number of times."""
    result: dict[str, list[str]] = {}
    with transaction.atomic(using=using):
        for role, labels in GLOBAL_ROLE_PERMISSIONS.items():
            group, _ = Group.objects.using(using).get_or_create(name=str(role))
            group.permissions.set([_permission(label, using) for label in labels])
            result[str(role)] = sorted(labels)
    return result


def ensure_role_groups_after_migrate(sender, *, using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    """post_migrate receiver: keep the groups in step with the code on every migrate (tests included)."""
    ensure_role_groups(using=using)
