"""The job API: create with an idempotency key, problem details for every refusal, permission-filtered lists and
filters, detail with progress and the produced version, cancel and retry; the backend list."""
from __future__ import annotations

import pytest

from catalog.permissions import Role
from reconstruction import services, tasks
from reconstruction.models import ReconstructionJob
from tests.factories import AssetFactory
from tests.reconstruction.conftest import client_for, make_capture, user_with_role

pytestmark = pytest.mark.django_db
State = ReconstructionJob.State


@pytest.fixture
def sent(monkeypatch):
    calls: list[tuple[list, str]] = []
    monkeypatch.setattr(tasks.run_job, "apply_async", lambda args, queue, **kw: calls.append((args, queue)))
    return calls


@pytest.fixture
def api(owner):
    return client_for(owner)


def body(capture, asset, **extra):
    return {"capture": capture.pk, "asset": asset.pk, "backend": "test-icosphere", "parameters": {"subdivisions": 1},
            **extra}


def test_create_then_replay_with_the_same_key(api, capture, asset, backend, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post("/api/v1/jobs/", body(capture, asset), format="json", HTTP_IDEMPOTENCY_KEY="abc")
        again = api.post("/api/v1/jobs/", body(capture, asset), format="json", HTTP_IDEMPOTENCY_KEY="abc")
    assert first.status_code == 201, first.content
    assert again.status_code == 200
    job = first.json()
    assert again.json()["id"] == job["id"]
    assert (job["state"], job["queue"], job["idempotency_key"], job["progress"], job["error"]) == (
        "queued", "cpu", "abc", 0.0, None)
    assert sent == [([job["id"]], "cpu")]


def test_key_in_the_body_and_a_conflicting_replay(api, capture, asset, backend, sent):
    assert api.post("/api/v1/jobs/", body(capture, asset, idempotency_key="k"), format="json").status_code == 201
    response = api.post("/api/v1/jobs/", body(capture, asset, idempotency_key="k", parameters={"subdivisions": 2}),
                        format="json")
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "idempotency_conflict"
    assert problem["differing"] == ["parameters"]


def test_missing_or_contradicting_keys(api, capture, asset, backend):
    response = api.post("/api/v1/jobs/", body(capture, asset), format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "idempotency_key", "message": "Send an Idempotency-Key header or an idempotency_key field."}]
    response = api.post("/api/v1/jobs/", body(capture, asset, idempotency_key="a"), format="json",
                        HTTP_IDEMPOTENCY_KEY="b")
    assert response.status_code == 400
    assert response.json()["detail"] == "idempotency_key: The Idempotency-Key header and the idempotency_key field differ."


def test_schema_errors_are_problem_details_with_fields(api, capture, asset, backend):
    response = api.post("/api/v1/jobs/", body(capture, asset, parameters={"subdivisions": -1}), format="json",
                        HTTP_IDEMPOTENCY_KEY="x")
    assert response.status_code == 400
    problem = response.json()
    assert problem["code"] == "invalid_parameters"
    assert problem["type"] == "https://assay.dev/problems/invalid-parameters"
    assert problem["errors"] == [{"field": "parameters.subdivisions", "message": "-1 is less than the minimum of 0"}]
    assert problem["detail"] == "parameters.subdivisions: -1 is less than the minimum of 0"


def test_unknown_backend_and_unknown_fields(api, capture, asset, backend):
    response = api.post("/api/v1/jobs/", body(capture, asset, backend="nope"), format="json", HTTP_IDEMPOTENCY_KEY="x")
    assert (response.status_code, response.json()["code"]) == (400, "unknown_backend")
    assert response.json()["detail"] == "No backend named 'nope' is installed (installed: test-gpu, test-icosphere)."
    response = api.post("/api/v1/jobs/", body(capture, asset, priority=1), format="json", HTTP_IDEMPOTENCY_KEY="y")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "priority"


def test_capture_with_too_few_views_is_422(api, owner, collection, asset, backend, lenient_standard):
    one = make_capture(owner, collection, lenient_standard, views=1)
    response = api.post("/api/v1/jobs/", body(one, asset), format="json", HTTP_IDEMPOTENCY_KEY="x")
    assert response.status_code == 422
    assert response.json()["detail"] == "Backend 'test-icosphere' needs at least 2 views; capture 'Shoot of 1' has 1."


def test_viewer_gets_403_and_outsiders_see_nothing(collection, capture, asset, backend, sent, owner):
    viewer = user_with_role(Role.VIEWER, collection)
    response = client_for(viewer).post("/api/v1/jobs/", body(capture, asset), format="json", HTTP_IDEMPOTENCY_KEY="x")
    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    job, _ = services.submit_job(owner, capture=capture, asset=asset, backend="test-icosphere", parameters={},
                                 idempotency_key="mine")
    outsider = client_for(AssetFactory().owner)
    assert outsider.get("/api/v1/jobs/").json()["results"] == []
    assert outsider.get(f"/api/v1/jobs/{job.pk}/").status_code == 404
    assert client_for(viewer).get(f"/api/v1/jobs/{job.pk}/").status_code == 200
    response = client_for(viewer).post(f"/api/v1/jobs/{job.pk}/cancel/", {}, format="json")
    assert response.status_code == 403


def test_list_filters(api, owner, collection, capture, asset, backend, sent, lenient_standard):
    from catalog import services as catalog

    other_asset = catalog.create_asset(actor=owner, collection=collection, slug="lamp", name="Lamp")
    a, _ = services.submit_job(owner, capture=capture, asset=asset, backend="test-icosphere", parameters={},
                               idempotency_key="a")
    b, _ = services.submit_job(owner, capture=capture, asset=other_asset, backend="test-icosphere", parameters={},
                               idempotency_key="b")
    services.cancel_job(owner, job=b)

    def ids(query: str) -> list[int]:
        response = api.get(f"/api/v1/jobs/{query}")
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids("") == [b.pk, a.pk]
    assert ids("?state=queued") == [a.pk]
    assert ids("?state=queued&state=cancelled") == [b.pk, a.pk]
    assert ids(f"?asset={other_asset.pk}") == [b.pk]
    assert ids("?backend=test-icosphere&queue=cpu") == [b.pk, a.pk]
    assert ids("?backend=other") == []


def test_detail_after_a_run_links_the_version(api, capture, asset, backend, sent, owner, tmp_path, settings):
    settings.ASSAY_JOB_WORKDIR = str(tmp_path)
    job, _ = services.submit_job(owner, capture=capture, asset=asset, backend="test-icosphere", parameters={},
                                 idempotency_key="a")
    tasks.run_job.apply(args=[job.pk])
    data = api.get(f"/api/v1/jobs/{job.pk}/").json()
    assert (data["state"], data["stage"], data["progress"], data["attempts"]) == ("succeeded", "done", 1.0, 1)
    assert data["produced_version"] is not None
    assert data["produced_version_url"] == f"http://testserver/api/v1/versions/{data['produced_version']}/"
    assert data["resource_usage"]["cpu_s"] > 0
    assert "icosphere written" in data["log_tail"]
    version = api.get(data["produced_version_url"]).json()
    assert version["asset"] == asset.pk and version["captures"] == [capture.pk]


def test_cancel_and_retry(api, owner, capture, asset, backend, sent, django_capture_on_commit_callbacks):
    job, _ = services.submit_job(owner, capture=capture, asset=asset, backend="test-icosphere", parameters={},
                                 idempotency_key="a")
    response = api.post(f"/api/v1/jobs/{job.pk}/cancel/", {}, format="json")
    assert (response.status_code, response.json()["state"]) == (200, "cancelled")
    response = api.post(f"/api/v1/jobs/{job.pk}/cancel/", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "invalid_job_transition")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/jobs/{job.pk}/retry/", {}, format="json")
    assert (response.status_code, response.json()["state"]) == (200, "queued")
    assert sent[-1] == ([job.pk], "cpu")
    services.claim_job(job_id=job.pk, worker="w1")
    response = api.post(f"/api/v1/jobs/{job.pk}/cancel/", {}, format="json")
    assert response.status_code == 202
    assert (response.json()["state"], response.json()["cancel_requested"]) == ("running", True)


def test_backends_list(api, backend):
    response = api.get("/api/v1/backends/")
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()}
    assert set(rows) == {"test-icosphere", "test-gpu"}
    icosphere = rows["test-icosphere"]
    assert icosphere["version"] == "1.0.0"
    assert icosphere["capabilities"]["inputs"] == ["multi_view"]
    assert (icosphere["capabilities"]["min_views"], icosphere["capabilities"]["max_views"]) == (2, 8)
    assert icosphere["parameter_schema"]["properties"]["subdivisions"] == {"type": "integer", "minimum": 0, "maximum": 3}
    assert rows["test-gpu"]["capabilities"]["needs_gpu"] is True


def test_anonymous_gets_401_problem(client, backend):
    response = client.get("/api/v1/jobs/")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_authenticated"


def test_list_query_count_is_flat(api, owner, capture, asset, backend, sent, django_assert_max_num_queries):
    for i in range(6):
        services.submit_job(owner, capture=capture, asset=asset, backend="test-icosphere", parameters={"radius": i + 1},
                            idempotency_key=f"k{i}")
    with django_assert_max_num_queries(6):
        small = api.get("/api/v1/jobs/?page_size=2")
    with django_assert_max_num_queries(6):
        large = api.get("/api/v1/jobs/?page_size=6")
    assert len(small.json()["results"]) == 2 and len(large.json()["results"]) == 6
