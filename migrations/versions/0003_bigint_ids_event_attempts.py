"""64-bit ids (BIGINT on PostgreSQL), and events keyed by attempt

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 10:00:00.000000

PostgreSQL's INTEGER stops at 2**31 - 1: every id (and a dataset's byte count) becomes
BIGINT, and so do the sequences that number new rows. SQLite's INTEGER is 64-bit already;
there the tables with ids are rebuilt AUTOINCREMENT, so that a deleted row's id is never
given to a new one (as PostgreSQL's sequences never do). On both, the event table gets an
`attempt` column, part of the key of an epoch's event, so that a retried run's attempts
keep an event stream each.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every column that holds an id or a byte count, referenced columns before the others.
WIDE_COLUMNS = [
    ('experiment', 'id'),
    ('sweep', 'id'),
    ('dataset', 'id'),
    ('event', 'id'),
    ('experiment', 'sweep_id'),
    ('metric', 'experiment_id'),
    ('event', 'experiment_id'),
    ('batchmetric', 'experiment_id'),
    ('dataset', 'size_bytes'),
]
# The sequences behind the SERIAL ids: a sequence has a type of its own, which caps it.
SEQUENCES = ['experiment_id_seq', 'sweep_id_seq', 'dataset_id_seq', 'event_id_seq']


def _postgresql() -> bool:
    return op.get_bind().dialect.name == 'postgresql'


# The SQLite tables whose ids must never be reused; a later rebuild of one (any batch
# operation on SQLite) passes NEVER_REUSED to keep it so.
NUMBERED = ['experiment', 'sweep', 'dataset', 'event']
NEVER_REUSED = {'sqlite_autoincrement': True}


def upgrade() -> None:
    if not _postgresql():
        for table in NUMBERED:
            with op.batch_alter_table(table, recreate='always', table_kwargs=NEVER_REUSED):
                pass
    with op.batch_alter_table('event', table_kwargs=NEVER_REUSED) as batch_op:
        batch_op.add_column(sa.Column('attempt', sa.Integer(), nullable=False, server_default='0'))
        batch_op.drop_constraint('uq_event_epoch', type_='unique')
        batch_op.create_unique_constraint(
            'uq_event_epoch', ['experiment_id', 'kind', 'attempt', 'epoch']
        )
    # The events stored so far are taken to be the run's latest attempt's.
    op.execute(
        'UPDATE event SET attempt = '
        '(SELECT experiment.attempt FROM experiment WHERE experiment.id = event.experiment_id)'
    )
    if _postgresql():
        for table, column in WIDE_COLUMNS:
            op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer())
        for sequence in SEQUENCES:
            op.execute(f'ALTER SEQUENCE {sequence} AS bigint')


def downgrade() -> None:
    if _postgresql():
        for sequence in SEQUENCES:
            op.execute(f'ALTER SEQUENCE {sequence} AS integer')
        for table, column in reversed(WIDE_COLUMNS):
            op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger())
    # One event per (run, kind, epoch) again: the latest attempt's stays.
    op.execute(
        'DELETE FROM event WHERE epoch IS NOT NULL AND EXISTS ('
        'SELECT 1 FROM event AS later WHERE later.experiment_id = event.experiment_id '
        'AND later.kind = event.kind AND later.epoch = event.epoch '
        'AND later.attempt > event.attempt)'
    )
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_constraint('uq_event_epoch', type_='unique')
        batch_op.create_unique_constraint('uq_event_epoch', ['experiment_id', 'kind', 'epoch'])
        batch_op.drop_column('attempt')
    if not _postgresql():
        for table in NUMBERED:
            with op.batch_alter_table(table, recreate='always'):
                pass
