"""Query-string filters of the job list."""
from __future__ import annotations

from django_filters import rest_framework as filters

from reconstruction.models import ReconstructionJob


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
