"""Migrations match the models, and the server never loads TensorFlow."""

from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import app.models  # noqa: F401
from app.db import get_engine
from app.migrate import alembic_config


def test_the_alembic_head_matches_the_models(any_db: str) -> None:
    with get_engine().connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []
        head = ScriptDirectory.from_config(alembic_config(any_db)).get_current_head()
        assert context.get_current_revision() == head


def test_importing_the_server_loads_no_tensorflow() -> None:
    code = (
        "import sys, app.main, app.cli, app.client;"
        "bad = [m for m in ('tensorflow', 'keras', 'jax', 'worker') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
