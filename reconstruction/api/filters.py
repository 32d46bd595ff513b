"""Query-string filters of the job and learned-model lists."""
from __future__ import annotations

from django_filters import rest_framework as filters

from reconstruction.models import LearnedModel, ReconstructionJob


class JobFilter(filters.FilterSet):
    state = filters.MultipleChoiceFilter(choices=ReconstructionJob.State.choices, distinct=False,
                                         help_text="Repeat for several.")
    backend = filters.CharFilter(field_name="backend")
    asset = filters.NumberFilter(field_name="asset_id")
    capture = filters.NumberFilter(field_name="capture_id")
    collection = filters.NumberFilter(field_name="asset__collection_id")
    queue = filters.ChoiceFilter(choices=[("cpu", "cpu"), ("gpu", "gpu")])

    class Meta:
        model = ReconstructionJob
        fields: list[str] = []


class LearnedModelFilter(filters.FilterSet):
    name = filters.CharFilter(field_name="name", help_text="Exact model name.")
    architecture = filters.CharFilter(field_name="architecture")
    available = filters.BooleanFilter(field_name="available", help_text="Still in the engine's registry.")

    class Meta:
        model = LearnedModel
        fields: list[str] = []
