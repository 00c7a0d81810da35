"""notification consent: WeChat's one-time subscription messages

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_consent",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("platform_user_id", sa.String(length=128), nullable=False),
        sa.Column("template_id", sa.String(length=128), nullable=False),
        sa.Column("scene", sa.Integer(), nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=True),
        sa.Column("used_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["appointment_id"], ["appointment.id"],
                                name=op.f("fk_notification_consent_appointment_id_appointment")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_consent")),
        sa.UniqueConstraint("channel", "platform_user_id", "template_id", "scene",
                            name=op.f("uq_notification_consent_channel")),
    )
    with op.batch_alter_table("notification_consent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notification_consent_appointment_id"),
                              ["appointment_id"], unique=False)
        batch_op.create_index("ix_notification_consent_user",
                              ["channel", "platform_user_id", "used_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notification_consent", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_consent_user")
        batch_op.drop_index(batch_op.f("ix_notification_consent_appointment_id"))
    op.drop_table("notification_consent")
