"""Server and client settings from the environment (prefix REGLAB_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


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
    # The most members one packed model of a sweep trains (larger groups are split).
    max_pack: int = Field(default=32, ge=1, le=1024)

    sse_ping_seconds: float = Field(default=15.0, gt=0)
    sse_send_timeout: float = Field(default=10.0, gt=0)
    sse_queue_size: int = Field(default=1000, ge=1)
    max_model_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)  # every other route's body
    max_dataset_bytes: int = Field(default=64 * 1024 * 1024, ge=1)  # an uploaded CSV/NPZ
    graceful_shutdown_seconds: float = 3.0

    # Access. Without `token` the server trusts whoever reaches it, so it only serves
    # loopback addresses and loopback Host headers. With it, the API and the pages need
    # that token (a bearer header, or the cookie the login page sets) and the worker
    # endpoints need `worker_token` (or `token` when no worker token is set).
    token: SecretStr | None = None
    worker_token: SecretStr | None = None
    # Host headers accepted (comma-separated); empty: loopback names only without a token,
    # any with one. Stops DNS rebinding against a server on localhost.
    allowed_hosts: str = ""
    session_hours: float = Field(default=24 * 7, gt=0)

    @field_validator("token", "worker_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `REGLAB_TOKEN=` (as docker compose passes an unset variable) means no token.
        return None if isinstance(value, str) and not value.strip() else value

    def host_allowlist(self) -> list[str]:
        extra = [host.strip() for host in self.allowed_hosts.split(",") if host.strip()]
        if extra:
            return [*LOOPBACK_HOSTS, *extra]
        return ["*"] if self.token else list(LOOPBACK_HOSTS)

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"


@lru_cache
def get_settings() -> Settings:
    return Settings()
