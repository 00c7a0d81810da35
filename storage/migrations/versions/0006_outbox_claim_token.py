"""outbox claim token: a send is fenced by the claim it was made under; an index by target and
status, for a chat's queued replies (one waits while an earlier one to the chat is unsent)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
    op.create_index("ix_outbox_target_status", "outbox", ["target", "status"])


def downgrade() -> None:
    op.drop_index("ix_outbox_target_status", table_name="outbox")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("claim_token")
