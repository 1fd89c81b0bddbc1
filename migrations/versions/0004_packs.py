"""Packs: sweep points that train together as one packed model

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 12:00:00.000000

A `pack` row per group of sweep runs that train as one model, and on each such run its
pack and its member slot (`pack_id`, `pack_index`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
NEVER_REUSED = {'sqlite_autoincrement': True}


def upgrade() -> None:
    op.create_table(
        'pack',
        sa.Column('id', ID, nullable=False),
        sa.Column('sweep_id', ID, nullable=True),
        sa.Column('members', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['sweep_id'], ['sweep.id']),
        sa.PrimaryKeyConstraint('id'),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f('ix_pack_sweep_id'), 'pack', ['sweep_id'], unique=False)
    # On SQLite the table is rebuilt: it stays AUTOINCREMENT (ids never reused, 0003).
    with op.batch_alter_table('experiment', table_kwargs=NEVER_REUSED) as batch_op:
        batch_op.add_column(sa.Column('pack_id', ID, nullable=True))
        batch_op.add_column(sa.Column('pack_index', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_experiment_pack_id'), ['pack_id'], unique=False)
        batch_op.create_foreign_key('fk_experiment_pack_id', 'pack', ['pack_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('experiment', table_kwargs=NEVER_REUSED) as batch_op:
        batch_op.drop_constraint('fk_experiment_pack_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_experiment_pack_id'))
        batch_op.drop_column('pack_index')
        batch_op.drop_column('pack_id')
    op.drop_index(op.f('ix_pack_sweep_id'), table_name='pack')
    op.drop_table('pack')
