"""Where image files live: one small interface, the local filesystem by default.

Names are content-addressed (``<sha256>-<width>.<ext>``), so a stored file never changes and can
be cached for a year. A production object store (S3-compatible) implements the same three calls.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from o2o.config import Settings
from o2o.media.images import NAME_RE


class MediaStorage(Protocol):
    def put(self, name: str, data: bytes, content_type: str) -> None: ...

    def get(self, name: str) -> bytes | None: ...

    def exists(self, name: str) -> bool: ...


class LocalStorage:
    """Files under one directory (``O2O_MEDIA_DIR``, default ``<O2O_DATA_DIR>/media``), two
    levels of sub-directories by name so no directory grows huge."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        if not NAME_RE.match(name):  # never a path the caller chose
            raise ValueError(f"not a media name: {name!r}")
        return self.root / name[:2] / name[2:4] / name

    def put(self, name: str, data: bytes, content_type: str) -> None:
        target = self.path(name)
        if target.exists():
            return  # same name, same bytes
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)  # readers never see half a file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, name: str) -> bytes | None:
        try:
            return self.path(name).read_bytes()
        except (FileNotFoundError, ValueError):
            return None

    def exists(self, name: str) -> bool:
        try:
            return self.path(name).exists()
        except ValueError:
            return False


class S3Storage:
    """An S3-compatible object store (AWS S3, Tencent COS, Aliyun OSS, MinIO …) through boto3.
    Credentials come the usual boto3 way (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``
    or an instance role). Objects are written with a year-long ``Cache-Control``; the app still
    serves ``/media/<name>`` (a CDN in front caches it), so pages never change with the store."""

    def __init__(self, bucket: str, *, endpoint_url: str = "", region: str = "", prefix: str = ""):
        import boto3  # only deployments that use S3 need it installed

        self.bucket = bucket
        self.prefix = prefix
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region or None
        )

    def _key(self, name: str) -> str:
        if not NAME_RE.match(name):
            raise ValueError(f"not a media name: {name!r}")
        return f"{self.prefix}{name}"

    def put(self, name: str, data: bytes, content_type: str) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key(name),
            Body=data,
            ContentType=content_type,
            CacheControl="public, max-age=31536000, immutable",
        )

    def get(self, name: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
        except ValueError:
            return None
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return body.read()

    def exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        except ValueError:
            return False
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise
        return True


def media_root(settings: Settings) -> Path:
    return settings.media_dir or settings.data_dir / "media"


@lru_cache(maxsize=8)
def _local(root: str) -> LocalStorage:
    return LocalStorage(Path(root))


@lru_cache(maxsize=8)
def _s3(bucket: str, endpoint_url: str, region: str, prefix: str) -> S3Storage:
    return S3Storage(bucket, endpoint_url=endpoint_url, region=region, prefix=prefix)


def storage_for(settings: Settings) -> MediaStorage:
    """``O2O_MEDIA_STORAGE=s3`` with ``O2O_MEDIA_S3_BUCKET`` (and an endpoint for non-AWS
    stores); otherwise files under the media directory."""
    if settings.media_storage == "s3":
        return _s3(
            settings.media_s3_bucket,
            settings.media_s3_endpoint_url,
            settings.media_s3_region,
            settings.media_s3_prefix,
        )
    return _local(str(media_root(settings).resolve()))
