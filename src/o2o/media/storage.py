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


def media_root(settings: Settings) -> Path:
    return settings.media_dir or settings.data_dir / "media"


@lru_cache(maxsize=8)
def _local(root: str) -> LocalStorage:
    return LocalStorage(Path(root))


def storage_for(settings: Settings) -> MediaStorage:
    return _local(str(media_root(settings).resolve()))
