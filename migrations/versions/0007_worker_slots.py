"""Workers' slots as they report them

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 12:00:00.000000

`worker.slots`: each slot of the worker as its last report said (what it does, the runs
it trains or why it waits, its GPU's memory and utilization); empty for workers that
never reported.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.add_column(sa.Column('slots', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.drop_column('slots')
