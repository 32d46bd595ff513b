"""Roles and object permissions (django-guardian) on collections and assets.

A role is a named set of object permissions. Granting a role on a collection gives its permissions to a
user or a group (a team) on that collection; a few roles can also be granted on a single asset. The
global groups of the same names carry model-level permissions for staff who work across all collections.
"""
from __future__ import annotations

import enum
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.db.models import Model, Q, QuerySet
from guardian.shortcuts import assign_perm, remove_perm

from catalog.models import (
    Asset,
    AssetGroupObjectPermission,
    AssetUserObjectPermission,
    Collection,
    CollectionGroupObjectPermission,
    CollectionUserObjectPermission,
)


class Role(enum.StrEnum):
    VIEWER = "viewer"
    CONTRIBUTOR = "contributor"
    ASSET_MANAGER = "asset_manager"
    REVIEWER = "reviewer"
    COMPLIANCE_OFFICER = "compliance_officer"
    ADMIN = "admin"


class Action(enum.StrEnum):
    """What a caller wants to do; each maps to one collection and one asset permission."""

    VIEW = "view"
    CONTRIBUTE = "contribute"
    MANAGE = "manage"
    REVIEW = "review"
    AUDIT = "audit"
    GRANT = "grant"


_COLLECTION_CODENAME = {
    Action.VIEW: "view_collection",
    Action.CONTRIBUTE: "contribute_collection",
    Action.MANAGE: "manage_collection",
    Action.REVIEW: "review_collection",
    Action.AUDIT: "audit_collection",
    Action.GRANT: "grant_collection",
}
_ASSET_CODENAME = {
    Action.VIEW: "view_asset",
    Action.CONTRIBUTE: "contribute_asset",
    Action.MANAGE: "manage_asset",
    Action.REVIEW: "review_asset",
    Action.AUDIT: "audit_asset",
}

ROLE_ACTIONS: dict[Role, tuple[Action, ...]] = {
    Role.VIEWER: (Action.VIEW,),
    Role.CONTRIBUTOR: (Action.VIEW, Action.CONTRIBUTE),
    Role.ASSET_MANAGER: (Action.VIEW, Action.CONTRIBUTE, Action.MANAGE),
    Role.REVIEWER: (Action.VIEW, Action.REVIEW),
    Role.COMPLIANCE_OFFICER: (Action.VIEW, Action.AUDIT),
    Role.ADMIN: (Action.VIEW, Action.CONTRIBUTE, Action.MANAGE, Action.REVIEW, Action.AUDIT, Action.GRANT),
}

# Model-level permissions the global role groups hold (staff working across every collection).
GLOBAL_ROLE_PERMISSIONS: dict[Role, tuple[str, ...]] = {
    role: tuple(f"catalog.{_COLLECTION_CODENAME[a]}" for a in actions) + tuple(
        f"catalog.{_ASSET_CODENAME[a]}" for a in actions if a in _ASSET_CODENAME
    )
    for role, actions in ROLE_ACTIONS.items()
}
GLOBAL_ROLE_PERMISSIONS[Role.COMPLIANCE_OFFICER] += ("governance.view_auditevent",)
# Global admins also open new collections (create_collection checks catalog.add_collection).
GLOBAL_ROLE_PERMISSIONS[Role.ADMIN] += ("governance.view_auditevent", "catalog.add_collection")

Principal = AbstractBaseUser | Group


def collection_codename(action: Action) -> str:
    return _COLLECTION_CODENAME[action]


def asset_codename(action: Action) -> str:
    return _ASSET_CODENAME[action]


def _is_anonymous(user: Any) -> bool:
    return user is None or isinstance(user, AnonymousUser) or not user.is_authenticated or not user.is_active


def has_global(user: Any, action: Action) -> bool:
    """Superusers and members of a global role group act on every collection."""
    if _is_anonymous(user):
        return False
    return user.is_superuser or user.has_perm(f"catalog.{_COLLECTION_CODENAME[action]}")


def _collection_ids_with(user: Any, action: Action) -> QuerySet:
    codename = _COLLECTION_CODENAME[action]
    groups = user.groups.values("pk")
    by_user = CollectionUserObjectPermission.objects.filter(user=user, permission__codename=codename)
    by_group = CollectionGroupObjectPermission.objects.filter(group__in=groups, permission__codename=codename)
    return by_user.values("content_object_id").union(by_group.values("content_object_id"))


def _asset_ids_with(user: Any, action: Action) -> QuerySet:
    codename = _ASSET_CODENAME[action]
    groups = user.groups.values("pk")
    by_user = AssetUserObjectPermission.objects.filter(user=user, permission__codename=codename)
    by_group = AssetGroupObjectPermission.objects.filter(group__in=groups, permission__codename=codename)
    return by_user.values("content_object_id").union(by_group.values("content_object_id"))


def collection_filter(user: Any, action: Action, *, prefix: str = "") -> Q:
    """A Q on a queryset (whose collection sits at `prefix`) that keeps rows the user may act on.

    Evaluates to subqueries, never to Python lists, so the SQL count stays constant at any page size.
    """
    if _is_anonymous(user):
        return Q(pk__in=[])
    if has_global(user, action):
        return Q()
    return Q(**{f"{prefix}id__in" if prefix else "id__in": _collection_ids_with(user, action)})


def asset_filter(user: Any, action: Action, *, prefix: str = "") -> Q:
    """Rows whose asset (at `prefix`) the user may act on, through its collection or a grant on the asset."""
    if _is_anonymous(user):
        return Q(pk__in=[])
    if has_global(user, action):
        return Q()
    condition = Q(**{f"{prefix}collection_id__in": _collection_ids_with(user, action)})
    if action in _ASSET_CODENAME:
        condition |= Q(**{f"{prefix}id__in" if prefix else "id__in": _asset_ids_with(user, action)})
    return condition


def can(user: Any, action: Action, obj: Model) -> bool:
    """May the user take this action on this collection, asset, or anything that belongs to an asset?"""
    if _is_anonymous(user):
        return False
    if has_global(user, action):
        return True
    if isinstance(obj, Collection):
        return user.has_perm(_COLLECTION_CODENAME[action], obj)
    asset = obj if isinstance(obj, Asset) else asset_of(obj)
    if asset is not None:
        if action in _ASSET_CODENAME and user.has_perm(_ASSET_CODENAME[action], asset):
            return True
        return user.has_perm(_COLLECTION_CODENAME[action], asset.collection)
    collection = getattr(obj, "collection", None)
    return collection is not None and user.has_perm(_COLLECTION_CODENAME[action], collection)


def asset_of(obj: Model) -> Asset | None:
    """Walk up from a version, variant, LOD or representation to its asset."""
    for path in ("asset", "version.asset", "variant.version.asset", "lod.variant.version.asset"):
        current: Any = obj
        for part in path.split("."):
            current = getattr(current, part, None)
            if current is None:
                break
        if isinstance(current, Asset):
            return current
    return None


def assign_role(principal: Principal, role: Role, obj: Collection | Asset) -> list[str]:
    """Give a user or group the role's permissions on one collection or asset; returns the codenames."""
    codenames = _role_codenames(role, obj)
    for codename in codenames:
        assign_perm(codename, principal, obj)
    return codenames


def remove_role(principal: Principal, role: Role, obj: Collection | Asset) -> list[str]:
    codenames = _role_codenames(role, obj)
    for codename in codenames:
        remove_perm(codename, principal, obj)
    return codenames


def _role_codenames(role: Role, obj: Collection | Asset) -> list[str]:
    table = _COLLECTION_CODENAME if isinstance(obj, Collection) else _ASSET_CODENAME
    return [table[action] for action in ROLE_ACTIONS[role] if action in table]
