"""signed requests: webhook signatures seen within the replay window

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signed_request",
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("signed", sa.String(length=64), nullable=False),
        sa.Column("body_digest", sa.String(length=64), nullable=False),
        sa.Column("seen_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "signed", name=op.f("pk_signed_request")),
    )
    with op.batch_alter_table("signed_request", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signed_request_seen_at"), ["seen_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("signed_request", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signed_request_seen_at"))
    op.drop_table("signed_request")
