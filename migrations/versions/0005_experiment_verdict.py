"""The verdict of a run that ended, stored on its row

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 09:00:00.000000

A run's own verdict (overfitting, underfitting, still_improving, healthy, too_early) is
stored when it reaches a final status, so that queries can filter on it; indexed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEVER_REUSED = {'sqlite_autoincrement': True}


def upgrade() -> None:
    # On SQLite the table is rebuilt: it stays AUTOINCREMENT (ids never reused, 0003).
    with op.batch_alter_table('experiment', table_kwargs=NEVER_REUSED) as batch_op:
        batch_op.add_column(sa.Column('verdict', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.create_index(batch_op.f('ix_experiment_verdict'), ['verdict'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('experiment', table_kwargs=NEVER_REUSED) as batch_op:
        batch_op.drop_index(batch_op.f('ix_experiment_verdict'))
        batch_op.drop_column('verdict')
