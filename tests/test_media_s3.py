"""The S3-compatible media storage (production option) against moto's S3 in server mode: a real
HTTP endpoint on this machine, nothing on the internet. The same upload and serving as with
local files; refused uploads store nothing in the bucket either."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from o2o.app import create_app
from o2o.media.storage import S3Storage
from tests import media_support as pics
from tests.conftest import make_settings
from tests.support import ApiClient, build_world

BUCKET = "o2o-media-test"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = "testing", "testing"
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _objects(endpoint: str) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    return [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def test_s3_storage_put_get_exists(s3_endpoint: str) -> None:
    store = S3Storage(BUCKET, endpoint_url=s3_endpoint, region="us-east-1", prefix="unit/")
    name = "ab" * 20 + "-480.jpg"
    assert store.get(name) is None and not store.exists(name)
    store.put(name, b"jpeg bytes", "image/jpeg")
    assert store.get(name) == b"jpeg bytes" and store.exists(name)
    assert store.get("../../etc/passwd") is None and not store.exists("x")
    assert f"unit/{name}" in _objects(s3_endpoint)


def test_upload_and_serve_through_s3(s3_endpoint: str, db_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        db_url,
        tmp_path,
        media_storage="s3",
        media_s3_bucket=BUCKET,
        media_s3_endpoint_url=s3_endpoint,
        media_s3_region="us-east-1",
        media_s3_prefix=f"{tmp_path.name}/",
    )
    app: Any = create_app(settings)
    with ApiClient(app) as api:
        world = build_world(app.state.db, app)
        url = f"/api/v1/merchants/{world.a.id}/media"
        bad = api.post(
            url, as_=world.token("owner"), files={"file": ("a.jpg", pics.pdf_named_jpg())}
        )
        assert bad.status_code == 415
        assert not [k for k in _objects(s3_endpoint) if k.startswith(tmp_path.name)]
        r = api.post(url, as_=world.token("owner"), files={"file": ("a.jpg", pics.jpeg_with_gps())})
        assert r.status_code == 201, r.text
        served = api.get(r.json()["webp_url"])
        assert served.status_code == 200 and served.headers["content-type"] == "image/webp"
        assert "immutable" in served.headers["cache-control"]
    app.state.db.dispose()
    assert len([k for k in _objects(s3_endpoint) if k.startswith(tmp_path.name)]) == 4
    assert not (tmp_path / "media").exists()  # nothing on the local disk
