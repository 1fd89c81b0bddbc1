"""Server and client settings from the environment (prefix REGLAB_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything tunable, read once per process through `get_settings()`."""

    model_config = SettingsConfigDict(env_prefix="REGLAB_", extra="ignore")

    database_url: str = "sqlite:///data/reglab.db"
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8000
    # Where clients (CLI, worker) find the server.
    server_url: str = "http://127.0.0.1:8000"

    lease_seconds: float = Field(default=30.0, gt=0)
    sweep_seconds: float = Field(default=5.0, gt=0)
    heartbeat_seconds: float = Field(default=2.0, gt=0)
    claim_wait_seconds: float = Field(default=20.0, ge=0, le=60)
    max_attempts: int = Field(default=1, ge=1, le=20)

    sse_ping_seconds: float = Field(default=15.0, gt=0)
    sse_send_timeout: float = Field(default=10.0, gt=0)
    sse_queue_size: int = Field(default=1000, ge=1)
    max_model_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    graceful_shutdown_seconds: float = 3.0

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"


@lru_cache
def get_settings() -> Settings:
    return Settings()
