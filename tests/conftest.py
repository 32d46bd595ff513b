import os

import pytest


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """Each pytest process gets its own test database, so two runs on one PostgreSQL never drop each other's."""
    from django.conf import settings

    for alias, db in settings.DATABASES.items():
        test = db.setdefault("TEST", {})
        base = test.get("NAME") or f"test_{db['NAME']}"
        if db["ENGINE"].endswith("sqlite3"):
            continue
        test["NAME"] = f"{base}_{os.getpid()}" if alias == "default" else test.get("NAME")


@pytest.fixture(scope="session", autouse=True)
def _no_model_sync_on_migrate():
    """The test database starts without the shipped model cards (and their audit events), so tests that count
    audit events stay exact; tests that need the models call `sync_learned_models` themselves."""
    from django.conf import settings

    settings.ASSAY_SYNC_MODELS_ON_MIGRATE = False


@pytest.fixture(scope="session", autouse=True)
def _celery_messages_stay_in_memory():
    """Tasks dispatched by tests go to an in-memory broker, never into the laptop's `var/broker` queue folder.

    Tests that need a real broker (RabbitMQ, Redis) name it explicitly.
    """
    from config.celery import app

    app.conf.broker_url = "memory://"
    app.conf.broker_transport_options = {}


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Each test stores files in its own folder, so no test sees another's blobs."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ASSAY_KEY_DIR = tmp_path / "keys"


@pytest.fixture(autouse=True)
def _audit_truncate_for_flush(request):
    """Transactional tests end with Django's flush (TRUNCATE); the audit table refuses TRUNCATE unless the
    session says so (governance migration 0004). Only those tests say so."""
    marker = request.node.get_closest_marker("django_db")
    if not (marker and marker.kwargs.get("transaction")) and "transactional_db" not in request.fixturenames:
        return
    request.getfixturevalue("transactional_db")
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET assay.allow_audit_truncate = 'on'")
