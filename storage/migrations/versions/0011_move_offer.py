"""staff moving one booking with the citizen's consent: the open offers (/move)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.db

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _instant(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, storage.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "move_offer",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=False),
        sa.Column("slot_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.Enum("offered", "accepted", "declined", "lapsed", "withdrawn",
                                    name="movestatus", native_enum=False, length=20),
                  nullable=False),
        sa.Column("offered_by", sa.String(length=160), nullable=False),
        _instant("expires_at", False),
        _instant("decided_at", True),
        _instant("created_at", False),
        sa.ForeignKeyConstraint(["appointment_id"], ["appointment.id"],
                                name=op.f("fk_move_offer_appointment_id_appointment")),
        sa.ForeignKeyConstraint(["slot_id"], ["slot.id"], name=op.f("fk_move_offer_slot_id_slot")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_move_offer")),
    )
    with op.batch_alter_table("move_offer", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_move_offer_appointment_id"), ["appointment_id"])
        batch_op.create_index(batch_op.f("ix_move_offer_status"), ["status"])


def downgrade() -> None:
    with op.batch_alter_table("move_offer", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_move_offer_status"))
        batch_op.drop_index(batch_op.f("ix_move_offer_appointment_id"))
    op.drop_table("move_offer")
