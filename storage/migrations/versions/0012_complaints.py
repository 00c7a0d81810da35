"""complaints and suggestions: category, subject, photo, named staff, priority and 催办,
classification, 回访 and sampling; their history (complaint_event)

Complaints opened before this revision (from low ratings) are carried over: they become
complaints of category "other", and take their person and service from their appointment or
case.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.db

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _instant(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, storage.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("complaint", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=10), nullable=False,
                                      server_default="complaint"))
        batch_op.add_column(sa.Column("category", sa.String(length=20), nullable=False,
                                      server_default="other"))
        batch_op.add_column(sa.Column("person_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("service_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("case_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("photo", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("staff_named", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("repeats", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("complex", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column("classification", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("classification_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("classified_by", sa.String(length=80), nullable=True))
        batch_op.add_column(_instant("classified_at", True))
        batch_op.add_column(sa.Column("reopened", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(_instant("followup_asked_at", True))
        batch_op.add_column(_instant("followup_at", True))
        batch_op.add_column(sa.Column("followup_satisfied", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("sampled_on", sa.Date(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_complaint_person_id_person"), "person",
                                    ["person_id"], ["id"])
        batch_op.create_foreign_key(batch_op.f("fk_complaint_service_id_service"), "service",
                                    ["service_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_complaint_person_id"), ["person_id"], unique=False)
    op.create_table(
        "complaint_event",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("complaint_id", sa.Integer(), nullable=False),
        _instant("at", False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("detail", storage.db.JSONType, nullable=False),
        sa.ForeignKeyConstraint(["complaint_id"], ["complaint.id"],
                                name=op.f("fk_complaint_event_complaint_id_complaint")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaint_event")),
    )
    with op.batch_alter_table("complaint_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_complaint_event_complaint_id"), ["complaint_id"],
                              unique=False)
    # Carry over the complaints low ratings opened: what they are about, from their
    # appointment or their case (portable SQL: correlated subqueries).
    op.execute("""
        UPDATE complaint SET
            service_id = (SELECT appointment.service_id FROM appointment
                          WHERE appointment.id = complaint.appointment_id),
            person_id = (SELECT appointment.person_id FROM appointment
                         WHERE appointment.id = complaint.appointment_id)
        WHERE appointment_id IS NOT NULL""")
    op.execute("""
        UPDATE complaint SET
            case_id = (SELECT MIN(case_file.id) FROM case_file
                       WHERE case_file.complaint_id = complaint.id),
            service_id = COALESCE(service_id, (SELECT MIN(case_file.service_id) FROM case_file
                                               WHERE case_file.complaint_id = complaint.id)),
            person_id = COALESCE(person_id, (SELECT MIN(case_file.person_id) FROM case_file
                                             WHERE case_file.complaint_id = complaint.id))
        WHERE EXISTS (SELECT 1 FROM case_file WHERE case_file.complaint_id = complaint.id)""")


def downgrade() -> None:
    with op.batch_alter_table("complaint_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_complaint_event_complaint_id"))
    op.drop_table("complaint_event")
    with op.batch_alter_table("complaint", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_complaint_person_id"))
        batch_op.drop_constraint(batch_op.f("fk_complaint_service_id_service"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_complaint_person_id_person"), type_="foreignkey")
        for column in ("sampled_on", "followup_satisfied", "followup_at", "followup_asked_at",
                       "reopened", "classified_at", "classified_by", "classification_reason",
                       "classification", "complex", "repeats", "priority", "staff_named", "photo",
                       "case_id", "service_id", "person_id", "category", "kind"):
            batch_op.drop_column(column)
