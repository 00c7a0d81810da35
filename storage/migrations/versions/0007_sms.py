"""text messages (短信): opt-outs, the send log for limits and receipts, verification codes

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _instant(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, storage.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "sms_opt_out",
        sa.Column("mobile_hash", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        _instant("created_at", False),
        sa.PrimaryKeyConstraint("mobile_hash", name=op.f("pk_sms_opt_out")),
    )
    op.create_table(
        "sms_message",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("mobile_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("serial_no", sa.String(length=80), nullable=True),
        sa.Column("fee", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=200), nullable=True),
        _instant("reported_at", True),
        _instant("created_at", False),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"],
                                name=op.f("fk_sms_message_outbox_id_outbox")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_message")),
    )
    with op.batch_alter_table("sms_message", schema=None) as batch_op:
        batch_op.create_index("ix_sms_message_mobile_created", ["mobile_hash", "created_at"])
        batch_op.create_index(batch_op.f("ix_sms_message_outbox_id"), ["outbox_id"])
        batch_op.create_index(batch_op.f("ix_sms_message_serial_no"), ["serial_no"])
    op.create_table(
        "sms_code",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        _instant("expires_at", False),
        _instant("used_at", True),
        _instant("created_at", False),
        sa.ForeignKeyConstraint(["identity_id"], ["channel_identity.id"],
                                name=op.f("fk_sms_code_identity_id_channel_identity")),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"],
                                name=op.f("fk_sms_code_person_id_person")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_code")),
    )
    with op.batch_alter_table("sms_code", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sms_code_identity_id"), ["identity_id"])


def downgrade() -> None:
    with op.batch_alter_table("sms_code", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_code_identity_id"))
    op.drop_table("sms_code")
    with op.batch_alter_table("sms_message", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_message_serial_no"))
        batch_op.drop_index(batch_op.f("ix_sms_message_outbox_id"))
        batch_op.drop_index("ix_sms_message_mobile_created")
    op.drop_table("sms_message")
    op.drop_table("sms_opt_out")
