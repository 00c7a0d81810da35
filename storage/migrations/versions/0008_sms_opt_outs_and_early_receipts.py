"""SMS: opt-outs staff record in the chat (masked number, reason, who), and delivery receipts
that arrive before their send is recorded

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sms_opt_out") as batch:
        batch.add_column(sa.Column("masked", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("reason", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("actor", sa.String(length=80), nullable=True))
    op.create_table(
        "sms_early_receipt",
        sa.Column("serial_no", sa.String(length=80), nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("error", sa.String(length=200), nullable=True),
        sa.Column("created_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("serial_no", name=op.f("pk_sms_early_receipt")),
    )


def downgrade() -> None:
    op.drop_table("sms_early_receipt")
    with op.batch_alter_table("sms_opt_out") as batch:
        batch.drop_column("actor")
        batch.drop_column("reason")
        batch.drop_column("masked")
