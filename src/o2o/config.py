"""Configuration: every setting is an ``O2O_*`` environment variable (pydantic-settings)."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./o2o.db"
SECRET_FILE_NAME = ".o2o-secret"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="O2O_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    # Empty means: generate one and persist it next to the embedded database (never a constant).
    secret_key: str = ""
    demo: bool = True
    redis_url: str = ""
    data_dir: Path = Path(".")
    # Uploaded photos (o2o.media): the local directory; empty means <data_dir>/media.
    media_dir: Path | None = None
    # "local" (files under media_dir) or "s3" (an S3-compatible bucket through boto3).
    media_storage: Literal["local", "s3"] = "local"
    media_s3_bucket: str = ""
    media_s3_endpoint_url: str = ""  # e.g. https://cos.ap-guangzhou.myqcloud.com; empty: AWS
    media_s3_region: str = ""
    media_s3_prefix: str = "media/"

    token_ttl_seconds: int = Field(default=2 * 3600, ge=60)
    # Sign-in throttling (o2o.accounts.flows): per phone *and* client address a hard limit; per
    # phone from every address a progressive delay (the owner still gets in, only slower); per
    # client address (password spraying across phones) a hard limit.
    login_max_failures: int = Field(default=5, ge=1)
    login_failure_window_seconds: int = Field(default=15 * 60, ge=1)
    login_max_failures_per_address: int = Field(default=30, ge=1)
    login_delay_base_seconds: float = Field(default=0.5, ge=0)
    login_delay_max_seconds: float = Field(default=8.0, ge=0)
    # Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For is believed
    # (e.g. "127.0.0.1,10.0.0.0/8"); empty: the peer address is the client.
    trusted_proxies: str = ""
    # Argon2 hashes at once per process (each takes ~64 MiB and a core for ~0.1 s); sign-ins past
    # that wait up to password_hash_wait_seconds, then get 503 with Retry-After.
    password_hash_concurrency: int = Field(default=2, ge=1)
    password_hash_wait_seconds: float = Field(default=10.0, ge=0)
    password_hash_max_waiting: int = Field(default=200, ge=0)
    # Prefix of this deployment's Redis keys (several deployments may share one Redis).
    redis_key_prefix: str = "o2o"

    payment_timeout_seconds: int = Field(default=15 * 60, ge=10)
    # The embedded sandbox payment provider: off unless turned on (``make run`` does, for the
    # embedded demo). Its cashier lets the payer mark their own payment paid: never in production.
    sandbox_payments: bool = False
    auto_confirm_days: int = Field(default=7, ge=1)
    settlement_cycle_days: int = Field(default=1, ge=1)

    worker_interval_seconds: float = Field(default=5.0, gt=0)
    # Run the worker as a thread inside `o2o serve` (the embedded default).
    embedded_worker: bool = True
    public_base_url: str = "http://127.0.0.1:8000"
    log_level: str = "info"

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Settings:
        if self.media_storage == "s3" and not self.media_s3_bucket:
            raise ValueError("O2O_MEDIA_STORAGE=s3 needs O2O_MEDIA_S3_BUCKET")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def resolved_secret_key(self) -> str:
        """The configured key, or one generated once and kept in ``data_dir``.

        Persisting it means tokens and sessions survive a restart of the embedded default.
        """
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / SECRET_FILE_NAME
        if path.exists():
            return path.read_text().strip()
        key = secrets.token_urlsafe(48)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key


@lru_cache
def get_settings() -> Settings:
    return Settings()
