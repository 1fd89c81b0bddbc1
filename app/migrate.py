"""Apply the Alembic migrations (what `reglab serve` does before it starts)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from app.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str | None = None) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    # '%' would be read as interpolation by configparser.
    url = database_url or get_settings().database_url
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(database_url: str | None = None) -> None:
    """Migrate to the latest revision. On PostgreSQL, replicas that start together take
    turns under an advisory lock (otherwise two would create the same tables at once)."""
    url = database_url or get_settings().database_url
    if not url.startswith("postgresql"):
        command.upgrade(alembic_config(url), "head")
        return
    from sqlalchemy import text

    from app.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(hashtext('reglab-migrations'))"))
            connection.commit()
            try:
                command.upgrade(alembic_config(url), "head")
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(hashtext('reglab-migrations'))"))
                connection.commit()
    finally:
        engine.dispose()
