"""Cursor pagination: stable pages under concurrent inserts and no COUNT(*) over large tables."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request


class CatalogCursorPagination(CursorPagination):
    """Orders by the view's `ordering` (a tuple whose last key is unique), `?page_size=` up to 200."""

    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = ("-id",)

    def get_ordering(self, request: Request, queryset: QuerySet, view: Any) -> tuple[str, ...]:
        ordering = getattr(view, "ordering", None) or self.ordering
        return (ordering,) if isinstance(ordering, str) else tuple(ordering)
