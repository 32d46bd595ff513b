"""The SQL cost of each list and detail endpoint is fixed: it must not grow with the page size or the data.

The caller authenticates with a token and holds its role through a group (a team), the most expensive path:
token lookup, the caller's global permissions, then one query per page plus one per prefetched relation.
"""
from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog import services
from catalog.models import Representation
from catalog.permissions import Role, assign_role
from tests.catalog.conftest import glb_bytes
from tests.factories import AssetFactory, CaptureFactory, LicenceFactory, UserFactory

pytestmark = pytest.mark.django_db

ASSETS = 8
MAX_LIST_QUERIES = 8
MAX_DETAIL_QUERIES = 8
# A download re-checks the caller's object permissions in its service (defence in depth): four more queries.
MAX_DOWNLOAD_QUERIES = 12


@pytest.fixture
def api(collection) -> APIClient:
    """A client whose user sees the collection through a team, with rows in other collections it must not see."""
    team = Group.objects.create(name="scanners")
    assign_role(team, Role.CONTRIBUTOR, collection)
    user = UserFactory(username="member")
    user.groups.add(team)
    author = collection.owner
    licence = LicenceFactory()
    capture = CaptureFactory(collection=collection)
    for i in range(ASSETS):
        asset = services.create_asset(actor=author, collection=collection, slug=f"asset-{i}", name=f"Asset {i}",
                                      category="furniture/chair", tags=[f"tag-{i}", "common"], licence=licence)
        version = services.create_version(actor=author, asset=asset, captures=[capture])
        services.add_variant(actor=author, version=version, name="walnut")
        services.add_representation(actor=author, version=version, stream=io.BytesIO(glb_bytes(1 + i)),
                                    filename="model.glb")
        services.record_cost(actor=author, version=version, kind="reconstruction", gpu_seconds=10)
    for _ in range(3):
        AssetFactory()  # elsewhere: filtered out by the permission subquery, never loaded
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def _count(client: APIClient, url: str) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(queries), response


LISTS = ["/api/v1/collections/", "/api/v1/assets/", "/api/v1/versions/", "/api/v1/variants/", "/api/v1/lods/",
         "/api/v1/representations/", "/api/v1/assets/?tag=common&state=draft&category=furniture&search=asset"]


@pytest.mark.parametrize("url", LISTS)
def test_a_list_costs_the_same_at_any_page_size(api, url, django_assert_max_num_queries):
    separator = "&" if "?" in url else "?"
    with django_assert_max_num_queries(MAX_LIST_QUERIES):
        small, small_response = _count(api, f"{url}{separator}page_size=2")
    with django_assert_max_num_queries(MAX_LIST_QUERIES):
        large, large_response = _count(api, f"{url}{separator}page_size=50")
    assert small == large
    if "collections" not in url:
        assert len(small_response.json()["results"]) == 2 and len(large_response.json()["results"]) >= ASSETS


def _details(api) -> list[str]:
    rep = Representation.objects.select_related("lod__variant__version__asset").first()
    version = rep.lod.variant.version
    asset = version.asset
    return [
        f"/api/v1/collections/{asset.collection_id}/", f"/api/v1/assets/{asset.pk}/", f"/api/v1/assets/{asset.pk}/cost/",
        f"/api/v1/versions/{version.pk}/", f"/api/v1/versions/{version.pk}/cost/", f"/api/v1/variants/{rep.lod.variant_id}/",
        f"/api/v1/lods/{rep.lod_id}/", f"/api/v1/representations/{rep.pk}/",
        f"/api/v1/representations/{rep.pk}/download/",
    ]


def test_each_detail_has_a_fixed_small_cost(api, django_assert_max_num_queries):
    for url in _details(api):
        budget = MAX_DOWNLOAD_QUERIES if url.endswith("/download/") else MAX_DETAIL_QUERIES
        with django_assert_max_num_queries(budget):
            count, response = _count(api, url)
        if url.endswith("/download/"):
            b"".join(response.streaming_content)
