"""Content-addressed storage on S3 (django-storages + boto3) against a real S3-compatible server (moto)."""
from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest
from django.core.files.storage import default_storage

from catalog import services
from catalog.models import Representation
from catalog.storage import blob_name, open_blob, store_stream, verify_blob
from tests.catalog.conftest import client_for, glb_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
BUCKET = "assay-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server in its own process for this module; always stopped afterwards."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def s3(settings, s3_endpoint):
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
    client = boto3.client("s3", endpoint_url=s3_endpoint, **credentials)
    client.create_bucket(Bucket=BUCKET)
    settings.ASSAY_S3_BUCKET = BUCKET
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET, "endpoint_url": s3_endpoint, "region_name": "us-east-1",
                "access_key": "testing", "secret_key": "testing", "file_overwrite": False,
                "querystring_expire": 60, "default_acl": None, "signature_version": "s3v4",
            },
        },
    }
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def test_a_blob_is_stored_once_under_its_sha256_in_the_bucket(s3):
    data = glb_bytes(2.0)
    first, _ = store_stream(io.BytesIO(data), filename="model.glb")
    second, _ = store_stream(io.BytesIO(data), filename="again.glb")
    assert first.pk == second.pk
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == [blob_name(first.sha256)]
    with open_blob(first) as handle:
        assert handle.read() == data
    assert verify_blob(first)


def test_verify_blob_notices_bytes_changed_in_the_bucket(s3):
    blob, _ = store_stream(io.BytesIO(glb_bytes(3.0)), filename="model.glb")
    s3.put_object(Bucket=BUCKET, Key=blob.storage_name, Body=glb_bytes(4.0))
    assert default_storage.exists(blob.storage_name)
    assert not verify_blob(blob)


def test_download_redirects_to_a_presigned_url_that_serves_the_file(s3, collection, owner):
    asset = services.create_asset(actor=owner, collection=collection, slug="chair", name="Chair")
    version = services.create_version(actor=owner, asset=asset)
    data = glb_bytes(5.0)
    services.add_representation(actor=owner, version=version, stream=io.BytesIO(data), filename="chair.glb")
    representation = Representation.objects.get(lod__variant__version=version)

    response = client_for(owner).get(f"/api/v1/representations/{representation.pk}/download/")

    assert response.status_code == 302
    assert response["Cache-Control"] == "private, no-store"
    location = response["Location"]
    assert "X-Amz-Signature=" in location and representation.file.sha256 in location
    with urllib.request.urlopen(location, timeout=10) as presigned:
        assert presigned.read() == data
        assert 'filename="chair.glb"' in presigned.headers["Content-Disposition"]
