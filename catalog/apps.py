from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Asset catalog"

    def ready(self) -> None:
        from catalog.role_groups import ensure_role_groups_after_migrate

        # After every migrate (test databases too) the global role groups exist with their permissions.
        post_migrate.connect(ensure_role_groups_after_migrate, sender=self, dispatch_uid="catalog.role_groups")
