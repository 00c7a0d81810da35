"""resources (doctors, windows) serving services, their rosters (排班), and the resource of a
slot, an appointment and a closure (停诊 of one doctor)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _instant(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, storage.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "resource",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=20), nullable=True),
        sa.Column("specialty_zh", sa.String(length=100), nullable=True),
        sa.Column("specialty_en", sa.String(length=100), nullable=True),
        sa.Column("definition", storage.db.JSONType, nullable=False),
        sa.Column("definition_hash", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _instant("updated_at", False),
        _instant("created_at", False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource")),
        sa.UniqueConstraint("code", name=op.f("uq_resource_code")),
    )
    op.create_table(
        "service_resource",
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["resource_id"], ["resource.id"],
                                name=op.f("fk_service_resource_resource_id_resource")),
        sa.ForeignKeyConstraint(["service_id"], ["service.id"],
                                name=op.f("fk_service_resource_service_id_service")),
        sa.PrimaryKeyConstraint("service_id", "resource_id", name=op.f("pk_service_resource")),
    )
    with op.batch_alter_table("service_resource", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_service_resource_resource_id"), ["resource_id"])
    op.create_table(
        "roster_pattern",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("half", sa.String(length=2), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("online_seats", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        _instant("updated_at", False),
        sa.CheckConstraint("online_seats >= 0 AND online_seats <= seats",
                           name=op.f("ck_roster_pattern_seats")),
        sa.ForeignKeyConstraint(["resource_id"], ["resource.id"],
                                name=op.f("fk_roster_pattern_resource_id_resource")),
        sa.ForeignKeyConstraint(["service_id"], ["service.id"],
                                name=op.f("fk_roster_pattern_service_id_service")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_pattern")),
        sa.UniqueConstraint("resource_id", "service_id", "weekday", "half",
                            name=op.f("uq_roster_pattern_resource_id")),
    )
    with op.batch_alter_table("roster_pattern", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_roster_pattern_service_id"), ["service_id"])
    op.create_table(
        "roster_exception",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("half", sa.String(length=3), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("online_seats", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        _instant("created_at", False),
        sa.ForeignKeyConstraint(["resource_id"], ["resource.id"],
                                name=op.f("fk_roster_exception_resource_id_resource")),
        sa.ForeignKeyConstraint(["service_id"], ["service.id"],
                                name=op.f("fk_roster_exception_service_id_service")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_exception")),
        sa.UniqueConstraint("resource_id", "service_id", "day", "half",
                            name=op.f("uq_roster_exception_resource_id")),
    )
    with op.batch_alter_table("roster_exception", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_roster_exception_service_id"), ["service_id"])

    # SQLite changes a constraint by copying the table (batch mode); PostgreSQL alters in place.
    with op.batch_alter_table("slot", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resource_id", sa.Integer(), nullable=True))
        batch_op.drop_constraint("uq_slot_service_id", type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_slot_service_id"),
                                          ["service_id", "starts_at", "resource_id"])
        batch_op.create_foreign_key(batch_op.f("fk_slot_resource_id_resource"), "resource",
                                    ["resource_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_slot_resource_id"), ["resource_id"])
        batch_op.create_index("uq_slot_plain_start", ["service_id", "starts_at"], unique=True,
                              sqlite_where=sa.text("resource_id IS NULL"),
                              postgresql_where=sa.text("resource_id IS NULL"))
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resource_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_appointment_resource_id_resource"), "resource",
                                    ["resource_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_appointment_resource_id"), ["resource_id"])
    with op.batch_alter_table("closure", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resource_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_closure_resource_id_resource"), "resource",
                                    ["resource_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_closure_resource_id"), ["resource_id"])
    op.create_table(
        "closure_offer",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("closure_id", sa.Integer(), nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("from_resource_id", sa.Integer(), nullable=False),
        sa.Column("substitute_id", sa.Integer(), nullable=True),
        sa.Column("slot_ids", storage.db.JSONType, nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        _instant("deadline", False),
        _instant("decided_at", True),
        _instant("created_at", False),
        sa.ForeignKeyConstraint(["appointment_id"], ["appointment.id"],
                                name=op.f("fk_closure_offer_appointment_id_appointment")),
        sa.ForeignKeyConstraint(["closure_id"], ["closure.id"],
                                name=op.f("fk_closure_offer_closure_id_closure")),
        sa.ForeignKeyConstraint(["from_resource_id"], ["resource.id"],
                                name=op.f("fk_closure_offer_from_resource_id_resource")),
        sa.ForeignKeyConstraint(["substitute_id"], ["resource.id"],
                                name=op.f("fk_closure_offer_substitute_id_resource")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_closure_offer")),
    )
    with op.batch_alter_table("closure_offer", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_closure_offer_appointment_id"), ["appointment_id"])
        batch_op.create_index(batch_op.f("ix_closure_offer_closure_id"), ["closure_id"])
        batch_op.create_index("ix_closure_offer_status_deadline", ["status", "deadline"])


def downgrade() -> None:
    op.drop_table("closure_offer")
    with op.batch_alter_table("closure", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_closure_resource_id"))
        batch_op.drop_constraint(batch_op.f("fk_closure_resource_id_resource"), type_="foreignkey")
        batch_op.drop_column("resource_id")
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_appointment_resource_id"))
        batch_op.drop_constraint(batch_op.f("fk_appointment_resource_id_resource"), type_="foreignkey")
        batch_op.drop_column("resource_id")
    with op.batch_alter_table("slot", schema=None) as batch_op:
        batch_op.drop_index("uq_slot_plain_start")
        batch_op.drop_index(batch_op.f("ix_slot_resource_id"))
        batch_op.drop_constraint(batch_op.f("fk_slot_resource_id_resource"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_slot_service_id"), type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_slot_service_id"), ["service_id", "starts_at"])
        batch_op.drop_column("resource_id")
    op.drop_table("roster_exception")
    op.drop_table("roster_pattern")
    op.drop_table("service_resource")
    op.drop_table("resource")
