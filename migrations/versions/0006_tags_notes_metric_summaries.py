"""Tags and notes on runs; searchable spec values and metric summaries for queries

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 12:00:00.000000

`experiment.tags` (key → value, or a bare label) and `experiment.notes` (filled from each
queued run's spec); `experimentparam`, one row per value of each run's spec (its path and
generic path, `[*]` for every index; and the derived `@dataset`), written here for the
runs already stored; `metricsummary`, one row per run and metric with its value at the
best epoch (lowest val_data_loss), last value, minimum and maximum, filled here from the
metric rows already stored. New runs get both from the services.
"""

import json
from collections.abc import Iterator, Sequence
from typing import Any

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


SUMMARIES = ('best_value', 'last_value', 'min_value', 'max_value')


def _values(node: Any, path: str = '', generic: str = '') -> Iterator[dict[str, Any]]:
    """The spec's values as rows (as app/domain/spec_values.py wrote them in 0006)."""
    if isinstance(node, dict):
        for key, child in node.items():
            if not path and key == 'notes':
                continue
            yield from _values(
                child, f'{path}.{key}' if path else key, f'{generic}.{key}' if generic else key
            )
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _values(child, f'{path}[{index}]', f'{generic}[*]')
    elif isinstance(node, bool):
        yield {'path': path, 'generic': generic, 'kind': 'bool', 'number': float(node), 'text': None}
    elif isinstance(node, int | float):
        yield {'path': path, 'generic': generic, 'kind': 'number', 'number': float(node), 'text': None}
    elif isinstance(node, str) and len(node) <= 500:
        yield {'path': path, 'generic': generic, 'kind': 'text', 'number': None, 'text': node}


def _dataset(spec: dict[str, Any]) -> str | None:
    dataset = spec.get('dataset')
    if isinstance(dataset, dict):
        upload = dataset.get('upload')
        if isinstance(upload, dict) and isinstance(upload.get('name'), str):
            return upload['name']
        return dataset.get('name') if isinstance(dataset.get('name'), str) else None
    script = spec.get('script')
    if isinstance(script, dict) and isinstance(script.get('dataset'), str):
        return script['dataset']
    return None


def _fill_params() -> None:
    bind = op.get_bind()
    table = sa.table(
        'experimentparam',
        *(sa.column(name) for name in ('experiment_id', 'path', 'generic', 'kind', 'number', 'text')),
    )
    rows: list[dict[str, Any]] = []
    for run_id, spec in bind.execute(sa.text('SELECT id, spec FROM experiment')):
        spec = json.loads(spec) if isinstance(spec, str | bytes) else spec
        values = list(_values(spec))
        name = _dataset(spec)
        if name is not None and len(name) <= 500:
            values.append({'path': '@dataset', 'generic': '@dataset', 'kind': 'text', 'number': None, 'text': name})
        rows += [{'experiment_id': run_id, **value} for value in values]
        if len(rows) >= 4000:
            bind.execute(table.insert(), rows)
            rows = []
    if rows:
        bind.execute(table.insert(), rows)


def upgrade() -> None:
    op.create_table(
        'experimentparam',
        sa.Column('experiment_id', ID, nullable=False),
        sa.Column('path', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column('generic', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column('number', sa.Float(), nullable=True),
        sa.Column('text', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.ForeignKeyConstraint(['experiment_id'], ['experiment.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('experiment_id', 'path'),
        sqlite_with_rowid=False,
    )
    op.create_index('ix_experimentparam_generic_number', 'experimentparam', ['generic', 'number'])
    op.create_index('ix_experimentparam_generic_text', 'experimentparam', ['generic', 'text'])
    _fill_params()
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
        sqlite_with_rowid=False,
    )
    for column in SUMMARIES:
        op.create_index(f'ix_metricsummary_name_{column}', 'metricsummary', ['name', column])
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
    for column in SUMMARIES:
        op.drop_index(f'ix_metricsummary_name_{column}', table_name='metricsummary')
    op.drop_table('metricsummary')
    op.drop_index('ix_experimentparam_generic_text', table_name='experimentparam')
    op.drop_index('ix_experimentparam_generic_number', table_name='experimentparam')
    op.drop_table('experimentparam')
