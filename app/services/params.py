"""A run's spec written out as searchable rows (app/domain/spec_values.py) when it is
created: queries over `params.` and `dataset` read these, never the spec's JSON."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, SQLModel

from app.domain.spec_values import spec_values
from app.models import Experiment

_TABLE = SQLModel.metadata.tables["experimentparam"]
# Rows per statement: SQLite takes at most 32,766 bound values in one statement.
_CHUNK = 4000


def record(*, session: Session, rows: Sequence[Experiment]) -> None:
    """Write the values of new runs' specs (the runs are flushed: they have ids); one
    insert for all of them. The caller commits."""
    values = [
        {
            "experiment_id": row.id,
            "path": value.path,
            "generic": value.generic,
            "kind": value.kind,
            "number": value.number,
            "text": value.text,
        }
        for row in rows
        for value in spec_values(row.spec)
    ]
    connection = session.connection()
    for start in range(0, len(values), _CHUNK):
        connection.execute(_TABLE.insert(), values[start : start + _CHUNK])
