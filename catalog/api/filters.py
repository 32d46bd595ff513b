"""Query-string filters of the list endpoints. Each filter is a WHERE clause or an indexed subquery, never a
join that could repeat rows, so lists need no DISTINCT and pages stay cheap."""
from __future__ import annotations

from django.db.models import Q, QuerySet
from django_filters import rest_framework as filters

from catalog.models import LOD, Asset, AssetVersion, Capture, Collection, Representation, Variant


class CharInFilter(filters.BaseInFilter, filters.CharFilter):
    """A comma-separated list of strings: `?tag=chair,oak`."""


class CollectionFilter(filters.FilterSet):
    search = filters.CharFilter(method="filter_search", help_text="Text in the slug or name.")

    class Meta:
        model = Collection
        fields: list[str] = []

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(slug__icontains=value) | Q(name__icontains=value))


class CaptureFilter(filters.FilterSet):
    collection = filters.NumberFilter(field_name="collection_id", help_text="Collection id.")
    check_status = filters.MultipleChoiceFilter(choices=Capture.CheckStatus.choices, distinct=False)

    class Meta:
        model = Capture
        fields: list[str] = []


class AssetFilter(filters.FilterSet):
    collection = filters.NumberFilter(field_name="collection_id", help_text="Collection id.")
    collection_slug = filters.CharFilter(field_name="collection__slug", help_text="Collection slug.")
    category = filters.CharFilter(
        method="filter_category", help_text="Taxonomy path; `furniture` also matches `furniture/chair`."
    )
    state = filters.MultipleChoiceFilter(choices=Asset.State.choices, distinct=False, help_text="Repeat for several.")
    tag = CharInFilter(method="filter_tags", help_text="Comma-separated tags; an asset must have all of them.")
    licence = filters.CharFilter(
        field_name="licence__spdx_id", lookup_expr="iexact", help_text="SPDX identifier, e.g. CC-BY-4.0."
    )
    updated_since = filters.IsoDateTimeFilter(
        field_name="updated_at", lookup_expr="gte", help_text="ISO 8601 date-time; assets changed at or after it."
    )
    search = filters.CharFilter(method="filter_search", help_text="Text in the slug, name or category.")

    class Meta:
        model = Asset
        fields: list[str] = []

    def filter_category(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip("/")
        return queryset.filter(Q(category=value) | Q(category__startswith=f"{value}/"))

    def filter_tags(self, queryset: QuerySet, name: str, value: list[str]) -> QuerySet:
        for tag in {v.strip().lower() for v in value if v.strip()}:
            tagged = Asset.tags.through.objects.filter(tag__name=tag).values("asset_id")
            queryset = queryset.filter(id__in=tagged)
        return queryset

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(slug__icontains=value) | Q(name__icontains=value) | Q(category__icontains=value))


class VersionFilter(filters.FilterSet):
    asset = filters.NumberFilter(field_name="asset_id")
    collection = filters.NumberFilter(field_name="asset__collection_id")
    state = filters.MultipleChoiceFilter(choices=AssetVersion.State.choices, distinct=False)

    class Meta:
        model = AssetVersion
        fields: list[str] = []


class VariantFilter(filters.FilterSet):
    version = filters.NumberFilter(field_name="version_id")
    kind = filters.ChoiceFilter(choices=Variant.Kind.choices)

    class Meta:
        model = Variant
        fields: list[str] = []


class LODFilter(filters.FilterSet):
    variant = filters.NumberFilter(field_name="variant_id")
    version = filters.NumberFilter(field_name="variant__version_id")
    level = filters.NumberFilter(field_name="level")

    class Meta:
        model = LOD
        fields: list[str] = []


class RepresentationFilter(filters.FilterSet):
    version = filters.NumberFilter(field_name="lod__variant__version_id")
    variant = filters.NumberFilter(field_name="lod__variant_id")
    lod = filters.NumberFilter(field_name="lod_id")
    format = filters.ChoiceFilter(choices=Representation.Format.choices)
    role = filters.ChoiceFilter(choices=Representation.Role.choices)
    restricted = filters.BooleanFilter()
    validation_status = filters.ChoiceFilter(choices=Representation.Validation.choices)

    class Meta:
        model = Representation
        fields: list[str] = []
