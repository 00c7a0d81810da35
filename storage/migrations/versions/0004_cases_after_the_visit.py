"""cases after the visit (办件): cases, their history, joint-case parts and extensions

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CASE_STATES = ("accepted", "correction", "in_progress", "ready", "collected", "mailed", "closed",
               "refused", "withdrawn")


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _instant(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, storage.db.UTCDateTime(timezone=True), nullable=nullable)


def _state(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.Enum(*CASE_STATES, name="casestate", native_enum=False, length=20),
                     nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "case_file",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(length=8), nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=True),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.Enum("immediate", "promised", "correction", "returned", "joint",
                                  "reported", name="casekind", native_enum=False, length=20),
                  nullable=False),
        _state("state", False),
        sa.Column("owner", sa.String(length=80), nullable=False),
        _instant("opened_at", False),
        sa.Column("opened_on", sa.Date(), nullable=False),
        sa.Column("committed_days", sa.Integer(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("paused_on", sa.Date(), nullable=True),
        sa.Column("correction_due_on", sa.Date(), nullable=True),
        sa.Column("corrections", sa.Integer(), nullable=False),
        sa.Column("paused_days", sa.Integer(), nullable=False),
        _instant("ready_at", True),
        sa.Column("ready_on", sa.Date(), nullable=True),
        sa.Column("clock_days", sa.Integer(), nullable=True),
        sa.Column("delivery", sa.String(length=10), nullable=True),
        sa.Column("tracking_number", sa.String(length=40), nullable=True),
        sa.Column("refusal_reason", sa.Text(), nullable=True),
        sa.Column("legal_basis", sa.Text(), nullable=True),
        sa.Column("details", _json(), nullable=False),
        _instant("closed_at", True),
        sa.Column("reminded_due_on", sa.Date(), nullable=True),
        sa.Column("escalated_due_on", sa.Date(), nullable=True),
        _instant("uncollected_reminded_at", True),
        _instant("followup_asked_at", True),
        sa.Column("followup_level", sa.Integer(), nullable=True),
        _instant("followup_at", True),
        sa.Column("followup_comment", sa.Text(), nullable=True),
        sa.Column("complaint_id", sa.Integer(), nullable=True),
        _instant("updated_at", False),
        _instant("created_at", False),
        sa.CheckConstraint("followup_level IS NULL OR followup_level BETWEEN 1 AND 5",
                           name=op.f("ck_case_file_followup_level")),
        sa.ForeignKeyConstraint(["appointment_id"], ["appointment.id"],
                                name=op.f("fk_case_file_appointment_id_appointment")),
        sa.ForeignKeyConstraint(["complaint_id"], ["complaint.id"],
                                name=op.f("fk_case_file_complaint_id_complaint")),
        sa.ForeignKeyConstraint(["identity_id"], ["channel_identity.id"],
                                name=op.f("fk_case_file_identity_id_channel_identity")),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"],
                                name=op.f("fk_case_file_person_id_person")),
        sa.ForeignKeyConstraint(["service_id"], ["service.id"],
                                name=op.f("fk_case_file_service_id_service")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_file")),
        sa.UniqueConstraint("appointment_id", name=op.f("uq_case_file_appointment_id")),
        sa.UniqueConstraint("number", name=op.f("uq_case_file_number")),
    )
    with op.batch_alter_table("case_file", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_file_identity_id"), ["identity_id"], unique=False)
        batch_op.create_index("ix_case_file_opened_on", ["opened_on"], unique=False)
        batch_op.create_index(batch_op.f("ix_case_file_person_id"), ["person_id"], unique=False)
        batch_op.create_index("ix_case_file_ready_on", ["ready_on"], unique=False)
        batch_op.create_index(batch_op.f("ix_case_file_service_id"), ["service_id"], unique=False)
        batch_op.create_index("ix_case_file_state_due", ["state", "due_on"], unique=False)

    op.create_table(
        "case_event",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        _instant("at", False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=30), nullable=False),
        _state("state_before", True),
        _state("state_after", False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", _json(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["case_file.id"],
                                name=op.f("fk_case_event_case_id_case_file")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_event")),
    )
    with op.batch_alter_table("case_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_event_case_id"), ["case_id"], unique=False)

    op.create_table(
        "case_extension",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.Enum("requested", "approved", "refused", name="extensionstatus",
                                    native_enum=False, length=20), nullable=False),
        sa.Column("requested_by", sa.String(length=80), nullable=False),
        _instant("requested_at", False),
        sa.Column("decided_by", sa.String(length=80), nullable=True),
        _instant("decided_at", True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("due_before", sa.Date(), nullable=False),
        sa.Column("due_after", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["case_file.id"],
                                name=op.f("fk_case_extension_case_id_case_file")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_extension")),
    )
    with op.batch_alter_table("case_extension", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_extension_case_id"), ["case_id"], unique=False)

    op.create_table(
        "case_part",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("working_days", sa.Integer(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        _instant("done_at", True),
        sa.Column("done_by", sa.String(length=80), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["case_file.id"],
                                name=op.f("fk_case_part_case_id_case_file")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_part")),
        sa.UniqueConstraint("case_id", "name", name=op.f("uq_case_part_case_id")),
    )


def downgrade() -> None:
    op.drop_table("case_part")
    with op.batch_alter_table("case_extension", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_extension_case_id"))
    op.drop_table("case_extension")
    with op.batch_alter_table("case_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_event_case_id"))
    op.drop_table("case_event")
    with op.batch_alter_table("case_file", schema=None) as batch_op:
        for index in ("ix_case_file_state_due", "ix_case_file_service_id", "ix_case_file_ready_on",
                      "ix_case_file_person_id", "ix_case_file_opened_on", "ix_case_file_identity_id"):
            batch_op.drop_index(index)
    op.drop_table("case_file")
