"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.db

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("entity", sa.String(length=40), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=True),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_entity", ["entity", "entity_id"], unique=False)

    op.create_table(
        "calendar_override",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("working", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("created_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_calendar_override")),
    )
    op.create_table(
        "conversation",
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("flow", sa.String(length=40), nullable=True),
        sa.Column("step", sa.String(length=40), nullable=True),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "user_id", name=op.f("pk_conversation")),
    )
    op.create_table(
        "department",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column(
            "definition",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_department")),
        sa.UniqueConstraint("code", name=op.f("uq_department_code")),
    )
    op.create_table(
        "person",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("mobile", sa.String(length=11), nullable=False),
        sa.Column("id_hash", sa.String(length=64), nullable=True),
        sa.Column("id_masked", sa.String(length=18), nullable=True),
        sa.Column("updated_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person")),
        sa.UniqueConstraint("id_hash", name=op.f("uq_person_id_hash")),
    )
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_person_mobile"), ["mobile"], unique=False)

    op.create_table(
        "processed_message",
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("processed_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "response",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("channel", "message_id", name=op.f("pk_processed_message")),
    )
    with op.batch_alter_table("processed_message", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_processed_message_processed_at"), ["processed_at"], unique=False
        )

    op.create_table(
        "shared_value",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=80), nullable=True),
        sa.Column("expires_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_shared_value")),
    )
    op.create_table(
        "block",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("strikes", sa.Integer(), nullable=False),
        sa.Column("lifted_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=80), nullable=True),
        sa.Column("lift_reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["person.id"], name=op.f("fk_block_person_id_person")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_block")),
    )
    with op.batch_alter_table("block", schema=None) as batch_op:
        batch_op.create_index("ix_block_person_end", ["person_id", "ends_at"], unique=False)

    op.create_table(
        "channel_identity",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column(
            "channel",
            sa.Enum(
                "telegram",
                "wechat",
                "terminal",
                "staff",
                name="channel",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("platform_user_id", sa.String(length=128), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("last_inbound_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("unreachable_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("unreachable_reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["person.id"], name=op.f("fk_channel_identity_person_id_person")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_identity")),
        sa.UniqueConstraint(
            "channel", "platform_user_id", name=op.f("uq_channel_identity_channel")
        ),
    )
    with op.batch_alter_table("channel_identity", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_channel_identity_person_id"), ["person_id"], unique=False
        )

    op.create_table(
        "service",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column(
            "definition",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("definition_hash", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("slots_through", sa.Date(), nullable=True),
        sa.Column("updated_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_id"], ["department.id"], name=op.f("fk_service_department_id_department")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service")),
        sa.UniqueConstraint("code", name=op.f("uq_service_code")),
    )
    with op.batch_alter_table("service", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_department_id"), ["department_id"], unique=False
        )

    op.create_table(
        "closure",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=True),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("starts_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=False),
        sa.Column("affected", sa.Integer(), nullable=False),
        sa.Column("late_notices", sa.Integer(), nullable=False),
        sa.Column("created_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_id"], ["department.id"], name=op.f("fk_closure_department_id_department")
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_closure_service_id_service")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_closure")),
    )
    op.create_table(
        "handoff",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "claimed",
                "answered",
                "approved",
                "declined",
                "closed",
                name="requeststatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column(
            "context",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("opened_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=80), nullable=True),
        sa.Column("first_reply_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.Column("alert_ref", sa.String(length=80), nullable=True),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["channel_identity.id"],
            name=op.f("fk_handoff_identity_id_channel_identity"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handoff")),
    )
    with op.batch_alter_table("handoff", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_handoff_identity_id"), ["identity_id"], unique=False)
        batch_op.create_index("ix_handoff_status_opened", ["status", "opened_at"], unique=False)

    op.create_table(
        "home_visit_request",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=200), nullable=False),
        sa.Column("preferred_times", sa.String(length=200), nullable=False),
        sa.Column("eligibility", sa.String(length=20), nullable=False),
        sa.Column("age", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "claimed",
                "answered",
                "approved",
                "declined",
                "closed",
                name="requeststatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("due_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=80), nullable=True),
        sa.Column("decided_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("visit_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decline_reason", sa.String(length=200), nullable=True),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.Column("created_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["channel_identity.id"],
            name=op.f("fk_home_visit_request_identity_id_channel_identity"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["person.id"], name=op.f("fk_home_visit_request_person_id_person")
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_home_visit_request_service_id_service")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_home_visit_request")),
    )
    with op.batch_alter_table("home_visit_request", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_home_visit_request_identity_id"), ["identity_id"], unique=False
        )

    op.create_table(
        "slot",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("starts_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("online_capacity", sa.Integer(), nullable=False),
        sa.Column("booked", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("offline_booked", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "booked >= 0 AND held >= 0 AND booked + held <= online_capacity",
            name=op.f("ck_slot_online_seats"),
        ),
        sa.CheckConstraint(
            "offline_booked >= 0 AND offline_booked <= capacity - online_capacity",
            name=op.f("ck_slot_offline_seats"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_slot_service_id_service")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slot")),
        sa.UniqueConstraint("service_id", "starts_at", name=op.f("uq_slot_service_id")),
    )
    with op.batch_alter_table("slot", schema=None) as batch_op:
        batch_op.create_index("ix_slot_service_day", ["service_id", "local_date"], unique=False)

    op.create_table(
        "appointment",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=6), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("slot_id", sa.Integer(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=True),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("starts_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "booked",
                "checked_in",
                "completed",
                "no_show",
                "cancelled",
                name="appointmentstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column(
            "channel",
            sa.Enum(
                "telegram",
                "wechat",
                "terminal",
                "staff",
                name="channel",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("offline", sa.Boolean(), nullable=False),
        sa.Column("made_by", sa.String(length=80), nullable=False),
        sa.Column("age_at_booking", sa.Integer(), nullable=True),
        sa.Column("reschedules", sa.Integer(), nullable=False),
        sa.Column("checked_in_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("no_show_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "cancel_kind",
            sa.Enum(
                "citizen",
                "late",
                "centre",
                "staff",
                name="cancelkind",
                native_enum=False,
                length=20,
            ),
            nullable=True,
        ),
        sa.Column("cancel_reason", sa.String(length=200), nullable=True),
        sa.Column("updated_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["channel_identity.id"],
            name=op.f("fk_appointment_identity_id_channel_identity"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["person.id"], name=op.f("fk_appointment_person_id_person")
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_appointment_service_id_service")
        ),
        sa.ForeignKeyConstraint(["slot_id"], ["slot.id"], name=op.f("fk_appointment_slot_id_slot")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointment")),
        sa.UniqueConstraint("code", name=op.f("uq_appointment_code")),
    )
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.create_index("ix_appointment_created", ["created_at"], unique=False)
        batch_op.create_index(
            "ix_appointment_day_service", ["local_date", "service_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_appointment_identity_id"), ["identity_id"], unique=False
        )
        batch_op.create_index("ix_appointment_person_status", ["person_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_appointment_slot_id"), ["slot_id"], unique=False)
        batch_op.create_index("ix_appointment_status_start", ["status", "starts_at"], unique=False)

    op.create_table(
        "waitlist_entry",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column(
            "kind",
            sa.Enum("seat", "release", name="waitkind", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("slot_id", sa.Integer(), nullable=True),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "waiting",
                "offered",
                "done",
                "left",
                "expired",
                name="waitstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("offered_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["channel_identity.id"],
            name=op.f("fk_waitlist_entry_identity_id_channel_identity"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_waitlist_entry_service_id_service")
        ),
        sa.ForeignKeyConstraint(
            ["slot_id"], ["slot.id"], name=op.f("fk_waitlist_entry_slot_id_slot")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitlist_entry")),
    )
    with op.batch_alter_table("waitlist_entry", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_waitlist_entry_identity_id"), ["identity_id"], unique=False
        )
        batch_op.create_index(
            "ix_waitlist_queue", ["service_id", "local_date", "status", "id"], unique=False
        )

    op.create_table(
        "hold",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("slot_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=160), nullable=False),
        sa.Column("expires_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("waitlist_id", sa.Integer(), nullable=True),
        sa.Column("created_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["slot_id"], ["slot.id"], name=op.f("fk_hold_slot_id_slot")),
        sa.ForeignKeyConstraint(
            ["waitlist_id"], ["waitlist_entry.id"], name=op.f("fk_hold_waitlist_id_waitlist_entry")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hold")),
        sa.UniqueConstraint("slot_id", "owner", name=op.f("uq_hold_slot_id")),
    )
    with op.batch_alter_table("hold", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hold_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_hold_owner"), ["owner"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("dedup_key", sa.String(length=160), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=True),
        sa.Column("target", sa.String(length=160), nullable=True),
        sa.Column("appointment_id", sa.Integer(), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("due_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "sending",
                "sent",
                "failed",
                "undeliverable",
                "dropped",
                name="outboxstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(length=80), nullable=True),
        sa.Column("claimed_until", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointment.id"],
            name=op.f("fk_outbox_appointment_id_appointment"),
        ),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["channel_identity.id"],
            name=op.f("fk_outbox_identity_id_channel_identity"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_outbox_dedup_key")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_outbox_appointment_id"), ["appointment_id"], unique=False
        )
        batch_op.create_index("ix_outbox_due", ["status", "due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_identity_id"), ["identity_id"], unique=False)

    op.create_table(
        "rating",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=True),
        sa.Column("handoff_id", sa.Integer(), nullable=True),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("level BETWEEN 1 AND 5", name=op.f("ck_rating_level")),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointment.id"],
            name=op.f("fk_rating_appointment_id_appointment"),
        ),
        sa.ForeignKeyConstraint(
            ["handoff_id"], ["handoff.id"], name=op.f("fk_rating_handoff_id_handoff")
        ),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["channel_identity.id"],
            name=op.f("fk_rating_identity_id_channel_identity"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rating")),
        sa.UniqueConstraint("appointment_id", name=op.f("uq_rating_appointment_id")),
        sa.UniqueConstraint("handoff_id", name=op.f("uq_rating_handoff_id")),
    )
    op.create_table(
        "strike",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("voided_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointment.id"],
            name=op.f("fk_strike_appointment_id_appointment"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["person.id"], name=op.f("fk_strike_person_id_person")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strike")),
    )
    with op.batch_alter_table("strike", schema=None) as batch_op:
        batch_op.create_index("ix_strike_person_at", ["person_id", "at"], unique=False)

    op.create_table(
        "complaint",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=True),
        sa.Column("rating_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "claimed",
                "answered",
                "approved",
                "declined",
                "closed",
                name="requeststatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("opened_at", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_answer_due", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolution_due", storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=80), nullable=True),
        sa.Column("claimed_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("answered_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointment.id"],
            name=op.f("fk_complaint_appointment_id_appointment"),
        ),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["channel_identity.id"],
            name=op.f("fk_complaint_identity_id_channel_identity"),
        ),
        sa.ForeignKeyConstraint(
            ["rating_id"], ["rating.id"], name=op.f("fk_complaint_rating_id_rating")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaint")),
    )
    with op.batch_alter_table("complaint", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_complaint_identity_id"), ["identity_id"], unique=False)
        batch_op.create_index("ix_complaint_status_opened", ["status", "opened_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("complaint", schema=None) as batch_op:
        batch_op.drop_index("ix_complaint_status_opened")
        batch_op.drop_index(batch_op.f("ix_complaint_identity_id"))

    op.drop_table("complaint")
    with op.batch_alter_table("strike", schema=None) as batch_op:
        batch_op.drop_index("ix_strike_person_at")

    op.drop_table("strike")
    op.drop_table("rating")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_identity_id"))
        batch_op.drop_index("ix_outbox_due")
        batch_op.drop_index(batch_op.f("ix_outbox_appointment_id"))

    op.drop_table("outbox")
    with op.batch_alter_table("hold", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hold_owner"))
        batch_op.drop_index(batch_op.f("ix_hold_expires_at"))

    op.drop_table("hold")
    with op.batch_alter_table("waitlist_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_waitlist_queue")
        batch_op.drop_index(batch_op.f("ix_waitlist_entry_identity_id"))

    op.drop_table("waitlist_entry")
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.drop_index("ix_appointment_status_start")
        batch_op.drop_index(batch_op.f("ix_appointment_slot_id"))
        batch_op.drop_index("ix_appointment_person_status")
        batch_op.drop_index(batch_op.f("ix_appointment_identity_id"))
        batch_op.drop_index("ix_appointment_day_service")
        batch_op.drop_index("ix_appointment_created")

    op.drop_table("appointment")
    with op.batch_alter_table("slot", schema=None) as batch_op:
        batch_op.drop_index("ix_slot_service_day")

    op.drop_table("slot")
    with op.batch_alter_table("home_visit_request", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_home_visit_request_identity_id"))

    op.drop_table("home_visit_request")
    with op.batch_alter_table("handoff", schema=None) as batch_op:
        batch_op.drop_index("ix_handoff_status_opened")
        batch_op.drop_index(batch_op.f("ix_handoff_identity_id"))

    op.drop_table("handoff")
    op.drop_table("closure")
    with op.batch_alter_table("service", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_department_id"))

    op.drop_table("service")
    with op.batch_alter_table("channel_identity", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_channel_identity_person_id"))

    op.drop_table("channel_identity")
    with op.batch_alter_table("block", schema=None) as batch_op:
        batch_op.drop_index("ix_block_person_end")

    op.drop_table("block")
    op.drop_table("shared_value")
    with op.batch_alter_table("processed_message", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_processed_message_processed_at"))

    op.drop_table("processed_message")
    with op.batch_alter_table("person", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_person_mobile"))

    op.drop_table("person")
    op.drop_table("department")
    op.drop_table("conversation")
    op.drop_table("calendar_override")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_entity")

    op.drop_table("audit_log")
