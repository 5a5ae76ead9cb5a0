"""Configuration: every setting is an ``O2O_*`` environment variable (pydantic-settings)."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field
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

    token_ttl_seconds: int = Field(default=2 * 3600, ge=60)
    login_max_failures: int = Field(default=5, ge=1)
    login_failure_window_seconds: int = Field(default=15 * 60, ge=1)

    payment_timeout_seconds: int = Field(default=15 * 60, ge=10)
    # The embedded sandbox payment provider; turn it off in production (anyone reaching its
    # cashier can mark a payment paid).
    sandbox_payments: bool = True
    auto_confirm_days: int = Field(default=7, ge=1)
    settlement_cycle_days: int = Field(default=1, ge=1)

    worker_interval_seconds: float = Field(default=5.0, gt=0)
    # Run the worker as a thread inside `o2o serve` (the embedded default).
    embedded_worker: bool = True
    public_base_url: str = "http://127.0.0.1:8000"
    log_level: str = "info"

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
