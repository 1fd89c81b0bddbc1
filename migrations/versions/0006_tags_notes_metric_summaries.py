"""Tags and notes on runs; per-run metric summaries for queries

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 12:00:00.000000

`experiment.tags` (key → value, or a bare label) and `experiment.notes` (filled from each
queued run's spec); `metricsummary`, one row per run and metric with its value at the
best epoch (lowest val_data_loss), last value, minimum and maximum, filled here from the
metric rows already stored and kept at ingest from now on.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
NEVER_REUSED = {'sqlite_autoincrement': True}

# The summaries of every stored series: the best epoch is a run's earliest epoch of lowest
# val_data_loss; a series without a value there has no best value.
FILL_SUMMARIES = """
WITH lowest AS (
    SELECT experiment_id, MIN(value) AS value FROM metric
    WHERE name = 'val_data_loss' GROUP BY experiment_id
), best AS (
    SELECT m.experiment_id, MIN(m.epoch) AS epoch
    FROM metric m JOIN lowest ON lowest.experiment_id = m.experiment_id
    WHERE m.name = 'val_data_loss' AND m.value = lowest.value
    GROUP BY m.experiment_id
), series AS (
    SELECT experiment_id, name, MAX(epoch) AS last_epoch, MIN(value) AS min_value,
           MAX(value) AS max_value
    FROM metric GROUP BY experiment_id, name
)
INSERT INTO metricsummary
    (experiment_id, name, last_epoch, last_value, min_value, max_value, best_epoch, best_value)
SELECT series.experiment_id, series.name, series.last_epoch, at_last.value,
       series.min_value, series.max_value, best.epoch, at_best.value
FROM series
JOIN metric at_last ON at_last.experiment_id = series.experiment_id
    AND at_last.name = series.name AND at_last.epoch = series.last_epoch
LEFT JOIN best ON best.experiment_id = series.experiment_id
LEFT JOIN metric at_best ON at_best.experiment_id = series.experiment_id
    AND at_best.name = series.name AND at_best.epoch = best.epoch
"""


def upgrade() -> None:
    op.create_table(
        'metricsummary',
        sa.Column('experiment_id', ID, nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column('last_epoch', sa.Integer(), nullable=False),
        sa.Column('last_value', sa.Float(), nullable=False),
        sa.Column('min_value', sa.Float(), nullable=False),
        sa.Column('max_value', sa.Float(), nullable=False),
        sa.Column('best_epoch', sa.Integer(), nullable=True),
        sa.Column('best_value', sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(['experiment_id'], ['experiment.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('experiment_id', 'name'),
    )
    # On SQLite the table is rebuilt: it stays AUTOINCREMENT (ids never reused, 0003).
    with op.batch_alter_table('experiment', table_kwargs=NEVER_REUSED) as batch_op:
        batch_op.add_column(
            sa.Column('tags', sa.JSON(), server_default=sa.text("'{}'"), nullable=False)
        )
        batch_op.add_column(sa.Column('notes', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.execute(FILL_SUMMARIES)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("UPDATE experiment SET notes = spec ->> 'notes' WHERE source = 'queue'")
    else:
        op.execute("UPDATE experiment SET notes = json_extract(spec, '$.notes') WHERE source = 'queue'")


def downgrade() -> None:
    with op.batch_alter_table('experiment', table_kwargs=NEVER_REUSED) as batch_op:
        batch_op.drop_column('notes')
        batch_op.drop_column('tags')
    op.drop_table('metricsummary')
